"""The VAE's objective: likelihoods, the reparameterized sample, the ELBO and the
importance-weighted bound (chapters 3 and 4).

Conventions, everywhere in this module:

* ``x`` is a batch of flattened inputs, shape (B, P); ``z`` is (B, D) or,
  with several samples per input, (K, B, D).
* Log-densities are in nats.  Per-example quantities are **summed over pixels
  and latent dimensions** and returned with shape (B,) (or (K, B));
  training losses are **means over the batch**.

References: Kingma and Welling (2014); Rezende, Mohamed and Wierstra (2014);
Burda, Grosse and Salakhutdinov (2016).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import VaelibError
from .information import kl_standard_normal

__all__ = [
    "bernoulli_log_likelihood",
    "gaussian_log_likelihood",
    "log_normal",
    "reparameterize",
    "ELBOTerms",
    "elbo",
    "log_weights",
    "iwae_bound",
    "log_marginal_likelihood",
    "effective_sample_size",
    "kl_warmup",
    "check_images",
]

_LOG_2PI = math.log(2.0 * math.pi)


def check_images(x: Tensor, input_dim: int | None = None, bernoulli: bool = False, values: bool = True) -> Tensor:
    """Validate a batch of inputs and return it flattened to (B, P).

    Accepts (B, P) or (B, C, H, W) floating-point tensors.  With ``values``
    (which synchronises with the device) also checks that every value is
    finite and, for a Bernoulli likelihood, that pixels lie in [0, 1].
    """
    if not isinstance(x, Tensor):
        raise VaelibError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise VaelibError(f"x must be a floating-point tensor (e.g. x.float() / 255), got dtype {x.dtype}")
    if x.dim() == 4 or x.dim() == 3:
        x = x.reshape(x.shape[0], -1)
    if x.dim() != 2:
        raise VaelibError(f"x must have shape (B, P) or (B, C, H, W), got {tuple(x.shape)}")
    if input_dim is not None and x.shape[1] != input_dim:
        raise VaelibError(f"x has {x.shape[1]} values per example but the model expects {input_dim}; check the data set and the model config")
    if values and x.numel() > 0:
        # One pass over the data: min and max propagate NaN, and an infinity shows up as one of them.
        lo, hi = (v.item() for v in torch.aminmax(x))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise VaelibError("x contains NaN or infinite values; clean the data before training or evaluating")
        if bernoulli and (lo < 0 or hi > 1):
            raise VaelibError(
                f"a Bernoulli likelihood needs pixels in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; "
                "scale the images (x / 255) or use likelihood='gaussian'"
            )
    return x


def bernoulli_log_likelihood(x: Tensor, logits: Tensor) -> Tensor:
    """``log p(x|z) = sum_p [x_p log s(l_p) + (1 - x_p) log(1 - s(l_p))]`` with ``s`` the sigmoid.

    Computed from the decoder's ``logits`` (never from probabilities) as
    ``-softplus(-l) x - softplus(l) (1 - x)``, which stays finite for any
    logit.  It is minus the binary cross-entropy.  ``x`` in [0, 1]
    (non-binary values give the continuous Bernoulli's unnormalised
    log-density).  ``x``: (..., P), ``logits``: broadcastable; returns (...,),
    summed over pixels, in nats.
    """
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)


def gaussian_log_likelihood(x: Tensor, mean: Tensor, logvar: Tensor | float = 0.0) -> Tensor:
    """``log N(x; mean, diag exp(logvar))``, the full density with its constant.

    ``-1/2 sum_p [log(2 pi) + logvar_p + (x_p - mean_p)^2 / exp(logvar_p)]``.
    With a fixed variance ``sigma^2`` this equals ``-||x - mean||^2 / (2 sigma^2)``
    minus ``P/2 log(2 pi sigma^2)``: squared error *up to that constant and that
    scale*.  Shapes broadcast; (..., P) -> (...,), summed over pixels, nats.
    """
    logvar = torch.as_tensor(logvar, dtype=mean.dtype, device=mean.device)
    return -0.5 * (_LOG_2PI + logvar + (x - mean).pow(2) * torch.exp(-logvar)).sum(-1)


def log_normal(z: Tensor, mu: Tensor | float = 0.0, logvar: Tensor | float = 0.0) -> Tensor:
    """``log N(z; mu, diag exp(logvar))`` summed over the last dimension (nats).

    With the defaults it is the standard-normal prior ``log p(z)``.
    """
    return gaussian_log_likelihood(z, torch.as_tensor(mu, dtype=z.dtype, device=z.device), logvar)


def reparameterize(
    mu: Tensor,
    logvar: Tensor,
    n_samples: int | None = None,
    *,
    eps: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The reparameterized sample ``z = mu + sigma * eps`` with ``eps ~ N(0, I)``.

    ``sigma = exp(logvar / 2)``.  ``mu``, ``logvar``: (B, D).  Returns (B, D)
    when ``n_samples`` is None, else (K, B, D) with K = ``n_samples``.  The
    noise can be given as ``eps`` (of the output's shape) or drawn with
    ``generator``; gradients flow to ``mu`` and ``logvar`` but not to ``eps``.
    Reference: Kingma and Welling (2014), section 2.4.
    """
    shape = mu.shape if n_samples is None else (n_samples, *mu.shape)
    if n_samples is not None and n_samples < 1:
        raise VaelibError(f"n_samples must be >= 1, got {n_samples}")
    if eps is None:
        eps = torch.randn(shape, generator=generator, device=mu.device, dtype=mu.dtype)
    elif eps.shape != shape:
        raise VaelibError(f"eps has shape {tuple(eps.shape)} but the sample needs {tuple(shape)}")
    return mu + torch.exp(0.5 * logvar) * eps


