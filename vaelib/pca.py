"""Principal component analysis by SVD, and the comparison with linear autoencoders (chapter 1).

Conventions: a data matrix ``x`` is (n, N), one example per row; a basis
``U`` is (N, M) with orthonormal columns; errors are squared errors **summed
over the N coordinates (pixels)** and **averaged over examples**, the same
reduction as :class:`vaelib.Autoencoder`'s training loss.  Every function is
pure, runs on the inputs' device and dtype, and draws no random numbers.

References: Bishop (2006), section 12.1 (PCA as maximal variance and minimal
reconstruction error); Baldi and Hornik (1989) and Plaut (2018) (a linear
autoencoder's optimum spans the principal subspace).
"""

from __future__ import annotations


import torch
from torch import Tensor

from .errors import VaelibError

__all__ = [
    "fit_pca",
    "pca_encode",
    "pca_decode",
    "pca_reconstruct",
    "reconstruction_error",
    "pca_error_curve",
    "principal_angles",
]


def _check_data(x: Tensor, name: str = "x") -> None:
    if not isinstance(x, Tensor) or x.dim() != 2 or not torch.is_floating_point(x):
        raise VaelibError(f"{name} must be a floating-point tensor of shape (n, N), got {getattr(x, 'shape', type(x))}")


def fit_pca(x: Tensor, M: int) -> tuple[Tensor, Tensor, Tensor]:
    """The top-``M`` principal directions of ``x`` by a thin SVD of the centred data.

    With ``mean = (1/n) sum_i x_i`` and ``X_c = x - mean = V_l S V_r^T`` (thin SVD),
    the principal directions are the right singular vectors,
    ``U = V_r[:, :M]``, and the explained variances are the eigenvalues of the
    sample covariance ``C = X_c^T X_c / (n - 1)``: ``lambda_j = s_j^2 / (n - 1)``.

    Each column's sign is fixed so that its largest-magnitude entry is
    positive, which makes the result reproducible (an eigenvector is only
    defined up to sign).

    Args:
        x: data, (n, N), with n >= 2.
        M: number of components, 1 <= M <= min(n, N).

    Returns:
        ``mean`` (N,), ``U`` (N, M) with orthonormal columns ordered by
        decreasing variance, ``explained_variance`` (M,) = ``lambda_1 >= ... >= lambda_M``
        (squared data units, unbiased divisor n - 1).

    Reference: Bishop (2006), section 12.1.
    """
    _check_data(x)
    n, N = x.shape
    if n < 2:
        raise VaelibError(f"PCA needs at least 2 examples, got {n}")
    if not 1 <= M <= min(n, N):
        raise VaelibError(f"M must be between 1 and min(n, N) = {min(n, N)}, got {M}")
    mean = x.mean(0)  # (N,)
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)  # s (K,), vh (K, N), K = min(n, N)
    U = vh[:M].T  # (N, M)
    pivot = U.abs().argmax(0)  # (M,)
    signs = torch.sign(U[pivot, torch.arange(M, device=U.device)])
    signs[signs == 0] = 1
    U = U * signs  # (N, M)
    explained_variance = s[:M] ** 2 / (n - 1)  # (M,)
    return mean, U, explained_variance


def pca_encode(x: Tensor, mean: Tensor, U: Tensor) -> Tensor:
    """The PCA code ``z = U^T (x - mean)``: the encoder ``e`` with matrix ``U^T`` (M, N).

    ``x`` (B, N), ``mean`` (N,), ``U`` (N, M) -> ``z`` (B, M).
    """
    return (x - mean) @ U


def pca_decode(z: Tensor, mean: Tensor, U: Tensor) -> Tensor:
    """The PCA decoder ``x_hat = mean + U z``: the decoder ``d`` with matrix ``U`` (N, M).

    ``z`` (B, M), ``mean`` (N,), ``U`` (N, M) -> ``x_hat`` (B, N).
    """
    return mean + z @ U.T


def pca_reconstruct(x: Tensor, mean: Tensor, U: Tensor) -> Tensor:
    """The orthogonal projection onto the affine principal subspace,
    ``x_hat = mean + U U^T (x - mean)``.

    ``x`` (B, N), ``mean`` (N,), ``U`` (N, M) with orthonormal columns -> ``x_hat`` (B, N).
    """
    return pca_decode(pca_encode(x, mean, U), mean, U)


