"""The objective: KL, likelihoods, the reparameterized sample, the ELBO and the
importance-weighted bound, each checked against an independent reference
(torch.distributions, closed forms, numpy, Monte Carlo, or quadrature).
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

import vaelib as vl

SHAPES = [(1, 1), (3, 2), (16, 20), (2, 5, 7)]  # (B, D) and one extra leading batch dimension


def _gaussian_params(shape, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(shape, generator=g, dtype=dtype) * 1.5
    logvar = torch.randn(shape, generator=g, dtype=dtype)
    return mu, logvar


# ---------------------------------------------------------------- KL(q || N(0, I))


@pytest.mark.parametrize("shape", SHAPES)
def test_kl_standard_normal_matches_torch_distributions(shape):
    mu, logvar = _gaussian_params(shape, seed=1)
    q = Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)
    p = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    expected = kl_divergence(q, p)
    got = vl.gaussian.kl_standard_normal(mu, logvar)
    assert got.shape == shape[:-1]
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_kl_standard_normal_per_dimension_sums_to_total(shape):
    mu, logvar = _gaussian_params(shape, seed=2)
    per_dim = vl.gaussian.kl_standard_normal(mu, logvar, reduce=False)
    assert per_dim.shape == shape
    # each dimension is the univariate KL
    expected = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))
    torch.testing.assert_close(per_dim, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(per_dim.sum(-1), vl.gaussian.kl_standard_normal(mu, logvar), rtol=1e-12, atol=1e-12)
    assert (per_dim >= 0).all()


def test_kl_standard_normal_is_zero_only_at_the_prior():
    zeros = torch.zeros(4, 3, dtype=torch.float64)
    assert torch.equal(vl.gaussian.kl_standard_normal(zeros, zeros), torch.zeros(4, dtype=torch.float64))
    assert (vl.gaussian.kl_standard_normal(zeros + 0.1, zeros) > 0).all()
    assert (vl.gaussian.kl_standard_normal(zeros, zeros - 0.1) > 0).all()


@pytest.mark.parametrize("shape", [(2, 1), (3, 4)])
def test_kl_standard_normal_matches_monte_carlo(shape):
    mu, logvar = _gaussian_params(shape, seed=3)
    n = 200_000
    g = torch.Generator().manual_seed(4)
    sigma = torch.exp(0.5 * logvar)
    z = mu + sigma * torch.randn((n, *shape), generator=g, dtype=torch.float64)
    # log q(z) - log p(z), summed over the last dimension, written out by hand
    log_q = (-0.5 * ((z - mu) / sigma) ** 2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_p = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    ratio = log_q - log_p  # (n, B)
    estimate, stderr = ratio.mean(0), ratio.std(0) / math.sqrt(n)
    exact = vl.gaussian.kl_standard_normal(mu, logvar)
    assert ((estimate - exact).abs() < 4 * stderr).all(), (estimate, exact, stderr)


# ---------------------------------------------------------------- likelihoods


@pytest.mark.parametrize("shape", [(1, 1), (4, 16), (3, 5, 10)])
def test_bernoulli_log_likelihood_matches_torch_distributions(shape):
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(shape, generator=g, dtype=torch.float64) * 4
    x = torch.bernoulli(torch.full(shape, 0.4, dtype=torch.float64), generator=g)
    expected = Bernoulli(logits=logits).log_prob(x).sum(-1)
    got = vl.elbo.bernoulli_log_likelihood(x, logits)
    assert got.shape == shape[:-1]
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_bernoulli_log_likelihood_equals_minus_binary_cross_entropy():
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(8, 30, generator=g, dtype=torch.float64) * 3  # moderate
    for x in (
        torch.bernoulli(torch.full((8, 30), 0.5, dtype=torch.float64), generator=g),
        torch.rand(8, 30, generator=g, dtype=torch.float64),
    ):  # binary and grey targets
        expected = -F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="none").sum(-1)
        torch.testing.assert_close(vl.elbo.bernoulli_log_likelihood(x, logits), expected, rtol=1e-10, atol=1e-10)


def _log_sigmoid_numpy(logits: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -logits)


def test_bernoulli_log_likelihood_stays_finite_for_extreme_logits():
    logits = torch.tensor([[100.0, -100.0, 100.0, -100.0, 30.0, -30.0]], dtype=torch.float32)
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0, 1.0, 0.0]])
    got = vl.elbo.bernoulli_log_likelihood(x, logits)
    assert torch.isfinite(got).all()
    # independent reference in float64 numpy: x log s(l) + (1 - x) log s(-l)
    ln, xn = logits.double().numpy(), x.double().numpy()
    expected = (xn * _log_sigmoid_numpy(ln) + (1 - xn) * _log_sigmoid_numpy(-ln)).sum(-1)
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-6)
    assert got.item() == pytest.approx(-200.0, rel=1e-6)  # the two confident mistakes cost 100 nats each
    torch.testing.assert_close(got, Bernoulli(logits=logits).log_prob(x).sum(-1))
    # gradients stay finite too
    logits.requires_grad_(True)
    vl.elbo.bernoulli_log_likelihood(x, logits).sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_bernoulli_log_likelihood_broadcasts_samples_over_x():
    g = torch.Generator().manual_seed(7)
    x = torch.bernoulli(torch.full((4, 9), 0.5), generator=g)  # (B, P)
    logits = torch.randn(6, 4, 9, generator=g)  # (K, B, P)
    got = vl.elbo.bernoulli_log_likelihood(x, logits)
    assert got.shape == (6, 4)
    for k in range(6):
        torch.testing.assert_close(got[k], Bernoulli(logits=logits[k]).log_prob(x).sum(-1))


@pytest.mark.parametrize("per_pixel", [False, True])
def test_gaussian_log_likelihood_matches_torch_distributions(per_pixel):
    g = torch.Generator().manual_seed(8)
    x = torch.randn(5, 12, generator=g, dtype=torch.float64)
    mean = torch.randn(5, 12, generator=g, dtype=torch.float64)
    logvar = torch.randn(12, generator=g, dtype=torch.float64) if per_pixel else -0.7
    scale = torch.exp(torch.as_tensor(logvar, dtype=torch.float64) / 2)
    expected = Normal(mean, scale).log_prob(x).sum(-1)
    torch.testing.assert_close(vl.gaussian.log_normal(x, mean, logvar), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sigma2", [1.0, 0.1, 4.0])
def test_gaussian_log_likelihood_is_scaled_squared_error_plus_constant(sigma2):
    g = torch.Generator().manual_seed(9)
    P = 784
    x = torch.rand(3, P, generator=g, dtype=torch.float64)
    mean = torch.rand(3, P, generator=g, dtype=torch.float64)
    expected = -((x - mean) ** 2).sum(-1) / (2 * sigma2) - P / 2 * math.log(2 * math.pi * sigma2)
    got = vl.gaussian.log_normal(x, mean, math.log(sigma2))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-9)
    # the default is sigma^2 = 1
    if sigma2 == 1.0:
        torch.testing.assert_close(vl.gaussian.log_normal(x, mean), expected, rtol=1e-12, atol=1e-9)


def test_log_normal_defaults_to_the_standard_normal_prior():
    g = torch.Generator().manual_seed(10)
    z = torch.randn(7, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(vl.gaussian.log_normal(z), Normal(0.0, 1.0).log_prob(z).sum(-1))
    mu, logvar = _gaussian_params((7, 3), seed=11)
    torch.testing.assert_close(
        vl.gaussian.log_normal(z, mu, logvar), Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    )


# ---------------------------------------------------------------- reparameterize


@pytest.mark.parametrize("shape", [(1, 1), (4, 3), (32, 20)])
@pytest.mark.parametrize("n_samples", [None, 1, 7])
def test_reparameterize_shapes(shape, n_samples):
    mu, logvar = _gaussian_params(shape, seed=12, dtype=torch.float32)
    z = vl.gaussian.reparameterize(mu, logvar, n_samples)
    assert z.shape == (shape if n_samples is None else (n_samples, *shape))
    assert z.dtype == mu.dtype


@pytest.mark.parametrize("n_samples", [None, 5])
def test_reparameterize_with_given_eps_is_exact(n_samples):
    mu, logvar = _gaussian_params((4, 3), seed=13, dtype=torch.float32)
    shape = mu.shape if n_samples is None else (n_samples, *mu.shape)
    eps = torch.randn(shape, generator=torch.Generator().manual_seed(14))
    z = vl.gaussian.reparameterize(mu, logvar, n_samples, eps=eps)
    assert torch.equal(z, mu + torch.exp(logvar / 2) * eps)


def test_reparameterize_sample_moments_match_mu_and_sigma2():
    mu, logvar = _gaussian_params((3, 2), seed=15)
    n = 200_000
    z = vl.gaussian.reparameterize(mu, logvar, n, generator=torch.Generator().manual_seed(16))  # (n, 3, 2)
    var = logvar.exp()
    # standard errors of the sample mean and the sample variance of a Gaussian
    assert ((z.mean(0) - mu).abs() < 4 * torch.sqrt(var / n)).all()
    assert ((z.var(0) - var).abs() < 4 * var * math.sqrt(2 / n)).all()


def test_reparameterize_gradients_are_analytic():
    mu, logvar = _gaussian_params((4, 3), seed=17)
    mu.requires_grad_(True)
    logvar.requires_grad_(True)
    eps = torch.randn(4, 3, generator=torch.Generator().manual_seed(18), dtype=torch.float64)
    z = vl.gaussian.reparameterize(mu, logvar, eps=eps)
    z.sum().backward()
    sigma = torch.exp(0.5 * logvar.detach())
    torch.testing.assert_close(mu.grad, torch.ones_like(mu))  # dz/dmu = 1
    torch.testing.assert_close(logvar.grad, 0.5 * sigma * eps)  # dz/dlogvar = sigma eps / 2


def test_reparameterize_generator_makes_it_reproducible():
    mu, logvar = _gaussian_params((4, 3), seed=19, dtype=torch.float32)
    a = vl.gaussian.reparameterize(mu, logvar, 3, generator=torch.Generator().manual_seed(20))
    b = vl.gaussian.reparameterize(mu, logvar, 3, generator=torch.Generator().manual_seed(20))
    c = vl.gaussian.reparameterize(mu, logvar, 3, generator=torch.Generator().manual_seed(21))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_reparameterize_rejects_wrong_eps_shape_and_bad_n_samples():
    mu, logvar = _gaussian_params((4, 3), seed=22, dtype=torch.float32)
    with pytest.raises(vl.VaelibError, match=r"eps has shape \(4, 2\).*\(4, 3\)"):
        vl.gaussian.reparameterize(mu, logvar, eps=torch.zeros(4, 2))
    with pytest.raises(vl.VaelibError, match=r"eps"):
        vl.gaussian.reparameterize(mu, logvar, 2, eps=torch.zeros(4, 3))  # needs (2, 4, 3)
    with pytest.raises(vl.VaelibError, match="n_samples"):
        vl.gaussian.reparameterize(mu, logvar, 0)


# ---------------------------------------------------------------- the ELBO on a tiny VAE


def test_elbo_terms_are_consistent_and_kl_is_closed_form(tiny_vae, binary_data):
    x = binary_data[0][:32]
    terms = vl.objective(tiny_vae, x, generator=torch.Generator().manual_seed(0))
    assert terms.elbo.shape == terms.reconstruction.shape == terms.kl.shape == (32,)
    torch.testing.assert_close(terms.elbo, terms.reconstruction - terms.kl)
    with torch.no_grad():
        mu, logvar = tiny_vae.encode(x)
    q = Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)
    prior = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    torch.testing.assert_close(terms.kl, kl_divergence(q, prior), rtol=1e-5, atol=1e-6)


def test_elbo_reconstruction_uses_the_given_noise(tiny_vae, binary_data):
    x = binary_data[0][:8]
    eps = torch.randn(3, 8, 2, generator=torch.Generator().manual_seed(1))
    terms = vl.objective(tiny_vae, x, k=3, eps=eps)
    with torch.no_grad():
        mu, logvar = tiny_vae.encode(x)
        z = mu + torch.exp(0.5 * logvar) * eps  # (3, 8, 2)
        logits = tiny_vae.decoder(z.reshape(-1, 2)).reshape(3, 8, 16)
        expected = Bernoulli(logits=logits).log_prob(x).sum(-1).mean(0)
    torch.testing.assert_close(terms.reconstruction, expected, rtol=1e-5, atol=1e-5)
    # a proposal given as q replaces the encoder
    shifted = vl.objective(tiny_vae, x, k=3, eps=eps, q=(mu + 1.0, logvar))
    torch.testing.assert_close(shifted.kl, vl.gaussian.kl_standard_normal(mu + 1.0, logvar))
    assert not torch.allclose(shifted.reconstruction, terms.reconstruction)


def test_objective_checks_the_noise_against_k(tiny_vae, binary_data):
    x = binary_data[0][:8]
    eps = torch.randn(4, 8, 2, generator=torch.Generator().manual_seed(3))
    explicit = vl.objective(tiny_vae, x, k=4, eps=eps)
    with torch.no_grad():
        mu, logvar = tiny_vae.encode(x)
        z = mu + torch.exp(0.5 * logvar) * eps  # (4, 8, 2)
        expected = vl.elbo.bernoulli_log_likelihood(x, tiny_vae.decode(z)).mean(0)
    torch.testing.assert_close(explicit.reconstruction, expected, rtol=1e-5, atol=1e-5)
    # one sample may be given as (B, D)
    torch.testing.assert_close(
        vl.objective(tiny_vae, x, eps=eps[0]).reconstruction, vl.objective(tiny_vae, x, k=1, eps=eps[:1]).reconstruction
    )
    with pytest.raises(vl.VaelibError, match="eps holds 4 samples per input but k=3"):
        vl.objective(tiny_vae, x, k=3, eps=eps)
    with pytest.raises(
        vl.VaelibError, match=r"eps must be \(k, B, D\) with \(B, D\) = \(8, 2\), or \(B, D\); got \(1, 8, 3\)"
    ):
        vl.objective(tiny_vae, x, k=1, eps=torch.zeros(1, 8, 3))


def test_a_proposal_given_as_numbers_broadcasts(tiny_vae, binary_data):
    """q = (0.0, 0.0) is the prior: naive Monte Carlo, identical to passing zero tensors."""
    x = binary_data[0][:8]
    zeros = torch.zeros(8, 2)
    for bound in (
        lambda q: vl.iwae_bound(tiny_vae, x, 7, q=q, generator=torch.Generator().manual_seed(4)),
        lambda q: vl.objective(tiny_vae, x, k=3, q=q, generator=torch.Generator().manual_seed(4)).elbo,
    ):
        torch.testing.assert_close(bound((0.0, 0.0)), bound((zeros, zeros)))
    with pytest.raises(vl.VaelibError, match="must broadcast to"):
        vl.iwae_bound(tiny_vae, x, 3, q=(torch.zeros(5, 2), torch.zeros(5, 2)))


def test_elbo_accepts_image_shaped_input(tiny_vae, binary_data):
    x = binary_data[0][:8]
    flat = vl.objective(tiny_vae, x, generator=torch.Generator().manual_seed(2))
    images = vl.objective(tiny_vae, x.reshape(8, 1, 4, 4), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(flat.elbo, images.elbo)


def test_elbo_reconstruction_estimate_is_stable_with_many_samples(tiny_vae, binary_data):
    x = binary_data[0][:16]
    n = 4000
    with torch.no_grad():
        a = vl.objective(tiny_vae, x, k=n, generator=torch.Generator().manual_seed(3))
        b = vl.objective(tiny_vae, x, k=n, generator=torch.Generator().manual_seed(4))
        # the per-sample spread of log p(x|z), to set the tolerance
        mu, logvar = tiny_vae.encode(x)
        z = vl.gaussian.reparameterize(mu, logvar, 500, generator=torch.Generator().manual_seed(5))
        spread = tiny_vae.log_likelihood(x, tiny_vae.decode(z)).std(0)  # (B,)
    assert torch.equal(a.kl, b.kl)  # exact, not sampled
    assert ((a.reconstruction - b.reconstruction).abs() < 5 * spread * math.sqrt(2 / n)).all()
    assert not torch.equal(a.reconstruction, b.reconstruction)  # they are independent estimates


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 4.0])
def test_objective_weights_the_kl_by_beta(tiny_vae, binary_data, beta):
    x = binary_data[0][:16]
    terms = vl.objective(tiny_vae, x, beta=beta, generator=torch.Generator().manual_seed(23))
    same_noise = vl.objective(tiny_vae, x, generator=torch.Generator().manual_seed(23))
    torch.testing.assert_close(terms.objective, terms.reconstruction - beta * terms.kl)
    torch.testing.assert_close(terms.elbo, same_noise.elbo)  # the ELBO itself does not depend on beta
    if beta == 1.0:
        torch.testing.assert_close(terms.objective, terms.elbo)


def test_elbo_rejects_bad_inputs(tiny_vae):
    with pytest.raises(vl.VaelibError, match="NaN"):
        vl.objective(tiny_vae, torch.full((2, 16), float("nan")))
    with pytest.raises(vl.VaelibError, match=r"\[0, 1\]"):
        vl.objective(tiny_vae, torch.full((2, 16), 2.0))
    with pytest.raises(vl.VaelibError, match="16"):
        vl.objective(tiny_vae, torch.zeros(2, 15))
    with pytest.raises(vl.VaelibError, match="floating"):
        vl.objective(tiny_vae, torch.zeros(2, 16, dtype=torch.uint8))


# ---------------------------------------------------------------- bounds on an exact linear-Gaussian model


@pytest.fixture(scope="module")
def linear_gaussian_setup():
    """A 6-D linear-Gaussian model, 16 inputs drawn from it, each repeated S times, and a
    deliberately too-wide diagonal proposal (so L_k converges visibly in k)."""
    g = torch.Generator().manual_seed(0)
    model = vl.linear_gaussian.LinearGaussian.random(6, 2, logvar_x=math.log(0.5), generator=g)
    x, _ = model.sample(16, generator=g)
    m, S_cov = model.posterior(x)
    # a diagonal proposal centred on the posterior mean with e^3 times its variances
    logvar = torch.log(torch.diagonal(S_cov)).expand_as(m) + 3.0
    S = 64
    return model, x, (m, logvar), S


def _replicated_bound(model, x, q, S, k, seed, chunk_size=None):
    """S independent draws of L_k for each input: returns the S per-replica means over the inputs."""
    B = x.shape[0]
    xs, qs = x.repeat(S, 1), (q[0].repeat(S, 1), q[1].repeat(S, 1))
    values = vl.iwae_bound(model, xs, k, q=qs, chunk_size=chunk_size, generator=torch.Generator().manual_seed(seed))
    return values.reshape(S, B).mean(1)  # (S,)


def test_iwae_bound_increases_with_k_and_approaches_log_marginal(linear_gaussian_setup):
    model, x, q, S = linear_gaussian_setup
    log_px = model.log_marginal(x).mean()
    means, stderrs = [], []
    for i, k in enumerate((1, 10, 100, 1000)):
        v = _replicated_bound(model, x, q, S, k, seed=100 + i)
        means.append(v.mean())
        stderrs.append(v.std() / math.sqrt(S))
    for j in range(3):  # L_1 < L_10 < L_100 < L_1000, each step by more than 3 standard errors
        assert means[j + 1] - means[j] > 3 * math.hypot(stderrs[j], stderrs[j + 1]), (means, stderrs)
    for mean, se in zip(means, stderrs):  # every bound lies below log p(x)
        assert mean < log_px + 3 * se
    assert log_px - means[-1] < 0.02  # and L_1000 is within 0.02 nats of it
    # L_1 is the ELBO of q, which the model knows in closed form
    elbo = model.elbo(x, *q).mean()
    assert abs(means[0] - elbo) < 4 * stderrs[0]


def test_iwae_bound_chunked_and_unchunked_agree(linear_gaussian_setup):
    model, x, q, S = linear_gaussian_setup
    k = 1000
    whole = _replicated_bound(model, x, q, S, k, seed=7)
    chunked = _replicated_bound(model, x, q, S, k, seed=8, chunk_size=37)  # 27 chunks of 37 and one of 1
    se = math.hypot(whole.std() / math.sqrt(S), chunked.std() / math.sqrt(S))
    assert abs(whole.mean() - chunked.mean()) < 4 * se
    assert abs(chunked.mean() - model.log_marginal(x).mean()) < 0.02
    # one chunk holding all k samples draws exactly what the unchunked call draws
    same = _replicated_bound(model, x, q, S, k, seed=7, chunk_size=k)
    assert torch.equal(same, whole)


def test_iwae_bound_with_one_sample_is_the_elbo_sample(tiny_vae, binary_data):
    x = binary_data[0][:8]
    mu, logvar = tiny_vae.encode(x)
    # with the same noise, log w = log p(x|z) + log p(z) - log q(z|x); its mean over samples is the ELBO
    log_w, log_px_z = vl.elbo.log_weights(tiny_vae, x, mu, logvar, 3000, generator=torch.Generator().manual_seed(9))
    assert log_w.shape == log_px_z.shape == (3000, 8)
    terms = vl.objective(tiny_vae, x, k=3000, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(log_px_z.mean(0), terms.reconstruction)
    # E_q[log p(z) - log q(z|x)] = -KL, up to Monte Carlo error
    log_ratio = log_w - log_px_z
    se = log_ratio.std(0) / math.sqrt(3000)
    assert ((log_ratio.mean(0) + terms.kl).abs() < 4 * se).all()


@pytest.mark.parametrize("k", [0, -1, 1.5])
def test_bad_number_of_importance_samples_is_rejected(tiny_vae, k):
    x = torch.zeros(2, 16)
    for call in (lambda: vl.iwae_bound(tiny_vae, x, k), lambda: vl.log_marginal_likelihood(tiny_vae, x, k)):
        with pytest.raises(vl.VaelibError) as info:
            call()
        assert re.search(r"\bk\b", str(info.value)), str(info.value)


# ---------------------------------------------------------------- a Bernoulli VAE with a 1-D latent, by quadrature


@pytest.fixture(scope="module")
def one_d_vae():
    """A Bernoulli VAE with latent_dim=1 on 8 pixels, trained briefly on data it can model, in float64."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    left, right = torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0]), torch.tensor([0.0, 0, 0, 0, 1, 1, 1, 1])
    t = torch.rand(384, 1, generator=g)
    x = torch.bernoulli((t * left + (1 - t) * right) * 0.9 + 0.05, generator=g)
    model = vl.VAE(vl.VAEConfig(image_shape=(1, 2, 4), latent_dim=1, hidden_dims=(16,)))
    vl.fit(model, x, config=vl.TrainConfig(epochs=8, batch_size=32, lr=1e-2, device="cpu"), progress=False)
    return model.double().eval(), x[:12].double()