@dataclass(frozen=True)
class ELBOTerms:
    """The ELBO of each example and its two parts, all (B,) and in nats.

    ``elbo = reconstruction - kl``, where ``reconstruction`` is the Monte Carlo
    estimate of ``E_q[log p(x|z)]`` and ``kl`` the closed-form
    ``KL(q(z|x) || p(z))``.
    """

    elbo: Tensor  # (B,) lower bound on log p(x)
    reconstruction: Tensor  # (B,) E_q[log p(x|z)], averaged over samples
    kl: Tensor  # (B,) KL(q(z|x) || N(0, I)), closed form

    def loss(self, beta: float = 1.0) -> Tensor:
        """The training loss ``-(reconstruction - beta * kl)``, mean over the batch."""
        return -(self.reconstruction - beta * self.kl).mean()


def elbo(
    model,
    x: Tensor,
    *,
    n_samples: int | None = None,
    eps: Tensor | None = None,
    generator: torch.Generator | None = None,
    q: tuple[Tensor | float, Tensor | float] | None = None,
    check: bool = True,
) -> ELBOTerms:
    """``ELBO(x) = E_{q(z|x)}[log p(x|z)] - KL(q(z|x) || p(z))`` per example.

    ``model`` has ``encode(x) -> (mu, logvar)``, ``decode(z)`` and
    ``log_likelihood(x, x_param)``.  The expectation uses ``n_samples``
    reparameterized samples per input (default 1, or ``eps.shape[0]`` when
    the noise ``eps`` of shape (K, B, D) is given); the KL term is exact.
    ``x``: (B, P).  Returns :class:`ELBOTerms` of (B,) tensors in nats (sum
    over pixels and latents).  ``q = (mu, logvar)`` replaces the encoder's
    output (any diagonal Gaussian; tensors or numbers broadcast to (B, D)).
    ``check=False`` skips the value checks (which synchronise with the
    device), for use inside a training loop whose data were checked once.
    """
    x = check_images(x, model.config.input_dim, model.config.likelihood == "bernoulli", values=check)
    mu, logvar = _proposal(model, x, q)  # (B, D) each
    if eps is not None and eps.dim() == mu.dim():
        eps = eps.unsqueeze(0)  # one sample given as (B, D)
    if n_samples is None:
        n_samples = 1 if eps is None else eps.shape[0]
    z = reparameterize(mu, logvar, n_samples, eps=eps, generator=generator)  # (K, B, D)
    reconstruction = model.log_likelihood(x, model.decode(z)).mean(0)  # (B,)
    kl = kl_standard_normal(mu, logvar)  # (B,)
    return ELBOTerms(elbo=reconstruction - kl, reconstruction=reconstruction, kl=kl)


def _proposal(model, x: Tensor, q) -> tuple[Tensor, Tensor]:
    """The encoder's ``(mu, logvar)`` for x, or the given ``q`` broadcast to (B, D)."""
    if q is None:
        return model.encode(x)
    shape = (x.shape[0], model.config.latent_dim)
    mu, logvar = (torch.as_tensor(v, dtype=x.dtype, device=x.device) for v in q)
    try:
        return mu.expand(shape), logvar.expand(shape)
    except RuntimeError:
        raise VaelibError(
            f"q = (mu, logvar) must broadcast to (B, D) = {shape}, got shapes {tuple(mu.shape)} and {tuple(logvar.shape)}"
        ) from None


