"""Tests for vaelib.information against independent references.

References used: torch.distributions (Categorical, Normal, Independent,
MixtureSameFamily, kl_divergence), Monte Carlo estimates with their standard
errors, brute-force sums and numerical quadrature, and closed forms.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, MultivariateNormal, Normal
from torch.distributions import kl_divergence as torch_kl

from vaelib import information
from vaelib.errors import VaelibError
from vaelib.gaussian import gaussian_kl, kl_standard_normal
from vaelib.information import (
    GaussianFit,
    bits_per_dim,
    conditional_entropy,
    cross_entropy,
    entropy,
    fit_gaussian,
    gaussian_cross_entropy,
    gaussian_entropy,
    gaussian_kl_monte_carlo,
    gaussian_mutual_information,
    kl_divergence,
    kl_on_grid,
    mixture_log_prob,
    mixture_moments,
    mutual_information,
    self_information,
)

SHAPES = [(), (3,), (2, 5)]
DTYPES = [torch.float32, torch.float64]
LN2 = math.log(2.0)


def tol(dtype: torch.dtype) -> dict:
    return dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10)


def random_probs(shape: tuple, k: int, dtype: torch.dtype, seed: int, zeros: bool = False) -> torch.Tensor:
    """Random distributions (shape..., k); with ``zeros`` about a third of the entries are exactly 0."""
    g = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(*shape, k, generator=g, dtype=torch.float64)
    p = torch.softmax(logits, -1)
    if zeros:
        mask = torch.rand(*shape, k, generator=g, dtype=torch.float64) < 0.35
        mask[..., 0] = False  # keep at least one outcome
        p = torch.where(mask, torch.zeros_like(p), p)
        p = p / p.sum(-1, keepdim=True)
    return p.to(dtype)


def random_gaussians(shape: tuple, d: int, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(*shape, d, generator=g, dtype=torch.float64)
    logvar = 1.5 * torch.randn(*shape, d, generator=g, dtype=torch.float64)
    return mu.to(dtype), logvar.to(dtype)


def diag_normal(mu: torch.Tensor, logvar: torch.Tensor) -> Independent:
    return Independent(Normal(mu, torch.exp(0.5 * logvar)), 1)


# ------------------------------------------------------------------ information


def test_information_fair_coin_is_one_bit_or_ln2_nats():
    assert self_information(torch.tensor(0.5), base=2).item() == pytest.approx(1.0, abs=1e-7)
    assert self_information(torch.tensor(0.5)).item() == pytest.approx(LN2, abs=1e-7)
    assert self_information(0.5, base=2).item() == pytest.approx(1.0, abs=1e-7)  # a Python float works too
    # one bit is ln 2 nats whatever the probability: I_bits = I_nats / ln 2
    p = torch.rand(100, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(self_information(p, base=2), self_information(p) / LN2)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_information_matches_minus_log_and_keeps_shape(shape, dtype):
    p = torch.rand(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype) * 0.98 + 0.01
    out = self_information(p)
    assert out.shape == p.shape and out.dtype == dtype
    torch.testing.assert_close(out, -torch.log(p), **tol(dtype))
    torch.testing.assert_close(self_information(p, base=10), -torch.log10(p), **tol(dtype))


def test_information_edge_values_and_additivity():
    assert self_information(torch.tensor(1.0)).item() == 0.0
    assert self_information(torch.tensor(0.0)).item() == math.inf
    # independent events: I(p q) = I(p) + I(q)
    p, q = torch.tensor(0.3, dtype=torch.float64), torch.tensor(0.7, dtype=torch.float64)
    torch.testing.assert_close(self_information(p * q), self_information(p) + self_information(q))


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_information_rejects_non_probabilities(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        self_information(torch.tensor([0.5, bad]))


@pytest.mark.parametrize("base", [1, 0, -2, math.inf])
def test_bad_base_raises(base):
    with pytest.raises(ValueError, match="base"):
        self_information(torch.tensor(0.5), base=base)
    with pytest.raises(ValueError, match="base"):
        entropy(torch.tensor([0.5, 0.5]), base=base)


# ---------------------------------------------------------------------- entropy


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("zeros", [False, True])
def test_entropy_matches_categorical(shape, dtype, zeros):
    p = random_probs(shape, 6, dtype, seed=2, zeros=zeros)
    h = entropy(p)
    assert h.shape == shape and h.dtype == dtype
    torch.testing.assert_close(h, Categorical(probs=p).entropy(), **tol(dtype))
    torch.testing.assert_close(entropy(p, base=2), Categorical(probs=p).entropy() / LN2, **tol(dtype))


def test_entropy_with_zero_probabilities_ignores_them():
    p = torch.tensor([0.5, 0.0, 0.25, 0.0, 0.25], dtype=torch.float64)
    assert entropy(p).item() == pytest.approx(1.5 * LN2)
    assert entropy(p, base=2).item() == pytest.approx(1.5)
    # the gradient stays finite even with zeros
    p.requires_grad_(True)
    entropy(p).backward()
    assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("k", [1, 2, 7, 100])
def test_entropy_bounds_uniform_and_point_mass(k):
    uniform = torch.full((k,), 1.0 / k, dtype=torch.float64)
    assert entropy(uniform).item() == pytest.approx(math.log(k), abs=1e-12)
    point = torch.zeros(k, dtype=torch.float64)
    point[-1] = 1.0
    assert entropy(point).item() == 0.0
    p = random_probs((200,), k, torch.float64, seed=3, zeros=True)
    h = entropy(p)
    assert (h >= 0).all() and (h <= math.log(k) + 1e-12).all()


def test_binary_entropy_is_one_bit_at_one_half_and_symmetric():
    t = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)
    h = entropy(torch.stack([t, 1 - t], -1), base=2)
    assert h[50].item() == pytest.approx(1.0)
    assert h[0].item() == 0.0 and h[-1].item() == 0.0
    torch.testing.assert_close(h, h.flip(0))
    assert h.argmax().item() == 50


@pytest.mark.parametrize(
    "p, message",
    [
        (torch.tensor([0.5, 0.6]), "sum to 1"),
        (torch.tensor([1.5, -0.5]), "non-negative"),
        (torch.tensor([float("nan"), 1.0]), "finite"),
        (torch.tensor([0, 1]), "floating-point"),
        (torch.tensor(1.0), r"\(\.\.\., K\)"),
    ],
)
def test_entropy_rejects_bad_distributions(p, message):
    with pytest.raises(ValueError, match=message):
        entropy(p)


# ---------------------------------------------------------------- cross-entropy


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_matches_expected_categorical_log_prob(shape, dtype):
    p = random_probs(shape, 5, dtype, seed=4, zeros=True)
    q = random_probs(shape, 5, dtype, seed=5)
    h = cross_entropy(p, q)
    assert h.shape == shape
    # -E_p[log q(k)] with log q(k) from torch's Categorical, summed over outcomes k
    outcomes = torch.arange(5).reshape(5, *([1] * len(shape)))
    log_q = Categorical(probs=q).log_prob(outcomes)  # (5, *shape)
    reference = -(p.movedim(-1, 0) * log_q).sum(0)
    torch.testing.assert_close(h, reference, **tol(dtype))
    torch.testing.assert_close(cross_entropy(p, q, base=2), reference / LN2, **tol(dtype))


def test_gibbs_inequality_on_random_distributions():
    p = random_probs((500,), 4, torch.float64, seed=6, zeros=True)
    q = random_probs((500,), 4, torch.float64, seed=7)
    assert (cross_entropy(p, q) >= entropy(p)).all()
    assert (cross_entropy(p, q) - entropy(p) > 1e-6).all()  # strict, as p != q
    torch.testing.assert_close(cross_entropy(p, p), entropy(p))


def test_cross_entropy_zero_in_q_where_p_positive_is_infinite():
    p = torch.tensor([0.5, 0.5])
    q = torch.tensor([1.0, 0.0])
    assert cross_entropy(p, q).item() == math.inf
    assert kl_divergence(p, q).item() == math.inf


def test_cross_entropy_zero_in_q_where_p_is_zero_is_finite_with_finite_gradient():
    p = torch.tensor([0.0, 1.0], dtype=torch.float64)
    q = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    h = cross_entropy(p, q)
    assert h.item() == 0.0
    h.backward()
    assert torch.isfinite(q.grad).all()


def test_cross_entropy_broadcasts_and_checks_outcome_count():
    p = random_probs((), 3, torch.float64, seed=8)
    q = random_probs((4,), 3, torch.float64, seed=9)
    torch.testing.assert_close(cross_entropy(p, q), torch.stack([cross_entropy(p, qi) for qi in q]))
    with pytest.raises(ValueError, match="same number of outcomes"):
        cross_entropy(p, random_probs((), 4, torch.float64, seed=10))


# ---------------------------------------------------------------- KL (discrete)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("zeros", [False, True])
def test_kl_matches_torch_categorical_kl(shape, dtype, zeros):
    p = random_probs(shape, 6, dtype, seed=11, zeros=zeros)
    q = random_probs(shape, 6, dtype, seed=12)
    kl = kl_divergence(p, q)
    assert kl.shape == shape
    torch.testing.assert_close(kl, torch_kl(Categorical(probs=p), Categorical(probs=q)), **tol(dtype))
    torch.testing.assert_close(kl_divergence(p, q, base=2), kl / LN2, **tol(dtype))


def test_kl_identity_sign_zero_and_asymmetry():
    p = random_probs((300,), 5, torch.float64, seed=13, zeros=True)
    q = random_probs((300,), 5, torch.float64, seed=14)
    kl = kl_divergence(p, q)
    torch.testing.assert_close(kl, cross_entropy(p, q) - entropy(p))
    # brute force sum over the support of p
    brute = torch.where(p > 0, p * torch.log(p / q), torch.zeros_like(p)).sum(-1)
    torch.testing.assert_close(kl, brute)
    assert (kl > 0).all()
    torch.testing.assert_close(kl_divergence(q, q), torch.zeros(300, dtype=torch.float64), atol=1e-12, rtol=0)
    # not symmetric
    a = torch.tensor([0.9, 0.1], dtype=torch.float64)
    b = torch.tensor([0.5, 0.5], dtype=torch.float64)
    assert abs(kl_divergence(a, b) - kl_divergence(b, a)).item() > 0.05


def test_kl_breaks_the_triangle_inequality():
    # three Bernoulli distributions with KL(p||r) > KL(p||q) + KL(q||r)
    p, q, r = (torch.tensor([t, 1 - t], dtype=torch.float64) for t in (0.5, 0.25, 0.05))
    assert kl_divergence(p, r) > kl_divergence(p, q) + kl_divergence(q, r)


# ------------------------------------------------------- joint distributions: H(x | z), I(x; z)


def random_joint(shape: tuple, kx: int, kz: int, dtype: torch.dtype, seed: int, zeros: bool = False) -> torch.Tensor:
    """Random joint distributions p(x, z) of shape (shape..., kx, kz)."""
    return random_probs(shape, kx * kz, dtype, seed, zeros).reshape(*shape, kx, kz)


def categorical_entropy(p: torch.Tensor) -> torch.Tensor:
    return Categorical(probs=p.double()).entropy()


def reference_conditional_entropy(joint: torch.Tensor) -> torch.Tensor:
    """sum_z p(z) H(p(x | z)), one conditional at a time, with torch's Categorical."""
    joint = joint.double()
    p_z = joint.sum(-2)  # (..., Kz)
    cond = (joint / p_z.unsqueeze(-2).clamp_min(1e-300)).transpose(-1, -2)  # (..., Kz, Kx): p(x | z = j)
    cond = torch.where(p_z.unsqueeze(-1) > 0, cond, torch.full_like(cond, 1.0 / cond.shape[-1]))  # weight 0 anyway
    return (p_z * Categorical(probs=cond).entropy()).sum(-1)


