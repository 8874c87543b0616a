"""The plain autoencoder of chapter 1, and the helpers that compare its code with PCA's and a VAE's.

``Autoencoder`` is a deterministic ``x_hat = d(e(x))`` trained on squared
error; with ``linear=True`` its optimum spans the principal subspace (Baldi
and Hornik 1989; Plaut 2018).  The helpers set a linear autoencoder's
weights, reshape its code without changing its reconstructions, and give the
moments of a set of codes and uniform draws from their bounding box.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from . import _checks
from .elbo import ELBOTerms
from .errors import VaelibError
from .layers import ACTIVATIONS, mlp, normalise_config
from .pca import random_orthonormal

__all__ = ["init_linear_autoencoder_", "transform_code", "aggregate_moments", "box_samples"]


@dataclass(frozen=True)
class AutoencoderConfig:
    """Everything that defines an :class:`Autoencoder`; saved in every checkpoint."""

    image_shape: tuple[int, int, int] = (1, 28, 28)  #: (C, H, W) of one input; P = C * H * W
    latent_dim: int = 2  #: D, the size of the code z
    hidden_dims: tuple[int, ...] = (400,)  #: hidden widths of the encoder (the decoder mirrors them)
    activation: str = "relu"  #: nonlinearity between the layers
    linear: bool = False  #: True: e and d are single affine maps, no hidden layers (the PCA case)

    choices: ClassVar[dict[str, tuple[str, ...]]] = {"activation": tuple(ACTIVATIONS)}
    minimums: ClassVar[dict[str, int]] = {"latent_dim": 1}  # other int fields: >= 0

    def __post_init__(self):
        normalise_config(self)

    @property
    def input_dim(self) -> int:
        """P, the number of values in one flattened input."""
        return math.prod(self.image_shape)


class Autoencoder(nn.Module):
    """A deterministic autoencoder ``x_hat = d(e(x))`` trained on squared error.

    With ``linear=True``, ``e(x) = W_e x + b_e`` and ``d(z) = W_d z + b_d``:
    its optimum spans the same subspace as PCA with D components.
    """

    def __init__(self, config: AutoencoderConfig | None = None):
        super().__init__()
        self.config = config = config or AutoencoderConfig()
        self.input_dim, self.latent_dim = P, D = config.input_dim, config.latent_dim
        hidden = () if config.linear else config.hidden_dims
        activation = None if config.linear else config.activation
        self.encoder = mlp([P, *hidden, D], activation)
        self.decoder = mlp([D, *reversed(hidden), P], activation)

    def encode(self, x: Tensor) -> Tensor:
        """The code ``z = e(x)``, (B, D)."""
        x = _checks.images(x, self.input_dim, values=False, dtype=self.decoder[0].weight.dtype)
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """The reconstruction ``x_hat = d(z)``, (..., P)."""
        if z.shape[-1] != self.latent_dim:
            raise VaelibError(f"z has {z.shape[-1]} dimensions but the model's latent_dim is {self.latent_dim}")
        return self.decoder(z)

    def mean(self, x_param: Tensor) -> Tensor:
        """The decoder's output is already the reconstruction ``x_hat``."""
        return x_param

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction ``x_hat = d(e(x))`` of a batch ``x`` (B, P), (B, P)."""
        return self.decode(self.encode(x))

    def terms(self, x: Tensor) -> ELBOTerms:
        """The autoencoder's own objective, minus the squared error ``-||x - x_hat||^2`` per example (B,).

        It has no latent distribution, so ``elbo`` and ``kl`` are None;
        ``objective`` and ``reconstruction`` both hold minus the squared error
        summed over pixels, in squared pixel units (not nats).
        """
        x = _checks.images(x, self.input_dim, values=False, dtype=self.decoder[0].weight.dtype)
        neg_sq_err = -(self(x) - x).pow(2).sum(-1)  # (B,)
        return ELBOTerms(objective=neg_sq_err, elbo=None, reconstruction=neg_sq_err, kl=None)


def init_linear_autoencoder_(
    model: Autoencoder, mean: Tensor, *, generator: torch.Generator | None = None
) -> Autoencoder:
    """Initialise a linear autoencoder, in place, as a random centred orthogonal projection.

    With ``Q = vl.pca.random_orthonormal(P, D)`` (independent of the data)
    and ``mean`` the data mean (P,), sets ``e(x) = Q^T (x - mean)`` and
    ``d(z) = mean + Q z``, so training starts from
    ``x_hat = mean + Q Q^T (x - mean)``: balanced weights (``W_e = W_d^T``)
    and codes of mean zero.  With the offset already in the biases, the data
    mean is not carried through the code, which slows training from
    PyTorch's default initialisation (in the worst case a code unit stays
    nearly constant to carry it, a saddle point that learns no direction).
    Training then moves ``span(Q)`` towards the principal subspace.

    ``model``: an :class:`Autoencoder` with ``linear=True``; returns it.
    ``mean``: a tensor, list or numpy array (P,) of finite values; nothing is
    written unless every argument is good.
    """
    if not (isinstance(model, Autoencoder) and model.config.linear):
        raise VaelibError("init_linear_autoencoder_ needs a vaelib Autoencoder with linear=True")
    enc, dec = model.encoder[0], model.decoder[0]
    P, D = dec.weight.shape
    mean = _checks.tensor("mean", mean)
    if mean.shape != (P,):
        raise VaelibError(f"mean must have shape ({P},), got {tuple(mean.shape)}")
    # in the weights' dtype first: a float64 mean too large for float32 becomes inf, and is refused too
    mean = _checks.finite("mean", mean.to(dec.weight))  # a NaN here would make every weight NaN
    Q = random_orthonormal(P, D, generator=generator, dtype=dec.weight.dtype).to(dec.weight.device)  # (P, D)
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

    ``model``: an :class:`Autoencoder` (left unchanged); ``A``: invertible
    (D, D); ``b``: (D,) shift, zero when omitted.  Returns the transformed
    copy, on the model's device.
    """
    if not isinstance(model, Autoencoder):
        raise VaelibError(f"transform_code needs a vaelib Autoencoder, got {type(model).__name__}")
    D = model.latent_dim
    weight = _checks.weights(model)  # the dtype and device that A and b take
    A = _checks.tensor("A", A)
    if A.shape != (D, D):
        raise VaelibError(f"A must be ({D}, {D}) for latent_dim={D}, got {tuple(A.shape)}")
    A = _checks.finite("A", A.to(weight))
    if b is None:
        b = torch.zeros(D).to(weight)
    else:
        b = _checks.tensor("b", b)
        if b.shape != (D,):
            raise VaelibError(f"b must be a shift of shape ({D},) for latent_dim={D}, got {tuple(b.shape)}")
        b = _checks.finite("b", b.to(weight))
    with torch.no_grad():
        A_inv, info = torch.linalg.inv_ex(A)  # (D, D); the same factorisation as torch.linalg.inv
    if int(info) != 0 or not bool(torch.isfinite(A_inv).all()):
        raise VaelibError(
            "A must be invertible (a singular map merges codes, and the decoder cannot undo it); "
            "pass a (D, D) matrix with a nonzero determinant"
        )
    new = copy.deepcopy(model)
    enc, dec = new.encoder[-1], new.decoder[0]
    with torch.no_grad():
        enc.weight.copy_(A @ enc.weight)  # (D, H)
        enc.bias.copy_(A @ enc.bias + b)  # (D,)
        W_new = dec.weight @ A_inv  # (H', D)
        dec.bias.copy_(dec.bias - W_new @ b)  # (H',)
        dec.weight.copy_(W_new)
    return new


