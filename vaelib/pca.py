"""Principal component analysis by SVD, and the comparison with autoencoders (chapter 1).

Conventions: a data matrix ``x`` is (n, N), one example per row; a basis
``U`` is (N, M) with orthonormal columns; errors are squared errors **summed
over the N coordinates (pixels)** and **averaged over examples**, the same
reduction as :class:`vaelib.Autoencoder`'s training loss.  Every function
runs on its inputs' device and dtype, takes its randomness from an optional
``generator``, and leaves its arguments unchanged, except
``init_linear_autoencoder_`` which (trailing underscore) sets a model's
weights in place.  The last helpers (``transform_code``,
``aggregate_moments``, ``box_samples``) serve the chapter's comparison of an
autoencoder's latent space with a VAE's.

References: Bishop (2006), section 12.1 (PCA as maximal variance and minimal
reconstruction error); Baldi and Hornik (1989) and Plaut (2018) (a linear
autoencoder's optimum spans the principal subspace).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .errors import VaelibError
from .models import Autoencoder

__all__ = [
    "fit_pca",
    "pca_encode",
    "pca_decode",
    "pca_reconstruct",
    "reconstruction_error",
    "pca_error_curve",
    "principal_angles",
    "random_orthonormal",
    "init_linear_autoencoder_",
    "transform_code",
    "aggregate_moments",
    "box_samples",
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


def pca_error_curve(x: Tensor, mean: Tensor, U: Tensor, dims: list[int] | tuple[int, ...]) -> Tensor:
    """PCA reconstruction error of ``x`` for each number of components ``M`` in ``dims``.

    ``mean`` (N,) and ``U`` (N, K) come from one :func:`fit_pca` with
    ``K >= max(dims)``; the principal subspaces are nested, so the first ``M``
    columns of ``U`` are the M-component solution.  ``x`` (B, N) may be the
    fitted data or held-out data.  Returns (len(dims),): for each ``M`` the
    mean over ``x`` of the squared error summed over coordinates.
    """
    if len(dims) == 0 or min(dims) < 1 or max(dims) > U.shape[1]:
        raise VaelibError(f"dims must be non-empty and within 1..{U.shape[1]} (the columns of U), got {list(dims)}")
    return torch.stack([reconstruction_error(x, pca_reconstruct(x, mean, U[:, :M])) for M in dims])


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


def random_orthonormal(
    N: int,
    M: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> Tensor:
    """A uniformly random (N, M) matrix with orthonormal columns, ``Q^T Q = I_M``.

    The Q factor of an (N, M) standard Gaussian matrix, with the signs fixed
    so that ``diag(R) > 0``; this makes the column space uniform over
    M-dimensional subspaces (Haar measure; Mezzadri, 2007).  Knows nothing
    about any data: it is a neutral starting point, e.g. to initialise a
    linear autoencoder with ``d = Q`` and ``e = Q^T``.
    """
    if not 1 <= M <= N:
        raise VaelibError(f"need 1 <= M <= N, got M={M}, N={N}")
    g = torch.randn(N, M, generator=generator, dtype=dtype, device=device)  # (N, M)
    Q, R = torch.linalg.qr(g)
    signs = torch.sign(torch.diagonal(R))
    signs[signs == 0] = 1
    return Q * signs  # (N, M)


def init_linear_autoencoder_(model: Autoencoder, mean: Tensor, *, generator: torch.Generator | None = None) -> Autoencoder:
    """Initialise a linear autoencoder, in place, as a random centred orthogonal projection.

    With ``Q = random_orthonormal(N, M)`` (independent of the data) and ``mean``
    the data mean (N,), sets ``e(x) = Q^T (x - mean)`` and ``d(z) = mean + Q z``,
    so training starts from ``x_hat = mean + Q Q^T (x - mean)``: balanced
    weights (``W_e = W_d^T``) and codes of mean zero.  With the offset already
    in the biases, the data mean is not carried through the code, which slows
    training from PyTorch's default initialisation (in the worst case a code
    unit stays nearly constant to carry it, a saddle point that learns no
    direction).  Training then moves ``span(Q)`` towards the principal subspace.

    ``model``: a :class:`vaelib.Autoencoder` with ``linear=True``; returns it.
    """
    if not (isinstance(model, Autoencoder) and model.config.linear):
        raise VaelibError("init_linear_autoencoder_ needs a vaelib Autoencoder with linear=True")
    enc, dec = model.encoder[0], model.decoder[0]
    N, M = dec.weight.shape
    if mean.shape != (N,):
        raise VaelibError(f"mean must have shape ({N},), got {tuple(mean.shape)}")
    Q = random_orthonormal(N, M, generator=generator, dtype=dec.weight.dtype).to(dec.weight.device)  # (N, M)
    mean = mean.to(dec.weight)
    with torch.no_grad():
        dec.weight.copy_(Q)
        dec.bias.copy_(mean)
        enc.weight.copy_(Q.T)
        enc.bias.copy_(-(Q.T @ mean))
    return model


def transform_code(model: Autoencoder, A: Tensor, b: Tensor | None = None) -> Autoencoder:
    """A copy of an autoencoder whose code is ``z' = A z + b`` and whose reconstructions are unchanged.

    The encoder's last affine layer becomes ``A (W_e h + b_e) + b`` and the
    decoder's first one ``W_d A^{-1} z' + (b_d - W_d A^{-1} b)``, so
    ``d'(e'(x)) = d(e(x))`` for every x.  This is why a squared-error
    autoencoder's code is only defined up to an invertible affine map, and
    why a linear autoencoder's optimal weights are not unique: only the
    decoder's column space, ``span(W_d) = span(W_d A^{-1})``, is (Baldi and
    Hornik, 1989).  A VAE has no such freedom: its KL term depends on the
    scale and location of z.

    Args:
        model: a :class:`vaelib.Autoencoder` (left unchanged).
        A: invertible (M, M) matrix.  b: (M,) shift, zero when omitted.

    Returns:
        the transformed copy, on the model's device.
    """
    if not isinstance(model, Autoencoder):
        raise VaelibError(f"transform_code needs a vaelib Autoencoder, got {type(model).__name__}")
    M = model.config.latent_dim
    if A.shape != (M, M):
        raise VaelibError(f"A must be ({M}, {M}) for latent_dim={M}, got {tuple(A.shape)}")
    new = copy.deepcopy(model)
    enc, dec = new.encoder[-1], new.decoder[0]
    if not (isinstance(enc, nn.Linear) and isinstance(dec, nn.Linear)):
        raise VaelibError("transform_code needs an encoder ending and a decoder starting with a Linear layer")
    A = A.to(enc.weight)
    b = torch.zeros(M).to(enc.weight) if b is None else b.to(enc.weight)
    with torch.no_grad():
        A_inv = torch.linalg.inv(A)  # (M, M)
        enc.weight.copy_(A @ enc.weight)  # (M, H)
        enc.bias.copy_(A @ enc.bias + b)  # (M,)
        W_new = dec.weight @ A_inv  # (H', M)
        dec.bias.copy_(dec.bias - W_new @ b)  # (H',)
        dec.weight.copy_(W_new)
    return new


def aggregate_moments(mu: Tensor, logvar: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and second moment of the aggregate posterior
    ``q(z) = (1/n) sum_i N(z; mu_i, diag sigma_i^2)``:

    ``E_q[z_j] = (1/n) sum_i mu_ij`` and ``E_q[z_j^2] = (1/n) sum_i (mu_ij^2 + sigma_ij^2)``.

    With ``logvar=None`` (an autoencoder's point codes) ``sigma = 0``.  The
    variance is ``E[z_j^2] - E[z_j]^2``.  ``mu``, ``logvar`` (n, D) -> two (D,).

    Why these two: when the decoder's first layer is affine (as in
    :class:`vaelib.VAE`), the reparametrisation ``z' = a z + c`` per latent can
    be absorbed by the decoder, leaving the reconstruction term unchanged,
    while ``KL(q(z|x) || N(0, I))`` changes.  Setting its derivatives in ``a``
    and ``c`` to zero shows that at any stationary point of the ELBO (averaged
    over the training set), ``E_q[z_j] = 0`` and ``E_q[z_j^2] = 1``: the
    aggregate posterior has the prior's mean and variance.  A squared-error
    autoencoder's loss has no such term, so its codes' moments are arbitrary.
    """
    if logvar is not None and logvar.shape != mu.shape:
        raise VaelibError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    second = mu.pow(2) if logvar is None else mu.pow(2) + logvar.exp()  # (n, D)
    return mu.mean(0), second.mean(0)


def box_samples(codes: Tensor, n: int, *, width: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """``n`` points drawn uniformly from the axis-aligned box that holds ``codes``, widened ``width`` times.

    The box has centre ``c = (min + max) / 2`` and half-widths
    ``h = width * (max - min) / 2`` per dimension (min and max over the rows of
    ``codes``); each draw is ``c + h * u`` with ``u ~ U[-1, 1]^D``.  This is the
    natural guess for "codes like the data's" when a model (a plain
    autoencoder) has no prior to sample from.  ``codes`` (B, D) -> (n, D), on
    the codes' device.
    """
    if codes.dim() != 2 or codes.shape[0] < 1:
        raise VaelibError(f"codes must have shape (B, D) with B >= 1, got {tuple(codes.shape)}")
    if n < 1 or not width > 0:
        raise VaelibError(f"need n >= 1 and width > 0, got n={n}, width={width}")
    low, high = codes.min(0).values, codes.max(0).values  # (D,) each
    centre, half = (low + high) / 2, width * (high - low) / 2
    u = 2 * torch.rand(n, codes.shape[1], generator=generator, dtype=codes.dtype, device=codes.device) - 1  # (n, D)
    return centre + half * u
