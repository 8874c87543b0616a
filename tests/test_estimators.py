"""Tests for vaelib.estimators: score-function and pathwise gradients of E_q[f(z)].

References used: closed-form Gaussian expectations (checked by numerical
integration), autograd on those closed forms, torch.distributions.Normal for
the score, central finite differences, and the closed-form ELBO of a VAE with
a linear Gaussian decoder.
"""

from __future__ import annotations

import math

import pytest
import torch

import vaelib
import vaelib as vl
import vaelib.checkpoint
import vaelib.data
import vaelib.train
from vaelib.errors import VaelibError

E = vl.estimators
DT = torch.float64
SHAPES = [(3,), (2, 4)]
ESTIMATORS = {
    "score": lambda f, mu, lv, n, g: E.score_function_gradient(f, mu, lv, n, generator=g),
    "score-constant-baseline": lambda f, mu, lv, n, g: E.score_function_gradient(
        f, mu, lv, n, baseline=1.5, generator=g
    ),
    "score-leave-one-out": lambda f, mu, lv, n, g: E.score_function_gradient(
        f, mu, lv, n, baseline="leave-one-out", generator=g
    ),
    "pathwise": lambda f, mu, lv, n, g: E.reparameterized_gradient(f, mu, lv, n, generator=g),
}


def _params(shape, seed=0, scale=0.6):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(shape, generator=g, dtype=DT)
    logvar = torch.randn(shape, generator=g, dtype=DT) * scale - 0.5
    return mu, logvar


def _within(samples: torch.Tensor, target: torch.Tensor, n_se: float = 5.0) -> bool:
    """Mean of (K, ...) samples within n_se standard errors of target (plus a float floor)."""
    se = samples.std(0) / math.sqrt(samples.shape[0])
    return bool(((samples.mean(0) - target).abs() <= n_se * se + 1e-9).all())


# --- the closed forms themselves -------------------------------------------------------------


G = {"quadratic": lambda u: u**2, "sin": torch.sin, "exp": torch.exp}  # f(z) = sum_j g(z_j - a_j)


@pytest.mark.parametrize("name", E.INTEGRANDS)
def test_integrand_sums_g_over_the_last_dimension(name):
    z = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0), dtype=DT)
    a = torch.tensor([0.2, 0.0, -0.5], dtype=DT)
    assert torch.allclose(E.integrand(name, a)(z), G[name](z - a).sum(-1), atol=1e-12)


