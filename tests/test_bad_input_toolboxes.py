"""Bad input to the chapters' toolboxes gets a clear VaelibError, or is accepted where a user would expect it.

One test (or one parametrized family) per gap that an adversarial sweep of
``vl.information``, ``vl.pca``, ``vl.autoencoder``, ``vl.linear_gaussian``,
``vl.estimators`` and ``vl.plot`` turned up: a raw torch or Python exception,
a silent NaN, or weights overwritten with NaN.  Where the fix is to accept
the input (a list, a numpy array, a float32 tensor on a float64 model), the
test checks that the result equals the one from proper tensors.
"""

import math

import numpy as np
import pytest
import torch

import vaelib as vl

NAN, INF = float("nan"), float("inf")
information, pca, estimators, plot = vl.information, vl.pca, vl.estimators, vl.plot
LinearGaussian = vl.linear_gaussian.LinearGaussian

P2 = torch.tensor([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])  # two distributions over three outcomes
JOINT = torch.tensor([[0.1, 0.2], [0.3, 0.4]])  # p(x, z)


# ------------------------------------------------------------------------------------ information


@pytest.mark.parametrize(
    "call",
    [
        lambda base: information.self_information(torch.tensor(0.5), base=base),
        lambda base: information.entropy(P2, base=base),
        lambda base: information.cross_entropy(P2, P2, base=base),
        lambda base: information.kl_divergence(P2, P2, base=base),
        lambda base: information.conditional_entropy(JOINT, base=base),
        lambda base: information.mutual_information(JOINT, base=base),
    ],
)
def test_every_base_is_a_number_other_than_one(call):
    for bad in ("2", True, NAN, -2.0):
        with pytest.raises(vl.VaelibError, match=r"base \(2 for bits, None for nats\) must be"):
            call(bad)
    with pytest.raises(vl.VaelibError, match="other than 1"):
        call(1)
    assert torch.allclose(call(np.float64(2.0)), call(2))  # a numpy number is a number


def test_self_information_refuses_a_string():
    with pytest.raises(vl.VaelibError, match="p must be a probability .* got '0.5'"):
        information.self_information("0.5")


@pytest.mark.parametrize("function", [information.cross_entropy, information.kl_divergence])
def test_distributions_that_do_not_broadcast_are_refused(function):
    with pytest.raises(vl.VaelibError, match=r"the shapes of p \(2, 3\), q \(3, 3\) do not broadcast"):
        function(P2, torch.full((3, 3), 1 / 3))
    with pytest.raises(vl.VaelibError, match="do not broadcast"):
        function(torch.zeros(0, 3), P2)


def test_kl_divergence_equals_its_two_terms_with_a_base():
    q = torch.full((3,), 1 / 3)
    expected = information.cross_entropy(P2, q, base=2) - information.entropy(P2, base=2)
    assert torch.equal(information.kl_divergence(P2, q, base=2), expected)


@pytest.mark.parametrize("function", [information.conditional_entropy, information.mutual_information])
def test_joint_tables_are_described_as_tables(function):
    with pytest.raises(vl.VaelibError, match="joint must sum to 1 over its last two dimensions"):
        function(torch.tensor([[0.5, 0.4], [0.2, 0.1]]))
    for empty in (torch.zeros(0, 2), torch.zeros(2, 0)):
        with pytest.raises(vl.VaelibError, match=r"at least one outcome of x and one of z.*got \("):
            function(empty)


@pytest.mark.parametrize("bad", [INF, NAN])
def test_gaussian_mutual_information_refuses_non_finite_covariances(bad):
    cov = torch.tensor([[1.0, 0.5], [0.5, 1.0]])
    cov[0, 0] = bad
    with pytest.raises(vl.VaelibError, match="cov contains NaN or infinite values"):
        information.gaussian_mutual_information(cov, 1)


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_bits_per_dim_refuses_non_finite_tensors_as_it_refuses_non_finite_numbers(bad):
    with pytest.raises(vl.VaelibError, match="nll contains NaN or infinite values"):
        information.bits_per_dim(torch.tensor([80.0, bad]), 784)
    with pytest.raises(vl.VaelibError, match="nll must be a finite number"):
        information.bits_per_dim(bad, 784)


GRID = torch.linspace(-1.0, 1.0, 5)


