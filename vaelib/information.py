"""Information, entropy and Kullback-Leibler divergence (chapter 2).

Every quantity is in nats (natural logarithm) unless a ``base`` is given;
divide by ``log(2)`` (or pass ``base=2``) for bits.  Discrete distributions
are probability vectors along the last dimension; Gaussians are diagonal and
given by their mean ``mu`` and log-variance ``logvar``.

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

import math
from typing import Callable, NamedTuple

import torch
from torch import Tensor

from .errors import VaelibError
from .gaussian import LOG_2PI, log_normal, reparameterize

__all__ = [
    "self_information",
    "entropy",
    "cross_entropy",
    "kl_divergence",
    "gaussian_entropy",
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


def _check_base(base: float | None) -> None:
    if base is not None and not (math.isfinite(base) and base > 0 and base != 1):
        raise VaelibError(f"base must be a positive number other than 1 (2 for bits, None for nats), got {base!r}")


def _log(x: Tensor, base: float | None) -> Tensor:
    return torch.log(x) if base is None else torch.log(x) / math.log(base)


def _check_probs(p: Tensor, name: str) -> None:
    if not isinstance(p, Tensor):
        raise VaelibError(f"{name} must be a torch.Tensor of probabilities, got {type(p).__name__}")
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
        raise VaelibError(
            f"{name} must sum to 1 along its last dimension (sums: {total.flatten()[:4].tolist()}...); "
            "normalise it first"
        )


def _check_pair(p: Tensor, q: Tensor) -> None:
    _check_probs(p, "p")
    _check_probs(q, "q")
    if p.shape[-1] != q.shape[-1]:
        raise VaelibError(
            f"p and q must have the same number of outcomes K (last dimension), got {p.shape[-1]} and {q.shape[-1]}"
        )


# ------------------------------------------------------------ discrete distributions


def self_information(p: Tensor | float, base: float | None = None) -> Tensor:
    """Self-information ``I = -log p`` of an event of probability ``p``.

    Shapes: any; elementwise (a Python float gives a 0-dim tensor).  Units:
    nats, or ``log(base)`` units (bits for ``base=2``).  ``I(1) = 0`` and
    ``I(0) = inf``.  Reference: Cover and Thomas (2006), section 2.1.
    """
    _check_base(base)
    p = torch.as_tensor(p, dtype=None if isinstance(p, Tensor) else torch.get_default_dtype())
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
    terms = torch.where(p > 0, p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny)), torch.zeros_like(p))
    h = -terms.sum(-1)
    return h if base is None else h / math.log(base)


def cross_entropy(p: Tensor, q: Tensor, base: float | None = None) -> Tensor:
    """Cross-entropy ``H(p, q) = -sum_i p_i log q_i``.

    ``p``, ``q``: (..., K), broadcast against each other.  Returns (...,).
    Infinite where ``q_i = 0 < p_i``; outcomes with ``p_i = 0`` contribute 0
    whatever ``q_i`` is.  Gibbs' inequality: ``H(p, q) >= H(p)``, with
    equality iff ``p = q``.  Reference: Cover and Thomas (2006), section 2.6.
    """
    _check_base(base)
    _check_pair(p, q)
    p, q = torch.broadcast_tensors(p, q)
    # where p_i = 0 the term is 0; feed log a harmless 1 there so that neither
    # the value nor the gradient becomes 0 * log 0 = nan
    safe_q = torch.where(p > 0, q, torch.ones_like(q))
    terms = torch.where(p > 0, p * torch.log(safe_q), torch.zeros_like(p))
    h = -terms.sum(-1)
    return h if base is None else h / math.log(base)


def kl_divergence(p: Tensor, q: Tensor, base: float | None = None) -> Tensor:
    """``KL(p || q) = sum_i p_i log(p_i / q_i) = H(p, q) - H(p) >= 0``.

    ``p``, ``q``: (..., K), broadcast.  Returns (...,).  Zero iff ``p = q``;
    infinite where ``q_i = 0 < p_i``.  Not symmetric in ``p`` and ``q`` and
    without a triangle inequality, so it is a divergence, not a distance.
    Reference: Kullback and Leibler (1951); Cover and Thomas (2006), section 2.3.
    """
    h_pq = cross_entropy(p, q, base)
    # H(p, q) = inf gives inf - finite = inf, as it should
    return h_pq - entropy(p, base)


# ------------------------------------------------------------- diagonal Gaussians


def gaussian_entropy(logvar: Tensor) -> Tensor:
    """Differential entropy of ``N(mu, diag(exp(logvar)))``, summed over the last dim.

    ``h = 1/2 sum_j (log(2 pi) + 1 + logvar_j)`` nats; it does not depend on
    ``mu``.  ``logvar``: (..., D) -> (...,).  Unlike the discrete entropy it
    can be negative (for variances below ``1 / (2 pi e)``) and it depends on
    the units of ``z``: ``h(a z) = h(z) + D log|a|``.
    Reference: Cover and Thomas (2006), section 8.1.
    """
    return 0.5 * (LOG_2PI + 1.0 + logvar).sum(-1)


def gaussian_cross_entropy(mu_p: Tensor, logvar_p: Tensor, mu_q: Tensor, logvar_q: Tensor) -> Tensor:
    """``H(p, q) = -E_p[log q(z)]`` for diagonal Gaussians p and q, summed over the last dim.

    ``1/2 sum_j [log(2 pi) + logvar_q + (exp(logvar_p) + (mu_p - mu_q)^2) / exp(logvar_q)]``.
    Shapes broadcast; (..., D) -> (...,).  Nats.
    """
    return 0.5 * (LOG_2PI + logvar_q + (logvar_p.exp() + (mu_p - mu_q).pow(2)) * torch.exp(-logvar_q)).sum(-1)


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
    if n_samples < 2:
        raise VaelibError(f"n_samples must be >= 2 to give a standard error, got {n_samples}")
    mu_q, logvar_q, mu_p, logvar_p = torch.broadcast_tensors(mu_q, logvar_q, mu_p, logvar_p)
    z = reparameterize(mu_q, logvar_q, n_samples, generator=generator)  # (S, ..., D)
    log_ratio = log_normal(z, mu_q, logvar_q) - log_normal(z, mu_p, logvar_p)  # (S, ...)
    return log_ratio.mean(0), log_ratio.std(0) / math.sqrt(n_samples)


# ------------------------------------------------ one-dimensional densities on a grid


def _check_mixture(weights: Tensor, mu: Tensor, logvar: Tensor) -> None:
    if not (weights.dim() == mu.dim() == logvar.dim() == 1) or not (weights.shape == mu.shape == logvar.shape):
        raise VaelibError(
            "weights, mu and logvar must be 1-D tensors of the same length K (one entry per component), got shapes "
            f"{tuple(weights.shape)}, {tuple(mu.shape)}, {tuple(logvar.shape)}"
        )
    if (weights < 0).any() or not torch.allclose(weights.sum(), torch.ones_like(weights.sum()), atol=1e-5):
        raise VaelibError(f"mixture weights must be non-negative and sum to 1, got {weights.tolist()}")


def mixture_log_prob(z: Tensor, weights: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """Log-density of a one-dimensional Gaussian mixture.

    ``log p(z) = log sum_k w_k N(z; mu_k, exp(logvar_k))``, computed with
    ``logsumexp`` so that it stays finite far in the tails.  ``z``: any shape
    (...,) of points; ``weights``, ``mu``, ``logvar``: (K,).  Returns (...,)
    in nats.  Reference: Bishop (2006), section 9.2.
    """
    _check_mixture(weights, mu, logvar)
    log_comp = log_normal(z.unsqueeze(-1), mu, logvar, reduce=False)  # (..., K)
    return torch.logsumexp(torch.log(weights) + log_comp, dim=-1)


def mixture_moments(weights: Tensor, mu: Tensor, logvar: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and variance of a one-dimensional Gaussian mixture.

    ``mean = sum_k w_k mu_k`` and ``var = sum_k w_k (s_k^2 + mu_k^2) - mean^2``
    (law of total variance).  ``weights``, ``mu``, ``logvar``: (K,).  Returns
    two 0-dim tensors.  These are the parameters of the Gaussian that
    minimises the forward divergence ``KL(p || q)``.
    """
    _check_mixture(weights, mu, logvar)
    mean = (weights * mu).sum()
    var = (weights * (logvar.exp() + mu.pow(2))).sum() - mean.pow(2)
    return mean, var