@pytest.mark.parametrize("name", E.INTEGRANDS)
def test_gaussian_expectation_matches_numerical_integration(name):
    mu = torch.tensor([0.7, -1.2, 0.0], dtype=DT)
    logvar = torch.tensor([-0.4, 0.3, -1.5], dtype=DT)
    a = torch.tensor([0.2, 0.0, -0.5], dtype=DT)
    u = torch.linspace(-14, 14, 200_001, dtype=DT)  # standardised grid, z_j = mu_j + sigma_j u
    density = torch.exp(-0.5 * u**2) / math.sqrt(2 * math.pi)
    total = sum(
        torch.trapezoid(G[name](mu[j] + math.exp(0.5 * logvar[j].item()) * u - a[j]) * density, u) for j in range(3)
    )
    assert torch.allclose(E.gaussian_expectation(name, mu, logvar, a), total, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", E.INTEGRANDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_hand_derived_gradient_matches_autograd(name, shape):
    mu, logvar = _params(shape, seed=1)
    mu.requires_grad_(True)
    logvar.requires_grad_(True)
    value = E.gaussian_expectation(name, mu, logvar, a=0.3)
    assert value.shape == shape[:-1]
    auto_mu, auto_lv = torch.autograd.grad(value.sum(), (mu, logvar))
    hand_mu, hand_lv = E.gaussian_expectation_gradient(name, mu.detach(), logvar.detach(), a=0.3)
    assert torch.allclose(hand_mu, auto_mu, atol=1e-12)
    assert torch.allclose(hand_lv, auto_lv, atol=1e-12)


def test_gaussian_score_matches_torch_distributions():
    mu, logvar = _params((2, 5), seed=2)
    z = torch.randn(7, 2, 5, generator=torch.Generator().manual_seed(3), dtype=DT)
    m, lv = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
    for k in range(z.shape[0]):
        logq = torch.distributions.Normal(m, torch.exp(0.5 * lv)).log_prob(z[k]).sum()
        ref_mu, ref_lv = torch.autograd.grad(logq, (m, lv))
        s_mu, s_lv = E.gaussian_score(z[k], mu, logvar)
        assert torch.allclose(s_mu, ref_mu, atol=1e-12)
        assert torch.allclose(s_lv, ref_lv, atol=1e-12)


# --- unbiasedness ----------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
@pytest.mark.parametrize("name", E.INTEGRANDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_estimators_are_unbiased(estimator, name, shape):
    mu, logvar = _params(shape, seed=4, scale=0.4)
    if name == "exp":  # keep the log-normal tails mild so that 5 standard errors are meaningful
        mu, logvar = 0.3 * mu, logvar.clamp(max=-0.5)
    f = E.integrand(name, a=0.25)
    g = torch.Generator().manual_seed(5)
    n = 10_000
    g_mu, g_lv = ESTIMATORS[estimator](f, mu, logvar, n, g)
    assert g_mu.shape == g_lv.shape == (n, *shape)
    exact_mu, exact_lv = E.gaussian_expectation_gradient(name, mu, logvar, a=0.25)
    assert _within(g_mu, exact_mu)
    assert _within(g_lv, exact_lv)


def test_a_biased_estimator_is_detected():
    # Guard on the test itself: dropping the 1/2 in the logvar score must fail the check.
    mu, logvar = _params((3,), seed=6)
    f = E.integrand("quadratic", a=0.5)
    g_mu, g_lv = E.score_function_gradient(f, mu, logvar, 20_000, generator=torch.Generator().manual_seed(7))
    _, exact_lv = E.gaussian_expectation_gradient("quadratic", mu, logvar, a=0.5)
    assert not _within(2 * g_lv, exact_lv)


def test_step_function_score_function_right_pathwise_zero():
    # f(z) = sum 1[z > 0]: E_q f = sum Phi(mu / sigma), d/dmu = phi(mu / sigma) / sigma.
    mu = torch.tensor([0.3, -0.5], dtype=DT)
    logvar = torch.tensor([0.0, -1.0], dtype=DT)
    sigma = torch.exp(0.5 * logvar)
    exact_mu = torch.exp(-0.5 * (mu / sigma) ** 2) / math.sqrt(2 * math.pi) / sigma

    def step(z):
        return (z > 0).to(z.dtype).sum(-1)

    g = torch.Generator().manual_seed(8)
    sf_mu, _ = E.score_function_gradient(step, mu, logvar, 40_000, baseline="leave-one-out", generator=g)
    assert _within(sf_mu, exact_mu)
    pw_mu, pw_lv = E.reparameterized_gradient(step, mu, logvar, 100, generator=g)
    assert torch.equal(pw_mu, torch.zeros_like(pw_mu)) and torch.equal(pw_lv, torch.zeros_like(pw_lv))


# --- variance --------------------------------------------------------------------------------


@pytest.mark.parametrize("D", [1, 5, 20])
def test_pathwise_has_lower_variance_for_the_quadratic(D):
    mu = torch.full((D,), 1.0, dtype=DT)
    logvar = torch.zeros(D, dtype=DT)
    f = E.integrand("quadratic", a=0.0)
    g = torch.Generator().manual_seed(9)
    n = 10_000
    pw_var = E.reparameterized_gradient(f, mu, logvar, n, generator=g)[0].var(0)
    sf_var = E.score_function_gradient(f, mu, logvar, n, generator=g)[0].var(0)
    loo_var = E.score_function_gradient(f, mu, logvar, n, baseline="leave-one-out", generator=g)[0].var(0)
    # The pathwise sample is 2 (mu + sigma eps): its variance is exactly 4 sigma^2 = 4.
    assert torch.allclose(pw_var, torch.full_like(pw_var, 4.0), rtol=0.08)
    assert (pw_var < loo_var).all() and (loo_var < sf_var).all()


def test_variance_of_the_mean_falls_like_one_over_k():
    mu, logvar = _params((4,), seed=10)
    f = E.integrand("sin", a=0.0)
    g = torch.Generator().manual_seed(11)
    reps = 4000
    var = {}
    for k in (1, 16):
        est = E.reparameterized_gradient(f, mu.expand(reps, 4), logvar.expand(reps, 4), k, generator=g)[
            0
        ]  # (k, reps, 4)
        var[k] = est.mean(0).var(0)  # variance of the k-sample estimate over the repetitions
    ratio = var[1] / var[16]
    assert ((ratio > 16 * 0.8) & (ratio < 16 * 1.25)).all()


# --- determinism and shapes ------------------------------------------------------------------


def test_given_eps_makes_both_estimators_deterministic():
    mu, logvar = _params((2, 3), seed=12)
    eps = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(13), dtype=DT)
    f = E.integrand("sin", a=0.1)
    for est in (E.score_function_gradient, E.reparameterized_gradient):
        first, second = est(f, mu, logvar, eps=eps), est(f, mu, logvar, eps=eps.clone())
        assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
        other = est(f, mu, logvar, 5, generator=torch.Generator().manual_seed(14))
        assert not torch.equal(first[0], other[0])
    # With eps given, the pathwise result is the chain rule at z = mu + sigma eps, exactly.
    sigma = torch.exp(0.5 * logvar)
    z = mu + sigma * eps
    g_mu, g_lv = E.reparameterized_gradient(f, mu, logvar, eps=eps)
    assert torch.allclose(g_mu, torch.cos(z - 0.1), atol=1e-12)
    assert torch.allclose(g_lv, torch.cos(z - 0.1) * 0.5 * sigma * eps, atol=1e-12)
    # and the score-function one is f(z) times the score at that z.
    s_mu, s_lv = E.score_function_gradient(f, mu, logvar, eps=eps)
    assert torch.allclose(s_mu, f(z)[..., None] * eps / sigma, atol=1e-12)
    assert torch.allclose(s_lv, f(z)[..., None] * 0.5 * (eps**2 - 1), atol=1e-12)


def test_inputs_are_left_alone_and_no_grad_context_works():
    mu, logvar = _params((3,), seed=15)
    mu.requires_grad_(True)
    before = mu.detach().clone()
    with torch.no_grad():
        g_mu, _ = E.reparameterized_gradient(
            E.integrand("quadratic"), mu, logvar, 3, generator=torch.Generator().manual_seed(0)
        )
    assert g_mu.shape == (3, 3) and not g_mu.requires_grad
    assert mu.grad is None and torch.equal(mu.detach(), before)


def test_errors():
    mu, logvar = _params((3,), seed=16)
    f = E.integrand("quadratic")
    with pytest.raises(VaelibError):
        E.reparameterized_gradient(f, mu, logvar[:2])
    with pytest.raises(VaelibError):
        E.score_function_gradient(f, mu, logvar, 4, eps=torch.zeros(3, 3, dtype=DT))
    with pytest.raises(VaelibError):
        E.score_function_gradient(f, mu, logvar, eps=torch.zeros(3, 2, dtype=DT))
    with pytest.raises(VaelibError):
        E.score_function_gradient(f, mu, logvar, 1, baseline="leave-one-out")
    with pytest.raises(VaelibError):
        E.score_function_gradient(f, mu, logvar, 3, baseline="mean")
    with pytest.raises(VaelibError):
        E.reparameterized_gradient(f, mu, logvar, 0)
    with pytest.raises(VaelibError):
        E.reparameterized_gradient(lambda z: z, mu, logvar, 2)  # f must reduce the last dimension
    with pytest.raises(VaelibError):
        E.integrand("cubic")


# --- the VAE's own objective -----------------------------------------------------------------


def _linear_vae(seed=17):
    """A vl.VAE whose decoder is one linear layer with a Gaussian likelihood: its ELBO is closed form."""
    torch.manual_seed(seed)
    config = vl.VAEConfig(
        image_shape=(1, 2, 3), latent_dim=3, hidden_dims=(), likelihood="gaussian", gaussian_logvar=-0.5
    )
    model = vl.VAE(config).double()
    x = torch.rand(4, 6, generator=torch.Generator().manual_seed(seed), dtype=DT)
    mu, logvar = _params((4, 3), seed=seed)
    return model, x, mu, logvar


def _closed_form_elbo(model, x, mu, logvar):
    """E_q[log N(x; W z + b, s2 I)] - KL(q || N(0, I)), written out independently of vaelib."""
    W, b = model.decoder[0].weight, model.decoder[0].bias  # (P, D), (P,)
    s2 = math.exp(model.config.gaussian_logvar)
    P = x.shape[1]
    resid = (x - mu @ W.T - b).pow(2).sum(-1)
    spread = (torch.exp(logvar) @ W.pow(2).T).sum(-1)  # trace(W diag(sigma^2) W^T)
    rec = -0.5 * P * math.log(2 * math.pi * s2) - 0.5 * (resid + spread) / s2
    kl = 0.5 * (mu.pow(2) + torch.exp(logvar) - logvar - 1).sum(-1)
    return rec, kl


def test_elbo_pathwise_gradient_matches_the_closed_form():
    model, x, mu, logvar = _linear_vae()
    m, lv = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
    rec, kl = _closed_form_elbo(model, x, m, lv)
    exact_mu, exact_lv = torch.autograd.grad((rec - kl).sum(), (m, lv))
    # Closed form agrees with vl.linear_gaussian's linear-Gaussian ELBO.
    lg = vl.linear_gaussian.LinearGaussian(
        model.decoder[0].weight.detach(), model.decoder[0].bias.detach(), model.config.gaussian_logvar
    )
    assert torch.allclose(lg.elbo(x, mu, logvar), (rec - kl).detach(), atol=1e-10)

    # Per-sample pathwise gradients of the reconstruction term, through the model's decoder.
    def reconstruction(z):  # (K, B, D) -> (K, B)
        return model.log_likelihood(x, model.decode(z))

    g = torch.Generator().manual_seed(18)
    r_mu, r_lv = E.reparameterized_gradient(reconstruction, mu, logvar, 20_000, generator=g)
    kl_mu, kl_lv = mu, 0.5 * (torch.exp(logvar) - 1)  # d KL / d mu, d KL / d logvar
    assert _within(r_mu - kl_mu, exact_mu)
    assert _within(r_lv - kl_lv, exact_lv)

    # vl.elbo with K samples: autograd gives the same K-sample estimate as the estimator's mean.
    eps = torch.randn(64, 4, 3, generator=g, dtype=DT)
    m2, lv2 = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
    terms = vl.objective(model, x, k=64, q=(m2, lv2), eps=eps)
    terms.elbo.sum().backward()
    e_mu, e_lv = E.reparameterized_gradient(reconstruction, mu, logvar, eps=eps)
    assert torch.allclose(m2.grad, e_mu.mean(0) - kl_mu, atol=1e-10)
    assert torch.allclose(lv2.grad, e_lv.mean(0) - kl_lv, atol=1e-10)
    # The KL term of vl.elbo is exact: its gradient has no noise at all.
    m3, lv3 = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
    vl.objective(model, x, k=64, q=(m3, lv3), eps=eps).kl.sum().backward()
    assert torch.allclose(m3.grad, kl_mu, atol=1e-12) and torch.allclose(lv3.grad, kl_lv, atol=1e-12)


def test_fixed_eps_elbo_matches_finite_differences_and_reaches_the_encoder():
    torch.manual_seed(19)
    model = vl.VAE(vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,))).double()
    x = torch.rand(3, 16, generator=torch.Generator().manual_seed(20), dtype=DT)
    eps = torch.randn(1, 3, 2, generator=torch.Generator().manual_seed(21), dtype=DT)
    mu, logvar = model.encode(x)
    mu, logvar = mu.detach().requires_grad_(True), logvar.detach()

    def loss(m):
        return -vl.objective(model, x, q=(m, logvar), eps=eps).objective.mean()

    loss(mu).backward()
    h = 1e-6
    for i in range(3):
        for j in range(2):
            step = torch.zeros_like(mu)
            step[i, j] = h
            fd = (loss(mu.detach() + step) - loss(mu.detach() - step)) / (2 * h)
            assert abs(fd.item() - mu.grad[i, j].item()) < 1e-7
    # Through the encoder: every encoder weight matrix gets a non-zero gradient; eps gets none.
    model.zero_grad()
    eps_leaf = eps.clone()
    (-vl.objective(model, x, eps=eps_leaf).objective.mean()).backward()
    for name, p in model.named_parameters():
        if not name.startswith("decoder") and name.endswith("weight"):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert eps_leaf.grad is None and not eps_leaf.requires_grad
