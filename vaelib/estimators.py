r"""Gradient estimators for ``E_q[f(z)]`` with a diagonal Gaussian ``q`` (chapter 4).

Throughout, ``q = N(mu, diag sigma^2)`` with ``sigma = exp(logvar / 2)``;
``mu`` and ``logvar`` have shape (..., D) (usually (D,) or (B, D)) and ``f``
maps (..., D) -> (...): it must treat the leading dimensions independently
(e.g. a sum over the last axis), so that one output entry depends on one
sample only.  We estimate the gradient of

.. math::

    F(\mu, \log \sigma^2) = \mathbb{E}_{z \sim q}[f(z)]

with respect to ``mu`` and ``logvar`` in two ways:

* the **score function** (REINFORCE, likelihood ratio) estimator
  :math:`(f(z) - b)\, \nabla_\phi \log q_\phi(z)`, :math:`z \sim q` (Williams 1992),
  where the baseline :math:`b` does not depend on z;
* the **pathwise** (reparameterization) estimator
  :math:`\nabla_\phi f(\mu + \sigma \odot \epsilon)`, :math:`\epsilon \sim \mathcal{N}(0, I)`
  (Kingma and Welling 2014; Rezende et al. 2014).

Both return **per-sample** estimates of shape (K, ..., D), so their mean
(the K-sample estimate) and their variance can both be computed.  Mohamed et
al. (2020, JMLR, "Monte Carlo gradient estimation in machine learning") review
both.  The module also holds three integrands with closed-form Gaussian
expectations and gradients, used to check the estimators.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import Tensor

from . import _checks
from .errors import VaelibError
from .gaussian import reparameterize

__all__ = [
    "score_function_gradient",
    "reparameterized_gradient",
    "gaussian_score",
    "integrand",
    "gaussian_expectation",
    "gaussian_expectation_gradient",
    "INTEGRANDS",
]

INTEGRANDS = ("quadratic", "sin", "exp")


_tensor = functools.partial(_checks.tensor, floating=True)  # every tensor argument here holds reals


def _noise(mu: Tensor, n_samples: int | None, eps: Tensor | None, generator: torch.Generator | None) -> Tensor:
    """The standard-normal noise (K, ..., D): ``eps`` itself, or K fresh draws."""
    n_samples = None if n_samples is None else _checks.count("n_samples", n_samples)
    if eps is not None:
        eps = _tensor("eps", eps, dtype=mu.dtype)
        if eps.dim() != mu.dim() + 1 or eps.shape[1:] != mu.shape:
            raise VaelibError(f"eps must have shape (K, {', '.join(map(str, mu.shape))}), got {tuple(eps.shape)}")
        if n_samples is not None and n_samples != eps.shape[0]:
            raise VaelibError(f"n_samples={n_samples} but eps holds {eps.shape[0]} samples")
        return eps.detach()
    k = 1 if n_samples is None else n_samples
    _checks.generator(generator, mu.device)
    return torch.randn((k, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)


def _check_params(f, mu, logvar) -> tuple[Tensor, Tensor]:
    """``mu`` and ``logvar`` as floating-point tensors of one shape (..., D); ``f`` a function."""
    if not callable(f):
        raise VaelibError(
            f"f must be a function of z (..., D) -> (...), e.g. vl.estimators.integrand('sin'), got {f!r}"
        )
    mu, logvar = _tensor("mu", mu), _tensor("logvar", logvar)
    if mu.shape != logvar.shape:
        raise VaelibError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    if mu.dim() < 1:
        raise VaelibError("mu and logvar need at least one (latent) dimension")
    return mu, logvar


def _check_f_output(fz: Tensor, expected: tuple[int, ...]) -> None:
    if not isinstance(fz, Tensor):
        raise VaelibError(
            f"f must return a torch.Tensor of shape {expected} (one value per sample), got {type(fz).__name__}"
        )
    if tuple(fz.shape) != expected:
        raise VaelibError(
            f"f must map (..., D) to (...): expected an output of shape {expected}, got {tuple(fz.shape)}"
        )


def gaussian_score(z: Tensor, mu: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor]:
    r"""The score ``grad log N(z; mu, diag sigma^2)`` with respect to ``mu`` and ``logvar``.

    Per coordinate, with :math:`\epsilon = (z - \mu) / \sigma`:

    .. math::

        \frac{\partial \log q}{\partial \mu} &= \frac{z - \mu}{\sigma^2} = \frac{\epsilon}{\sigma} \\
        \frac{\partial \log q}{\partial \log \sigma^2}
        &= \frac{1}{2} \Big(\frac{(z - \mu)^2}{\sigma^2} - 1\Big) = \frac{\epsilon^2 - 1}{2}

    Both have mean zero under q.  ``z``: (..., D) broadcastable with ``mu``,
    ``logvar`` (..., D); returns two tensors of the broadcast shape.
    """
    z, mu, logvar = _tensor("z", z), _tensor("mu", mu), _tensor("logvar", logvar)
    _checks.broadcast(z=z, mu=mu, logvar=logvar)
    inv_var = torch.exp(-logvar)
    diff = z - mu
    return diff * inv_var, 0.5 * (diff.pow(2) * inv_var - 1.0)


def score_function_gradient(
    f: Callable[[Tensor], Tensor],
    mu: Tensor,
    logvar: Tensor,
    n_samples: int | None = None,
    *,
    baseline: float | Tensor | str | None = None,
    eps: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Per-sample score-function (REINFORCE) estimates of ``grad E_q[f(z)]``.

    .. math::

        \nabla_\phi \mathbb{E}_{q_\phi}[f(z)]
        = \mathbb{E}_{q_\phi}\big[(f(z) - b)\, \nabla_\phi \log q_\phi(z)\big],
        \qquad \phi = (\mu, \log \sigma^2),

    which holds for any :math:`b` independent of z because
    :math:`\mathbb{E}_q[\nabla_\phi \log q_\phi(z)] = 0` (Williams 1992).  Only
    values of ``f`` are needed, never its derivative, so ``f`` may be
    discontinuous or non-differentiable.  Draws
    ``z_k = mu + sigma eps_k`` (k = 1..K) and returns ``(g_mu, g_logvar)``,
    each (K, ..., D): ``(f(z_k) - b_k) * score(z_k)``, see :func:`gaussian_score`.

    ``baseline``: None (b = 0); a number or a tensor broadcastable to ``f``'s
    output (...,), used for every sample; or ``"leave-one-out"``: ``b_k`` is
    the mean of ``f`` over the other K - 1 samples (needs K >= 2), which keeps
    each estimate unbiased.  ``mu``, ``logvar``: (..., D), not modified and
    not differentiated through.  ``eps`` (K, ..., D) fixes the noise; else K =
    ``n_samples`` (default 1) draws from ``generator``.  The estimates' mean
    over K is the K-sample estimator.
    """
    mu, logvar = _check_params(f, mu, logvar)
    mu, logvar = mu.detach(), logvar.detach()
    noise = _noise(mu, n_samples, eps, generator)  # (K, ..., D)
    z = reparameterize(mu, logvar, noise.shape[0], eps=noise)  # (K, ..., D)
    with torch.no_grad():
        fz = f(z)  # (K, ...)
    _check_f_output(fz, tuple(noise.shape[:-1]))
    if isinstance(baseline, str):
        if baseline != "leave-one-out":
            raise VaelibError(f"baseline must be None, a number, a tensor or 'leave-one-out', got {baseline!r}")
        k = fz.shape[0]
        if k < 2:
            raise VaelibError("the leave-one-out baseline needs n_samples >= 2")
        b = (fz.sum(0, keepdim=True) - fz) / (k - 1)  # (K, ...)
    elif baseline is None:
        b = torch.zeros((), dtype=fz.dtype, device=fz.device)
    else:
        b = _tensor("baseline", baseline).to(dtype=fz.dtype, device=fz.device).detach()
        try:
            fits = torch.broadcast_shapes(b.shape, fz.shape) == fz.shape
        except RuntimeError:
            fits = False
        if not fits:
            raise VaelibError(
                f"baseline must be a number or broadcast to f's output {tuple(fz.shape[1:])} (one value per "
                f"input), got shape {tuple(b.shape)}"
            )
    weight = (fz - b).unsqueeze(-1)  # (K, ..., 1)
    score_mu, score_logvar = gaussian_score(z, mu, logvar)  # (K, ..., D)
    return weight * score_mu, weight * score_logvar


