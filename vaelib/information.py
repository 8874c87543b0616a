"""Information, entropy and Kullback-Leibler divergence (chapter 2).

Every quantity is in nats (natural logarithm) unless a ``base`` is given;
divide by ``log(2)`` (or pass ``base=2``) for bits.  Discrete distributions
are probability vectors along the last dimension; Gaussians are diagonal and
given by their mean ``mu`` and log-variance ``logvar``.

Two random variables ``x`` and ``z`` with a discrete joint distribution are
given by its table ``joint[..., i, j] = p(x = i, z = j)``:
:func:`conditional_entropy` and :func:`mutual_information` measure what one
says about the other, :func:`gaussian_mutual_information` does the same for
jointly Gaussian vectors, and :func:`bits_per_dim` converts a negative
log-likelihood from nats per example to the bits per dimension that papers
report.

The second half of the module works with one-dimensional densities tabulated
on a grid: a Gaussian mixture (:func:`mixture_log_prob`), the KL divergence by
quadrature (:func:`kl_on_grid`) and the fit of one Gaussian to a target by
minimising the forward or the reverse KL (:func:`fit_gaussian`).  Last,
:func:`histogram_classifier` reads a class off two-dimensional codes, which
bounds the information a code carries about the class from below.

Reference: Cover and Thomas, *Elements of Information Theory* (2006), ch. 2
and 8; Kingma and Welling (2014), appendix B; Bishop, *Pattern Recognition
and Machine Learning* (2006), section 10.1.2 (forward versus reverse KL).
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from . import _checks
from .errors import VaelibError
from .gaussian import LOG_2PI, log_normal, reparameterize

__all__ = [
    "self_information",
    "entropy",
    "cross_entropy",
    "kl_divergence",
    "conditional_entropy",
    "mutual_information",
    "gaussian_entropy",
    "gaussian_mutual_information",
    "bits_per_dim",
    "gaussian_cross_entropy",
    "gaussian_kl_monte_carlo",
    "mixture_log_prob",
    "mixture_moments",
    "kl_on_grid",
    "GaussianFit",
    "fit_gaussian",
    "ClassifierScore",
    "histogram_classifier",
]

# --------------------------------------------------------------------------- checks


_tensor = functools.partial(_checks.tensor, floating=True)  # every tensor argument here holds reals


def _check_base(base: float | None) -> None:
    if isinstance(base, Tensor) and base.dim() == 0:
        base = base.item()  # a 0-dim tensor is a number (math.log takes it too)
    if base is not None and _checks.number("base (2 for bits, None for nats)", base, positive=True) == 1:
        raise VaelibError("base must be a positive number other than 1 (2 for bits, None for nats), got 1")


def _scale(h: Tensor, base: float | None) -> Tensor:
    """Nats to ``log(base)`` units."""
    return h if base is None else h / math.log(base)


def _log(x: Tensor, base: float | None) -> Tensor:
    return torch.log(x) if base is None else torch.log(x) / math.log(base)


def _check_probs(p: Tensor, name: str, over: str = "along its last dimension") -> None:
    """Probabilities (..., K) that sum to one ``over`` the outcomes (one pass over the values)."""
    if not isinstance(p, Tensor):
        raise VaelibError(
            f"{name} must be a torch.Tensor of probabilities, got {type(p).__name__}; convert it with torch.as_tensor"
        )
    if not torch.is_floating_point(p):
        raise VaelibError(f"{name} must be a floating-point tensor of probabilities, got dtype {p.dtype}; use .float()")
    if p.dim() == 0 or p.shape[-1] == 0:
        raise VaelibError(
            f"{name} must have shape (..., K) with K >= 1 outcomes along the last dimension, got {tuple(p.shape)}"
        )
    if not torch.isfinite(p).all() or (p < 0).any():
        raise VaelibError(f"{name} must hold finite, non-negative probabilities")
    total = p.sum(-1)
    if not torch.allclose(total, torch.ones_like(total), atol=1e-5):
        raise VaelibError(f"{name} must sum to 1 {over} (sums: {total.flatten()[:4].tolist()}...); normalise it first")


def _check_pair(p: Tensor, q: Tensor) -> None:
    _check_probs(p, "p")
    _check_probs(q, "q")
    if p.shape[-1] != q.shape[-1]:
        raise VaelibError(
            f"p and q must have the same number of outcomes K (last dimension), got {p.shape[-1]} and {q.shape[-1]}"
        )
    _checks.broadcast("give them the same batch shape, or one of them a single distribution (K,)", p=p, q=q)


# ------------------------------------------------------------ discrete distributions


def self_information(p: Tensor | float, base: float | None = None) -> Tensor:
    """Self-information (surprisal) ``-log p`` of an event of probability ``p``.

    Shapes: any; elementwise (a Python float gives a 0-dim tensor).  Units:
    nats, or ``log(base)`` units (bits for ``base=2``).  An event of
    probability 1 carries 0, one of probability 0 carries ``inf``.  (The book
    gives it no letter: ``I(x; z)`` is the mutual information.)
    Reference: Cover and Thomas (2006), section 2.1.
    """
    _check_base(base)
    if not isinstance(p, Tensor):
        try:
            p = torch.as_tensor(p, dtype=torch.get_default_dtype())
        except (TypeError, ValueError, RuntimeError):
            raise VaelibError(
                f"p must be a probability (a number in [0, 1]) or a tensor of them, got {p!r}; pass a number"
            ) from None
    if not torch.is_floating_point(p):
        raise VaelibError(f"p must be a floating-point probability, got dtype {p.dtype}")
    if torch.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise VaelibError("probabilities must lie in [0, 1]")
    return -_log(p, base)


def entropy(p: Tensor, base: float | None = None) -> Tensor:
    """Shannon entropy ``H(p) = -sum_i p_i log p_i`` of a discrete distribution.

    ``p``: (..., K) probabilities summing to one.  Returns (...,).  Terms with
    ``p_i = 0`` contribute 0 (the limit of ``t log t``).  ``0 <= H <= log K``:
    zero for a point mass, ``log K`` for the uniform distribution.
    Reference: Cover and Thomas (2006), section 2.1.
    """
    _check_base(base)
    _check_probs(p, "p")
    return _scale(_entropy(p), base)


def _entropy(p: Tensor) -> Tensor:
    """:func:`entropy` in nats of probabilities checked already."""
    terms = torch.where(p > 0, p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny)), torch.zeros_like(p))
    return -terms.sum(-1)


def cross_entropy(p: Tensor, q: Tensor, base: float | None = None) -> Tensor:
    """Cross-entropy ``H(p, q) = -sum_i p_i log q_i``.

    ``p``, ``q``: (..., K), broadcast against each other.  Returns (...,).
    Infinite where ``q_i = 0 < p_i``; outcomes with ``p_i = 0`` contribute 0
    whatever ``q_i`` is.  Gibbs' inequality: ``H(p, q) >= H(p)``, with
    equality iff ``p = q``.  Reference: Cover and Thomas (2006), section 2.6.
    """
    _check_base(base)
    _check_pair(p, q)
    return _scale(_cross_entropy(p, q), base)


def _cross_entropy(p: Tensor, q: Tensor) -> Tensor:
    """:func:`cross_entropy` in nats of distributions checked already."""
    p, q = torch.broadcast_tensors(p, q)
    # where p_i = 0 the term is 0; feed log a harmless 1 there so that neither
    # the value nor the gradient becomes 0 * log 0 = nan
    safe_q = torch.where(p > 0, q, torch.ones_like(q))
    terms = torch.where(p > 0, p * torch.log(safe_q), torch.zeros_like(p))
    return -terms.sum(-1)


def kl_divergence(p: Tensor, q: Tensor, base: float | None = None) -> Tensor:
    """``KL(p || q) = sum_i p_i log(p_i / q_i) = H(p, q) - H(p) >= 0``.

    ``p``, ``q``: (..., K), broadcast.  Returns (...,).  Zero iff ``p = q``;
    infinite where ``q_i = 0 < p_i``.  Not symmetric in ``p`` and ``q`` and
    without a triangle inequality, so it is a divergence, not a distance.
    Reference: Kullback and Leibler (1951); Cover and Thomas (2006), section 2.3.
    """
    _check_base(base)
    _check_pair(p, q)  # once: the two terms below take the checked values
    # H(p, q) = inf gives inf - finite = inf, as it should
    return _scale(_cross_entropy(p, q), base) - _scale(_entropy(p), base)


# ------------------------------------------------------------------ joint distributions


def _check_joint(joint: Tensor) -> None:
    if not isinstance(joint, Tensor) or joint.dim() < 2:
        shape = tuple(joint.shape) if isinstance(joint, Tensor) else type(joint).__name__
        raise VaelibError(
            f"joint must be a tensor of shape (..., Kx, Kz) with joint[..., i, j] = p(x = i, z = j), got {shape}"
        )
    if joint.shape[-1] == 0 or joint.shape[-2] == 0:
        raise VaelibError(
            f"joint must have at least one outcome of x and one of z (shape (..., Kx, Kz) with Kx, Kz >= 1), "
            f"got {tuple(joint.shape)}"
        )
    # the table p(x, z) is one distribution over the Kx * Kz pairs
    _check_probs(joint.flatten(-2), "joint", "over its last two dimensions (the whole table p(x, z))")


def conditional_entropy(joint: Tensor, base: float | None = None) -> Tensor:
    """Conditional entropy ``H(x | z) = -sum_{x,z} p(x, z) log p(x | z)`` of a discrete joint distribution.

    ``joint``: (..., Kx, Kz) with ``joint[..., i, j] = p(x = i, z = j)``,
    summing to one over the last two dimensions; returns (...,) in nats (or
    ``log(base)`` units).  It is the entropy of ``p(x | z)`` averaged over
    ``p(z)``, and equals ``H(p(x, z)) - H(z)`` (the chain rule).
    ``0 <= H(x | z) <= H(x)``: zero when ``z`` determines ``x``, ``H(x)`` when
    they are independent.  For ``H(z | x)`` pass ``joint.transpose(-1, -2)``.
    Reference: Cover and Thomas (2006), section 2.2.
    """
    _check_base(base)
    _check_joint(joint)
    p_z = joint.sum(-2, keepdim=True)  # (..., 1, Kz)
    # p(x | z) = p(x, z) / p(z); cells with p(x, z) = 0 contribute 0 (and p(z) = 0 implies p(x, z) = 0)
    safe = torch.where(joint > 0, joint / p_z.clamp_min(torch.finfo(joint.dtype).tiny), torch.ones_like(joint))
    h = -(joint * torch.log(safe)).sum((-2, -1))
    h = h.clamp_min(0)  # rounding can put p(x | z) a hair above 1 where z determines x
    return _scale(h, base)


def mutual_information(joint: Tensor, base: float | None = None) -> Tensor:
    """Mutual information ``I(x; z) = KL(p(x, z) || p(x) p(z))`` of a discrete joint distribution.

    ``I(x; z) = sum_{x,z} p(x, z) log[p(x, z) / (p(x) p(z))] = H(x) - H(x | z) = H(z) - H(z | x)``:
    how many nats, on average, learning ``z`` saves in describing ``x``, and
    the other way round (it is symmetric).  ``joint``: (..., Kx, Kz) with
    ``joint[..., i, j] = p(x = i, z = j)``, summing to one over the last two
    dimensions; returns (...,) in nats (or ``log(base)`` units).
    ``0 <= I(x; z) <= min(H(x), H(z))``, zero exactly when ``x`` and ``z`` are
    independent.  Reference: Cover and Thomas (2006), sections 2.3 and 2.4.
    """
    _check_base(base)
    _check_joint(joint)
    product = joint.sum(-1, keepdim=True) * joint.sum(-2, keepdim=True)  # (..., Kx, Kz): p(x) p(z)
    # p(x, z) > 0 implies p(x) p(z) > 0, so the divergence KL = H(p, q) - H(p) is finite
    info = _cross_entropy(joint.flatten(-2), product.flatten(-2)) - _entropy(joint.flatten(-2))
    info = info.clamp_min(0)  # rounding can make the information of independent variables -1e-17
    return _scale(info, base)


# ------------------------------------------------------------- diagonal Gaussians


def gaussian_entropy(logvar: Tensor) -> Tensor:
    """Differential entropy of ``N(mu, diag(exp(logvar)))``, summed over the last dim.

    ``h = 1/2 sum_j (log(2 pi) + 1 + logvar_j)`` nats; it does not depend on
    ``mu``.  ``logvar``: (..., D) -> (...,).  Unlike the discrete entropy it
    can be negative (for variances below ``1 / (2 pi e)``) and it depends on
    the units of ``z``: ``h(a z) = h(z) + D log|a|``.
    Reference: Cover and Thomas (2006), section 8.1.
    """
    return 0.5 * (LOG_2PI + 1.0 + _tensor("logvar", logvar)).sum(-1)


def _gaussians(**named) -> list[Tensor]:
    """Gaussian parameters as floating-point tensors whose shapes broadcast (..., D); shapes only."""
    tensors = [_tensor(name, value) for name, value in named.items()]
    try:
        torch.broadcast_shapes(*(t.shape for t in tensors))
    except RuntimeError:
        shapes = ", ".join(f"{name} {tuple(t.shape)}" for name, t in zip(named, tensors))
        raise VaelibError(f"the shapes of {shapes} do not broadcast against each other; give them one shape") from None
    return tensors


def gaussian_cross_entropy(mu_p: Tensor, logvar_p: Tensor, mu_q: Tensor, logvar_q: Tensor) -> Tensor:
    """``H(p, q) = -E_p[log q(z)]`` for diagonal Gaussians p and q, summed over the last dim.

    ``1/2 sum_j [log(2 pi) + logvar_q + (exp(logvar_p) + (mu_p - mu_q)^2) / exp(logvar_q)]``.
    Shapes broadcast; (..., D) -> (...,).  Nats.
    """
    mu_p, logvar_p, mu_q, logvar_q = _gaussians(mu_p=mu_p, logvar_p=logvar_p, mu_q=mu_q, logvar_q=logvar_q)
    return 0.5 * (LOG_2PI + logvar_q + (logvar_p.exp() + (mu_p - mu_q).pow(2)) * torch.exp(-logvar_q)).sum(-1)


def gaussian_mutual_information(cov: Tensor, dim_x: int) -> Tensor:
    """Mutual information ``I(x; z)`` of jointly Gaussian vectors, from their covariance.

    ``cov``: (..., n, n), the covariance of the stacked vector ``(x, z)``
    whose first ``dim_x`` coordinates are ``x`` and the other ``n - dim_x``
    are ``z``; it must be symmetric positive definite.  Returns (...,) in nats:

        I(x; z) = h(x) + h(z) - h(x, z) = 1/2 [log det C_xx + log det C_zz - log det C],

    the differential entropies' ``log(2 pi e)`` terms cancelling.  The means do
    not matter, and neither do the units: rescaling ``x`` or ``z`` leaves it
    unchanged.  For two scalars with correlation ``rho`` it is
    ``-1/2 log(1 - rho^2)``.  Reference: Cover and Thomas (2006), section 8.5
    and example 8.5.1.
    """
    if not isinstance(cov, Tensor) or not torch.is_floating_point(cov):
        raise VaelibError("cov must be a floating-point torch.Tensor of shape (..., n, n)")
    if cov.dim() < 2 or cov.shape[-1] != cov.shape[-2] or cov.shape[-1] < 2:
        raise VaelibError(f"cov must be a square matrix (..., n, n) with n >= 2, got shape {tuple(cov.shape)}")
    n = cov.shape[-1]
    dim_x = _checks.count("dim_x", dim_x)
    if dim_x >= n:
        raise VaelibError(f"dim_x must leave at least one coordinate for z: 1 <= dim_x < {n}, got {dim_x}")
    _checks.finite("cov", cov)  # before the symmetry test, which NaN fails for another reason
    if not torch.allclose(cov, cov.transpose(-1, -2), rtol=1e-5, atol=1e-8):
        raise VaelibError("cov must be symmetric: use (cov + cov.transpose(-1, -2)) / 2 if it is off by rounding")

    def log_det(c: Tensor) -> Tensor:  # via Cholesky, which also checks positive definiteness
        chol, info = torch.linalg.cholesky_ex(c)
        if (info != 0).any():
            raise VaelibError("cov must be positive definite (a Cholesky factorisation failed)")
        return 2.0 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)

    info = 0.5 * (log_det(cov[..., :dim_x, :dim_x]) + log_det(cov[..., dim_x:, dim_x:]) - log_det(cov))
    return info.clamp_min(0)  # Fischer's inequality makes it >= 0; rounding can give -1e-16


def bits_per_dim(nll: Tensor | float, num_dims: int) -> Tensor:
    """Convert a negative log-likelihood in nats per example to bits per dimension.

    ``bpd = nll / (num_dims * ln 2)``: divide by ``ln 2`` for bits, and by the
    number of dimensions (``P = 784`` pixels for MNIST) for a number that
    data sets of different sizes share.  ``nll``: ``-log p(x)`` in nats, any
    shape (a Python float gives a 0-dim tensor); negate a log-likelihood or an
    ELBO first.  For discrete data it is >= 0, and a model that gives every
    one of ``L`` levels per dimension the same probability scores
    ``log2(L)`` bits per dimension (8 for 8-bit images); a density on
    continuous data can score below zero.  Returns a tensor of ``nll``'s shape;
    a NaN or infinite ``nll`` (a failed evaluation) is refused.
    Reference: Theis, van den Oord and Bethge (2016), *A note on the evaluation of generative models*.
    """
    num_dims = _checks.count("num_dims", num_dims)
    if not isinstance(nll, Tensor):
        nll = torch.as_tensor(_checks.number("nll", nll), dtype=torch.get_default_dtype())
    elif not torch.is_floating_point(nll):
        raise VaelibError(f"nll must be a floating-point tensor of nats, got dtype {nll.dtype}")
    elif not bool(torch.isfinite(nll).all()):  # as a NaN or infinite number is refused
        raise VaelibError(
            "nll contains NaN or infinite values: the model's evaluation failed; convert finite NLLs only"
        )
    return nll / (num_dims * math.log(2.0))


def gaussian_kl_monte_carlo(
    mu_q: Tensor,
    logvar_q: Tensor,
    mu_p: Tensor,
    logvar_p: Tensor,
    n_samples: int,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Monte Carlo estimate of ``KL(q || p) = E_q[log q(z) - log p(z)]`` for diagonal Gaussians.

    Draws ``z_s = mu_q + exp(logvar_q / 2) * eps_s``, ``eps_s ~ N(0, I)``, for
    ``s = 1..n_samples`` and averages the log-ratio summed over the last
    dimension.  Shapes broadcast to (..., D); returns ``(estimate,
    standard_error)``, both (...,), in nats, where the standard error is the
    sample standard deviation of the log-ratio over ``sqrt(n_samples)``.  The
    estimate is unbiased; compare it with :func:`vaelib.gaussian.gaussian_kl`.  Randomness
    comes from ``generator`` (on the inputs' device).
    """
    n_samples = _checks.count("n_samples (at least 2, for a standard error)", n_samples, minimum=2)
    mu_q, logvar_q, mu_p, logvar_p = _gaussians(mu_q=mu_q, logvar_q=logvar_q, mu_p=mu_p, logvar_p=logvar_p)
    _checks.generator(generator, mu_q.device)
    mu_q, logvar_q, mu_p, logvar_p = torch.broadcast_tensors(mu_q, logvar_q, mu_p, logvar_p)
    z = reparameterize(mu_q, logvar_q, n_samples, generator=generator)  # (S, ..., D)
    log_ratio = log_normal(z, mu_q, logvar_q) - log_normal(z, mu_p, logvar_p)  # (S, ...)
    return log_ratio.mean(0), log_ratio.std(0) / math.sqrt(n_samples)


