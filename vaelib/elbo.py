"""The ELBO and its relatives: the beta-weighted objective and the
importance-weighted bound L_k, all from one function, :func:`vaelib.objective`
(chapters 3 to 5).

Conventions, everywhere in this module:

* ``x`` is a batch of flattened inputs, shape (B, P); ``z`` is (B, D) or,
  with k samples per input, (k, B, D).
* Log-densities are in nats.  Per-example quantities are **summed over
  pixels and latent dimensions** and returned with shape (B,) (or (k, B));
  a training loss is their **mean over the batch**.

A model the objective works with has the interface of
:class:`LatentVariableModel`: :class:`vaelib.VAE` and
:class:`vaelib.linear_gaussian.LinearGaussian` both do.

References: Kingma and Welling (2014); Rezende, Mohamed and Wierstra (2014);
Burda, Grosse and Salakhutdinov (2016).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from . import _checks
from .bernoulli import bernoulli_log_likelihood
from .errors import VaelibError
from .gaussian import kl_standard_normal, log_normal, reparameterize

# The helpers: what the chapters use as vl.elbo.* (bernoulli_log_likelihood is defined in the leaf
# module vaelib.bernoulli, beside vaelib.gaussian).  objective, iwae_bound and
# log_marginal_likelihood are public at the top level (vl.objective, ...).
__all__ = [
    "ELBOTerms",
    "kl_warmup",
    "LatentVariableModel",
    "bernoulli_log_likelihood",
    "log_weights",
    "log_mean_exp",
    "effective_sample_size",
]


@runtime_checkable
class LatentVariableModel(Protocol):
    """What :func:`vaelib.objective`, :func:`vaelib.iwae_bound` and :func:`vaelib.evaluate` need of a model.

    ``p(z) = N(0, I)`` over ``latent_dim`` dimensions, a decoder that maps
    ``z`` (..., B, D) to the parameters of ``p(x|z)`` over ``input_dim``
    values, and an encoder that maps ``x`` (B, P) to the mean and
    log-variance of a diagonal Gaussian ``q(z|x)``.  A conditional model
    also takes labels ``y`` (B,) in ``encode`` and ``decode``.
    """

    input_dim: int  # P
    latent_dim: int  # D
    likelihood: str  # "bernoulli" or "gaussian": which inputs the likelihood accepts

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]: ...

    def decode(self, z: Tensor) -> Tensor: ...

    def log_likelihood(self, x: Tensor, x_param: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class ELBOTerms:
    """The objective of each example and its parts, all (B,) and in nats.

    ``elbo = reconstruction - kl``, where ``reconstruction`` is the Monte
    Carlo estimate of ``E_q[log p(x|z)]`` (averaged over the k samples) and
    ``kl`` the closed-form ``KL(q(z|x) || p(z))``.  ``objective`` is what
    training maximises: ``reconstruction - beta * kl`` for k = 1, the bound
    ``L_k`` for k > 1.  A model without a latent distribution (the
    :class:`vaelib.Autoencoder`) has ``elbo = kl = None``.
    """

    objective: Tensor  #: (B,) what training maximises
    elbo: Tensor | None  #: (B,) lower bound on log p(x)
    reconstruction: Tensor  #: (B,) E_q[log p(x|z)], averaged over samples
    kl: Tensor | None  #: (B,) KL(q(z|x) || N(0, I)), closed form

    def items(self) -> list[tuple[str, Tensor]]:
        """The (name, tensor) pairs that are not None, in field order."""
        pairs = (
            ("objective", self.objective),
            ("elbo", self.elbo),
            ("reconstruction", self.reconstruction),
            ("kl", self.kl),
        )
        return [(name, value) for name, value in pairs if value is not None]


def _inputs(model, x: Tensor, y: Tensor | None, generator: torch.Generator | None, check: bool):
    """x checked for the model (its values when ``check``), on the model's device and in its dtype; the labels
    (their range when ``check``) and the generator checked against it.  Returns ``(x, y)``."""
    x = _checks.inputs(model, x, values=check, same_device=True)
    _checks.generator(generator, x.device)
    return x, _checks.model_labels(model, y, x.shape[0], values=check)


def _latent(caller: str, model) -> None:
    """Refuse a model without a latent distribution (the autoencoder scores itself, by ``model.terms``)."""
    if hasattr(model, "terms"):
        raise VaelibError(
            f"{caller} needs a model with a latent distribution q(z|x) and p(z) (a VAE); a "
            f"{type(model).__name__} has none, so it has no bound on log p(x)"
        )


def _device(model, x: Tensor) -> torch.device:
    """Where the model computes: the device of its parameters (x's for a model without any)."""
    ref = _checks.reference(model)
    return x.device if ref is None else ref.device


def _check_memory(model, batch: int, k: int, device, *, chunk: int | None = None) -> None:
    """Refuse k samples per input that cannot fit: each sample of each input holds its z and noise (D values
    each) and its decoder output and log-likelihood terms (P values each) at once, unless decoded in chunks."""
    itemsize = 4 if (ref := _checks.reference(model)) is None else ref.element_size()
    per_sample = 2 * (model.latent_dim + model.input_dim) if chunk is None else 2  # with chunks: (k, B) log-weights
    nbytes = itemsize * batch * k * per_sample
    advice = (
        "use vl.iwae_bound, which decodes the samples in chunks, or fewer samples"
        if chunk is None
        else "use fewer samples, or fewer inputs at a time (batch_size)"
    )
    _checks.allocation(nbytes, device, f"k={k} importance samples for {batch} inputs", advice)


def _proposal(model, x: Tensor, y: Tensor | None, q, check: bool) -> tuple[Tensor, Tensor]:
    """The encoder's ``(mu, logvar)`` for x, or the given ``q`` broadcast to (B, D) (its values checked with
    ``check``)."""
    if q is None:
        return model.encode(x) if y is None else model.encode(x, y)
    shape = (x.shape[0], model.latent_dim)
    try:
        if isinstance(q, (str, bytes)) or len(q) != 2:
            raise TypeError
        mu, logvar = (torch.as_tensor(v, dtype=x.dtype, device=x.device) for v in q)
    except (TypeError, ValueError, RuntimeError):  # not a pair, or a part that is not numbers
        raise VaelibError(
            f"q must be a pair (mu, logvar) of tensors or numbers, e.g. (0.0, 0.0) for the prior; got {q!r}"
        ) from None
    if check:
        _checks.finite("q's mu", mu)
        _checks.finite("q's logvar", logvar)
    try:
        return mu.expand(shape), logvar.expand(shape)
    except RuntimeError:
        raise VaelibError(
            f"q = (mu, logvar) must broadcast to (B, D) = {shape}, got shapes {tuple(mu.shape)} and "
            f"{tuple(logvar.shape)}"
        ) from None


def log_weights(
    model, x: Tensor, mu: Tensor, logvar: Tensor, k: int, *,
    y: Tensor | None = None, eps: Tensor | None = None, generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Log importance weights ``log w = log p(x|z) + log p(z) - log q(z|x)`` for k samples z ~ q.

    ``z = mu + sigma * eps`` with ``eps`` given (k, B, D) or drawn with
    ``generator``.  ``x``: (B, P); ``mu``, ``logvar``: (B, D).  Returns
    ``(log_w, log_px_z)``, each (k, B), in nats.
    """
    k = _checks.count("k", k)  # named as the caller knows it (reparameterize calls it n_samples)
    z = reparameterize(mu, logvar, k, eps=eps, generator=generator)  # (k, B, D)
    x_param = model.decode(z) if y is None else model.decode(z, y)  # (k, B, P)
    log_px_z = model.log_likelihood(x, x_param)  # (k, B)
    return log_px_z + log_normal(z) - log_normal(z, mu, logvar), log_px_z


def log_mean_exp(log_w: Tensor, dim: int = 0) -> Tensor:
    """``log((1/k) sum_i exp(log_w_i))`` along ``dim``, with log-sum-exp: the bound L_k from k log-weights."""
    if not -log_w.dim() <= dim < log_w.dim():
        raise VaelibError(f"dim={dim} is not a dimension of log_w, which has shape {tuple(log_w.shape)}")
    if log_w.shape[dim] == 0:
        raise VaelibError(f"log_w holds no samples along dim={dim} (shape {tuple(log_w.shape)}); pass k >= 1")
    return torch.logsumexp(log_w, dim) - math.log(log_w.shape[dim])


def objective(
    model, x: Tensor, *, beta: float = 1.0, k: int = 1, y: Tensor | None = None, eps: Tensor | None = None,
    generator: torch.Generator | None = None, q: tuple[Tensor | float, Tensor | float] | None = None,
    check: bool = True,
) -> ELBOTerms:  # fmt: skip
    r"""The training objective of each example, with the ELBO and its two parts.

    With :math:`z_1, \dots, z_k \sim q(z|x)` drawn by reparameterization and
    the importance weights :math:`w_i = p(x|z_i)\, p(z_i) / q(z_i|x)`:

    .. math::

        \text{reconstruction} &= \frac{1}{k} \sum_{i=1}^k \log p(x|z_i) \\
        \text{kl} &= \mathrm{KL}\big(q(z|x) \,\|\, \mathcal{N}(0, I)\big) \\
        \text{elbo} &= \text{reconstruction} - \text{kl} \\
        \text{objective} &= \begin{cases}
            \text{reconstruction} - \beta \, \text{kl} & k = 1 \\
            \mathcal{L}_k = \log \frac{1}{k} \sum_{i=1}^k w_i & k > 1
        \end{cases}

    ``reconstruction`` estimates :math:`\mathbb{E}_q[\log p(x|z)]`, ``kl`` is in
    closed form, and ``objective`` is the ELBO for k = 1 and beta = 1, the
    beta-weighted ELBO for other beta, and the IWAE bound for k > 1.

    ``x``: (B, P) or (B, C, H, W) on the model's device, any floating dtype
    (cast to the model's).  ``eps`` (k, B, D) fixes the noise (a (B, D)
    tensor is one sample); else it is drawn with ``generator`` (on the same
    device).  ``q = (mu, logvar)`` replaces the encoder's output (tensors or
    numbers broadcast to (B, D); ``(0.0, 0.0)`` is the prior itself).  ``y``:
    labels (B,) for a conditional model.  ``check=False`` skips the checks of
    the values of ``x`` and ``y`` and of the memory k samples need, which
    synchronise with the device, inside a loop whose data were checked once.
    Returns :class:`~vaelib.elbo.ELBOTerms` of (B,) tensors in nats; a training loss is
    ``-terms.objective.mean()``.  A model that supplies its own terms (the
    :class:`vaelib.Autoencoder`, through ``model.terms(x)``) is scored by
    them, after the same checks of ``x``; it takes no ``k``, ``beta``,
    ``eps``, ``q`` or ``y``.
    References: Kingma and Welling (2014), eq. 10; Burda et al. (2016), eq. 8.
    """
    k = _checks.count("k", k)
    beta = _checks.number("beta", beta, minimum=0.0)
    if k > 1 and beta != 1.0:
        raise VaelibError("the bound L_k (k > 1) has no KL weight; use beta=1 with k > 1")
    if hasattr(model, "terms"):  # no latent distribution: the model knows its own objective
        if k != 1 or beta != 1.0 or eps is not None or q is not None or y is not None:
            raise VaelibError(f"{type(model).__name__} has no latent distribution: k, beta, eps, q and y do not apply")
        return model.terms(_checks.inputs(model, x, values=check, same_device=True))
    x, y = _inputs(model, x, y, generator, check)
    if check and k > 1:
        _check_memory(model, x.shape[0], k, x.device)
    mu, logvar = _proposal(model, x, y, q, check)  # (B, D) each
    eps = None if eps is None else _noise(eps, mu, k, check)  # (k, B, D)
    log_w, log_px_z = log_weights(model, x, mu, logvar, k, y=y, eps=eps, generator=generator)  # (k, B) each
    reconstruction = log_px_z.mean(0)  # (B,)
    kl = kl_standard_normal(mu, logvar)  # (B,)
    # k = 1 uses the exact KL rather than the one-sample log-weight: the same expectation, less noise.
    value = reconstruction - beta * kl if k == 1 else log_mean_exp(log_w)
    return ELBOTerms(objective=value, elbo=reconstruction - kl, reconstruction=reconstruction, kl=kl)


def _noise(eps, mu: Tensor, k: int, check: bool) -> Tensor:
    """The given noise as (k, B, D) in mu's dtype (a (B, D) tensor is one sample), its values checked with
    ``check``."""
    if not isinstance(eps, Tensor) or not eps.is_floating_point():
        raise VaelibError(f"eps must be a floating-point torch.Tensor of shape (k, B, D), got {type(eps).__name__}")
    if eps.device != mu.device:
        raise VaelibError(f"eps is on {eps.device} but the model computes on {mu.device}; move it there")
    eps = eps.unsqueeze(0) if eps.dim() == mu.dim() else eps  # one sample given as (B, D)
    if eps.dim() != 3 or eps.shape[1:] != mu.shape:
        raise VaelibError(f"eps must be (k, B, D) with (B, D) = {tuple(mu.shape)}, or (B, D); got {tuple(eps.shape)}")
    if eps.shape[0] != k:
        raise VaelibError(f"eps holds {eps.shape[0]} samples per input but k={k}; pass k={eps.shape[0]}")
    return _checks.finite("eps", eps).to(mu.dtype) if check else eps.to(mu.dtype)


def _default_chunk(k: int, batch: int, width: int, device: torch.device) -> int:
    # One chunk's decoder output: near 2**24 floats (64 MB in float32) on a GPU, where large kernels pay, and
    # near 2**19 (2 MB) on a CPU, where the passes of the log-likelihood over it run from the cache: L_5000 of
    # MNIST 1.7 times as fast as with 2**24 (benchmarks/nll_speed.py).
    floats = 2**19 if device.type == "cpu" else 2**24
    return max(1, min(k, floats // max(1, batch * width)))


def iwae_bound(
    model, x: Tensor, k: int, *, y: Tensor | None = None, chunk_size: int | None = None,
    generator: torch.Generator | None = None, q: tuple[Tensor | float, Tensor | float] | None = None,
    check: bool = True,
) -> Tensor:  # fmt: skip
    r"""The importance-weighted bound ``L_k(x) = E[log (1/k) sum_i w_i]`` per example, for any k.

    .. math::

        \mathcal{L}_k(x) = \mathbb{E}\Big[\log \frac{1}{k} \sum_{i=1}^k w_i\Big],
        \qquad w_i = \frac{p(x|z_i)\, p(z_i)}{q(z_i|x)},

    with :math:`z_1, \dots, z_k \sim q(z|x)` i.i.d.

    :math:`\mathcal{L}_1` is the ELBO;
    :math:`\mathcal{L}_k \le \mathcal{L}_{k+1} \le \log p(x)` and
    :math:`\mathcal{L}_k \to \log p(x)` as k grows (Burda, Grosse and
    Salakhutdinov 2016, theorem 1).  The same
    bound as ``objective(model, x, k=k).objective``, but the samples are
    decoded in chunks of ``chunk_size``, so memory stays bounded for any k
    (by default, about 2**19 decoder outputs per chunk on a CPU, which keeps
    them in the cache, and 2**24 on a GPU).
    ``x``: (B, P); returns (B,) in nats.  Differentiable when grad is
    enabled.  ``q = (mu, logvar)`` replaces the encoder as the proposal;
    ``q = (0.0, 0.0)``, the prior itself, gives naive Monte Carlo.
    """
    k = _checks.count("k (the number of importance samples)", k)
    _latent("iwae_bound", model)
    x, y = _inputs(model, x, y, generator, check)
    chunk = _checks.count("chunk_size", chunk_size) if chunk_size is not None else _default_chunk(k, *x.shape, x.device)
    if check:
        _check_memory(model, x.shape[0], k, x.device, chunk=chunk)
    mu, logvar = _proposal(model, x, y, q, check)  # (B, D)
    log_w = torch.cat(
        [
            log_weights(model, x, mu, logvar, min(chunk, k - start), y=y, generator=generator)[0]
            for start in range(0, k, chunk)
        ]
    )  # (k, B): small even for k = 5000; the decoder outputs were the large part
    return log_mean_exp(log_w)


@torch.no_grad()
def log_marginal_likelihood(
    model,
    x: Tensor,
    k: int = 5000,
    *,
    y: Tensor | None = None,
    batch_size: int = 100,
    chunk_size: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Estimate ``log p(x) ~ L_k`` (k = 5000 is the usual test protocol), per example.

    .. math::

        \log p(x_n) \approx \mathcal{L}_k(x_n), \qquad
        \text{NLL} = -\frac{1}{N} \sum_{n=1}^N \mathcal{L}_k(x_n).

    Runs :func:`iwae_bound` without gradients over mini-batches of
    ``batch_size`` inputs, each moved to the model's device.  ``x``: (N, P)
    on any device, with labels ``y`` (N,) for a conditional model, both
    checked once; returns (N,) in nats, on the model's device.  Its
    negative mean, the NLL above, is the test negative log-likelihood
    reported in papers.  A ``k`` whose log-weights cannot fit in memory is
    refused before anything is allocated.
    """
    k = _checks.count("k", k)
    _latent("log_marginal_likelihood", model)
    batch_size = _checks.count("batch_size", batch_size)
    chunk_size = None if chunk_size is None else _checks.count("chunk_size", chunk_size)
    x = _checks.inputs(model, x)
    y = _checks.model_labels(model, y, x.shape[0])
    device = _device(model, x)
    _checks.generator(generator, device)
    _check_memory(model, min(batch_size, x.shape[0]), k, device, chunk=1)
    return _log_marginal_likelihood(model, x, k, y=y, batch_size=batch_size, chunk_size=chunk_size, generator=generator)


@torch.no_grad()
def _log_marginal_likelihood(
    model, x: Tensor, k: int, *, y: Tensor | None, batch_size: int, chunk_size: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:  # fmt: skip
    """:func:`log_marginal_likelihood` of inputs and labels checked already."""
    device = _device(model, x)
    parts = [
        iwae_bound(
            model,
            x[i : i + batch_size].to(device),
            k,
            chunk_size=chunk_size,
            generator=generator,
            y=None if y is None else y[i : i + batch_size],
            check=False,
        )
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
    r"""Linear KL warm-up: the KL weight at (0-based) ``epoch``.

    .. math::

        \beta_t = \beta \, \min\Big(1, \frac{t + 1}{W}\Big)

    at epoch :math:`t` with :math:`W` = ``warmup_epochs``, so it rises linearly
    from ``beta / warmup_epochs`` at epoch 0 to ``beta`` at epoch
    ``warmup_epochs - 1`` and stays there; ``warmup_epochs = 0`` gives ``beta``
    throughout.  Reference: Bowman et al. (2016); Sønderby et al. (2016).
    """
    epoch = _checks.count("epoch", epoch, minimum=0)
    warmup_epochs = _checks.count("warmup_epochs", warmup_epochs, minimum=0)
    beta = _checks.number("beta", beta, minimum=0.0)
    if warmup_epochs == 0:
        return beta
    return beta * min(1.0, (epoch + 1) / warmup_epochs)