@pytest.mark.parametrize(
    "log_p, log_q, grid, message",
    [
        (torch.tensor([NAN, -1, -1, -1, -1]), torch.zeros(5), GRID, "log_p contains NaN or \\+inf"),
        (torch.zeros(5), torch.tensor([0, 0, INF, 0, 0]), GRID, "log_q contains NaN or \\+inf"),
        (torch.zeros(5), torch.zeros(5), torch.tensor([0, 1, INF, 3, 4]), "grid contains NaN or infinite"),
        (torch.zeros(5), torch.zeros(5), torch.tensor([0, 1, NAN, 3, 4]), "grid contains NaN or infinite"),
        (torch.zeros(2, 5), torch.zeros(3, 5), GRID, "do not broadcast"),
    ],
)
def test_kl_on_grid_refuses_nan_values_and_points(log_p, log_q, grid, message):
    with pytest.raises(vl.VaelibError, match=message):
        information.kl_on_grid(log_p, log_q, grid)


def test_kl_on_grid_takes_lists_and_minus_infinity():
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(GRID)
    log_q = torch.tensor([-INF, -1.0, -1.0, -1.0, -INF])  # q = 0 at the ends, where p > 0: KL = inf
    assert information.kl_on_grid(log_p.tolist(), log_p.tolist(), GRID.tolist()) == 0
    assert information.kl_on_grid(log_p, log_q, GRID) == INF


@pytest.mark.parametrize(
    "log_p, kwargs, message",
    [
        (torch.zeros(5), {"mu0": NAN}, "mu0 must be a finite number"),
        (torch.zeros(5), {"mu0": "a"}, "mu0 must be a finite number, got 'a'"),
        (torch.zeros(5), {"logvar0": INF}, "logvar0 must be a finite number"),
        (torch.tensor([0.0, NAN, 0, 0, 0]), {}, "log_p on the grid contains NaN"),
        (lambda z: z * NAN, {}, "log_p on the grid contains NaN"),
        ("abc", {}, "log_p must be a tensor of numbers"),
    ],
)
def test_fit_gaussian_refuses_bad_starts_and_nan_targets(log_p, kwargs, message):
    with pytest.raises(vl.VaelibError, match=message):
        information.fit_gaussian(log_p, GRID, steps=3, **kwargs)


def test_mixtures_take_lists():
    z = torch.linspace(-2, 2, 7)
    weights, mu, logvar = [0.5, 0.5], [0.0, 1.0], [0.0, -1.0]
    tensors = [torch.tensor(v) for v in (weights, mu, logvar)]
    assert torch.equal(
        information.mixture_log_prob(z.tolist(), weights, mu, logvar), information.mixture_log_prob(z, *tensors)
    )
    for got, expected in zip(information.mixture_moments(weights, mu, logvar), information.mixture_moments(*tensors)):
        assert torch.equal(got, expected)


def test_diagonal_gaussian_helpers_take_lists_and_refuse_mismatched_shapes():
    mu, logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.1, 0.2]])
    assert torch.equal(information.gaussian_entropy(logvar.tolist()), information.gaussian_entropy(logvar))
    assert torch.equal(
        information.gaussian_cross_entropy(mu.tolist(), logvar, [0.0, 0.0], logvar.tolist()),
        information.gaussian_cross_entropy(mu, logvar, torch.zeros(2), logvar),
    )
    with pytest.raises(vl.VaelibError, match=r"mu_p \(1, 3\).* do not broadcast"):
        information.gaussian_cross_entropy(torch.zeros(1, 3), logvar, mu, logvar)
    with pytest.raises(vl.VaelibError, match="do not broadcast"):
        information.gaussian_kl_monte_carlo(torch.zeros(4, 3), logvar, mu, logvar, 10)
    with pytest.raises(vl.VaelibError, match="generator must be a torch.Generator"):
        information.gaussian_kl_monte_carlo(mu, logvar, mu, logvar, 10, generator="x")
    int_mu = torch.zeros(1, 2, dtype=torch.long)  # integer means are numbers too
    estimate, _ = information.gaussian_kl_monte_carlo(int_mu, logvar, int_mu, logvar, 10)
    assert estimate.item() == 0.0


