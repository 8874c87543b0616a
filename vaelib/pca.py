"""Principal component analysis by SVD (chapter 1).

Conventions: a data matrix ``x`` is (N, P), one example per row; a basis
``U`` is (P, D) with orthonormal columns; errors are squared errors **summed
over the P coordinates (pixels)** and **averaged over examples**, the same
reduction as :class:`vaelib.Autoencoder`'s training loss.  Every function
runs on its inputs' device and dtype, takes its randomness from an optional
``generator``, and leaves its arguments unchanged.  The autoencoder side of
the chapter lives in :mod:`vaelib.autoencoder`.

References: Bishop (2006), section 12.1 (PCA as maximal variance and minimal
reconstruction error); Baldi and Hornik (1989) and Plaut (2018) (a linear
autoencoder's optimum spans the principal subspace).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from . import _checks
from .devices import resolve_device
from .errors import VaelibError

__all__ = [
    "fit_pca",
    "pca_encode",
    "pca_decode",
    "pca_reconstruct",
    "reconstruction_error",
    "pca_error_curve",
    "principal_angles",
    "random_orthonormal",
]


def _check_data(x: Tensor, name: str = "x", shape: str = "(N, P)") -> None:
    """A floating-point matrix without NaN or infinity (an SVD of one that has them fails or returns NaN)."""
    if not isinstance(x, Tensor):
        raise VaelibError(
            f"{name} must be a torch.Tensor of shape {shape}, got {type(x).__name__}; convert it with torch.as_tensor"
        )
    if x.dim() != 2:
        raise VaelibError(f"{name} must have shape {shape}, got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise VaelibError(f"{name} must be a floating-point tensor, got dtype {x.dtype}; use {name}.float()")
    _checks.finite(name, x)


def _common(*tensors: Tensor) -> list[Tensor]:
    """The tensors in one floating-point dtype, the one torch's arithmetic would give them
    (a matrix product, unlike ``+``, does not promote: float32 @ float64 fails)."""
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors))
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    return [t.to(dtype) for t in tensors]


def _basis(mean, U) -> tuple[Tensor, Tensor]:
    """``mean`` (P,) and ``U`` (P, D) as tensors, their shapes checked (a basis from :func:`fit_pca`)."""
    mean, U = _checks.tensor("mean", mean), _checks.tensor("U", U)
    if U.dim() != 2:
        raise VaelibError(f"U must be a basis of shape (P, D), one direction per column, got {tuple(U.shape)}")
    if mean.shape != U.shape[:1]:
        raise VaelibError(
            f"mean must have shape ({U.shape[0]},) (P, the rows of U), got {tuple(mean.shape)}; "
            "pass the mean that fit_pca returned"
        )
    return mean, U


def _last(name: str, value, size: int, what: str) -> Tensor:
    """``value`` as a tensor (..., size)."""
    value = _checks.tensor(name, value)
    if value.dim() == 0 or value.shape[-1] != size:
        raise VaelibError(f"{name} must have shape (..., {size}) ({what}), got {tuple(value.shape)}")
    return value


def fit_pca(x: Tensor, D: int) -> tuple[Tensor, Tensor, Tensor]:
    """The top-``D`` principal directions of ``x`` by a thin SVD of the centred data.

    With ``mean = (1/N) sum_i x_i`` and ``X_c = x - mean = V_l S V_r^T`` (thin SVD),
    the principal directions are the right singular vectors,
    ``U = V_r[:, :D]``, and the explained variances are the eigenvalues of the
    sample covariance ``C = X_c^T X_c / (N - 1)``: ``lambda_j = s_j^2 / (N - 1)``.

    Each column's sign is fixed so that its largest-magnitude entry is
    positive, which makes the result reproducible (an eigenvector is only
    defined up to sign).

    Args:
        x: data, (N, P), with N >= 2.
        D: number of components, 1 <= D <= min(N, P).

    Returns:
        ``mean`` (P,), ``U`` (P, D) with orthonormal columns ordered by
        decreasing variance, ``explained_variance`` (D,) = ``lambda_1 >= ... >= lambda_D``
        (squared data units, unbiased divisor N - 1).

    Reference: Bishop (2006), section 12.1.
    """
    _check_data(x)
    N, P = x.shape
    if N < 2:
        raise VaelibError(f"PCA needs at least 2 examples, got {N}")
    D = _checks.count("D", D)
    if not D <= min(N, P):
        raise VaelibError(f"D must be between 1 and min(N, P) = {min(N, P)}, got {D}")
    mean = x.mean(0)  # (P,)
    _, s, vh = torch.linalg.svd(x - mean, full_matrices=False)  # s (K,), vh (K, P), K = min(N, P)
    U = vh[:D].T  # (P, D)
    pivot = U.abs().argmax(0)  # (D,)
    signs = torch.sign(U[pivot, torch.arange(D, device=U.device)])
    signs[signs == 0] = 1
    U = U * signs  # (P, D)
    explained_variance = s[:D] ** 2 / (N - 1)  # (D,)
    return mean, U, explained_variance


def pca_encode(x: Tensor, mean: Tensor, U: Tensor) -> Tensor:
    """The PCA code ``z = U^T (x - mean)``: the encoder ``e`` with matrix ``U^T`` (D, P).

    ``x`` (B, P), ``mean`` (P,), ``U`` (P, D) -> ``z`` (B, D).
    """
    mean, U = _basis(mean, U)
    x = _last("x", x, U.shape[0], "P values per example, as many as U has rows")
    return _encode(*_common(x, mean, U))


def _encode(x: Tensor, mean: Tensor, U: Tensor) -> Tensor:
    """:func:`pca_encode` of checked operands."""
    return (x - mean) @ U


def pca_decode(z: Tensor, mean: Tensor, U: Tensor) -> Tensor:
    """The PCA decoder ``x_hat = mean + U z``: the decoder ``d`` with matrix ``U`` (P, D).

    ``z`` (B, D), ``mean`` (P,), ``U`` (P, D) -> ``x_hat`` (B, P).
    """
    mean, U = _basis(mean, U)
    z = _last("z", z, U.shape[1], "D values per code, as many as U has columns")
    return _decode(*_common(z, mean, U))


def _decode(z: Tensor, mean: Tensor, U: Tensor) -> Tensor:
    """:func:`pca_decode` of checked operands."""
    return mean + z @ U.T


def _project(x: Tensor, mean: Tensor, U: Tensor) -> Tensor:
    """``mean + U U^T (x - mean)`` of checked operands: decode(encode(x))."""
    return _decode(_encode(x, mean, U), mean, U)


def pca_reconstruct(x: Tensor, mean: Tensor, U: Tensor) -> Tensor:
    """The orthogonal projection onto the affine principal subspace,
    ``x_hat = mean + U U^T (x - mean)``.

    ``x`` (B, P), ``mean`` (P,), ``U`` (P, D) with orthonormal columns -> ``x_hat`` (B, P).
    """
    mean, U = _basis(mean, U)
    x, mean, U = _common(_last("x", x, U.shape[0], "P values per example, as many as U has rows"), mean, U)
    return _project(x, mean, U)


def reconstruction_error(x: Tensor, x_hat: Tensor, reduce: bool = True) -> Tensor:
    """Squared error ``||x - x_hat||^2`` summed over coordinates, averaged over examples.

    ``x``, ``x_hat`` (B, P) -> a scalar (``reduce=True``) or (B,) per example.
    In squared data units (pixels' grey levels squared for images); it is the
    quantity a :class:`vaelib.Autoencoder` minimises, and minus its
    ``test_reconstruction`` in :func:`vaelib.fit`'s history.
    """
    x, x_hat = _checks.tensor("x", x), _checks.tensor("x_hat", x_hat)
    if x.shape != x_hat.shape:
        raise VaelibError(f"x and x_hat must have the same shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}")
    if x.dim() < 2:  # a single example (P,) would be read as P examples of one value
        raise VaelibError(f"x must be a batch (B, P), got shape {tuple(x.shape)}; use x[None] for one example")
    if x.shape[0] == 0:  # the mean over no examples is NaN
        raise VaelibError("x holds no examples (its first dimension is 0); pass at least one")
    return _reconstruction_error(x, x_hat, reduce)


def _reconstruction_error(x: Tensor, x_hat: Tensor, reduce: bool = True) -> Tensor:
    """:func:`reconstruction_error` of checked operands."""
    per_example = (x - x_hat).pow(2).reshape(x.shape[0], -1).sum(-1)  # (B,)
    return per_example.mean() if reduce else per_example


def pca_error_curve(x: Tensor, mean: Tensor, U: Tensor, dims: list[int] | tuple[int, ...]) -> Tensor:
    """PCA reconstruction error of ``x`` for each number of components ``D`` in ``dims``.

    ``mean`` (P,) and ``U`` (P, K) come from one :func:`fit_pca` with
    ``K >= max(dims)``; the principal subspaces are nested, so the first ``D``
    columns of ``U`` are the D-component solution.  ``x`` (B, P) may be the
    fitted data or held-out data.  Returns (len(dims),): for each ``D`` the
    mean over ``x`` of the squared error summed over coordinates.
    """
    mean, U = _basis(mean, U)
    x = _last("x", x, U.shape[0], "P values per example, as many as U has rows")
    if x.dim() != 2 or x.shape[0] == 0:
        raise VaelibError(f"x must be a batch (B, P) with B >= 1, got shape {tuple(x.shape)}")
    x, mean, U = _common(x, mean, U)
    if isinstance(dims, (str, bytes)) or not hasattr(dims, "__iter__"):
        raise VaelibError(f"dims must be a list of numbers of components, e.g. [1, 2, 5], got {dims!r}")
    dims = [_checks.count("each entry of dims", D) for D in dims]
    if len(dims) == 0 or max(dims) > U.shape[1]:
        raise VaelibError(f"dims must be non-empty and within 1..{U.shape[1]} (the columns of U), got {dims}")
    return torch.stack([_reconstruction_error(x, _project(x, mean, U[:, :D])) for D in dims])


def principal_angles(A: Tensor, B: Tensor) -> Tensor:
    """Principal angles between the column spaces of ``A`` (P, p) and ``B`` (P, q), ascending, radians.

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
        _check_data(m, name, "(P, p)")
        if m.shape[1] == 0:
            raise VaelibError(f"{name} has no columns ({tuple(m.shape)}): pass at least one direction")
        if m.shape[1] > m.shape[0]:
            raise VaelibError(
                f"{name} has more columns than rows ({tuple(m.shape)}): its columns cannot be independent"
            )
    if A.shape[0] != B.shape[0]:
        raise VaelibError(f"A and B must have the same number of rows, got {A.shape[0]} and {B.shape[0]}")
    if A.shape[1] < B.shape[1]:
        A, B = B, A  # now p >= q
    QA, _ = torch.linalg.qr(A)  # (P, p)
    QB, _ = torch.linalg.qr(B)  # (P, q)
    C = QA.T @ QB  # (p, q)
    cos = torch.linalg.svdvals(C).clamp(0.0, 1.0)  # (q,) descending -> angles ascending
    sin = torch.linalg.svdvals(QB - QA @ C).clamp(0.0, 1.0).flip(0)  # (q,) ascending -> angles ascending
    small = cos**2 >= 0.5  # angle <= pi/4: the sine is the accurate one
    return torch.where(small, torch.arcsin(sin), torch.arccos(cos))


def random_orthonormal(
    P: int,
    D: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> Tensor:
    """A uniformly random (P, D) matrix with orthonormal columns, ``Q^T Q = I_D``.

    The Q factor of a (P, D) standard Gaussian matrix, with the signs fixed
    so that ``diag(R) > 0``; this makes the column space uniform over
    D-dimensional subspaces (Haar measure; Mezzadri, 2007).  Knows nothing
    about any data: it is a neutral starting point, e.g. to initialise a
    linear autoencoder with ``d = Q`` and ``e = Q^T``.  ``dtype``: a floating-point one;
    ``device``: one this machine has (:func:`vaelib.resolve_device`), the CPU when None.
    """
    P, D = _checks.count("P", P), _checks.count("D", D)
    if D > P:
        raise VaelibError(f"need 1 <= D <= P, got D={D}, P={P}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise VaelibError(f"dtype must be a floating-point torch.dtype such as torch.float32, got {dtype!r}")
    device = None if device is None else resolve_device(device)  # an unknown or absent device: a DeviceError
    _checks.generator(generator, torch.device("cpu") if device is None else device)
    g = torch.randn(P, D, generator=generator, dtype=dtype, device=device)  # (P, D)
    Q, R = torch.linalg.qr(g)
    signs = torch.sign(torch.diagonal(R))
    signs[signs == 0] = 1
    return Q * signs  # (P, D)
