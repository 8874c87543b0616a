"""The Gaussian leaf module against torch.distributions and closed forms, at the
extremes where a naive formula overflows or rounds below zero."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

import vaelib as vl

G = vl.gaussian


def _diag(mu, logvar):
    return Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)


def test_log_normal_matches_torch_distributions_and_defaults_to_the_prior():
    g = torch.Generator().manual_seed(0)
    x, mu, logvar = (torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(G.log_normal(x, mu, logvar), _diag(mu, logvar).log_prob(x))
    torch.testing.assert_close(G.log_normal(x), _diag(torch.zeros_like(x), torch.zeros_like(x)).log_prob(x))
    per_dim = G.log_normal(x, mu, logvar, reduce=False)
    assert per_dim.shape == (5, 3)
    torch.testing.assert_close(per_dim.sum(-1), G.log_normal(x, mu, logvar))


def test_the_package_has_one_log_2pi():
    assert G.LOG_2PI == pytest.approx(math.log(2 * math.pi), abs=0)
    torch.testing.assert_close(G.log_normal(torch.zeros(1)), torch.tensor(-0.5 * G.LOG_2PI))


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(1)
    mu_q, logvar_q, mu_p, logvar_p = (torch.randn(7, 4, generator=g, dtype=torch.float64) for _ in range(4))
    expected = kl_divergence(_diag(mu_q, logvar_q), _diag(mu_p, logvar_p))
    torch.testing.assert_close(G.gaussian_kl(mu_q, logvar_q, mu_p, logvar_p), expected)
    torch.testing.assert_close(
        G.kl_standard_normal(mu_q, logvar_q),
        kl_divergence(_diag(mu_q, logvar_q), _diag(torch.zeros_like(mu_q), torch.zeros_like(mu_q))),
    )


@pytest.mark.parametrize("level, shift", [(90.0, 0.5), (95.0, -1.5), (-90.0, 0.0), (-95.0, 0.0)])
def test_gaussian_kl_does_not_overflow_when_both_logvars_are_extreme(level, shift):
    """exp(+-90) overflows float32, but the KL of two such Gaussians is moderate: only the difference of
    the log-variances is exponentiated.  (With tiny variances and different means the KL itself is
    astronomically large, so the means are equal there.)"""
    mu_q, mu_p = torch.tensor([[shift, -shift]]), torch.zeros(1, 2)
    logvar_q = torch.tensor([[level, level + 0.5]])
    logvar_p = torch.tensor([[level + 0.2, level - 0.3]])
    assert not torch.isfinite(torch.exp(torch.tensor(abs(level))))  # the naive product's factor overflows
    kl = G.gaussian_kl(mu_q, logvar_q, mu_p, logvar_p, reduce=False)
    assert torch.isfinite(kl).all()
    d = (logvar_q - logvar_p).double().numpy()
    squared = ((mu_q - mu_p).double() ** 2 * torch.exp(-logvar_p.double())).numpy()
    np.testing.assert_allclose(kl.double().numpy(), 0.5 * (np.expm1(d) - d + squared), rtol=1e-5, atol=1e-30)


def test_kls_never_come_out_negative_from_rounding():
    g = torch.Generator().manual_seed(2)
    mu = torch.randn(20_000, generator=g) * 1e-4
    logvar = torch.randn(20_000, generator=g) * 1e-4  # near the prior: exp(l) - l - 1 cancels to ~l^2/2
    assert (G.kl_standard_normal(mu[:, None], logvar[:, None]) >= 0).all()
    # q equal to p up to one rounding step of the log-variance
    lv = torch.randn(20_000, generator=g) * 10
    nudged = torch.nextafter(lv, torch.full_like(lv, float("inf")))
    assert (G.gaussian_kl(mu[:, None], lv[:, None], mu[:, None], nudged[:, None]) >= 0).all()
    assert (G.gaussian_kl(mu, lv, mu, lv, reduce=False) == 0).all()  # exactly zero for q = p


def test_reparameterize_uses_the_given_noise_and_lets_gradients_through():
    mu = torch.tensor([[1.0, -2.0]], requires_grad=True)
    logvar = torch.tensor([[0.0, math.log(4.0)]], requires_grad=True)
    eps = torch.tensor([[[0.5, 1.0]], [[-1.0, 0.25]]])  # (k=2, B=1, D=2)
    z = G.reparameterize(mu, logvar, 2, eps=eps)
    torch.testing.assert_close(z, torch.tensor([[[1.5, 0.0]], [[0.0, -1.5]]]))
    z.sum().backward()
    torch.testing.assert_close(mu.grad, torch.tensor([[2.0, 2.0]]))
    torch.testing.assert_close(logvar.grad, torch.tensor([[0.5 * (0.5 - 1.0), 0.5 * 2.0 * (1.0 + 0.25)]]))


def test_reparameterize_draws_have_the_right_moments_and_count():
    g = torch.Generator().manual_seed(3)
    mu, logvar = torch.tensor([[2.0, -1.0]]), torch.tensor([[math.log(0.25), math.log(9.0)]])
    z = G.reparameterize(mu, logvar, 200_000, generator=g)  # (k, 1, 2)
    assert z.shape == (200_000, 1, 2)
    torch.testing.assert_close(z.mean(0), mu, atol=0.02, rtol=0)
    torch.testing.assert_close(z.var(0), logvar.exp(), rtol=0.02, atol=0)
    assert G.reparameterize(mu, logvar, np.int64(3), generator=g).shape == (3, 1, 2)  # numpy integers are fine
    for bad in (0, -1, 1.5, True):
        with pytest.raises(vl.VaelibError, match="n_samples must be an integer >= 1"):
            G.reparameterize(mu, logvar, bad)