def test_histogram_classifier_refuses_no_codes_and_negative_labels():
    z, y = torch.randn(6, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    no_codes, no_labels = torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)
    with pytest.raises(vl.VaelibError, match="z_fit holds no codes"):
        information.histogram_classifier(no_codes, no_labels, z, y)
    with pytest.raises(vl.VaelibError, match="z holds no codes"):
        information.histogram_classifier(z, y, no_codes, no_labels)
    with pytest.raises(vl.VaelibError, match="labels must be class indices >= 0, got a minimum of -1"):
        information.histogram_classifier(z, torch.full((6,), -1), z, torch.full((6,), -1))
    with pytest.raises(vl.VaelibError, match=r"the labels of z must lie in \[0, 3\)"):
        information.histogram_classifier(z, y, z, y + 1)


def test_histogram_classifier_takes_numpy_codes():
    gen = torch.Generator().manual_seed(0)
    z, y = torch.randn(50, 2, generator=gen), torch.randint(0, 3, (50,), generator=gen)
    assert information.histogram_classifier(z.numpy(), y, z.numpy(), y) == information.histogram_classifier(z, y, z, y)


# ------------------------------------------------------------------------------------------- pca

X = torch.randn(10, 6, generator=torch.Generator().manual_seed(3))
MEAN, U, _ = pca.fit_pca(X, 3)


@pytest.mark.parametrize(
    "dims, message",
    [
        ([2.5], "each entry of dims must be an integer >= 1, got 2.5"),
        ([True], "each entry of dims must be an integer >= 1, got True"),
        ([0], "each entry of dims must be an integer >= 1, got 0"),
        (5, "dims must be a list of numbers of components"),
        (None, "dims must be a list of numbers of components"),
        ([4], r"within 1\.\.3"),
    ],
)
def test_pca_error_curve_checks_each_count(dims, message):
    with pytest.raises(vl.VaelibError, match=message):
        pca.pca_error_curve(X, MEAN, U, dims)


def test_pca_error_curve_takes_numpy_counts_and_checks_the_mean():
    assert torch.equal(pca.pca_error_curve(X, MEAN, U, np.arange(1, 4)), pca.pca_error_curve(X, MEAN, U, [1, 2, 3]))
    with pytest.raises(vl.VaelibError, match=r"mean must have shape \(6,\)"):
        pca.pca_error_curve(X, MEAN[None], U, [1, 2])


def test_pca_maps_check_their_shapes_and_take_lists_and_mixed_precision():
    with pytest.raises(vl.VaelibError, match=r"x must have shape \(\.\.\., 6\)"):
        pca.pca_encode(torch.zeros(3, 7), MEAN, U)
    with pytest.raises(vl.VaelibError, match=r"mean must have shape \(6,\)"):
        pca.pca_reconstruct(X, MEAN[None], U)
    with pytest.raises(vl.VaelibError, match=r"z must have shape \(\.\.\., 3\)"):
        pca.pca_decode(torch.zeros(3, 4), MEAN, U)
    with pytest.raises(vl.VaelibError, match=r"U must be a basis of shape \(P, D\)"):
        pca.pca_encode(X, MEAN, U[:, 0])
    assert torch.equal(pca.pca_encode(X, MEAN.tolist(), U.numpy()), pca.pca_encode(X, MEAN, U))
    x64 = X.double()  # float64 data on a float32 basis: computed in float64, as x - mean would be
    assert torch.equal(pca.pca_reconstruct(x64, MEAN, U), pca.pca_reconstruct(x64, MEAN.double(), U.double()))


def test_reconstruction_error_needs_a_batch():
    with pytest.raises(vl.VaelibError, match="x holds no examples"):
        pca.reconstruction_error(torch.zeros(0, 6), torch.zeros(0, 6))
    with pytest.raises(vl.VaelibError, match=r"x must be a batch \(B, P\)"):
        pca.reconstruction_error(torch.zeros(6), torch.ones(6))
    assert pca.reconstruction_error(X.tolist(), torch.zeros(10, 6)) == X.pow(2).sum(1).mean()


def test_principal_angles_and_fit_pca_name_the_problem():
    with pytest.raises(vl.VaelibError, match="A has no columns"):
        pca.principal_angles(torch.randn(6, 0), torch.randn(6, 2))
    with pytest.raises(vl.VaelibError, match="B has no columns"):
        pca.principal_angles(torch.randn(6, 2), torch.randn(6, 0))
    with pytest.raises(vl.VaelibError, match="A must be a floating-point tensor, got dtype torch.int64"):
        pca.principal_angles(torch.ones(6, 2, dtype=torch.long), torch.randn(6, 2))
    with pytest.raises(vl.VaelibError, match="x must be a floating-point tensor, got dtype torch.int64"):
        pca.fit_pca(torch.ones(6, 2, dtype=torch.long), 1)
    with pytest.raises(vl.VaelibError, match="x must be a torch.Tensor .* got ndarray"):
        pca.fit_pca(X.numpy(), 1)


