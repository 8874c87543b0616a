r"""A latent-variable model whose evidence and posterior are exact (chapter 3).

The linear-Gaussian model (probabilistic PCA; Tipping and Bishop 1999;
Bishop 2006, section 12.2):

.. math::

    p(z) = \mathcal{N}(0, I_D), \qquad p(x|z) = \mathcal{N}(W z + b, \sigma^2 I_P).

Then

.. math::

    p(x) = \mathcal{N}(b, W W^\top + \sigma^2 I), \qquad p(z|x) = \mathcal{N}(m(x), S),

    S = (I + W^\top W / \sigma^2)^{-1}, \qquad m(x) = S W^\top (x - b) / \sigma^2.

For a diagonal Gaussian ``q = N(mu, diag exp(logvar))`` the ELBO is also
closed form, so ``log p(x) = ELBO(q) + KL(q || p(z|x))`` can be checked to
float precision.  :class:`LinearGaussian` has the interface of
:class:`vaelib.elbo.LatentVariableModel` (its ``encode`` gives the best
diagonal Gaussian), so :func:`vaelib.objective`, :func:`vaelib.iwae_bound`,
:func:`vaelib.evaluate` and :func:`vaelib.log_marginal_likelihood` accept it.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor, nn

from . import _checks
from .elbo import log_mean_exp
from .errors import VaelibError
from .gaussian import LOG_2PI, kl_standard_normal, log_normal

__all__ = ["LinearGaussian", "jensen_gap", "fit_linear_encoder"]


def _logvar_limit(dtype: torch.dtype) -> float:
    """The largest ``|logvar|`` whose ``exp`` is a positive finite number in ``dtype``, less a margin for the
    arithmetic around it: 700 in float64, 79 in float32."""
    info = torch.finfo(dtype)
    return math.floor(min(math.log(info.max), -math.log(info.tiny))) - 8


class LinearGaussian(nn.Module):
    """``p(z) = N(0, I)``, ``p(x|z) = N(W z + b, exp(logvar_x) I)``; ``W``: (P, D), ``b``: (P,).

    ``W``, ``b`` and ``logvar_x`` are buffers (fixed, not trained by
    gradient), so the model moves between devices like any ``nn.Module``;
    :meth:`em_step` fits all three by expectation-maximisation.
    """

    likelihood = "gaussian"

    def __init__(self, W: Tensor, b: Tensor, logvar_x: float = 0.0):
        super().__init__()
        W, b = _checks.finite("W", _checks.tensor("W", W)), _checks.finite("b", _checks.tensor("b", b))
        if W.dim() != 2 or b.shape != (W.shape[0],) or 0 in W.shape:
            raise VaelibError(f"W must be (P, D) and b (P,) with P, D >= 1, got {tuple(W.shape)} and {tuple(b.shape)}")
        if isinstance(logvar_x, Tensor) and logvar_x.dim() == 0:
            logvar_x = logvar_x.item()  # the buffer of another model is a number too
        logvar_x, limit = _checks.number("logvar_x", logvar_x), _logvar_limit(W.dtype)
        if abs(logvar_x) > limit:  # exp(logvar_x), the noise variance, would overflow or round to 0
            raise VaelibError(
                f"logvar_x must lie in [-{limit}, {limit}] so that the noise variance exp(logvar_x) is a positive "
                f"finite {W.dtype} number, got {logvar_x}"
            )
        self.register_buffer("W", W.detach().clone())
        self.register_buffer("b", b.detach().clone().to(W.dtype))
        self.register_buffer("logvar_x", torch.tensor(float(logvar_x), dtype=W.dtype))

    @classmethod
    def random(
        cls,
        P: int,
        D: int,
        *,
        logvar_x: float = 0.0,
        scale: float = 1.0,
        orthogonal: bool = False,
        generator=None,
        dtype=torch.float64,
    ) -> "LinearGaussian":
        """A model with standard-normal ``W * scale`` and ``b``.

        With ``orthogonal=True`` the columns of ``W`` are made mutually
        orthogonal (Gram-Schmidt by QR, each column keeping its random
        length), so ``W^T W`` and hence the posterior covariance ``S`` are
        diagonal: the exact posterior is then a diagonal Gaussian, inside the
        VAE's family.  Needs ``D <= P``.  ``dtype``: a floating-point one; the
        draws come from ``generator`` (a CPU ``torch.Generator``) when given.
        """
        P, D = _checks.count("P", P), _checks.count("D", D)
        scale = _checks.number("scale", scale)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise VaelibError(f"dtype must be a floating-point torch.dtype such as torch.float64, got {dtype!r}")
        _checks.generator(generator, torch.device("cpu"))
        W = torch.randn(P, D, generator=generator, dtype=dtype) * scale
        if orthogonal:
            if D > P:
                raise VaelibError(f"orthogonal columns need D <= P, got D={D} > P={P}")
            Q, _ = torch.linalg.qr(W)  # (P, D), orthonormal columns
            W = Q * W.norm(dim=0)  # column j has length ||W_j||
        b = torch.randn(P, generator=generator, dtype=dtype)
        return cls(W, b, logvar_x)

    @property
    def input_dim(self) -> int:
        """P."""
        return self.W.shape[0]

    @property
    def latent_dim(self) -> int:
        """D."""
        return self.W.shape[1]

    @property
    def var_x(self) -> float:
        """The noise variance sigma^2."""
        return math.exp(float(self.logvar_x))

    def _eye(self, n: int) -> Tensor:
        return torch.eye(n, dtype=self.W.dtype, device=self.W.device)

    def _data(self, x: Tensor, *, rows: bool = False) -> Tensor:
        """``x`` (..., P) checked once per call: floating point, P values per example, finite; with ``rows``
        also at least one example (for the methods that build a distribution per example)."""
        x = _checks.tensor("x", x)
        if x.dim() == 0 or x.shape[-1] != self.input_dim:
            raise VaelibError(f"x must be (..., {self.input_dim}), got {tuple(x.shape)}")
        if rows and x.shape[:-1].numel() == 0:
            raise VaelibError(f"x holds no examples (shape {tuple(x.shape)}); pass at least one")
        return _checks.finite("x", x)

    def _codes(self, name: str, z, *, cast: bool = True) -> Tensor:
        """``z`` (..., D) as a tensor; in the model's dtype with ``cast`` (float32 codes on a float64 model
        are fine), else only when it is not floating point.  Shapes only: no pass over the values."""
        z = _checks.tensor(name, z)
        if z.dim() == 0 or z.shape[-1] != self.latent_dim:
            raise VaelibError(
                f"{name} must be (..., {self.latent_dim}), {self.latent_dim} values per code, got {tuple(z.shape)}"
            )
        return z.to(self.W.dtype) if cast or not z.is_floating_point() else z

    def _q(self, x: Tensor, mu, logvar) -> tuple[Tensor, Tensor]:
        """``q``'s ``mu`` and ``logvar`` checked against checked data ``x`` (B, P): each of shape (B, D), or one
        that broadcasts to it, and finite."""
        target = (*x.shape[:-1], self.latent_dim)
        out = []
        # logvar keeps its floating dtype: exp() of float32 values, then promoted, as before these checks
        for name, v, cast in (("mu", mu, True), ("logvar", logvar, False)):
            v = self._codes(name, v, cast=cast)
            advice = f": one row of {self.latent_dim} values per row of x {tuple(x.shape)}"
            _checks.broadcast(advice, target=target, **{name: v})
            out.append(_checks.finite(name, v))
        return out[0], out[1]

    def sample(self, n: int, generator=None) -> tuple[Tensor, Tensor]:
        """Draw ``(x, z)`` from the joint: x (n, P), z (n, D)."""
        n = _checks.count("n", n)
        _checks.generator(generator, self.W.device)
        with torch.no_grad():
            z = torch.randn(n, self.latent_dim, generator=generator, dtype=self.W.dtype, device=self.W.device)
            noise = torch.randn(n, self.input_dim, generator=generator, dtype=self.W.dtype, device=self.W.device)
            return self.decode(z) + math.sqrt(self.var_x) * noise, z

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The best diagonal Gaussian approximation of the posterior, ``(mu, logvar)``, each (B, D).

        See :meth:`best_diagonal_q`; it is the exact posterior when ``W``
        has orthogonal columns.
        """
        return self.best_diagonal_q(x)

    def decode(self, z: Tensor) -> Tensor:
        """The mean ``W z + b`` of ``p(x|z)``; (..., D) -> (..., P), in the model's dtype (``z`` is cast to it)."""
        return self._codes("z", z) @ self.W.T + self.b

    def log_likelihood(self, x: Tensor, x_mean: Tensor) -> Tensor:
        """``log p(x|z)`` given the decoded mean; (..., P) -> (...,), nats.  Shapes are checked (they must
        broadcast), not values: it runs at every step of :func:`vaelib.objective`."""
        x, x_mean = _checks.tensor("x", x), _checks.tensor("x_mean", x_mean)
        try:
            fits = x.shape[-1:] == x_mean.shape[-1:] == (self.input_dim,)
            torch.broadcast_shapes(x.shape, x_mean.shape)
        except (IndexError, RuntimeError):
            fits = False
        if not fits:
            raise VaelibError(
                f"x and x_mean must be (..., {self.input_dim}) and broadcast against each other, "
                f"got {tuple(x.shape)} and {tuple(x_mean.shape)}"
            )
        return log_normal(x, x_mean, self.logvar_x)

    def marginal(self) -> torch.distributions.MultivariateNormal:
        """The evidence distribution ``p(x) = N(b, W W^T + sigma^2 I)``."""
        cov = self.W @ self.W.T + self.var_x * self._eye(self.input_dim)
        try:
            return torch.distributions.MultivariateNormal(self.b, covariance_matrix=cov)
        except (ValueError, RuntimeError):  # its Cholesky factorisation failed
            raise VaelibError(
                f"the evidence covariance W W^T + sigma^2 I is not positive definite in {self.W.dtype}: the noise "
                f"variance sigma^2 = {self.var_x:.3g} is too small next to W; use a larger logvar_x"
            ) from None

    def log_marginal(self, x: Tensor) -> Tensor:
        """Exact ``log p(x)``, (B, P) -> (B,), nats."""
        return self.marginal().log_prob(self._data(x, rows=True))

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Exact posterior ``p(z|x) = N(m, S)``: m (B, D) and the shared S (D, D)."""
        return self._posterior(self._data(x))

    def _posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`posterior` of data checked already."""
        precision = self._eye(self.latent_dim) + self.W.T @ self.W / self.var_x  # (D, D)
        S = torch.linalg.inv(precision)
        m = (x - self.b) @ self.W @ S / self.var_x  # (B, D); S is symmetric
        return m, S

    def posterior_distribution(self, x: Tensor) -> torch.distributions.MultivariateNormal:
        """The exact posterior ``p(z|x) = N(m(x), S)`` as a distribution, batch shape (B,), event (D,)."""
        m, S = self._posterior(self._data(x, rows=True))
        return torch.distributions.MultivariateNormal(m, covariance_matrix=S.expand(*m.shape[:-1], -1, -1))

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """``log p(x, z) = log p(x|z) + log p(z)``, nats.

        ``x``: (B, P); ``z``: (..., B, D) (e.g. (K, B, D) for K samples per
        input).  Returns (..., B).  Dividing ``p(x, z)`` by any proposal
        density ``q(z)`` gives the importance weight ``w``; with ``q`` the
        exact posterior, ``w = p(x)`` for every ``z`` (Bayes' rule).  The batch
        dimensions of ``z`` broadcast against those of ``x`` (e.g. (G, 1, D) for
        G codes, each paired with every input).
        """
        x, z = self._data(x), self._codes("z", z)
        try:
            torch.broadcast_shapes(z.shape[:-1], x.shape[:-1])
        except RuntimeError:
            raise VaelibError(
                f"z must be (..., B, D) for x of shape (B, P) = {tuple(x.shape)}, got {tuple(z.shape)}"
            ) from None
        return self.log_likelihood(x, z @ self.W.T + self.b) + log_normal(z)

    def expected_log_likelihood(self, x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
        """``E_{q}[log p(x|z)]`` in closed form for ``q = N(mu, diag exp(logvar))``; (B,).

        ``-P/2 log(2 pi sigma^2) - (||x - W mu - b||^2 + sum_j s_j^2 ||W_{:,j}||^2) / (2 sigma^2)``.
        ``mu``, ``logvar``: (B, D), or shapes that broadcast to it.
        """
        x = self._data(x)
        return self._expected_log_likelihood(x, *self._q(x, mu, logvar))

    def _expected_log_likelihood(self, x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
        """:meth:`expected_log_likelihood` of checked arguments."""
        resid = (x - (mu @ self.W.T + self.b)).pow(2).sum(-1)  # (B,)
        spread = (logvar.exp() * self.W.pow(2).sum(0)).sum(-1)  # (B,) trace(W diag(s^2) W^T)
        return -0.5 * self.input_dim * (LOG_2PI + self.logvar_x) - 0.5 * (resid + spread) / self.var_x

    def elbo(self, x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
        """Exact ELBO of the diagonal Gaussian ``q``: expected log-likelihood minus ``KL(q || p(z))``; (B,)."""
        x = self._data(x)
        mu, logvar = self._q(x, mu, logvar)
        return self._expected_log_likelihood(x, mu, logvar) - kl_standard_normal(mu, logvar)

    def kl_to_posterior(self, x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
        """``KL(q || p(z|x))`` for ``q = N(mu, diag exp(logvar))``, closed form; (B,)."""
        x = self._data(x)
        mu, logvar = self._q(x, mu, logvar)
        m, S = self._posterior(x)
        S_inv = torch.linalg.inv(S)
        diff = m - mu  # (B, D)
        trace = (torch.diagonal(S_inv) * logvar.exp()).sum(-1)
        maha = ((diff @ S_inv) * diff).sum(-1)
        return 0.5 * (trace + maha - self.latent_dim + torch.logdet(S) - logvar.sum(-1))

    def best_diagonal_q(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The diagonal Gaussian closest to the posterior in ``KL(q || p)``:
        mean ``m(x)`` and variances ``1 / diag(S^{-1})`` (Bishop 2006, section 10.1.2)."""
        m, S = self.posterior(x)
        logvar = -torch.log(torch.diagonal(torch.linalg.inv(S)))
        return m, logvar.expand_as(m)

    @torch.no_grad()
    def em_step(self, x: Tensor, *, learn_variance: bool = True) -> "LinearGaussian":
        r"""One step of expectation-maximisation on the data ``x`` (N, P); returns the updated model.

        E-step: the exact posterior ``p(z|x_n) = N(m_n, S)`` under the current
        parameters, which makes the ELBO equal to ``log p(x_n)`` (the gap
        ``KL(q || p(z|x))`` is zero).  M-step: the parameters that maximise
        the expected complete-data log-likelihood under those posteriors,

        .. math::

            b &= \frac{1}{N} \sum_n x_n, \\
            W &= \Big[\sum_n (x_n - b)\, m_n^\top\Big] \Big[\sum_n (S + m_n m_n^\top)\Big]^{-1}, \\
            \sigma^2 &= \frac{1}{NP} \sum_n \Big[\lVert x_n - b \rVert^2 - 2\, m_n^\top W^\top (x_n - b) \\
            &\qquad\qquad + \operatorname{tr}\big((S + m_n m_n^\top) W^\top W\big)\Big]

        (Tipping and Bishop 1999, eqs. 27-30).  Each step never lowers the
        average ``log p(x)``.  ``learn_variance=False`` keeps sigma^2.  Data
        with NaN or infinite values are refused (they would make every
        weight NaN), and so are data whose fitted noise variance is zero up to
        rounding (one row, identical rows); data of another floating dtype
        are fitted in the model's.
        """
        x = _checks.tensor("x", x)
        if x.dim() != 2 or x.shape[1] != self.input_dim or x.shape[0] == 0:
            raise VaelibError(f"x must be (N, {self.input_dim}) with N >= 1, got {tuple(x.shape)}")
        x = _checks.finite("x", x).to(self.W.dtype)  # float32 data on a float64 model: fitted in float64
        N = x.shape[0]
        b = x.mean(0)  # (P,) the maximum-likelihood offset, whatever W and sigma^2 are
        m, S = LinearGaussian(self.W, b, float(self.logvar_x))._posterior(x)  # E-step, with b at its optimum
        xc = x - b  # (N, P)
        moments = N * S + m.T @ m  # (D, D) sum_n E[z_n z_n^T]
        W = torch.linalg.solve(moments, m.T @ xc).T  # (P, D); moments is symmetric
        logvar_x = float(self.logvar_x)
        if learn_variance:
            var = (xc.pow(2).sum() - 2 * (m * (xc @ W)).sum() + torch.trace(moments @ W.T @ W)) / (N * self.input_dim)
            # below the rounding error of the data (or exp(-700)) the variance is 0 but for rounding
            floor = max(math.exp(-_logvar_limit(self.W.dtype)), torch.finfo(x.dtype).eps * float(x.pow(2).mean()))
            if not float(var) > floor:
                raise VaelibError(
                    f"the fitted noise variance is {float(var):.3g}, zero up to rounding: x has no spread around "
                    "its mean (one row, or identical rows) or lies in a D-dimensional subspace; fit more varied "
                    "data, or pass learn_variance=False"
                )
            logvar_x = math.log(float(var))
        return LinearGaussian(W, b, logvar_x)


def jensen_gap(log_w: Tensor, dim: int = 0) -> Tensor:
    """The sample Jensen gap ``log((1/n) sum_i w_i) - (1/n) sum_i log w_i`` of weights given as logs.

    ``log`` is concave, so by Jensen's inequality (here the AM-GM inequality)
    the gap is ``>= 0`` for every sample, with equality iff all weights are
    equal.  For importance weights ``w = p(x, z) / q(z|x)``, ``z ~ q``, it
    tends as n grows to ``log E_q[w] - E_q[log w] = log p(x) - ELBO(q)
    = KL(q(z|x) || p(z|x))``.  Computed with log-sum-exp, so it stays finite
    for any log-weights.  ``log_w``: (..., n, ...) with the n samples along
    ``dim``; returns the other dimensions, nats.  Reference: Cover and Thomas
    (2006), section 2.6.
    """
    log_w = _checks.tensor("log_w", log_w)
    if not log_w.is_floating_point():
        log_w = log_w.to(torch.get_default_dtype())
    if log_w.dim() == 0:
        raise VaelibError("log_w must have a dimension of samples, got a 0-dim tensor")
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or not -log_w.dim() <= dim < log_w.dim():
        raise VaelibError(f"dim must be an integer in [-{log_w.dim()}, {log_w.dim()}), got {dim!r}")
    if log_w.shape[dim] == 0:  # the mean of no weights is undefined
        raise VaelibError(f"log_w holds no samples along dim {dim} (shape {tuple(log_w.shape)}); pass at least one")
    return log_mean_exp(log_w, int(dim)) - log_w.mean(int(dim))


def fit_linear_encoder(x: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Least-squares affine map ``target ~ x @ A + c``, an amortised (shared) linear encoder.

    ``x``: (N, P) inputs, ``target``: (N, D) per-input optimal encoder means
    (e.g. the posterior means ``m(x)``).  Returns ``A`` (P, D) and ``c`` (D,)
    minimising ``sum_n ||target_n - x_n A - c||^2``.  Because every output
    dimension is regressed on the same inputs, this also minimises
    ``sum_n (target_n - mu_n)^T M (target_n - mu_n)`` for any positive-definite
    ``M``; with ``M = S^{-1}`` and the variances held at their optimum that is
    the average ``KL(q || p(z|x))``, so for the linear-Gaussian model the fit
    maximises the average ELBO over affine encoders (Cremer, Li and Duvenaud
    2018 call what remains the amortisation gap).
    """
    x, target = _checks.tensor("x", x), _checks.tensor("target", target)
    if x.dim() != 2 or target.dim() != 2 or x.shape[0] != target.shape[0] or x.shape[0] == 0:
        raise VaelibError(
            f"x must be (N, P) and target (N, D) with N >= 1, got {tuple(x.shape)} and {tuple(target.shape)}"
        )
    _checks.finite("x", x)
    _checks.finite("target", target)
    dtype = torch.promote_types(x.dtype, target.dtype)  # least squares needs one dtype: the wider
    x, target = x.to(dtype), target.to(dtype)
    design = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)  # (N, P + 1)
    coef = torch.linalg.lstsq(design, target).solution  # (P + 1, D)
    return coef[:-1], coef[-1]