def marginal_and_joint_entropies(joint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """H(x), H(z) and H(p(x, z)) with torch's Categorical."""
    return tuple(categorical_entropy(p) for p in (joint.sum(-1), joint.sum(-2), joint.flatten(-2)))


def over_random_joints(test):
    """Run ``test(shape, dtype, zeros)`` for every batch shape, dtype, and with and without zero cells."""
    for name, values in (("zeros", [False, True]), ("shape", SHAPES), ("dtype", DTYPES)):
        test = pytest.mark.parametrize(name, values)(test)
    return test


@over_random_joints
def test_conditional_entropy_averages_the_entropies_of_the_conditionals(shape, dtype, zeros):
    joint = random_joint(shape, 4, 3, dtype, seed=40, zeros=zeros)
    out = conditional_entropy(joint)
    assert out.shape == shape and out.dtype == dtype
    torch.testing.assert_close(out.double(), reference_conditional_entropy(joint), **tol(dtype))
    # the chain rule: H(x | z) = H(p(x, z)) - H(z)
    h_x, h_z, h_xz = marginal_and_joint_entropies(joint)
    torch.testing.assert_close(out.double(), h_xz - h_z, **tol(dtype))
    # H(z | x) by transposing, and both orders of the chain rule give H(p(x, z))
    torch.testing.assert_close(
        (h_x + conditional_entropy(joint.transpose(-1, -2))).double(), (h_z + out).double(), **tol(dtype)
    )
    # conditioning never increases entropy
    assert (out >= 0).all() and (out.double() <= h_x + 1e-6).all()
    torch.testing.assert_close(conditional_entropy(joint, base=2), out / LN2)


def test_conditional_entropy_extremes():
    p_x = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    determined = torch.diag(p_x)  # z = x: knowing z leaves nothing to say about x
    assert conditional_entropy(determined).item() == 0.0
    p_z = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    independent = p_x[:, None] * p_z[None, :]  # knowing z changes nothing
    assert conditional_entropy(independent).item() == pytest.approx(categorical_entropy(p_x).item(), abs=1e-12)


@over_random_joints
def test_mutual_information_matches_entropy_identities_and_torch_kl(shape, dtype, zeros):
    joint = random_joint(shape, 3, 5, dtype, seed=41, zeros=zeros)
    out = mutual_information(joint)
    assert out.shape == shape and out.dtype == dtype
    h_x, h_z, h_xz = marginal_and_joint_entropies(joint)
    torch.testing.assert_close(out.double(), h_x + h_z - h_xz, **tol(dtype))
    torch.testing.assert_close(out.double(), h_x - reference_conditional_entropy(joint), **tol(dtype))
    product = (joint.sum(-1, keepdim=True) * joint.sum(-2, keepdim=True)).flatten(-2).double()
    reference = torch_kl(Categorical(probs=joint.flatten(-2).double()), Categorical(probs=product))
    torch.testing.assert_close(out.double(), reference, **tol(dtype))
    # symmetric, non-negative, at most the smaller entropy; bits are nats / ln 2
    torch.testing.assert_close(mutual_information(joint.transpose(-1, -2)), out, **tol(dtype))
    assert (out >= 0).all() and (out.double() <= torch.minimum(h_x, h_z) + 1e-6).all()
    torch.testing.assert_close(mutual_information(joint, base=2), out / LN2)


def test_mutual_information_closed_forms():
    # independent variables share nothing (up to rounding, and never below zero)
    p_x, p_z = torch.tensor([0.2, 0.3, 0.5]), torch.tensor([0.6, 0.1, 0.1, 0.2])
    independent = mutual_information(p_x[:, None] * p_z[None, :])
    assert 0.0 <= independent.item() < 1e-6
    # z = x, uniform over K values: z tells all of x, log K nats
    assert mutual_information(torch.eye(8, dtype=torch.float64) / 8).item() == pytest.approx(math.log(8), abs=1e-12)
    # a fair bit through a binary symmetric channel flipping it with probability e: ln 2 - H_b(e)
    for e in (0.0, 0.1, 0.25, 0.5):
        channel = torch.tensor([[1 - e, e], [e, 1 - e]], dtype=torch.float64) / 2
        binary_entropy = 0.0 if e == 0 else -e * math.log(e) - (1 - e) * math.log(1 - e)
        assert mutual_information(channel).item() == pytest.approx(math.log(2) - binary_entropy, abs=1e-12)


@pytest.mark.parametrize("function", [conditional_entropy, mutual_information])
@pytest.mark.parametrize(
    "joint, message",
    [
        (torch.tensor([0.5, 0.5]), re.escape("shape (..., Kx, Kz)")),
        ([[0.5, 0.5]], re.escape("shape (..., Kx, Kz)")),
        (torch.tensor([[0.5, 0.4], [0.2, 0.1]]), "sum to 1"),
        (torch.tensor([[0.6, -0.1], [0.3, 0.2]]), "non-negative"),
        (torch.tensor([[1, 0], [0, 0]]), "floating-point"),
    ],
)
def test_joint_functions_reject_bad_tables(function, joint, message):
    with pytest.raises(VaelibError, match=message):
        function(joint)


# ------------------------------------------------------------ Gaussian entropy


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_entropy_matches_torch(shape, dtype):
    mu, logvar = random_gaussians(shape, 4, dtype, seed=15)
    h = gaussian_entropy(logvar)
    assert h.shape == shape and h.dtype == dtype
    torch.testing.assert_close(h, diag_normal(mu, logvar).entropy(), **tol(dtype))


def test_gaussian_entropy_one_dimensional_formula_and_negativity():
    sigma = torch.tensor([0.05, 1.0, 3.0], dtype=torch.float64)
    h = gaussian_entropy((2 * sigma.log()).unsqueeze(-1))
    torch.testing.assert_close(h, 0.5 * torch.log(2 * math.pi * math.e * sigma**2))
    assert h[0] < 0  # variance below 1 / (2 pi e): negative differential entropy
    threshold = torch.tensor([[math.log(1 / (2 * math.pi * math.e))]], dtype=torch.float64)
    assert gaussian_entropy(threshold).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("a", [0.01, 0.5, 3.0, -2.0])
def test_gaussian_entropy_scaling_adds_log_abs_a_per_dimension(a):
    _, logvar = random_gaussians((3,), 4, torch.float64, seed=16)
    scaled = logvar + 2 * math.log(abs(a))  # Var(a z) = a^2 Var(z)
    torch.testing.assert_close(gaussian_entropy(scaled), gaussian_entropy(logvar) + 4 * math.log(abs(a)))


def test_gaussian_entropy_matches_monte_carlo():
    mu, logvar = random_gaussians((), 3, torch.float64, seed=17)
    q = diag_normal(mu, logvar)
    torch.manual_seed(0)
    z = q.sample((200_000,))
    neg_log_q = -q.log_prob(z)
    se = neg_log_q.std() / math.sqrt(len(z))
    assert abs(neg_log_q.mean() - gaussian_entropy(logvar)) < 4 * se


def test_discrete_entropy_of_binned_gaussian_needs_an_infinite_offset():
    # H(binned, width w) ~ h - log w: it grows without bound as w -> 0
    normal = Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    h = gaussian_entropy(torch.zeros(1, dtype=torch.float64))
    previous = -math.inf
    for width in (0.5, 0.1, 0.02):
        edges = torch.arange(-10.0, 10.0 + width / 2, width, dtype=torch.float64)
        probs = normal.cdf(edges[1:]) - normal.cdf(edges[:-1])
        probs = probs / probs.sum()
        h_binned = entropy(probs)
        assert h_binned > previous
        previous = h_binned
        assert (h_binned + math.log(width) - h).abs() < width**2  # the offset -log w, up to O(w^2)


# ---------------------------------------------------- Gaussian cross-entropy and KL


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_cross_entropy_is_entropy_plus_kl(shape, dtype):
    mu_p, logvar_p = random_gaussians(shape, 3, dtype, seed=18)
    mu_q, logvar_q = random_gaussians(shape, 3, dtype, seed=19)
    h_pq = gaussian_cross_entropy(mu_p, logvar_p, mu_q, logvar_q)
    assert h_pq.shape == shape
    p, q = diag_normal(mu_p, logvar_p), diag_normal(mu_q, logvar_q)
    torch.testing.assert_close(h_pq, p.entropy() + torch_kl(p, q), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(
        gaussian_cross_entropy(mu_p, logvar_p, mu_p, logvar_p), gaussian_entropy(logvar_p), **tol(dtype)
    )


def test_gaussian_cross_entropy_matches_monte_carlo():
    mu_p, logvar_p = random_gaussians((), 2, torch.float64, seed=20)
    mu_q, logvar_q = random_gaussians((), 2, torch.float64, seed=21)
    torch.manual_seed(1)
    z = diag_normal(mu_p, logvar_p).sample((200_000,))
    values = -diag_normal(mu_q, logvar_q).log_prob(z)
    se = values.std() / math.sqrt(len(z))
    assert abs(values.mean() - gaussian_cross_entropy(mu_p, logvar_p, mu_q, logvar_q)) < 4 * se


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_kl_matches_torch(shape, dtype):
    mu_q, logvar_q = random_gaussians(shape, 5, dtype, seed=22)
    mu_p, logvar_p = random_gaussians(shape, 5, dtype, seed=23)
    kl = gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)
    assert kl.shape == shape and kl.dtype == dtype
    reference = torch_kl(diag_normal(mu_q, logvar_q), diag_normal(mu_p, logvar_p))
    torch.testing.assert_close(
        kl, reference, rtol=1e-4 if dtype == torch.float32 else 1e-10, atol=1e-4 if dtype == torch.float32 else 1e-10
    )
    per_dim = gaussian_kl(mu_q, logvar_q, mu_p, logvar_p, reduce=False)
    assert per_dim.shape == (*shape, 5)
    torch.testing.assert_close(
        per_dim,
        torch_kl(Normal(mu_q, (0.5 * logvar_q).exp()), Normal(mu_p, (0.5 * logvar_p).exp())),
        rtol=1e-4,
        atol=1e-4,
    )
    assert (per_dim >= 0).all()


def test_gaussian_kl_zero_iff_equal_and_asymmetric_and_broadcasts():
    mu, logvar = random_gaussians((4,), 3, torch.float64, seed=24)
    torch.testing.assert_close(gaussian_kl(mu, logvar, mu, logvar), torch.zeros(4, dtype=torch.float64))
    zero = torch.zeros(3, dtype=torch.float64)
    assert (gaussian_kl(mu, logvar, zero, zero) - gaussian_kl(zero, zero, mu, logvar)).abs().max() > 0.1
    assert gaussian_kl(mu, logvar, zero, zero).shape == (4,)


def test_gaussian_kl_matches_monte_carlo_with_torch_samples():
    mu_q, logvar_q = random_gaussians((), 3, torch.float64, seed=25)
    mu_p, logvar_p = random_gaussians((), 3, torch.float64, seed=26)
    q, p = diag_normal(mu_q, logvar_q), diag_normal(mu_p, logvar_p)
    torch.manual_seed(2)
    z = q.sample((200_000,))
    log_ratio = q.log_prob(z) - p.log_prob(z)
    se = log_ratio.std() / math.sqrt(len(z))
    assert abs(log_ratio.mean() - gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)) < 4 * se