def test_random_orthonormal_refuses_bad_dtypes_devices_and_generators():
    with pytest.raises(vl.VaelibError, match="dtype must be a floating-point torch.dtype"):
        pca.random_orthonormal(6, 3, dtype=torch.int64)
    with pytest.raises(vl.VaelibError, match="unknown device 'foo'"):
        pca.random_orthonormal(6, 3, device="foo")
    with pytest.raises(vl.VaelibError, match="generator must be a torch.Generator"):
        pca.random_orthonormal(6, 3, generator="x")
    a = pca.random_orthonormal(6, 3, generator=torch.Generator().manual_seed(0), device="cpu")
    b = pca.random_orthonormal(6, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


# ------------------------------------------------------------------------------- autoencoder toolbox


def _linear_ae() -> vl.Autoencoder:
    return vl.Autoencoder(vl.AutoencoderConfig(image_shape=(1, 4, 4), latent_dim=2, linear=True))


def _ae() -> vl.Autoencoder:
    return vl.Autoencoder(vl.AutoencoderConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,)))


def _same_weights(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("bad", [NAN, INF, 1e39])  # 1e39 is finite in float64, not in the model's float32
def test_init_linear_autoencoder_refuses_non_finite_means_and_keeps_the_weights(bad):
    model = _linear_ae()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mean = torch.zeros(16, dtype=torch.float64)
    mean[3] = bad
    with pytest.raises(vl.VaelibError, match="mean contains NaN or infinite values"):
        vl.autoencoder.init_linear_autoencoder_(model, mean)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_init_linear_autoencoder_takes_numpy_and_lists():
    mean = torch.rand(16, generator=torch.Generator().manual_seed(0))
    models = [_linear_ae() for _ in range(3)]
    for model, m in zip(models, (mean, mean.numpy(), mean.tolist())):
        vl.autoencoder.init_linear_autoencoder_(model, m, generator=torch.Generator().manual_seed(1))
    assert _same_weights(models[0], models[1]) and _same_weights(models[0], models[2])
    with pytest.raises(vl.VaelibError, match="generator must be a torch.Generator"):
        vl.autoencoder.init_linear_autoencoder_(models[0], mean, generator="x")


@pytest.mark.parametrize(
    "A, b, message",
    [
        (torch.ones(2, 2), None, "A must be invertible"),
        (torch.zeros(2, 2), None, "A must be invertible"),
        (torch.eye(2), torch.zeros(3), r"b must be a shift of shape \(2,\)"),
        (torch.tensor([[NAN, 0.0], [0.0, 1.0]]), None, "A contains NaN or infinite values"),
        (torch.eye(2), torch.tensor([INF, 0.0]), "b contains NaN or infinite values"),
        (torch.eye(3), None, r"A must be \(2, 2\)"),
    ],
)
def test_transform_code_refuses_what_it_cannot_undo(A, b, message):
    model = _ae()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(vl.VaelibError, match=message):
        vl.autoencoder.transform_code(model, A, b)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_transform_code_takes_lists():
    model = _ae()
    A, b = torch.tensor([[2.0, 1.0], [0.0, 0.5]]), torch.tensor([1.0, -1.0])
    assert _same_weights(
        vl.autoencoder.transform_code(model, A.tolist(), b.numpy()), vl.autoencoder.transform_code(model, A, b)
    )


def test_aggregate_moments_needs_codes():
    with pytest.raises(vl.VaelibError, match=r"mu must be codes of shape \(N, D\) with N >= 1"):
        vl.autoencoder.aggregate_moments(torch.zeros(0, 2))
    mu = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    for got, expected in zip(vl.autoencoder.aggregate_moments(mu.tolist()), vl.autoencoder.aggregate_moments(mu)):
        assert torch.equal(got, expected)


@pytest.mark.parametrize(
    "codes, kwargs, message",
    [
        (torch.tensor([[NAN, 0.0], [1.0, 1.0]]), {}, "codes contains NaN or infinite values"),
        (torch.tensor([[0.0, 0.0], [1.0, -INF]]), {}, "codes contains NaN or infinite values"),
        (torch.zeros(2, 2, dtype=torch.long), {}, "codes must be a floating-point tensor, got dtype torch.int64"),
        (torch.zeros(2, 2), {"width": INF}, "width must be a finite number"),
        (torch.zeros(2, 2), {"width": "a"}, "width must be a finite number"),
        (torch.zeros(2, 2), {"width": 0}, "width must be > 0"),
        (torch.zeros(2, 2), {"generator": "x"}, "generator must be a torch.Generator"),
    ],
)
def test_box_samples_refuses_bad_codes_and_widths(codes, kwargs, message):
    with pytest.raises(vl.VaelibError, match=message):
        vl.autoencoder.box_samples(codes, 3, **kwargs)


def test_box_samples_takes_lists():
    codes = torch.tensor([[0.0, 1.0], [2.0, -1.0]])
    got = vl.autoencoder.box_samples(codes.tolist(), 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(got, vl.autoencoder.box_samples(codes, 4, generator=torch.Generator().manual_seed(0)))


# ---------------------------------------------------------------------------------- linear Gaussian


@pytest.fixture
def lg() -> LinearGaussian:
    return LinearGaussian.random(4, 2, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def lg_x(lg) -> torch.Tensor:
    return lg.sample(5, generator=torch.Generator().manual_seed(1))[0]


def test_logvar_x_is_a_number_whose_exponential_is_finite(lg):
    with pytest.raises(vl.VaelibError, match="logvar_x must be a finite number, got 'a'"):
        LinearGaussian(lg.W, lg.b, "a")
    for bad in (1e6, -1e6, 701.0):
        with pytest.raises(vl.VaelibError, match=r"logvar_x must lie in \[-700, 700\]"):
            LinearGaussian(lg.W, lg.b, bad)
    with pytest.raises(vl.VaelibError, match=r"logvar_x must lie in \[-79, 79\]"):
        LinearGaussian(lg.W.float(), lg.b, 100.0)
    assert LinearGaussian(lg.W, lg.b, 700.0).var_x == math.exp(700.0)
    assert float(LinearGaussian(lg.W, lg.b, torch.tensor(0.5)).logvar_x) == 0.5  # a 0-dim tensor is a number
    with pytest.raises(vl.VaelibError, match="W must be \\(P, D\\) and b \\(P,\\) with P, D >= 1"):
        LinearGaussian(torch.zeros(4, 0, dtype=torch.float64), lg.b)


def test_a_noise_variance_too_small_for_the_evidence_is_named(lg):
    with pytest.raises(vl.VaelibError, match="not positive definite .* use a larger logvar_x"):
        LinearGaussian(lg.W, lg.b, -700.0).marginal()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scale": "a"}, "scale must be a finite number"),
        ({"scale": NAN}, "scale must be a finite number"),
        ({"dtype": torch.int64}, "dtype must be a floating-point torch.dtype"),
        ({"generator": "x"}, "generator must be a torch.Generator"),
        ({"logvar_x": 1e6}, "logvar_x must lie in"),
    ],
)
def test_random_refuses_bad_arguments(kwargs, message):
    with pytest.raises(vl.VaelibError, match=message):
        LinearGaussian.random(4, 2, **kwargs)


def test_methods_that_build_one_distribution_per_example_need_examples(lg, lg_x):
    empty = torch.zeros(0, 4, dtype=torch.float64)
    for method in (lg.log_marginal, lg.posterior_distribution):
        with pytest.raises(vl.VaelibError, match="x holds no examples"):
            method(empty)
    one = lg.posterior_distribution(lg_x[0])  # one example (P,): one distribution, not P of them
    assert one.batch_shape == () and torch.allclose(
        one.log_prob(lg_x[0, :2]), lg.posterior_distribution(lg_x).log_prob(lg_x[0, :2])[0]
    )
    with pytest.raises(vl.VaelibError, match="generator must be a torch.Generator"):
        lg.sample(3, generator="x")


def test_codes_of_another_precision_or_as_lists_are_cast(lg, lg_x):
    z = torch.tensor([[0.5, -1.0], [2.0, 0.25]], dtype=torch.float64)  # exact in float32
    assert torch.equal(lg.decode(z.float()), lg.decode(z))
    assert torch.equal(lg.decode(z.tolist()), lg.decode(z))
    zk = torch.stack([z, -z])[:, :, None].expand(2, 2, 5, 2)[:, 0]  # (2, 5, 2): K = 2 codes per input
    assert torch.equal(lg.log_joint(lg_x, zk.float()), lg.log_joint(lg_x, zk))
    mu, logvar = lg.encode(lg_x)
    mu32 = mu.float().double()  # values exact in float32
    assert torch.equal(lg.elbo(lg_x, mu32.float(), logvar), lg.elbo(lg_x, mu32, logvar))
    assert torch.equal(lg.kl_to_posterior(lg_x, mu32.float(), logvar), lg.kl_to_posterior(lg_x, mu32, logvar))


def test_a_shared_q_still_broadcasts_over_the_batch(lg, lg_x):
    mu, logvar = torch.zeros(2, dtype=torch.float64), torch.full((2,), -1.0, dtype=torch.float64)
    expanded = mu.expand(5, 2), logvar.expand(5, 2)
    for method in (lg.elbo, lg.expected_log_likelihood, lg.kl_to_posterior):
        assert torch.equal(method(lg_x, mu, logvar), method(lg_x, *expanded))
    grid = torch.randn(7, 2, dtype=torch.float64)
    assert lg.log_joint(lg_x, grid[:, None, :]).shape == (7, 5)  # (G, 1, D) against (B, P), as in chapter 3


@pytest.mark.parametrize("method", ["elbo", "expected_log_likelihood", "kl_to_posterior"])
def test_q_of_the_wrong_shape_is_refused(lg, lg_x, method):
    good = torch.zeros(5, 2, dtype=torch.float64)
    call = getattr(lg, method)
    with pytest.raises(vl.VaelibError, match=r"mu must be \(\.\.\., 2\)"):
        call(lg_x, torch.zeros(5, 3, dtype=torch.float64), good)
    with pytest.raises(vl.VaelibError, match=r"mu must have shape \(5, 2\).* got \(4, 2\)"):
        call(lg_x, torch.zeros(4, 2, dtype=torch.float64), good)
    with pytest.raises(vl.VaelibError, match=r"logvar must have shape \(5, 2\).* got \(0, 2\)"):
        call(lg_x, good, torch.zeros(0, 2, dtype=torch.float64))
    with pytest.raises(vl.VaelibError, match=r"logvar must have shape \(5, 2\).* got \(3, 5, 2\)"):
        call(lg_x, good, torch.zeros(3, 5, 2, dtype=torch.float64))  # broadcasts, but grows the batch
    with pytest.raises(vl.VaelibError, match="mu contains NaN or infinite values"):
        call(lg_x, torch.full((5, 2), NAN, dtype=torch.float64), good)


def test_log_joint_and_log_likelihood_check_shapes(lg, lg_x):
    with pytest.raises(vl.VaelibError, match=r"z must be \(\.\.\., 2\)"):
        lg.log_joint(lg_x, torch.zeros(3, 5, 3, dtype=torch.float64))
    with pytest.raises(vl.VaelibError, match=r"z must be \(\.\.\., B, D\) for x of shape \(B, P\) = \(5, 4\)"):
        lg.log_joint(lg_x, torch.zeros(3, 4, 2, dtype=torch.float64))
    with pytest.raises(vl.VaelibError, match="x and x_mean must be"):
        lg.log_likelihood(lg_x, torch.zeros(5, 5, dtype=torch.float64))


def test_em_step_refuses_data_without_spread_and_fits_float32_data_in_float64(lg, lg_x):
    for x in (lg_x[:1], lg_x[:1].expand(6, 4), torch.zeros(6, 4, dtype=torch.float64)):
        with pytest.raises(vl.VaelibError, match="noise variance is .* zero up to rounding"):
            lg.em_step(x)
    x32 = lg_x.float()
    got, expected = lg.em_step(x32), lg.em_step(x32.double())
    assert all(torch.equal(getattr(got, n), getattr(expected, n)) for n in ("W", "b", "logvar_x"))
    assert got.W.dtype == torch.float64


def test_jensen_gap_needs_samples(lg):
    with pytest.raises(vl.VaelibError, match="log_w holds no samples along dim 0"):
        vl.linear_gaussian.jensen_gap(torch.zeros(0, 3))
    with pytest.raises(vl.VaelibError, match=r"dim must be an integer in \[-2, 2\), got 5"):
        vl.linear_gaussian.jensen_gap(torch.zeros(4, 3), dim=5)
    log_w = torch.randn(4, 3)
    assert torch.equal(
        vl.linear_gaussian.jensen_gap(log_w.tolist(), np.int64(1)), vl.linear_gaussian.jensen_gap(log_w, 1)
    )


def test_fit_linear_encoder_takes_numpy_and_mixed_precision():
    gen = torch.Generator().manual_seed(2)
    x, target = torch.randn(20, 4, generator=gen, dtype=torch.float64), torch.randn(20, 2, generator=gen)
    for got, expected in zip(
        vl.linear_gaussian.fit_linear_encoder(x.numpy(), target),
        vl.linear_gaussian.fit_linear_encoder(x, target.double()),
    ):
        assert torch.equal(got, expected)
    with pytest.raises(vl.VaelibError, match="with N >= 1"):
        vl.linear_gaussian.fit_linear_encoder(torch.zeros(0, 4), torch.zeros(0, 2))


# ------------------------------------------------------------------------------------------ estimators

SIN = estimators.integrand("sin")
EPS = torch.tensor([[0.5, -1.0], [1.5, 0.25]])


@pytest.mark.parametrize("estimator", [estimators.score_function_gradient, estimators.reparameterized_gradient])
def test_estimators_take_lists_and_integer_tensors(estimator):
    mu, logvar = torch.tensor([0.0, 1.0]), torch.tensor([0.0, -1.0])
    expected = estimator(SIN, mu, logvar, eps=EPS)
    for got in (
        estimator(SIN, mu.tolist(), logvar.tolist(), eps=EPS.tolist()),
        estimator(SIN, mu.long(), logvar.long(), eps=EPS),
    ):
        assert all(torch.equal(g, e) for g, e in zip(got, expected))
    with pytest.raises(vl.VaelibError, match="f must be a function of z"):
        estimator("sin", mu, logvar)
    with pytest.raises(vl.VaelibError, match=r"f must return a torch.Tensor of shape \(1,\)"):
        estimator(lambda z: 1.0, mu, logvar)
    with pytest.raises(vl.VaelibError, match="generator must be a torch.Generator"):
        estimator(SIN, mu, logvar, generator="x")


def test_a_baseline_must_fit_fs_output():
    with pytest.raises(vl.VaelibError, match=r"baseline must be a number or broadcast to f's output \(\)"):
        estimators.score_function_gradient(SIN, torch.zeros(2), torch.zeros(2), 4, baseline=[1, 2, 3])
    with pytest.raises(vl.VaelibError, match="baseline must be a tensor of numbers"):
        estimators.score_function_gradient(SIN, torch.zeros(2), torch.zeros(2), 4, baseline=["a"])
    got = estimators.score_function_gradient(SIN, [0.0, 1.0], [0.0, 0.0], eps=EPS, baseline=[0.5, 0.5])
    expected = estimators.score_function_gradient(SIN, torch.tensor([0.0, 1.0]), torch.zeros(2), eps=EPS, baseline=0.5)
    assert all(torch.equal(g, e) for g, e in zip(got, expected))


def test_closed_forms_and_integrands_check_their_shapes():
    mu, logvar = torch.zeros(4, 2), torch.zeros(4, 3)
    for function in (estimators.gaussian_expectation, estimators.gaussian_expectation_gradient):
        with pytest.raises(vl.VaelibError, match=r"mu \(4, 2\), logvar \(4, 3\).* do not broadcast"):
            function("sin", mu, logvar)
        with pytest.raises(vl.VaelibError, match=r"a \(3,\) do not broadcast"):
            function("sin", mu, torch.zeros(4, 2), torch.zeros(3))
    with pytest.raises(vl.VaelibError, match=r"a \(3,\) does not broadcast to z \(4, 2\)"):
        estimators.integrand("sin", torch.zeros(3))(mu)
    with pytest.raises(vl.VaelibError, match="a must be a tensor of numbers"):
        estimators.integrand("sin", "a")
    with pytest.raises(vl.VaelibError, match="do not broadcast"):
        estimators.gaussian_score(torch.zeros(4, 3), mu, mu)
    a = np.array([0.5, 1.0])
    assert torch.equal(
        estimators.gaussian_expectation("exp", mu.tolist(), mu, a),
        estimators.gaussian_expectation("exp", mu, mu, torch.tensor(a)),
    )


# ---------------------------------------------------------------------------------------------- plot

IMAGES = torch.rand(5, 16)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: plot.tile(torch.zeros(0, 16)), "there are no images to draw"),
        (lambda: plot.image_grid(torch.zeros(0, 16)), "there are no images to draw"),
        (lambda: plot.tile(IMAGES, shape=(4, 4.0)), r"shape must be \(H, W\), two positive integers"),
        (lambda: plot.image_grid(IMAGES, size=-1), "size must be > 0"),
        (lambda: plot.image_grid(IMAGES, size="a"), "size must be a finite number"),
        (lambda: plot.image_rows([IMAGES], ["a"], inches=0), "inches must be > 0"),
        (lambda: plot.image_rows([torch.zeros(0, 16)], ["a"]), "the row 'a' holds no images"),
        (lambda: plot.reconstructions(IMAGES, torch.rand(5, 15)), "x and x_hat must hold images of one size"),
        (lambda: plot.reconstructions(IMAGES, torch.zeros(0, 16)), r"x_hat must be a batch of images \(N, P\)"),
        (lambda: plot.latent_scatter(torch.zeros(4)), r"z must be codes of shape \(N, D\)"),
        (lambda: plot.latent_scatter(torch.zeros(4, 1)), r"z must be codes of shape \(N, D\)"),
        (lambda: plot.latent_scatter(torch.zeros(4, 2), max_points=2.5), "max_points must be an integer >= 1"),
        (lambda: plot.latent_scatter(torch.zeros(4, 2), [1, 2]), "labels must hold one number per code"),
        (lambda: plot.manifold(torch.rand(9, 16)), r"grid must be the \(n, n, P\) output of vl.latent_grid"),
    ],
)
def test_image_plots_refuse_what_they_cannot_draw(call, message):
    with pytest.raises(vl.VaelibError, match=message):
        call()