def _quadrature(model, x, n=8001, half_width=12.0):
    """log p(x) = log int p(x|z) N(z; 0, 1) dz on a fine grid (rectangle rule, float64).

    Returns log p(x) (B,), and the grid z (G,), its spacing, log p(x|z) (G, B) and log p(z) (G, 1).
    """
    z = torch.linspace(-half_width, half_width, n, dtype=torch.float64)
    dz = (z[1] - z[0]).item()
    with torch.no_grad():
        logits = model.decoder(z[:, None])  # (G, P), the decoder network itself
    # sum_p [x_p log s(l_p) + (1 - x_p) log s(-l_p)] as one matrix product
    log_on, log_off = F.logsigmoid(logits), F.logsigmoid(-logits)  # (G, P)
    log_px_z = (log_on - log_off) @ x.T + log_off.sum(-1, keepdim=True)  # (G, B)
    log_pz = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi))[:, None]  # (G, 1)
    log_px = torch.logsumexp(log_px_z + log_pz, 0) + math.log(dz)  # (B,)
    return log_px, z, dz, log_px_z, log_pz


def test_quadrature_reference_is_normalised(one_d_vae):
    model, _ = one_d_vae
    all_x = torch.tensor(list(itertools.product([0.0, 1.0], repeat=8)), dtype=torch.float64)  # all 256 images
    log_px, *_ = _quadrature(model, all_x)
    assert torch.logsumexp(log_px, 0).exp().item() == pytest.approx(1.0, abs=1e-8)