def aggregate_moments(mu: Tensor, logvar: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and second moment of the aggregate posterior
    ``q(z) = (1/N) sum_i N(z; mu_i, diag sigma_i^2)``:

    ``E_q[z_j] = (1/N) sum_i mu_ij`` and ``E_q[z_j^2] = (1/N) sum_i (mu_ij^2 + sigma_ij^2)``.

    With ``logvar=None`` (an autoencoder's point codes) ``sigma = 0``.  The
    variance is ``E[z_j^2] - E[z_j]^2``.  ``mu``, ``logvar`` (N, D) -> two (D,).

    Why these two: when the decoder's first layer is affine (as in
    :class:`vaelib.VAE`), the reparametrisation ``z' = a z + c`` per latent can
    be absorbed by the decoder, leaving the reconstruction term unchanged,
    while ``KL(q(z|x) || N(0, I))`` changes.  Setting its derivatives in ``a``
    and ``c`` to zero shows that at any stationary point of the ELBO (averaged
    over the training set), ``E_q[z_j] = 0`` and ``E_q[z_j^2] = 1``: the
    aggregate posterior has the prior's mean and variance.  A squared-error
    autoencoder's loss has no such term, so its codes' moments are arbitrary.
    """
    mu = _checks.tensor("mu", mu)
    if mu.dim() != 2 or mu.shape[0] == 0:  # the moments of no codes would be NaN
        raise VaelibError(f"mu must be codes of shape (N, D) with N >= 1, got {tuple(mu.shape)}")
    if not mu.is_floating_point():
        mu = mu.to(torch.get_default_dtype())
    logvar = None if logvar is None else _checks.tensor("logvar", logvar)
    if logvar is not None and logvar.shape != mu.shape:
        raise VaelibError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    second = mu.pow(2) if logvar is None else mu.pow(2) + logvar.exp()  # (N, D)
    return mu.mean(0), second.mean(0)


def box_samples(codes: Tensor, n: int, *, width: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
    """``n`` points drawn uniformly from the axis-aligned box that holds ``codes``, widened ``width`` times.

    The box has centre ``c = (min + max) / 2`` and half-widths
    ``h = width * (max - min) / 2`` per dimension (min and max over the rows of
    ``codes``); each draw is ``c + h * u`` with ``u ~ U[-1, 1]^D``.  This is the
    natural guess for "codes like the data's" when a model (a plain
    autoencoder) has no prior to sample from.  ``codes`` (B, D) -> (n, D), on
    the codes' device; ``width`` a finite number > 0.
    """
    codes = _checks.tensor("codes", codes)
    if codes.dim() != 2 or codes.shape[0] < 1:
        raise VaelibError(f"codes must have shape (B, D) with B >= 1, got {tuple(codes.shape)}")
    n = _checks.count("n", n)
    width = _checks.number("width", width, positive=True)
    if not codes.is_floating_point():
        raise VaelibError(f"codes must be a floating-point tensor, got dtype {codes.dtype}; use codes.float()")
    _checks.generator(generator, codes.device)
    low, high = codes.min(0).values, codes.max(0).values  # (D,) each
    # the one pass over the codes: min and max propagate NaN, and an infinite code is one of them
    if not bool((torch.isfinite(low) & torch.isfinite(high)).all()):
        raise VaelibError("codes contains NaN or infinite values, which have no box; clean the codes first")
    centre, half = (low + high) / 2, width * (high - low) / 2
    u = 2 * torch.rand(n, codes.shape[1], generator=generator, dtype=codes.dtype, device=codes.device) - 1  # (n, D)
    return centre + half * u