HISTORY = [{"epoch": e, "lr": 1e-3, "train_elbo": -10.0 + e, "test_nll": 9.0 - e} for e in (1, 2)]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: plot.training_curves(HISTORY, keys=()), "keys must name at least one quantity"),
        (lambda: plot.training_curves(HISTORY, keys=["nope"]), r"has none of the quantities \['nope'\]"),
        (lambda: plot.training_curves([{"train_elbo": 1.0}]), "entry 0 of history has no 'epoch'"),
        (lambda: plot.training_curves([5]), "entry 0 of history must be a dict"),
        (lambda: plot.compare_runs({"a": [{"epoch": 1, "test_nll": 1.0}]}), "entries without 'lr'.* show_lr=False"),
        (lambda: plot.compare_runs({"a": [{"lr": 1e-3, "test_nll": 1.0}]}), "has no 'epoch'"),
        (lambda: plot.compare_runs([HISTORY]), "pass a dict of run name -> history"),
        (lambda: plot.compare_runs({"a": HISTORY}, references=[1, 2]), "references must be a dict"),
        (lambda: plot.seed_spread({"a": ["x"]}), "the values of 'a' must be numbers"),
        (lambda: plot.seed_spread({"a": 5}), "at least one value; 'a' has 5"),
        (lambda: plot.seed_spread({"a": [1.0]}, references={"r": "x"}), "references must map each label to a number"),
    ],
)
def test_history_plots_refuse_what_they_cannot_draw(call, message):
    with pytest.raises(vl.VaelibError, match=message):
        call()


def test_plots_take_what_a_user_would_pass():
    assert [ax.get_title() for ax in plot.training_curves(HISTORY, keys="elbo").axes] == ["elbo"]  # one panel
    assert len(plot.compare_runs({"a": [{"epoch": 1, "test_nll": 1.0}]}, show_lr=False).axes) == 1
    fig = plot.image_rows([IMAGES, IMAGES], [5, 7])  # a class number labels a row too
    assert [ax.get_ylabel() for ax in fig.axes] == ["5", "7"]
    assert len(plot.image_rows(torch.stack([IMAGES, IMAGES]), ["a", "b"]).axes) == 2  # rows as one tensor
    assert len(plot.latent_scatter(torch.zeros(4, 2), max_points=None).axes) == 1
    assert len(plot.seed_spread({"a": [1.0]}, references={"r": torch.tensor(1.0)}).axes) == 1