def _check_grid(grid: Tensor) -> None:
    if grid.dim() != 1 or grid.numel() < 3:
        raise VaelibError(f"grid must be a 1-D tensor of at least 3 points, got shape {tuple(grid.shape)}")
    if not (grid[1:] > grid[:-1]).all():
        raise VaelibError("grid must be strictly increasing")


def kl_on_grid(log_p: Tensor, log_q: Tensor, grid: Tensor) -> Tensor:
    """``KL(p || q) = integral p(z) [log p(z) - log q(z)] dz`` by the trapezoidal rule.

    ``log_p``, ``log_q``: (..., N) log-densities evaluated on ``grid`` (N,),
    a strictly increasing set of points that covers the mass of both
    densities (the tails outside it are dropped).  Returns (...,) in nats.
    Points where ``p = 0`` contribute 0; ``q = 0 < p`` gives ``inf``.  Swap
    the arguments for the reverse divergence ``KL(q || p)``.  The error of the
    rule falls as the square of the grid spacing for smooth densities.
    """
    _check_grid(grid)
    if log_p.shape[-1] != grid.numel() or log_q.shape[-1] != grid.numel():
        raise VaelibError(
            f"log_p and log_q must be evaluated on the grid: last dimensions {log_p.shape[-1]} and "
            f"{log_q.shape[-1]}, grid has {grid.numel()} points"
        )
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
    if steps < 1:
        raise VaelibError(f"steps must be >= 1, got {steps}")
    _check_grid(grid)
    with torch.no_grad():
        log_p_grid = log_p(grid) if callable(log_p) else torch.as_tensor(log_p)
        log_p_grid = log_p_grid.to(dtype=grid.dtype, device=grid.device)
    if log_p_grid.shape != grid.shape:
        raise VaelibError(f"log_p on the grid must have shape {tuple(grid.shape)}, got {tuple(log_p_grid.shape)}")

    def divergence(params: Tensor) -> Tensor:
        log_q_grid = log_normal(grid.unsqueeze(-1), params[0], 2.0 * params[1])  # (N,)
        if direction == "forward":
            return kl_on_grid(log_p_grid, log_q_grid, grid)
        return kl_on_grid(log_q_grid, log_p_grid, grid)

    # Adam (Kingma and Ba 2015) written out for the two parameters (mu, log sigma);
    # torch.optim would work too but costs seconds of import time on first use.
    params = torch.tensor([float(mu0), 0.5 * float(logvar0)], dtype=grid.dtype, device=grid.device)
    m = torch.zeros_like(params)
    v = torch.zeros_like(params)
    beta1, beta2, tiny = 0.9, 0.999, 1e-8
    history = torch.empty(steps, dtype=grid.dtype, device=grid.device)
    for step in range(steps):
        params.requires_grad_(True)
        loss = divergence(params)
        (grad,) = torch.autograd.grad(loss, params)
        with torch.no_grad():
            history[step] = loss
            m = beta1 * m + (1 - beta1) * grad
            v = beta2 * v + (1 - beta2) * grad.pow(2)
            m_hat = m / (1 - beta1 ** (step + 1))
            v_hat = v / (1 - beta2 ** (step + 1))
            step_lr = 0.5 * lr * (1 + math.cos(math.pi * step / steps))  # cosine annealing to 0
            params = params - step_lr * m_hat / (v_hat.sqrt() + tiny)
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

    the variational bound of Barber and Agakov (2003).  Shapes: codes (N, 2),
    integer labels (N,) in [0, C) with C = max label + 1 of ``y_fit``; units:
    nats; reduction: mean over the scored pairs.
    """
    for name, codes, labels in (("z_fit", z_fit, y_fit), ("z", z, y)):
        if codes.dim() != 2 or codes.shape[1] != 2:
            raise VaelibError(f"{name} must be 2-D codes of shape (N, 2), got shape {tuple(codes.shape)}")
        if labels.shape != codes.shape[:1] or labels.is_floating_point():
            raise VaelibError(
                f"the labels of {name} must be an integer tensor ({codes.shape[0]},), "
                f"got dtype {labels.dtype}, shape {tuple(labels.shape)}"
            )
    if bins < 1 or not limit > 0:
        raise VaelibError(f"bins must be a positive integer and limit a positive number, got {bins} and {limit}")
    z_fit, y_fit, z, y = (t.detach().cpu() for t in (z_fit, y_fit, z, y))
    num_classes = int(y_fit.max()) + 1
    if y.min() < 0 or y_fit.min() < 0 or y.max() >= num_classes:
        raise VaelibError(f"labels must lie in [0, {num_classes}), the classes seen in y_fit")
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