def log_weights(
    model, x: Tensor, mu: Tensor, logvar: Tensor, n: int, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Log importance weights ``log w = log p(x|z) + log p(z) - log q(z|x)`` for n samples z ~ q.

    ``x``: (B, P); ``mu``, ``logvar``: (B, D).  Returns ``(log_w, log_px_z)``,
    each (n, B), in nats.
    """
    z = reparameterize(mu, logvar, n, generator=generator)  # (n, B, D)
    log_px_z = model.log_likelihood(x, model.decode(z))  # (n, B)
    return log_px_z + log_normal(z) - log_normal(z, mu, logvar), log_px_z


def _default_chunk(k: int, batch: int, width: int) -> int:
    # Keep one chunk's decoder output near 2**24 floats (64 MB in float32).
    return max(1, min(k, 2**24 // max(1, batch * width)))


def iwae_bound(
    model,
    x: Tensor,
    k: int,
    *,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
    q: tuple[Tensor, Tensor] | None = None,
    check: bool = True,
) -> Tensor:
    """The importance-weighted bound ``L_k(x) = E[log (1/k) sum_i w_i]`` per example.

    ``w_i = p(x|z_i) p(z_i) / q(z_i|x)`` with ``z_i ~ q(z|x)`` i.i.d.
    ``L_1`` is the ELBO; ``L_k <= L_{k+1} <= log p(x)`` and ``L_k -> log p(x)``
    as k grows (Burda, Grosse and Salakhutdinov 2016, theorem 1).  The k
    samples are drawn in chunks of ``chunk_size`` and combined with a running
    log-sum-exp, so memory stays bounded for any k.  ``x``: (B, P); returns
    (B,) in nats.  Differentiable (the IWAE objective) when grad is enabled.
    ``q = (mu, logvar)`` replaces the encoder as the proposal (tensors or
    numbers, broadcast to (B, D)); ``q = (0.0, 0.0)``, the prior itself, gives
    naive Monte Carlo from the prior.
    """
    if not isinstance(k, int) or k < 1:
        raise VaelibError(f"k (the number of importance samples) must be an integer >= 1, got {k!r}")
    x = check_images(x, model.config.input_dim, model.config.likelihood == "bernoulli", values=check)
    mu, logvar = _proposal(model, x, q)  # (B, D)
    chunk = chunk_size or _default_chunk(k, x.shape[0], x.shape[1])
    total: Tensor | None = None
    for start in range(0, k, chunk):
        log_w, _ = log_weights(model, x, mu, logvar, min(chunk, k - start), generator=generator)  # (n, B)
        part = torch.logsumexp(log_w, dim=0)  # (B,)
        total = part if total is None else torch.logaddexp(total, part)
    return total - math.log(k)


@torch.no_grad()
def log_marginal_likelihood(
    model,
    x: Tensor,
    k: int = 5000,
    *,
    batch_size: int = 100,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Estimate ``log p(x) ~ L_k`` (k = 5000 is the usual test protocol), per example.

    Runs :func:`iwae_bound` without gradients over mini-batches of
    ``batch_size`` inputs.  ``x``: (N, P); returns (N,) in nats, on the model's device.  Its negative
    mean is the test negative log-likelihood reported in papers.
    """
    x = check_images(x, model.config.input_dim, model.config.likelihood == "bernoulli")
    # Batches move to the model's device (data may stay on the CPU while the model is on a GPU).
    tensor = next(itertools.chain(model.parameters(), model.buffers()), x)
    parts = [
        iwae_bound(model, x[i : i + batch_size].to(tensor.device), k, chunk_size=chunk_size, generator=generator, check=False)
        for i in range(0, x.shape[0], batch_size)
    ]
    return torch.cat(parts)


def effective_sample_size(log_w: Tensor, dim: int = 0) -> Tensor:
    """Kish's effective sample size of importance weights, ``(sum w)^2 / sum w^2``.

    Computed from log-weights with log-sum-exp; between 1 (one weight
    dominates) and the number of samples (all weights equal).
    """
    return torch.exp(2 * torch.logsumexp(log_w, dim) - torch.logsumexp(2 * log_w, dim))


def kl_warmup(epoch: int, warmup_epochs: int, beta: float = 1.0) -> float:
    """Linear KL warm-up: the KL weight at (0-based) ``epoch``.

    Rises linearly from ``beta / warmup_epochs`` at epoch 0 to ``beta`` at
    epoch ``warmup_epochs - 1`` and stays there; ``warmup_epochs = 0`` gives
    ``beta`` throughout.
    """
    if warmup_epochs < 0 or epoch < 0:
        raise VaelibError("epoch and warmup_epochs must be >= 0")
    if warmup_epochs == 0:
        return float(beta)
    return float(beta) * min(1.0, (epoch + 1) / warmup_epochs)