def reconstruction_error(x: Tensor, x_hat: Tensor, reduce: bool = True) -> Tensor:
    """Squared error ``||x - x_hat||^2`` summed over coordinates, averaged over examples.

    ``x``, ``x_hat`` (B, N) -> a scalar (``reduce=True``) or (B,) per example.
    In squared data units (pixels' grey levels squared for images); it is the
    quantity a :class:`vaelib.Autoencoder` minimises, and minus its
    ``test_reconstruction`` in :func:`vaelib.fit`'s history.
    """
    if x.shape != x_hat.shape:
        raise VaelibError(f"x and x_hat must have the same shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}")
    per_example = (x - x_hat).pow(2).reshape(x.shape[0], -1).sum(-1)  # (B,)
    return per_example.mean() if reduce else per_example


def pca_error_curve(x_fit: Tensor, x_eval: Tensor, dims: list[int] | tuple[int, ...]) -> Tensor:
    """PCA reconstruction error of ``x_eval`` for each number of components in ``dims``.

    One SVD of ``x_fit`` (n, N) at ``max(dims)`` components; for each ``M``
    the first ``M`` columns give the M-dimensional principal subspace (the
    subspaces are nested).  Returns (len(dims),), the mean over ``x_eval``
    (B, N) of the squared error summed over coordinates.
    """
    if len(dims) == 0:
        raise VaelibError("dims must hold at least one number of components")
    mean, U, _ = fit_pca(x_fit, max(dims))
    errors = [reconstruction_error(x_eval, pca_reconstruct(x_eval, mean, U[:, :M])) for M in dims]
    return torch.stack(errors)


def principal_angles(A: Tensor, B: Tensor) -> Tensor:
    """Principal angles between the column spaces of ``A`` (N, p) and ``B`` (N, q), ascending, radians.

    With ``Q_A``, ``Q_B`` orthonormal bases (reduced QR), the cosines of the
    angles are the singular values of ``Q_A^T Q_B``:
    ``cos theta_k = sigma_k(Q_A^T Q_B)``, k = 1..min(p, q).  Small angles are
    taken instead from the sines, the singular values of
    ``Q_B - Q_A Q_A^T Q_B`` (for p >= q), since ``arccos`` loses accuracy near
    1 (Knyazev and Argentati, 2002; the same method as
    ``scipy.linalg.subspace_angles``, which returns them descending).

    The angles depend only on the subspaces: ``principal_angles(A @ R, B)`` is
    the same for any invertible R (p, p).  All zero means the spaces coincide
    (p = q) or one contains the other; ``pi/2`` means orthogonal directions.
    ``A`` and ``B`` must have full column rank.

    Returns (min(p, q),) in [0, pi/2], ascending.
    """
    for name, m in (("A", A), ("B", B)):
        if not isinstance(m, Tensor) or m.dim() != 2 or not torch.is_floating_point(m):
            raise VaelibError(f"{name} must be a floating-point tensor of shape (N, p), got {getattr(m, 'shape', type(m))}")
        if m.shape[1] > m.shape[0]:
            raise VaelibError(f"{name} has more columns than rows ({tuple(m.shape)}): its columns cannot be independent")
    if A.shape[0] != B.shape[0]:
        raise VaelibError(f"A and B must have the same number of rows, got {A.shape[0]} and {B.shape[0]}")
    if A.shape[1] < B.shape[1]:
        A, B = B, A  # now p >= q
    QA, _ = torch.linalg.qr(A)  # (N, p)
    QB, _ = torch.linalg.qr(B)  # (N, q)
    C = QA.T @ QB  # (p, q)
    cos = torch.linalg.svdvals(C).clamp(0.0, 1.0)  # (q,) descending -> angles ascending
    sin = torch.linalg.svdvals(QB - QA @ C).clamp(0.0, 1.0).flip(0)  # (q,) ascending -> angles ascending
    small = cos**2 >= 0.5  # angle <= pi/4: the sine is the accurate one
    return torch.where(small, torch.arcsin(sin), torch.arccos(cos))
