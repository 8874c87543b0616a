"""The diagonal Gaussian: its log-density, the reparameterized sample and the
closed-form KL divergences (chapters 2 to 4).

A leaf module: it imports nothing from vaelib but the errors and the shared
input checks, so every other module takes its Gaussian pieces from here.  A diagonal Gaussian is given by
its mean ``mu`` and its log-variance ``logvar = log sigma^2``, both (..., D).
Everything is in nats and **summed over the last dimension** unless
``reduce=False`` asks for the per-dimension terms.

References: Kingma and Welling (2014), section 2.4 and appendix B;
Bishop, *Pattern Recognition and Machine Learning* (2006), section 2.3.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import _checks
from .errors import VaelibError

__all__ = ["LOG_2PI", "log_normal", "reparameterize", "gaussian_kl", "kl_standard_normal"]

LOG_2PI = math.log(2.0 * math.pi)  # the one log(2 pi) of the package


def log_normal(x: Tensor, mu: Tensor | float = 0.0, logvar: Tensor | float = 0.0, *, reduce: bool = True) -> Tensor:
    r"""``log N(x; mu, diag exp(logvar))``, the full density with its constant.

    .. math::

        \log \mathcal{N}(x; \mu, \operatorname{diag} \sigma^2)
        = -\frac{1}{2} \sum_j \Big[\log 2\pi + \log \sigma_j^2 + \frac{(x_j - \mu_j)^2}{\sigma_j^2}\Big]

    with :math:`\log \sigma_j^2` = ``logvar[..., j]``.

    With the defaults it is the standard-normal prior ``log p(z)``; with a
    fixed variance :math:`\sigma^2` it is :math:`-\lVert x - \mu \rVert^2 / (2 \sigma^2)`
    minus :math:`\frac{P}{2} \log(2 \pi \sigma^2)`: squared error *up to that
    constant and that scale*.  Shapes broadcast; (..., D) -> (...,) summed over the last
    dimension, or (..., D) elementwise with ``reduce=False``.  Nats.
    """
    mu = torch.as_tensor(mu, dtype=x.dtype, device=x.device)
    logvar = torch.as_tensor(logvar, dtype=x.dtype, device=x.device)
    per_dim = -0.5 * (LOG_2PI + logvar + (x - mu).pow(2) * torch.exp(-logvar))
    return per_dim.sum(-1) if reduce else per_dim


def reparameterize(
    mu: Tensor,
    logvar: Tensor,
    n_samples: int | None = None,
    *,
    eps: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""The reparameterized sample ``z = mu + sigma * eps`` with ``eps ~ N(0, I)``.

    .. math::

        z = \mu + \sigma \odot \epsilon, \qquad \epsilon \sim \mathcal{N}(0, I),
        \qquad \sigma = \exp(\texttt{logvar} / 2).

    ``mu``, ``logvar``: (B, D).  Returns (B, D)
    when ``n_samples`` is None, else (K, B, D) with K = ``n_samples``.  The
    noise can be given as ``eps`` (of the output's shape) or drawn with
    ``generator``; gradients flow to ``mu`` and ``logvar`` but not to ``eps``.
    Reference: Kingma and Welling (2014), section 2.4.
    """
    n_samples = None if n_samples is None else _checks.count("n_samples", n_samples)
    _checks.generator(generator, mu.device)  # no device sync: a type and a device kind
    shape = mu.shape if n_samples is None else (n_samples, *mu.shape)
    if eps is None:
        eps = torch.randn(shape, generator=generator, device=mu.device, dtype=mu.dtype)
    elif eps.shape != shape:
        raise VaelibError(f"eps has shape {tuple(eps.shape)} but the sample needs {tuple(shape)}")
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor, *, reduce: bool = True) -> Tensor:
    r"""``KL(N(mu_q, diag s_q^2) || N(mu_p, diag s_p^2))`` in closed form.

    .. math::

        & \mathrm{KL}\big(\mathcal{N}(\mu_q, \operatorname{diag} \sigma_q^2) \,\big\|\,
        \mathcal{N}(\mu_p, \operatorname{diag} \sigma_p^2)\big) \\
        & \qquad = \frac{1}{2} \sum_j \Big[\big(e^{d_j} - 1 - d_j\big)
        + \frac{(\mu_{q,j} - \mu_{p,j})^2}{\sigma_{p,j}^2}\Big]

    with :math:`d_j = \log \sigma_{q,j}^2 - \log \sigma_{p,j}^2` (``d = logvar_q - logvar_p``).

    Written this way it does not overflow where the divergence itself is
    moderate (only the *difference* of the log-variances is exponentiated,
    and the mean term through ``exp(-logvar_p / 2)``, so ``logvar`` near
    +-90 is fine in float32) and it never comes out negative from rounding: ``expm1(d) - d`` and
    the squared term are each >= 0 in floating point.  Shapes broadcast;
    returns (..., D) per dimension with ``reduce=False``, else the sum over
    the last dimension (...,).  Nats.  Reference: Kingma and Welling (2014),
    appendix B; Bishop (2006), exercise 10.13.
    """
    d = logvar_q - logvar_p
    # (mu_q - mu_p) / s_p, squared: exp(-logvar_p / 2) stays finite where exp(-logvar_p) would overflow
    per_dim = 0.5 * ((torch.expm1(d) - d) + ((mu_q - mu_p) * torch.exp(-0.5 * logvar_p)).pow(2))
    return per_dim.sum(-1) if reduce else per_dim


def kl_standard_normal(mu: Tensor, logvar: Tensor, *, reduce: bool = True) -> Tensor:
    r"""``KL(N(mu, diag exp(logvar)) || N(0, I))``, the VAE's regulariser.

    .. math::

        \mathrm{KL}\big(\mathcal{N}(\mu, \operatorname{diag} \sigma^2) \,\big\|\, \mathcal{N}(0, I)\big)
        = \frac{1}{2} \sum_j \big(\mu_j^2 + \sigma_j^2 - 1 - \log \sigma_j^2\big),

    that is :func:`gaussian_kl` with ``mu_p = 0``, ``logvar_p = 0`` (Kingma and
    Welling 2014, appendix B).
    ``mu``, ``logvar``: (B, D).  Returns (B, D) per dimension with
    ``reduce=False``, else (B,) summed over latents.  Nats, never negative.
    """
    zero = torch.zeros((), dtype=mu.dtype, device=mu.device)
    return gaussian_kl(mu, logvar, zero, zero, reduce=reduce)
