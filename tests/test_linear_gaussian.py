"""Tests for vaelib.exact (the linear-Gaussian model) and for the bound identities on it.

Every reference is computed independently of the code under test: scipy
quadrature, torch.distributions, the conditioning formula of a joint Gaussian,
plain Monte Carlo, and closed forms written out here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

import vaelib
import vaelib as vl
import vaelib.checkpoint
import vaelib.data
import vaelib.train
from vaelib.errors import VaelibError
from vaelib.linear_gaussian import LinearGaussian, fit_linear_encoder, jensen_gap

DT = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make(P=5, D=2, logvar_x=math.log(0.3), seed=0, **kw) -> LinearGaussian:
    return LinearGaussian.random(P, D, logvar_x=logvar_x, generator=gen(seed), **kw)


def random_q(model, x, seed, spread=1.0):
    g = gen(seed)
    B, D = x.shape[0], model.latent_dim
    return torch.randn(B, D, generator=g, dtype=DT) * spread, torch.randn(B, D, generator=g, dtype=DT) * spread


def joint_gaussian_posterior(model, x):
    """p(z|x) by conditioning the joint Gaussian of (z, x), without the precision form used in exact.py."""
    W, b = model.W, model.b
    C = W @ W.T + model.var_x * torch.eye(W.shape[0], dtype=DT)  # Cov[x]
    K = W.T @ torch.linalg.inv(C)  # Cov[z, x] Cov[x]^{-1}
    return (x - b) @ K.T, torch.eye(W.shape[1], dtype=DT) - K @ W


# --------------------------------------------------------------- the evidence


def test_log_marginal_matches_independent_multivariate_normal():
    model = make(P=6, D=3, seed=1)
    x, _ = model.sample(7, generator=gen(2))
    cov = model.W @ model.W.T + model.var_x * torch.eye(6, dtype=DT)
    ref = torch.distributions.MultivariateNormal(model.b, covariance_matrix=cov).log_prob(x)
    assert torch.allclose(model.log_marginal(x), ref, atol=1e-12)


def test_log_marginal_matches_quadrature_in_one_dimension():
    model = make(P=3, D=1, logvar_x=math.log(0.4), seed=3)
    x, _ = model.sample(3, generator=gen(4))
    W, b, sd = model.W.numpy()[:, 0], model.b.numpy(), math.sqrt(model.var_x)
    for xi, lp in zip(x.numpy(), model.log_marginal(x).tolist()):
        f = lambda z: np.prod(stats.norm.pdf(xi, W * z + b, sd)) * stats.norm.pdf(z)  # noqa: E731
        val, _ = integrate.quad(f, -12, 12, epsabs=0, epsrel=1e-11, limit=200)
        assert math.log(val) == pytest.approx(lp, abs=1e-8)


def test_log_marginal_matches_brute_force_monte_carlo():
    # p(x) = E_{p(z)}[p(x|z)], averaged over many prior samples (a broad posterior keeps the variance small)
    model = make(P=4, D=3, logvar_x=math.log(2.0), scale=0.5, seed=5)
    x, _ = model.sample(2, generator=gen(6))
    z = torch.randn(200_000, 3, generator=gen(7), dtype=DT)
    lik = torch.distributions.Normal(z @ model.W.T + model.b, math.sqrt(model.var_x))
    p = lik.log_prob(x[:, None, :]).sum(-1).exp()  # (B, n)
    est, se = p.mean(1), p.std(1) / math.sqrt(p.shape[1])
    exact = model.log_marginal(x).exp()
    assert ((est - exact).abs() < 4 * se).all()
    assert (se / exact < 0.01).all()  # the check is sharp


# --------------------------------------------------------------- the posterior


def test_posterior_matches_joint_gaussian_conditioning():
    for seed, (P, D) in enumerate([(5, 2), (8, 4), (3, 3)]):
        model = make(P=P, D=D, seed=10 + seed)
        x, _ = model.sample(6, generator=gen(20 + seed))
        m, S = model.posterior(x)
        m_ref, S_ref = joint_gaussian_posterior(model, x)
        assert torch.allclose(m, m_ref, atol=1e-10)
        assert torch.allclose(S, S_ref, atol=1e-10)


def test_log_joint_and_bayes_rule():
    model = make(P=5, D=2, seed=30)
    x, _ = model.sample(4, generator=gen(31))
    z = 3 * torch.randn(10, 4, 2, generator=gen(32), dtype=DT)  # arbitrary codes, not posterior samples
    ref = torch.distributions.Normal(model.decode(z), math.sqrt(model.var_x)).log_prob(x).sum(
        -1
    ) + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    lj = model.log_joint(x, z)
    assert lj.shape == (10, 4)
    assert torch.allclose(lj, ref, atol=1e-10)
    # Bayes' rule: log p(x, z) - log p(z|x) = log p(x) for every z
    post = model.posterior_distribution(x)
    assert torch.allclose(lj - post.log_prob(z), model.log_marginal(x).expand(10, 4), atol=1e-10)


def test_importance_weights_under_exact_posterior_have_zero_variance():
    model = make(P=6, D=3, seed=33)
    x, _ = model.sample(3, generator=gen(34))
    post = model.posterior_distribution(x)
    torch.manual_seed(0)
    z = post.sample((100,))
    log_w = model.log_joint(x, z) - post.log_prob(z)
    assert torch.allclose(log_w.std(0), torch.zeros(3, dtype=DT), atol=1e-10)
    assert torch.allclose(log_w[0], model.log_marginal(x), atol=1e-10)


def test_posterior_mean_matches_grid_in_two_dimensions():
    model = make(P=4, D=2, seed=35)
    x, _ = model.sample(2, generator=gen(36))
    t = torch.linspace(-6, 6, 601, dtype=DT)
    grid = torch.cartesian_prod(t, t)
    lj = model.log_joint(x, grid[:, None, :])  # (G, B)
    w = torch.softmax(lj, 0)
    m, S = model.posterior(x)
    assert torch.allclose(w.T @ grid, m, atol=1e-7)
    dz = grid[:, None, :] - m  # (G, B, D)
    cov0 = (w[:, 0, None, None] * dz[:, 0, :, None] * dz[:, 0, None, :]).sum(0)
    assert torch.allclose(cov0, S, atol=1e-6)
    assert torch.allclose(torch.logsumexp(lj, 0) + 2 * math.log(t[1] - t[0]), model.log_marginal(x), atol=1e-8)


# --------------------------------------------------------------- the ELBO identities


@pytest.mark.parametrize("P,D,logvar_x", [(5, 2, math.log(0.3)), (10, 4, math.log(0.05)), (3, 3, 0.5)])
def test_log_marginal_minus_elbo_is_kl_to_posterior(P, D, logvar_x):
    model = make(P=P, D=D, logvar_x=logvar_x, seed=40 + P)
    x, _ = model.sample(8, generator=gen(41))
    mu, logvar = random_q(model, x, 42)
    elbo = model.elbo(x, mu, logvar)
    kl = model.kl_to_posterior(x, mu, logvar)
    assert torch.allclose(model.log_marginal(x) - elbo, kl, atol=1e-10, rtol=0)
    assert (kl > 0).all() and (elbo < model.log_marginal(x)).all()


def test_kl_to_posterior_matches_torch_distributions():
    model = make(P=6, D=3, seed=43)
    x, _ = model.sample(5, generator=gen(44))
    mu, logvar = random_q(model, x, 45)
    m, S = model.posterior(x)
    q = torch.distributions.MultivariateNormal(mu, covariance_matrix=torch.diag_embed(logvar.exp()))
    p = torch.distributions.MultivariateNormal(m, covariance_matrix=S.expand(5, 3, 3))
    assert torch.allclose(model.kl_to_posterior(x, mu, logvar), torch.distributions.kl_divergence(q, p), atol=1e-10)


def test_elbo_never_exceeds_log_marginal():
    for seed in range(20):
        model = make(P=4, D=2, logvar_x=float(torch.randn(1, generator=gen(seed))), seed=seed)
        x, _ = model.sample(16, generator=gen(100 + seed))
        mu, logvar = random_q(model, x, 200 + seed, spread=2.0)
        assert (model.elbo(x, mu, logvar) <= model.log_marginal(x)).all()


def test_elbo_is_tight_at_a_diagonal_posterior():
    model = make(P=7, D=3, seed=50, orthogonal=True)
    WtW = model.W.T @ model.W
    assert torch.allclose(WtW, torch.diag(WtW.diagonal()), atol=1e-12)  # orthogonal columns
    x, _ = model.sample(6, generator=gen(51))
    m, S = model.posterior(x)
    assert torch.allclose(S, torch.diag(S.diagonal()), atol=1e-12)
    logvar = S.diagonal().log().expand_as(m)
    assert torch.allclose(model.elbo(x, m, logvar), model.log_marginal(x), atol=1e-10)
    assert torch.allclose(model.kl_to_posterior(x, m, logvar), torch.zeros(6, dtype=DT), atol=1e-10)
    # best_diagonal_q finds it
    mu_b, logvar_b = model.best_diagonal_q(x)
    assert torch.allclose(mu_b, m, atol=1e-12) and torch.allclose(logvar_b, logvar, atol=1e-12)


def test_orthogonal_needs_d_at_most_p():
    with pytest.raises(VaelibError):
        LinearGaussian.random(2, 3, orthogonal=True)


def test_best_diagonal_q_is_a_stationary_minimum():
    model = make(P=5, D=3, logvar_x=math.log(0.1), seed=52)  # correlated posterior
    x, _ = model.sample(4, generator=gen(53))
    mu, logvar = (t.clone().requires_grad_(True) for t in model.best_diagonal_q(x))
    kl = model.kl_to_posterior(x, mu, logvar)
    assert (kl > 1e-3).all()  # the approximation gap of a non-diagonal posterior
    gmu, glv = torch.autograd.grad(kl.sum(), (mu, logvar))
    assert gmu.abs().max() < 1e-10 and glv.abs().max() < 1e-10
    with torch.no_grad():
        for seed in range(10):
            d = 0.1 * torch.randn(2, 4, 3, generator=gen(seed), dtype=DT)
            assert (model.kl_to_posterior(x, mu + d[0], logvar + d[1]) > kl).all()


def test_elbo_forms_agree():
    # E_q[log p(x|z)] - KL(q || p(z)) equals log p(x) - KL(q || p(z|x)); the first term by plain Monte Carlo too
    model = make(P=5, D=2, seed=54)
    x, _ = model.sample(3, generator=gen(55))
    mu, logvar = random_q(model, x, 56)
    recon = model.expected_log_likelihood(x, mu, logvar)
    assert torch.allclose(
        recon - vl.gaussian.kl_standard_normal(mu, logvar),
        model.log_marginal(x) - model.kl_to_posterior(x, mu, logvar),
        atol=1e-10,
    )
    z = torch.distributions.Normal(mu, (0.5 * logvar).exp()).sample((50_000,))
    ll = torch.distributions.Normal(model.decode(z), math.sqrt(model.var_x)).log_prob(x).sum(-1)
    assert ((ll.mean(0) - recon).abs() < 5 * ll.std(0) / math.sqrt(ll.shape[0])).all()


def test_vl_elbo_agrees_with_closed_form():
    model = make(P=6, D=3, seed=57)
    x, _ = model.sample(4, generator=gen(58))
    mu, logvar = random_q(model, x, 59)
    n = 50_000
    terms = vl.objective(model, x, q=(mu, logvar), k=n, generator=gen(60))
    _, log_px_z = vl.elbo.log_weights(model, x, mu, logvar, n, generator=gen(61))
    se = log_px_z.std(0) / math.sqrt(n)
    assert ((terms.elbo - model.elbo(x, mu, logvar)).abs() < 5 * se).all()
    assert torch.allclose(terms.reconstruction - terms.kl, terms.elbo)


# --------------------------------------------------------------- estimators of the evidence


def test_iwae_bound_increases_with_k_towards_log_marginal():
    model = make(P=5, D=2, logvar_x=math.log(0.2), seed=62)
    x, _ = model.sample(1, generator=gen(63))
    m, S = model.posterior(x)
    R = 1000
    q = ((m + S.diagonal().sqrt()).expand(R, 2), (2 * S.diagonal()).log().expand(R, 2))  # a mediocre, broad q
    xr = x.expand(R, 5)
    lp = model.log_marginal(x)[0]
    means, ses = [], []
    for k in (1, 4, 16, 64, 256):
        L = vl.iwae_bound(model, xr, k, q=q, generator=gen(64 + k))  # independent samples for each k
        means.append(L.mean())
        ses.append(L.std() / math.sqrt(R))
    means, ses = torch.stack(means), torch.stack(ses)
    diffs = means.diff()
    assert (diffs > -3 * (ses[1:] ** 2 + ses[:-1] ** 2).sqrt()).all()
    assert means[0] < means[2] < means[4]  # clear increases over factors of 16
    assert (means < lp + 3 * ses).all()
    assert lp - means[-1] < 0.02 and lp - means[0] > 0.5


def test_iwae_l1_is_the_elbo_in_expectation():
    model = make(P=4, D=2, seed=65)
    x, _ = model.sample(1, generator=gen(66))
    mu, logvar = random_q(model, x, 67, spread=0.5)
    R = 20_000
    L1 = vl.iwae_bound(model, x.expand(R, 4), 1, q=(mu.expand(R, 2), logvar.expand(R, 2)), generator=gen(68))
    assert abs(L1.mean() - model.elbo(x, mu, logvar)[0]) < 4 * L1.std() / math.sqrt(R)


def test_naive_prior_sampling_is_unbiased_for_p_but_not_log_p():
    model = make(P=2, D=1, logvar_x=math.log(0.5), seed=69)
    x, _ = model.sample(1, generator=gen(70))
    R, M = 20_000, 5
    zeros = torch.zeros(R, 1, dtype=DT)
    log_hat = vl.iwae_bound(model, x.expand(R, 2), M, q=(zeros, zeros), generator=gen(71))  # log p_hat_M, (R,)
    lp = model.log_marginal(x)[0]
    ratio = (log_hat - lp).exp()  # p_hat / p(x)
    assert abs(ratio.mean() - 1) < 4 * ratio.std() / math.sqrt(R)  # unbiased for p(x)
    assert log_hat.mean() < lp - 4 * log_hat.std() / math.sqrt(R)  # biased low for log p(x)


def test_prior_proposal_has_far_smaller_effective_sample_size():
    model = make(P=12, D=4, logvar_x=math.log(0.1), seed=72)
    x, _ = model.sample(4, generator=gen(73))
    m, S = model.posterior(x)
    M = 5000
    lw_prior, _ = vl.elbo.log_weights(
        model, x, torch.zeros(4, 4, dtype=DT), torch.zeros(4, 4, dtype=DT), M, generator=gen(74)
    )
    lw_post, _ = vl.elbo.log_weights(model, x, m, S.diagonal().log().expand_as(m), M, generator=gen(75))
    ess_prior = vl.elbo.effective_sample_size(lw_prior) / M
    ess_post = vl.elbo.effective_sample_size(lw_post) / M
    assert (ess_prior < 0.01).all() and (ess_post > 0.3).all()


# --------------------------------------------------------------- general helpers


def test_jensen_gap_matches_closed_forms():
    a, b = 0.3, 5.0
    lw = torch.tensor([math.log(a), math.log(b)], dtype=DT)
    assert jensen_gap(lw).item() == pytest.approx(math.log((a + b) / 2) - 0.5 * (math.log(a) + math.log(b)), abs=1e-14)
    assert torch.allclose(jensen_gap(torch.full((7, 3), -2.5, dtype=DT)), torch.zeros(3, dtype=DT), atol=1e-14)
    lw = 30 * torch.randn(50, 8, 3, generator=gen(76), dtype=DT) - 500  # extreme values stay finite
    gap = jensen_gap(lw, dim=1)
    assert gap.shape == (50, 3) and torch.isfinite(gap).all() and (gap >= 0).all()


def test_jensen_gap_converges_to_kl_to_posterior():
    model = make(P=5, D=2, seed=77)
    x, _ = model.sample(2, generator=gen(78))
    m, S = model.posterior(x)
    mu, logvar = m + 0.5 * S.diagonal().sqrt(), (1.5 * S.diagonal()).log().expand_as(m)
    lw, _ = vl.elbo.log_weights(model, x, mu, logvar, 200_000, generator=gen(79))
    assert torch.allclose(jensen_gap(lw), model.kl_to_posterior(x, mu, logvar), atol=0.02)


def test_fit_linear_encoder_recovers_affine_maps():
    g = gen(80)
    x = torch.randn(50, 6, generator=g, dtype=DT)
    A, c = torch.randn(6, 3, generator=g, dtype=DT), torch.randn(3, generator=g, dtype=DT)
    A_hat, c_hat = fit_linear_encoder(x, x @ A + c)
    assert torch.allclose(A_hat, A, atol=1e-10) and torch.allclose(c_hat, c, atol=1e-10)
    # noisy targets: the normal equations, solved independently with numpy
    y = x @ A + c + torch.randn(50, 3, generator=g, dtype=DT)
    A_hat, c_hat = fit_linear_encoder(x, y)
    X1 = np.c_[x.numpy(), np.ones(50)]
    ref = np.linalg.solve(X1.T @ X1, X1.T @ y.numpy())
    assert np.allclose(A_hat.numpy(), ref[:-1], atol=1e-10) and np.allclose(c_hat.numpy(), ref[-1], atol=1e-10)
    with pytest.raises(VaelibError):
        fit_linear_encoder(x, y[:10])


def test_affine_encoder_has_no_amortisation_gap_on_the_linear_model():
    model = make(P=6, D=2, seed=81)
    x_train, _ = model.sample(200, generator=gen(82))
    x_test, _ = model.sample(100, generator=gen(83))
    A, c = fit_linear_encoder(x_train, model.posterior(x_train)[0])
    mu_opt, logvar_opt = model.best_diagonal_q(x_test)
    assert torch.allclose(x_test @ A + c, mu_opt, atol=1e-10)
    # an encoder that sees half of x cannot reach the per-x optimum
    A2, c2 = fit_linear_encoder(x_train[:, :3], model.posterior(x_train)[0])
    gap = model.elbo(x_test, mu_opt, logvar_opt) - model.elbo(x_test, x_test[:, :3] @ A2 + c2, logvar_opt)
    assert (gap >= 0).all() and gap.mean() > 1e-3


def test_float32_and_shapes():
    model = LinearGaussian.random(4, 2, generator=gen(84), dtype=torch.float32)
    x, z = model.sample(3, generator=gen(85))
    assert x.dtype == torch.float32 and x.shape == (3, 4) and z.shape == (3, 2)
    m, S = model.posterior(x)
    assert m.shape == (3, 2) and S.shape == (2, 2)
    assert model.log_joint(x, torch.zeros(5, 3, 2)).shape == (5, 3)
    assert model.posterior_distribution(x).batch_shape == (3,)


# ---------------------------------------------------------------- EM and the model interface


def test_em_never_lowers_the_likelihood_and_recovers_the_generating_covariance():
    truth = LinearGaussian.random(6, 2, logvar_x=math.log(0.2), generator=gen(90))
    x, _ = truth.sample(4000, generator=gen(91))
    model = LinearGaussian.random(6, 2, logvar_x=0.0, generator=gen(92))
    previous = model.log_marginal(x).mean()
    for _ in range(60):
        model = model.em_step(x)
        current = model.log_marginal(x).mean()
        assert current >= previous - 1e-9  # EM is monotone in the exact log-likelihood
        previous = current
    # the model is identified up to a rotation of z: compare the implied covariances W W^T + sigma^2 I
    cov = lambda m: m.W @ m.W.T + m.var_x * torch.eye(6, dtype=m.W.dtype)  # noqa: E731
    sample_cov = torch.cov(x.T)
    torch.testing.assert_close(cov(model), sample_cov, atol=0.05, rtol=0.05)
    # at the maximum the log-likelihood beats the generating model's on the same data
    assert model.log_marginal(x).mean() >= truth.log_marginal(x).mean() - 1e-6


def test_the_e_step_closes_the_gap():
    """With q the exact posterior every importance weight equals p(x): the ELBO is log p(x)."""
    model = make(P=5, D=3)
    x, _ = model.sample(4, generator=gen(93))
    z = model.posterior_distribution(x).sample((7,))  # (7, 4, 3)
    log_w = model.log_joint(x, z) - model.posterior_distribution(x).log_prob(z)  # (7, 4)
    torch.testing.assert_close(log_w, model.log_marginal(x).expand(7, -1))


def test_em_keeps_the_variance_when_asked_and_checks_its_input():
    model = make(P=5, D=2)
    x, _ = model.sample(50, generator=gen(94))
    assert model.em_step(x, learn_variance=False).var_x == pytest.approx(model.var_x)
    with pytest.raises(VaelibError, match=r"x must be \(N, 5\)"):
        model.em_step(x[:, :4])


def test_the_linear_gaussian_model_works_with_evaluate_and_log_marginal_likelihood():
    """Through the LatentVariableModel interface: encode gives the best diagonal q, which with
    orthogonal columns is the exact posterior: every weight is p(x), so L_k is log p(x) exactly, and the
    one-sample ELBO estimate is log p(x) on average."""
    model = make(P=6, D=2, orthogonal=True)
    assert isinstance(model, vl.elbo.LatentVariableModel)
    x, _ = model.sample(64, generator=gen(95))
    exact = model.log_marginal(x)
    scores = vl.evaluate(model, x, k=10, batch_size=16)
    assert scores["nll"] == pytest.approx(-exact.mean().item(), abs=1e-5)
    closed_form = model.elbo(x, *model.encode(x)).mean().item()
    assert closed_form == pytest.approx(exact.mean().item(), abs=1e-6)
    assert scores["elbo"] == pytest.approx(closed_form, abs=0.5)  # a one-sample estimate of the same number
    lml = vl.log_marginal_likelihood(model, x, 5, batch_size=10, generator=gen(96))
    torch.testing.assert_close(lml, exact)


def test_em_from_an_offset_far_from_the_mean_is_still_monotone_and_regresses_on_the_right_posterior():
    truth = LinearGaussian.random(5, 2, logvar_x=math.log(0.3), generator=gen(97))
    x, _ = truth.sample(500, generator=gen(98))
    start = LinearGaussian(truth.W * 0.5, truth.b + 10.0, 0.0)  # b far from the data mean
    step = start.em_step(x)
    assert step.log_marginal(x).mean() >= start.log_marginal(x).mean()
    centred = LinearGaussian(start.W, x.mean(0), 0.0)  # the E-step at the optimal offset
    m, S = centred.posterior(x)
    W = torch.linalg.solve(len(x) * S + m.T @ m, m.T @ (x - x.mean(0))).T
    torch.testing.assert_close(step.W, W)