@pytest.mark.parametrize("shape", [(1,), (3,), (2, 5)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_standard_normal(shape, dtype):
    mu, logvar = random_gaussians(shape, 4, dtype, seed=27)
    kl = kl_standard_normal(mu, logvar)
    assert kl.shape == shape
    explicit = 0.5 * (mu**2 + logvar.exp() - logvar - 1).sum(-1)
    torch.testing.assert_close(kl, explicit, **tol(dtype))
    zeros = torch.zeros_like(mu)
    torch.testing.assert_close(kl, gaussian_kl(mu, logvar, zeros, zeros), **tol(dtype))
    standard = Independent(Normal(zeros, torch.ones_like(mu)), 1)
    torch.testing.assert_close(kl, torch_kl(diag_normal(mu, logvar), standard), rtol=1e-4, atol=1e-4)
    assert kl_standard_normal(mu, logvar, reduce=False).shape == (*shape, 4)
    assert kl_standard_normal(zeros, zeros).abs().max().item() == 0.0


# ---------------------------------------------------------- gaussian_kl_monte_carlo


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_kl_monte_carlo_agrees_with_closed_form(shape, dtype):
    mu_q, logvar_q = random_gaussians(shape, 3, dtype, seed=28)
    mu_p, logvar_p = random_gaussians(shape, 3, dtype, seed=29)
    g = torch.Generator().manual_seed(3)
    estimate, se = gaussian_kl_monte_carlo(mu_q, logvar_q, mu_p, logvar_p, 20_000, generator=g)
    assert estimate.shape == shape and se.shape == shape and estimate.dtype == dtype
    closed = gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)
    assert ((estimate - closed).abs() < 5 * se).all()
    assert (se > 0).all()


def test_gaussian_kl_monte_carlo_is_reproducible_and_shrinks_like_one_over_sqrt_n():
    mu_q, logvar_q = random_gaussians((), 2, torch.float64, seed=30)
    zero = torch.zeros(2, dtype=torch.float64)
    a = gaussian_kl_monte_carlo(mu_q, logvar_q, zero, zero, 1000, generator=torch.Generator().manual_seed(4))
    b = gaussian_kl_monte_carlo(mu_q, logvar_q, zero, zero, 1000, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b)
    _, se_big = gaussian_kl_monte_carlo(mu_q, logvar_q, zero, zero, 100_000, generator=torch.Generator().manual_seed(5))
    assert 5 < (a[1] / se_big).item() < 20  # sqrt(100) = 10
    # equal distributions: log-ratio is identically 0
    est, se = gaussian_kl_monte_carlo(zero, zero, zero, zero, 10)
    assert est.item() == 0.0 and se.item() == 0.0
    with pytest.raises(ValueError, match="n_samples"):
        gaussian_kl_monte_carlo(zero, zero, zero, zero, 1)


# ------------------------------------------------ Gaussian mutual information, bits per dimension


def random_covariance(shape: tuple, n: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(*shape, n, n, generator=g, dtype=torch.float64)
    return (a @ a.transpose(-1, -2) + 0.5 * torch.eye(n, dtype=torch.float64)).to(dtype)


@pytest.mark.parametrize("dim_x", [1, 2, 4])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_mutual_information_is_a_sum_of_torch_entropies(shape, dtype, dim_x):
    cov = random_covariance(shape, 5, dtype, seed=50 + dim_x)
    out = gaussian_mutual_information(cov, dim_x)
    assert out.shape == shape and out.dtype == dtype

    def h(c):  # differential entropy of N(0, c) from torch
        return MultivariateNormal(torch.zeros(c.shape[-1], dtype=torch.float64), c.double()).entropy()

    reference = h(cov[..., :dim_x, :dim_x]) + h(cov[..., dim_x:, dim_x:]) - h(cov)  # h(x) + h(z) - h(x, z)
    torch.testing.assert_close(out.double(), reference, rtol=1e-4 if dtype == torch.float32 else 1e-10, atol=1e-5)
    assert (out > 0).all()


def test_gaussian_mutual_information_bivariate_closed_form_and_monte_carlo():
    for rho in (-0.9, -0.3, 0.0, 0.5, 0.99):
        cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
        expected = -0.5 * math.log(1 - rho**2)
        assert gaussian_mutual_information(cov, 1).item() == pytest.approx(expected, abs=1e-12)
    # a 3-D case against E[log p(x, z) - log p(x) - log p(z)] over torch's samples
    cov = random_covariance((), 3, torch.float64, seed=60)
    joint = MultivariateNormal(torch.zeros(3, dtype=torch.float64), cov)
    eps = torch.randn(200_000, 3, generator=torch.Generator().manual_seed(61), dtype=torch.float64)
    v = eps @ torch.linalg.cholesky(cov).T  # (S, 3) draws from N(0, cov): x = v[:, :1], z = v[:, 1:]
    p_x = MultivariateNormal(torch.zeros(1, dtype=torch.float64), cov[:1, :1])
    p_z = MultivariateNormal(torch.zeros(2, dtype=torch.float64), cov[1:, 1:])
    terms = joint.log_prob(v) - p_x.log_prob(v[:, :1]) - p_z.log_prob(v[:, 1:])
    estimate, se = terms.mean().item(), terms.std().item() / math.sqrt(len(terms))
    assert abs(gaussian_mutual_information(cov, 1).item() - estimate) < 4 * se


def test_gaussian_mutual_information_ignores_units_and_is_zero_for_independent_blocks():
    cov = random_covariance((), 4, torch.float64, seed=62)
    scale = torch.diag(torch.tensor([1000.0, 0.01, -3.0, 7.0], dtype=torch.float64))  # new units for x and z
    torch.testing.assert_close(gaussian_mutual_information(scale @ cov @ scale, 2), gaussian_mutual_information(cov, 2))
    blocks = torch.block_diag(cov[:2, :2], cov[2:, 2:])  # x and z uncorrelated, so independent
    assert 0.0 <= gaussian_mutual_information(blocks, 2).item() < 1e-12


@pytest.mark.parametrize(
    "cov, dim_x, message",
    [
        (torch.eye(3)[:2], 1, "square"),
        (torch.ones(1, 1), 1, "square"),
        (torch.eye(3), 0, "dim_x"),
        (torch.eye(3), 3, "dim_x"),
        (torch.eye(3), 1.5, "dim_x"),
        (torch.eye(3), True, "dim_x"),
        (torch.tensor([[1.0, 2.0], [2.0, 1.0]]), 1, "positive definite"),
        (torch.tensor([[1.0, 0.5], [0.0, 1.0]]), 1, "symmetric"),
        (torch.eye(2, dtype=torch.long), 1, "floating-point"),
    ],
)
def test_gaussian_mutual_information_rejects_bad_input(cov, dim_x, message):
    with pytest.raises(VaelibError, match=message):
        gaussian_mutual_information(cov, dim_x)


def test_bits_per_dim_of_uniform_and_of_independent_pixel_models():
    P = 784
    # every one of 256 levels equally likely: 8 bits per pixel; fair binary pixels: 1 bit
    assert bits_per_dim(P * math.log(256), P).item() == pytest.approx(8.0, abs=1e-12)
    assert bits_per_dim(torch.tensor(P * LN2, dtype=torch.float64), P).item() == pytest.approx(1.0, abs=1e-12)
    # independent pixels with distribution p: the expected NLL is P H(p) nats, i.e. H(p) bits per pixel
    p = random_probs((6,), 256, torch.float64, seed=70)  # (6, 256)
    out = bits_per_dim(P * entropy(p), P)
    assert out.shape == (6,) and out.dtype == torch.float64
    torch.testing.assert_close(out, entropy(p, base=2))
    # the NLL of actual images, summed from torch's log-probabilities
    images = Categorical(probs=p[0]).sample((3, P))  # (3, P) levels
    nll = -Categorical(probs=p[0]).log_prob(images).sum(-1)  # (3,) nats
    torch.testing.assert_close(bits_per_dim(nll, P), -(p[0].log2()[images]).mean(-1))
    assert bits_per_dim(torch.tensor([1.0], dtype=torch.float32), 1).dtype == torch.float32


@pytest.mark.parametrize(
    "nll, num_dims, message",
    [
        (1.0, 0, "num_dims"),
        (1.0, 2.5, "num_dims"),
        (1.0, True, "num_dims"),
        (float("nan"), 784, "nll"),
        ("87", 784, "nll"),
        (torch.tensor([87]), 784, "floating-point"),
    ],
)
def test_bits_per_dim_rejects_bad_input(nll, num_dims, message):
    with pytest.raises(VaelibError, match=message):
        bits_per_dim(nll, num_dims)


# --------------------------------------------------------------- mixtures, grids


def mixture_params(dtype=torch.float64):
    weights = torch.tensor([0.4, 0.6], dtype=dtype)
    mu = torch.tensor([-2.5, 2.5], dtype=dtype)
    logvar = torch.log(torch.tensor([0.7, 0.9], dtype=dtype) ** 2)
    return weights, mu, logvar


def torch_mixture(weights, mu, logvar) -> MixtureSameFamily:
    return MixtureSameFamily(Categorical(probs=weights), Normal(mu, torch.exp(0.5 * logvar)))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_mixture_log_prob_matches_torch(shape, dtype):
    weights, mu, logvar = mixture_params(dtype)
    z = 4 * torch.randn(shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64).to(dtype)
    out = mixture_log_prob(z, weights, mu, logvar)
    assert out.shape == shape and out.dtype == dtype
    torch.testing.assert_close(out, torch_mixture(weights, mu, logvar).log_prob(z), **tol(dtype))


def test_mixture_log_prob_is_normalised_and_finite_in_far_tails():
    weights, mu, logvar = mixture_params()
    grid = torch.linspace(-12, 12, 4001, dtype=torch.float64)
    assert torch.trapezoid(mixture_log_prob(grid, weights, mu, logvar).exp(), grid).item() == pytest.approx(
        1.0, abs=1e-9
    )
    far = mixture_log_prob(torch.tensor([-100.0, 100.0], dtype=torch.float64), weights, mu, logvar)
    assert torch.isfinite(far).all()
    torch.testing.assert_close(
        far, torch_mixture(weights, mu, logvar).log_prob(torch.tensor([-100.0, 100.0], dtype=torch.float64))
    )


def test_mixture_moments_match_torch_and_quadrature():
    weights, mu, logvar = mixture_params()
    mean, var = mixture_moments(weights, mu, logvar)
    reference = torch_mixture(weights, mu, logvar)
    torch.testing.assert_close(mean, reference.mean)
    torch.testing.assert_close(var, reference.variance)
    grid = torch.linspace(-15, 15, 6001, dtype=torch.float64)
    density = mixture_log_prob(grid, weights, mu, logvar).exp()
    quad_mean = torch.trapezoid(grid * density, grid)
    torch.testing.assert_close(quad_mean, mean)
    torch.testing.assert_close(torch.trapezoid((grid - quad_mean) ** 2 * density, grid), var)


@pytest.mark.parametrize(
    "weights, mu, logvar, message",
    [
        (torch.tensor([0.5, 0.6]), torch.zeros(2), torch.zeros(2), "sum to 1"),
        (torch.tensor([1.5, -0.5]), torch.zeros(2), torch.zeros(2), "non-negative"),
        (torch.tensor([0.5, 0.5]), torch.zeros(3), torch.zeros(2), "same length"),
        (torch.tensor([[0.5, 0.5]]), torch.zeros(1, 2), torch.zeros(1, 2), "1-D"),
    ],
)
def test_mixture_rejects_bad_parameters(weights, mu, logvar, message):
    with pytest.raises(ValueError, match=message):
        mixture_log_prob(torch.zeros(3), weights, mu, logvar)
    with pytest.raises(ValueError, match=message):
        mixture_moments(weights, mu, logvar)


@pytest.mark.parametrize("shape", SHAPES)
def test_kl_on_grid_matches_closed_form_gaussian_kl(shape):
    mu_q, logvar_q = random_gaussians(shape, 1, torch.float64, seed=31)
    mu_p, logvar_p = random_gaussians(shape, 1, torch.float64, seed=32)
    logvar_q, logvar_p = logvar_q.clamp(-1, 1), logvar_p.clamp(-1, 1)  # keep both resolved by the grid
    grid = torch.linspace(-15, 15, 6001, dtype=torch.float64)
    log_q = Normal(mu_q, (0.5 * logvar_q).exp()).log_prob(grid)  # (*shape, N) by broadcasting
    log_p = Normal(mu_p, (0.5 * logvar_p).exp()).log_prob(grid)
    out = kl_on_grid(log_q, log_p, grid)
    assert out.shape == shape
    torch.testing.assert_close(out, gaussian_kl(mu_q, logvar_q, mu_p, logvar_p), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(kl_on_grid(log_q, log_q, grid), torch.zeros(shape, dtype=torch.float64))


def test_kl_on_grid_error_shrinks_with_grid_spacing():
    d = torch.float64
    p, q = (
        Normal(torch.tensor(0.0, dtype=d), torch.tensor(1.0, dtype=d)),
        Normal(torch.tensor(1.0, dtype=d), torch.tensor(2.0, dtype=d)),
    )
    exact = torch_kl(p, q)
    errors = []
    for n in (9, 13, 17, 21, 41):  # spacing 2.5 down to 0.5 on [-10, 10]
        grid = torch.linspace(-10, 10, n, dtype=d)
        errors.append((kl_on_grid(p.log_prob(grid), q.log_prob(grid), grid) - exact).abs().item())
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert errors[0] > 0.1 and errors[-1] < 1e-12


def test_kl_on_grid_support_edge_cases():
    grid = torch.linspace(0, 1, 11, dtype=torch.float64)
    uniform = torch.zeros(11, dtype=torch.float64)  # log of the density 1 on [0, 1]
    half = torch.where(grid <= 0.5, torch.full_like(grid, math.log(2.0)), torch.full_like(grid, -math.inf))
    # q = 0 where p > 0: infinite; p = 0 where q = -inf is skipped: finite
    assert kl_on_grid(uniform, half, grid).item() == math.inf
    assert math.isfinite(kl_on_grid(half, uniform, grid).item())


@pytest.mark.parametrize(
    "grid, n_values, message",
    [
        (torch.tensor([0.0, 1.0]), 2, "at least 3"),
        (torch.tensor([0.0, 2.0, 1.0]), 3, "increasing"),
        (torch.zeros(2, 3), 3, "1-D"),
        (torch.linspace(0, 1, 5), 4, "evaluated on the grid"),
    ],
)
def test_kl_on_grid_rejects_bad_grids(grid, n_values, message):
    with pytest.raises(ValueError, match=message):
        kl_on_grid(torch.zeros(n_values), torch.zeros(n_values), grid)


# ------------------------------------------------------------------ fit_gaussian

GRID = torch.linspace(-8, 8, 801, dtype=torch.float64)


def test_forward_fit_matches_the_moments_of_the_mixture():
    weights, mu, logvar = mixture_params()
    fit = fit_gaussian(lambda z: mixture_log_prob(z, weights, mu, logvar), GRID, "forward")
    assert isinstance(fit, GaussianFit)
    reference = torch_mixture(weights, mu, logvar)
    assert fit.mu.item() == pytest.approx(reference.mean.item(), abs=1e-4)
    assert fit.logvar.exp().item() == pytest.approx(reference.variance.item(), rel=1e-4)
    # the fitted KL is the quadrature KL at the fitted parameters, and it went down
    log_q = Normal(fit.mu, (0.5 * fit.logvar).exp()).log_prob(GRID)
    torch.testing.assert_close(fit.kl, kl_on_grid(reference.log_prob(GRID), log_q, GRID))
    assert fit.history.shape == (400,) and fit.kl <= fit.history[0]


def test_reverse_fit_seeks_the_mode_next_to_its_start():
    weights, mu, logvar = mixture_params()
    log_p = mixture_log_prob(GRID, weights, mu, logvar)  # values on the grid are accepted too
    mean, var = mixture_moments(weights, mu, logvar)
    for start, k in ((0.0, 1), (-2.0, 0)):
        fit = fit_gaussian(log_p, GRID, "reverse", mu0=start)
        assert abs(fit.mu - mu[k]) < 0.1
        assert abs(fit.logvar.exp() - logvar[k].exp()) < 0.1 * logvar[k].exp()
        assert fit.logvar.exp() < 0.2 * var
        # at a mode, KL(q||p) is about -log w_k: q sees only one component of weight w_k
        assert fit.kl.item() == pytest.approx(-math.log(weights[k].item()), abs=0.02)
        # and it is a minimum: nudging either parameter increases the divergence
        for d_mu, d_lv in ((0.05, 0), (-0.05, 0), (0, 0.05), (0, -0.05)):
            log_q = Normal(fit.mu + d_mu, (0.5 * (fit.logvar + d_lv)).exp()).log_prob(GRID)
            assert kl_on_grid(log_q, log_p, GRID) > fit.kl


@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_recovers_a_gaussian_target_in_both_directions(direction, dtype):
    grid = torch.linspace(-8, 8, 801, dtype=dtype)
    target = Normal(torch.tensor(1.0, dtype=dtype), torch.tensor(1.5, dtype=dtype))
    fit = fit_gaussian(target.log_prob, grid, direction, steps=300)
    assert fit.mu.dtype == dtype
    assert fit.mu.item() == pytest.approx(1.0, abs=1e-3)
    assert fit.logvar.exp().item() == pytest.approx(2.25, rel=1e-3)
    assert fit.kl.item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(direction="sideways"), "direction"),
        (dict(direction="forward", steps=0), "steps"),
    ],
)
def test_fit_gaussian_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_gaussian(Normal(0.0, 1.0).log_prob, GRID, **kwargs)