def reparameterized_gradient(
    f: Callable[[Tensor], Tensor],
    mu: Tensor,
    logvar: Tensor,
    n_samples: int | None = None,
    *,
    eps: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Per-sample pathwise (reparameterization) estimates of ``grad E_q[f(z)]``.

    .. math::

        \nabla_\phi \mathbb{E}_{q_\phi}[f(z)]
        = \mathbb{E}_{\epsilon \sim \mathcal{N}(0, I)}\big[\nabla_\phi f(\mu + \sigma \odot \epsilon)\big]

    because :math:`z = \mu + \sigma \odot \epsilon` has law q while the law of
    :math:`\epsilon` does not depend on :math:`\phi = (\mu, \log \sigma^2)`
    (Kingma and Welling 2014, section 2.4).  By the chain rule
    :math:`\partial f / \partial \mu = f'(z)` and
    :math:`\partial f / \partial \log \sigma^2 = f'(z)\, \sigma \epsilon / 2`;
    here they are computed by autograd through :func:`vaelib.gaussian.reparameterize`,
    so ``f`` must be differentiable (a torch function of z).  For a piecewise
    constant ``f`` (e.g. a step) the result is zero even where the true
    gradient is not: the pathwise estimator needs a differentiable ``f``.

    ``mu``, ``logvar``: (..., D), not modified.  ``eps`` (K, ..., D) fixes the
    noise, which makes the result a deterministic function of (mu, logvar);
    else K = ``n_samples`` (default 1) draws from ``generator``.  Returns
    ``(g_mu, g_logvar)``, each (K, ..., D); their mean over K is the usual
    K-sample estimator.  Works inside ``torch.no_grad()`` too.
    """
    mu, logvar = _check_params(f, mu, logvar)
    noise = _noise(mu, n_samples, eps, generator)  # (K, ..., D)
    with torch.enable_grad():
        # One leaf copy of (mu, logvar) per sample, so autograd returns per-sample gradients.
        mu_k = mu.detach().expand_as(noise).clone().requires_grad_(True)  # (K, ..., D)
        logvar_k = logvar.detach().expand_as(noise).clone().requires_grad_(True)  # (K, ..., D)
        z = reparameterize(mu_k, logvar_k, eps=noise)  # (K, ..., D)
        fz = f(z)  # (K, ...)
        _check_f_output(fz, tuple(noise.shape[:-1]))
        if not fz.requires_grad:  # f is piecewise constant in z (a step, a rounding): zero derivative
            return torch.zeros_like(noise), torch.zeros_like(noise)
        g_mu, g_logvar = torch.autograd.grad(fz.sum(), (mu_k, logvar_k))
    return g_mu.detach(), g_logvar.detach()


def _check_name(name: str) -> None:
    if name not in INTEGRANDS:
        raise VaelibError(f"unknown integrand {name!r}; choose one of {INTEGRANDS}")


def integrand(name: str, a: float | Tensor = 0.0) -> Callable[[Tensor], Tensor]:
    r"""A test function ``f(z) = sum_j g(z_j - a_j)``, (..., D) -> (...,).

    .. math::

        f(z) = \sum_j g(z_j - a_j), \qquad g(u) = u^2, \ \sin u \ \text{or} \ e^u.

    ``name``: ``"quadratic"`` (g(u) = u^2), ``"sin"`` (g(u) = sin u) or
    ``"exp"`` (g(u) = e^u).  Their Gaussian expectations are closed form, see
    :func:`gaussian_expectation`.  ``a`` is broadcastable to z (..., D).
    """
    _check_name(name)
    a_shape = _tensor("a", a).shape  # a number, a tensor, a list or an array of numbers
    g = {"quadratic": torch.square, "sin": torch.sin, "exp": torch.exp}[name]

    def f(z: Tensor) -> Tensor:
        z = _tensor("z", z)
        try:
            torch.broadcast_shapes(a_shape, z.shape)
        except RuntimeError:
            raise VaelibError(f"a {tuple(a_shape)} does not broadcast to z {tuple(z.shape)}; give a D values") from None
        return g(z - torch.as_tensor(a, dtype=z.dtype, device=z.device)).sum(-1)

    f.__name__ = f"{name}_integrand"
    return f


def _centred(name: str, mu, logvar, a) -> tuple[Tensor, Tensor]:
    """The closed forms' ``m = mu - a`` and ``s^2 = exp(logvar)``, their arguments checked."""
    _check_name(name)
    mu, logvar = _tensor("mu", mu), _tensor("logvar", logvar)
    _checks.broadcast(mu=mu, logvar=logvar, a=_tensor("a", a))
    return mu - torch.as_tensor(a, dtype=mu.dtype, device=mu.device), torch.exp(logvar)


def gaussian_expectation(name: str, mu: Tensor, logvar: Tensor, a: float | Tensor = 0.0) -> Tensor:
    r"""``E_{z ~ N(mu, diag sigma^2)}[f(z)]`` in closed form for :func:`integrand` ``(name, a)``.

    With :math:`m = \mu - a` and :math:`s^2 = \sigma^2 = \exp(\texttt{logvar})`, per coordinate:

    .. math::

        \text{quadratic:} \quad & \mathbb{E}[(z - a)^2] = m^2 + s^2 \\
        \text{sin:} \quad & \mathbb{E}[\sin(z - a)] = \sin(m)\, e^{-s^2/2} \\
        \text{exp:} \quad & \mathbb{E}[e^{z - a}] = e^{m + s^2/2} \qquad \text{(the log-normal mean)}

    (the sine from the Gaussian characteristic function
    :math:`\mathbb{E}[e^{iu}] = e^{im - s^2/2}`, :math:`u = z - a`).
    ``mu``, ``logvar``: (..., D); returns (...,), summed over D.  Differentiable.
    """
    m, var = _centred(name, mu, logvar, a)
    if name == "quadratic":
        per_dim = m.pow(2) + var
    elif name == "sin":
        per_dim = torch.sin(m) * torch.exp(-0.5 * var)
    else:
        per_dim = torch.exp(m + 0.5 * var)
    return per_dim.sum(-1)


def gaussian_expectation_gradient(
    name: str, mu: Tensor, logvar: Tensor, a: float | Tensor = 0.0
) -> tuple[Tensor, Tensor]:
    r"""The exact gradient of :func:`gaussian_expectation` w.r.t. ``mu`` and ``logvar``, derived by hand.

    With :math:`m = \mu - a` and :math:`s^2 = \exp(\texttt{logvar})` (so
    :math:`\partial s^2 / \partial \log \sigma^2 = s^2`), the pair
    :math:`(\partial F / \partial \mu, \; \partial F / \partial \log \sigma^2)` is, per coordinate:

    .. math::

        \text{quadratic:} \quad & \big(2m, \;\; s^2\big) \\
        \text{sin:} \quad & \big(\cos(m)\, e^{-s^2/2}, \;\; -\sin(m)\, e^{-s^2/2}\, s^2 / 2\big) \\
        \text{exp:} \quad & \big(e^{m + s^2/2}, \;\; e^{m + s^2/2}\, s^2 / 2\big)

    ``mu``, ``logvar``: (..., D); returns two (..., D) tensors.
    """
    m, var = _centred(name, mu, logvar, a)
    if name == "quadratic":
        return 2.0 * m, var.expand_as(m).clone()
    if name == "sin":
        damp = torch.exp(-0.5 * var)
        return torch.cos(m) * damp, -torch.sin(m) * damp * 0.5 * var
    value = torch.exp(m + 0.5 * var)
    return value, value * 0.5 * var