def test_log_marginal_likelihood_matches_quadrature(one_d_vae):
    model, x = one_d_vae
    exact, *_ = _quadrature(model, x)
    estimate = vl.log_marginal_likelihood(model, x, k=5000, generator=torch.Generator().manual_seed(0))
    assert estimate.shape == (12,)
    assert (estimate - exact).abs().max() < 0.05, estimate - exact


def test_elbo_is_below_log_marginal_by_the_posterior_kl(one_d_vae):
    model, x = one_d_vae
    log_px, z, dz, log_px_z, log_pz = _quadrature(model, x)
    with torch.no_grad():
        mu, logvar = model.encode(x)  # (B, 1)
    log_q = Normal(mu[:, 0], torch.exp(0.5 * logvar[:, 0])).log_prob(z[:, None])  # (G, B)
    q = log_q.exp()
    # the exact ELBO by quadrature: E_q[log p(x|z)] - KL(q || p(z))
    elbo_quad = (q * (log_px_z + log_pz - log_q)).sum(0) * dz
    # the gap is KL(q || p(z|x)) >= 0, also by quadrature
    log_post = log_px_z + log_pz - log_px
    kl_post = (q * (log_q - log_post)).sum(0) * dz
    assert (elbo_quad <= log_px).all()
    assert (kl_post >= 0).all()
    torch.testing.assert_close(log_px - elbo_quad, kl_post, rtol=1e-6, atol=1e-8)
    # vaelib's Monte Carlo ELBO agrees with the quadrature within its standard error
    n = 4000
    terms = vl.objective(model, x, k=n, generator=torch.Generator().manual_seed(1))
    zs = vl.gaussian.reparameterize(mu, logvar, n, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        se = model.log_likelihood(x, model.decode(zs)).std(0) / math.sqrt(n)
    assert ((terms.elbo.detach() - elbo_quad).abs() < 4 * se + 1e-9).all()
    assert terms.elbo.detach().mean() <= log_px.mean()


# ---------------------------------------------------------------- effective sample size and warm-up


@pytest.mark.parametrize("n", [1, 10, 1000])
@pytest.mark.parametrize("level", [-1000.0, 0.0, 500.0])
def test_effective_sample_size_of_equal_weights_is_n(n, level):
    log_w = torch.full((n,), level, dtype=torch.float64)
    assert vl.elbo.effective_sample_size(log_w).item() == pytest.approx(n, rel=1e-9)


def test_effective_sample_size_of_one_dominant_weight_is_one():
    log_w = torch.full((100,), -1000.0, dtype=torch.float64)
    log_w[17] = 0.0
    assert vl.elbo.effective_sample_size(log_w).item() == pytest.approx(1.0, rel=1e-9)


def test_effective_sample_size_matches_kish_formula_along_dim():
    g = torch.Generator().manual_seed(24)
    log_w = torch.randn(50, 4, generator=g, dtype=torch.float64) * 2  # (n, B)
    w = np.exp(log_w.numpy())
    expected = w.sum(0) ** 2 / (w**2).sum(0)
    got = vl.elbo.effective_sample_size(log_w, dim=0)
    assert got.shape == (4,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(vl.elbo.effective_sample_size(log_w.T, dim=1).numpy(), expected, rtol=1e-10)
    assert ((got >= 1) & (got <= 50)).all()


def test_kl_warmup_values():
    assert [vl.elbo.kl_warmup(e, 4) for e in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    assert [vl.elbo.kl_warmup(e, 2, beta=3.0) for e in range(4)] == pytest.approx([1.5, 3.0, 3.0, 3.0])
    assert [vl.elbo.kl_warmup(e, 0, beta=0.5) for e in range(3)] == [0.5, 0.5, 0.5]
    assert vl.elbo.kl_warmup(0, 1) == 1.0
    for epoch, warmup, name in ((-1, 3, "epoch"), (0, -1, "warmup_epochs"), (1.5, 3, "epoch")):
        with pytest.raises(vl.VaelibError, match=f"{name} must be an integer >= 0"):
            vl.elbo.kl_warmup(epoch, warmup)
    assert vl.elbo.kl_warmup(np.int64(1), np.int32(4)) == 0.5  # numpy integers are integers