def test_fit_gaussian_rejects_log_p_of_the_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        fit_gaussian(torch.zeros(5), GRID)


def test_errors_are_vaelib_errors():
    with pytest.raises(VaelibError):
        entropy(torch.tensor([0.2, 0.2]))


# --------------------------------------------------------------------------- histogram classifier


def _histogram_reference(z_fit, y_fit, z, y, bins, limit):
    """The same classifier with numpy's histogram2d, one class at a time."""
    import numpy as np

    inner = np.linspace(-limit, limit, bins + 1)[1:-1]
    edges = np.concatenate([[-np.inf], inner, [np.inf]])
    classes = int(y_fit.max()) + 1
    counts = np.stack(
        [np.histogram2d(*z_fit[y_fit == c].double().numpy().T, bins=[edges, edges])[0] + 1 for c in range(classes)],
        -1,
    )  # (bins, bins, C)
    r = counts / counts.sum(-1, keepdims=True)
    i = np.searchsorted(inner, z[:, 0].double().numpy(), side="left")
    j = np.searchsorted(inner, z[:, 1].double().numpy(), side="left")
    r_z = r[i, j]  # (N, C)
    ce = -np.log(r_z[np.arange(len(y)), y.numpy()]).mean()
    return ce, (r_z.argmax(1) == y.numpy()).mean()