# ------------------------------------------------ one-dimensional densities on a grid


def _check_mixture(weights: Tensor, mu: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The parameters as tensors (lists converted), checked: (K,) each, weights a distribution."""
    weights, mu, logvar = _tensor("weights", weights), _tensor("mu", mu), _tensor("logvar", logvar)
    if not (weights.dim() == mu.dim() == logvar.dim() == 1) or not (weights.shape == mu.shape == logvar.shape):
        raise VaelibError(
            "weights, mu and logvar must be 1-D tensors of the same length K (one entry per component), got shapes "
            f"{tuple(weights.shape)}, {tuple(mu.shape)}, {tuple(logvar.shape)}"
        )
    if (weights < 0).any() or not torch.allclose(weights.sum(), torch.ones_like(weights.sum()), atol=1e-5):
        raise VaelibError(f"mixture weights must be non-negative and sum to 1, got {weights.tolist()}")
    return weights, mu, logvar


def mixture_log_prob(z: Tensor, weights: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """Log-density of a one-dimensional Gaussian mixture.

    ``log p(z) = log sum_k w_k N(z; mu_k, exp(logvar_k))``, computed with
    ``logsumexp`` so that it stays finite far in the tails.  ``z``: any shape
    (...,) of points; ``weights``, ``mu``, ``logvar``: (K,).  Returns (...,)
    in nats.  Reference: Bishop (2006), section 9.2.
    """
    weights, mu, logvar = _check_mixture(weights, mu, logvar)
    z = _tensor("z", z)
    log_comp = log_normal(z.unsqueeze(-1), mu, logvar, reduce=False)  # (..., K)
    return torch.logsumexp(torch.log(weights) + log_comp, dim=-1)


def mixture_moments(weights: Tensor, mu: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and variance of a one-dimensional Gaussian mixture.

    ``mean = sum_k w_k mu_k`` and ``var = sum_k w_k (s_k^2 + mu_k^2) - mean^2``
    (law of total variance).  ``weights``, ``mu``, ``logvar``: (K,).  Returns
    two 0-dim tensors.  These are the parameters of the Gaussian that
    minimises the forward divergence ``KL(p || q)``.
    """
    weights, mu, logvar = _check_mixture(weights, mu, logvar)
    mean = (weights * mu).sum()
    var = (weights * (logvar.exp() + mu.pow(2))).sum() - mean.pow(2)
    return mean, var


def _check_grid(grid: Tensor) -> Tensor:
    """``grid`` as a tensor (a list converted): 1-D, finite, strictly increasing, at least 3 points."""
    grid = _tensor("grid", grid)
    if grid.dim() != 1 or grid.numel() < 3:
        raise VaelibError(f"grid must be a 1-D tensor of at least 3 points, got shape {tuple(grid.shape)}")
    if not bool(torch.isfinite(grid).all()):  # NaN would fail the order test below, with a wrong reason
        raise VaelibError("grid contains NaN or infinite points; use finite ones, e.g. torch.linspace(-6, 6, 601)")
    if not (grid[1:] > grid[:-1]).all():
        raise VaelibError("grid must be strictly increasing")
    return grid


def _check_log_density(name: str, log_density: Tensor) -> None:
    """A log-density's values: numbers, or -inf where the density is 0 (one pass)."""
    if not bool((log_density < math.inf).all()):  # NaN < inf is False too
        raise VaelibError(
            f"{name} contains NaN or +inf values; a log-density must be finite, or -inf where the density is 0"
        )


def kl_on_grid(log_p: Tensor, log_q: Tensor, grid: Tensor) -> Tensor:
    """``KL(p || q) = integral p(z) [log p(z) - log q(z)] dz`` by the trapezoidal rule.

    ``log_p``, ``log_q``: (..., N) log-densities evaluated on ``grid`` (N,),
    a strictly increasing set of finite points that covers the mass of both
    densities (the tails outside it are dropped).  Returns (...,) in nats.
    Points where ``p = 0`` (``log_p = -inf``) contribute 0; ``q = 0 < p``
    gives ``inf``; a NaN or ``+inf`` log-density is refused.  Swap
    the arguments for the reverse divergence ``KL(q || p)``.  The error of the
    rule falls as the square of the grid spacing for smooth densities.
    """
    grid = _check_grid(grid)
    log_p, log_q = _tensor("log_p", log_p), _tensor("log_q", log_q)
    if log_p.dim() == 0 or log_q.dim() == 0 or log_p.shape[-1] != grid.numel() or log_q.shape[-1] != grid.numel():
        raise VaelibError(
            f"log_p and log_q must be evaluated on the grid: shapes {tuple(log_p.shape)} and "
            f"{tuple(log_q.shape)}, grid has {grid.numel()} points"
        )
    _checks.broadcast("give them the same batch shape", log_p=log_p, log_q=log_q)
    _check_log_density("log_p", log_p)
    _check_log_density("log_q", log_q)
    return _kl_on_grid(log_p, log_q, grid)


def _kl_on_grid(log_p: Tensor, log_q: Tensor, grid: Tensor) -> Tensor:
    """:func:`kl_on_grid` of values checked already (:func:`fit_gaussian` calls it at every step)."""
    log_p, log_q = torch.broadcast_tensors(log_p, log_q)
    p = log_p.exp()
    safe_log_q = torch.where(p > 0, log_q, torch.zeros_like(log_q))
    integrand = torch.where(p > 0, p * (log_p - safe_log_q), torch.zeros_like(p))
    return torch.trapezoid(integrand, grid, dim=-1)


class GaussianFit(NamedTuple):
    """Result of :func:`fit_gaussian`: a 1-D Gaussian ``N(mu, exp(logvar))``.

    ``mu``, ``logvar`` and ``kl`` (the divergence reached, nats) are 0-dim
    tensors; ``history`` (steps,) holds the divergence at every step.
    """

    mu: Tensor
    logvar: Tensor
    kl: Tensor
    history: Tensor


def fit_gaussian(
    log_p: Callable[[Tensor], Tensor] | Tensor,
    grid: Tensor,
    direction: str = "reverse",
    *,
    mu0: float = 0.0,
    logvar0: float = 0.0,
    steps: int = 400,
    lr: float = 0.1,
) -> GaussianFit:
    """Fit one Gaussian ``q = N(mu, sigma^2)`` to a 1-D density ``p`` by minimising a KL divergence.

    ``direction="forward"`` minimises ``KL(p || q)`` (mode covering: the
    optimum matches the mean and variance of ``p``); ``direction="reverse"``
    minimises ``KL(q || p)`` (mode seeking: ``q`` settles on one mode, which
    one depends on the start ``mu0``), the direction variational inference and
    the VAE use.  Both divergences are computed by :func:`kl_on_grid` on
    ``grid`` (N,), and ``(mu, log sigma)`` are fitted by gradient descent with
    Adam (learning rate ``lr``, cosine-annealed to 0 over ``steps``;
    gradients from torch autograd), starting from ``mu0`` and ``logvar0``.

    ``log_p``: a function mapping points (N,) to log-densities (N,), or those
    values on ``grid`` already.  Deterministic; runs on ``grid``'s device and
    dtype.  Returns a :class:`GaussianFit`.  Reference: Bishop (2006),
    section 10.1.2 and figure 10.3.
    """
    if direction not in ("forward", "reverse"):
        raise VaelibError(f"direction must be 'forward' (KL(p||q)) or 'reverse' (KL(q||p)), got {direction!r}")
    steps = _checks.count("steps", steps)
    mu0, logvar0 = _checks.number("mu0", mu0), _checks.number("logvar0", logvar0)
    lr = _checks.number("lr", lr, positive=True)
    grid = _check_grid(grid)
    with torch.no_grad():
        log_p_grid = _tensor("log_p", log_p(grid) if callable(log_p) else log_p)
        log_p_grid = log_p_grid.to(dtype=grid.dtype, device=grid.device)
    if log_p_grid.shape != grid.shape:
        raise VaelibError(f"log_p on the grid must have shape {tuple(grid.shape)}, got {tuple(log_p_grid.shape)}")
    _check_log_density("log_p on the grid", log_p_grid)  # once; every step below reuses these values

    def divergence(params: Tensor) -> Tensor:
        log_q_grid = log_normal(grid.unsqueeze(-1), params[0], 2.0 * params[1])  # (N,)
        if direction == "forward":
            return _kl_on_grid(log_p_grid, log_q_grid, grid)
        return _kl_on_grid(log_q_grid, log_p_grid, grid)

    # (mu, log sigma), fitted by torch's Adam with the rate cosine-annealed from lr at step 0 towards 0.
    params = torch.tensor([mu0, 0.5 * logvar0], dtype=grid.dtype, device=grid.device, requires_grad=True)
    optimizer = torch.optim.Adam([params], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    history = torch.empty(steps, dtype=grid.dtype, device=grid.device)
    for step in range(steps):
        optimizer.zero_grad()
        loss = divergence(params)
        loss.backward()
        history[step] = loss.detach()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        final = divergence(params)
        return GaussianFit(params[0].clone(), 2.0 * params[1], final, history)


# --------------------------------------------------------------------------- codes and classes


class ClassifierScore(NamedTuple):
    """How well a classifier r(y | z) reads labels off codes: both are scalar tensors."""

    cross_entropy: Tensor  # E[-log r(y | z)] over the scored pairs, nats
    accuracy: Tensor  # share of the scored codes whose most probable class is their label


def histogram_classifier(
    z_fit: Tensor, y_fit: Tensor, z: Tensor, y: Tensor, *, bins: int = 30, limit: float = 4.0
) -> ClassifierScore:
    """Fit a histogram classifier r(y | z) of 2-D codes on (z_fit, y_fit) and score it on (z, y).

    The square [-limit, limit]^2 is cut into ``bins`` x ``bins`` cells (the
    outer cells reach to infinity); r(y | cell) is the share of class y among
    the fitted codes in the cell, counting one extra code of every class in
    every cell so that no probability is zero (Laplace smoothing).

    Any classifier's cross-entropy bounds the conditional entropy from above,
    E[-log r(y | z)] >= H(y | z) (Gibbs' inequality), so

        I(y; z) = H(y) - H(y | z) >= H(y) - cross_entropy,

    the variational bound of Barber and Agakov (2003).  Shapes: codes (N, 2)
    with N >= 1 (a tensor, or a numpy array),
    integer labels (N,) in [0, C) with C = max label + 1 of ``y_fit``; units:
    nats; reduction: mean over the scored pairs.
    """
    checked = []
    for name, codes, labels in (("z_fit", z_fit, y_fit), ("z", z, y)):
        if not isinstance(codes, Tensor):
            try:  # a numpy array or a list of codes is fine
                codes = torch.as_tensor(codes)
            except (TypeError, ValueError, RuntimeError):
                raise VaelibError(
                    f"{name} must be a torch.Tensor of codes (N, 2), got {type(codes).__name__}"
                ) from None
        if codes.dim() != 2 or codes.shape[1] != 2:
            raise VaelibError(f"{name} must be 2-D codes of shape (N, 2), got shape {tuple(codes.shape)}")
        if codes.shape[0] == 0:
            raise VaelibError(f"{name} holds no codes (shape (0, 2)); pass at least one code and its label")
        _checks.finite(name, codes)  # a NaN code has no cell
        try:
            labels = torch.as_tensor(labels)  # a list or a numpy array of labels is fine
        except (TypeError, ValueError, RuntimeError):
            raise VaelibError(
                f"the labels of {name} must be an integer tensor ({codes.shape[0]},), got {type(labels).__name__}"
            ) from None
        if labels.shape != codes.shape[:1] or labels.is_floating_point() or labels.dtype == torch.bool:
            raise VaelibError(
                f"the labels of {name} must be an integer tensor ({codes.shape[0]},), "
                f"got dtype {labels.dtype}, shape {tuple(labels.shape)}"
            )
        checked.append((codes, labels))
    bins, limit = _checks.count("bins", bins), _checks.number("limit", limit, positive=True)
    z_fit, y_fit, z, y = (t.detach().cpu() for pair in checked for t in pair)
    if min(int(y_fit.min()), int(y.min())) < 0:
        raise VaelibError(
            f"labels must be class indices >= 0, got a minimum of {min(int(y_fit.min()), int(y.min()))}; "
            "number the classes 0, 1, ..."
        )
    num_classes = int(y_fit.max()) + 1
    if y.max() >= num_classes:
        raise VaelibError(
            f"the labels of z must lie in [0, {num_classes}), the classes seen in y_fit, got {int(y.max())}; "
            "fit on codes of every class that is scored"
        )
    edges = torch.linspace(-limit, limit, bins + 1, dtype=z_fit.dtype)[1:-1]  # inner edges

    def cell(codes: Tensor) -> Tensor:  # (N, 2) -> (N,): the index of each code's cell
        ij = torch.bucketize(codes.contiguous(), edges)  # (N, 2) in [0, bins)
        return ij[:, 0] * bins + ij[:, 1]

    counts = torch.ones(bins * bins, num_classes, dtype=z_fit.dtype)  # one smoothing count each
    counts.index_put_((cell(z_fit), y_fit.long()), torch.ones(len(y_fit), dtype=z_fit.dtype), accumulate=True)
    r = counts / counts.sum(1, keepdim=True)  # (cells, C): r(y | cell)
    r_z = r[cell(z)]  # (N, C)
    cross_entropy = -r_z.gather(1, y.long()[:, None]).log().mean()
    accuracy = (r_z.argmax(1) == y).to(z_fit.dtype).mean()
    return ClassifierScore(cross_entropy, accuracy)