def test_histogram_classifier_matches_numpy_histogram2d():
    gen = torch.Generator().manual_seed(0)
    y_fit = torch.randint(0, 4, (3000,), generator=gen)
    centres = torch.tensor([[-1.5, -1.5], [1.5, -1.5], [-1.5, 1.5], [1.5, 1.5]])
    z_fit = centres[y_fit] + torch.randn(3000, 2, generator=gen)
    y = torch.randint(0, 4, (500,), generator=gen)
    z = centres[y] + torch.randn(500, 2, generator=gen)
    score = information.histogram_classifier(z_fit, y_fit, z, y, bins=12, limit=3.0)
    ce, accuracy = _histogram_reference(z_fit, y_fit, z, y, 12, 3.0)
    assert score.cross_entropy.item() == pytest.approx(ce, rel=1e-5)
    assert score.accuracy.item() == pytest.approx(accuracy)
    assert 0.6 < accuracy < 0.95  # overlapping classes: neither chance nor perfect


def test_histogram_classifier_separated_and_independent_codes():
    # Two classes in two distant single cells: r(y | cell) = (n_y + 1) / (n + 2) exactly.
    z_fit = torch.tensor([[-3.0, -3.0]] * 8 + [[3.0, 3.0]] * 8)
    y_fit = torch.tensor([0] * 8 + [1] * 8)
    score = information.histogram_classifier(z_fit, y_fit, z_fit, y_fit, bins=2, limit=4.0)
    assert score.accuracy.item() == 1.0
    assert score.cross_entropy.item() == pytest.approx(-math.log(9 / 10))
    # Codes independent of the labels carry no information: the bound H(y) - CE is <= 0 up to noise.
    gen = torch.Generator().manual_seed(1)
    y_fit, y = torch.randint(0, 10, (20000,), generator=gen), torch.randint(0, 10, (5000,), generator=gen)
    z_fit, z = torch.randn(20000, 2, generator=gen), torch.randn(5000, 2, generator=gen)
    score = information.histogram_classifier(z_fit, y_fit, z, y, bins=10)
    assert math.log(10) - score.cross_entropy.item() < 0.01
    assert score.accuracy.item() < 0.15


@pytest.mark.parametrize(
    "z_fit, y_fit, message",
    [
        (torch.zeros(5, 3), torch.zeros(5, dtype=torch.long), "shape \\(N, 2\\)"),
        (torch.zeros(5, 2), torch.zeros(5), "integer tensor"),
        (torch.zeros(5, 2), torch.zeros(4, dtype=torch.long), "integer tensor"),
    ],
)
def test_histogram_classifier_rejects_bad_input(z_fit, y_fit, message):
    with pytest.raises(VaelibError, match=message):
        information.histogram_classifier(z_fit, y_fit, torch.zeros(2, 2), torch.zeros(2, dtype=torch.long))
