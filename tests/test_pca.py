"""Tests for vaelib.pca (chapter 1), against independent references:
numpy's eigendecomposition of the covariance, scipy's subspace angles,
closed-form errors, Monte Carlo, and a linear autoencoder trained by vl.fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

import vaelib
import vaelib as vl
import vaelib.checkpoint
import vaelib.data
import vaelib.train
from vaelib.errors import VaelibError


@pytest.fixture
def one_thread():
    """Tiny models train faster on one thread than with two threads' synchronisation overhead."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _low_rank_data(n=500, N=12, variances=(9.0, 4.0, 1.0), noise=0.05, seed=0, dtype=torch.float64):
    """x = offset + W z + noise with orthonormal W (N, K): the principal subspace is span(W) (for small noise)."""
    g = torch.Generator().manual_seed(seed)
    K = len(variances)
    W, _ = torch.linalg.qr(torch.randn(N, K, generator=g, dtype=dtype))
    z = torch.randn(n, K, generator=g, dtype=dtype) * torch.tensor(variances, dtype=dtype).sqrt()
    offset = torch.randn(N, generator=g, dtype=dtype)
    return offset + z @ W.T + noise * torch.randn(n, N, generator=g, dtype=dtype), W


# ---------------------------------------------------------------- fit_pca


def test_fit_pca_matches_numpy_covariance_eigendecomposition():
    x, _ = _low_rank_data(n=300, N=10, variances=(5.0, 3.0, 2.0, 1.0), noise=0.3)
    M = 4
    mean, U, ev = vl.pca.fit_pca(x, M)
    xn = x.numpy()
    evals, evecs = np.linalg.eigh(np.cov(xn, rowvar=False))  # ascending, divisor n - 1
    evals, evecs = evals[::-1][:M], evecs[:, ::-1][:, :M]
    np.testing.assert_allclose(mean.numpy(), xn.mean(0), atol=1e-12)
    np.testing.assert_allclose(ev.numpy(), evals, rtol=1e-10)
    # eigenvectors agree up to sign: |<u_j, v_j>| = 1
    np.testing.assert_allclose(np.abs(np.sum(U.numpy() * evecs, 0)), np.ones(M), atol=1e-8)


def test_fit_pca_shapes_orthonormality_order_and_sign_convention():
    x, _ = _low_rank_data(n=200, N=15, noise=0.2, dtype=torch.float32)
    mean, U, ev = vl.pca.fit_pca(x, 5)
    assert mean.shape == (15,) and U.shape == (15, 5) and ev.shape == (5,)
    assert U.dtype == torch.float32
    torch.testing.assert_close(U.T @ U, torch.eye(5), atol=1e-5, rtol=0)
    assert torch.all(ev[:-1] >= ev[1:])
    pivots = U.abs().argmax(0)
    assert torch.all(U[pivots, torch.arange(5)] > 0)


def test_fit_pca_rejects_bad_input():
    x = torch.randn(10, 4)
    with pytest.raises(VaelibError):
        vl.pca.fit_pca(x, 0)
    with pytest.raises(VaelibError):
        vl.pca.fit_pca(x, 5)
    with pytest.raises(VaelibError):
        vl.pca.fit_pca(torch.randn(1, 4), 1)
    with pytest.raises(VaelibError):
        vl.pca.fit_pca(torch.arange(12).reshape(3, 4), 1)


# ---------------------------------------------------------------- reconstruction


def test_training_error_is_sum_of_discarded_eigenvalues():
    # On the fitted data, (1/n) sum_i ||x_i - x_hat_i||^2 = ((n - 1) / n) * sum_{j > M} lambda_j.
    x, _ = _low_rank_data(n=400, N=12, noise=0.4)
    n, N = x.shape
    _, _, ev_all = vl.pca.fit_pca(x, N)
    for M in (1, 3, 7):
        mean, U, _ = vl.pca.fit_pca(x, M)
        err = vl.pca.reconstruction_error(x, vl.pca.pca_reconstruct(x, mean, U))
        expected = (n - 1) / n * ev_all[M:].sum()
        torch.testing.assert_close(err, expected, rtol=1e-10, atol=0)


def test_pca_beats_random_subspaces_of_the_same_dimension():
    x, _ = _low_rank_data(n=300, N=10, noise=0.5)
    mean, U, _ = vl.pca.fit_pca(x, 3)
    best = vl.pca.reconstruction_error(x, vl.pca.pca_reconstruct(x, mean, U))
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        Q = vl.pca.random_orthonormal(10, 3, generator=g, dtype=torch.float64)
        assert vl.pca.reconstruction_error(x, vl.pca.pca_reconstruct(x, mean, Q)) > best


def test_encode_decode_reconstruct_compose_and_match_projection():
    x, _ = _low_rank_data(n=50, N=8, noise=0.1)
    mean, U, _ = vl.pca.fit_pca(x, 2)
    z = vl.pca.pca_encode(x, mean, U)
    assert z.shape == (50, 2)
    x_hat = vl.pca.pca_reconstruct(x, mean, U)
    torch.testing.assert_close(x_hat, vl.pca.pca_decode(z, mean, U))
    torch.testing.assert_close(x_hat, mean + (x - mean) @ (U @ U.T))
    # the residual is orthogonal to the principal subspace
    torch.testing.assert_close((x - x_hat) @ U, torch.zeros(50, 2, dtype=x.dtype), atol=1e-10, rtol=0)


def test_reconstruction_error_reduction_and_shape_check():
    x = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, -1.0]])
    x_hat = torch.tensor([[0.0, 2.0], [1.0, 1.0], [3.0, 1.0]])
    per = vl.pca.reconstruction_error(x, x_hat, reduce=False)
    torch.testing.assert_close(per, torch.tensor([1.0, 2.0, 4.0]))
    torch.testing.assert_close(vl.pca.reconstruction_error(x, x_hat), torch.tensor(7.0 / 3.0))
    with pytest.raises(VaelibError):
        vl.pca.reconstruction_error(x, x_hat[:2])


def test_pca_error_curve_matches_separate_fits_and_decreases():
    x, _ = _low_rank_data(n=300, N=10, noise=0.3)
    x_eval, _ = _low_rank_data(n=100, N=10, noise=0.3, seed=0)
    mean, U, _ = vl.pca.fit_pca(x, 10)
    dims = [1, 2, 4, 10]
    curve = vl.pca.pca_error_curve(x_eval, mean, U, dims)
    for value, M in zip(curve, dims):
        m_M, U_M, _ = vl.pca.fit_pca(x, M)
        torch.testing.assert_close(value, vl.pca.reconstruction_error(x_eval, vl.pca.pca_reconstruct(x_eval, m_M, U_M)))
    assert torch.all(curve[:-1] >= curve[1:])
    assert curve[-1] < 1e-20  # all components: exact reconstruction
    with pytest.raises(VaelibError):
        vl.pca.pca_error_curve(x_eval, mean, U[:, :3], [4])


# ---------------------------------------------------------------- principal angles


@pytest.mark.parametrize("p,q", [(3, 3), (4, 2), (2, 5)])
def test_principal_angles_match_scipy(p, q):
    g = torch.Generator().manual_seed(p * 10 + q)
    A = torch.randn(9, p, generator=g, dtype=torch.float64)
    B = torch.randn(9, q, generator=g, dtype=torch.float64)
    angles = vl.pca.principal_angles(A, B)
    reference = np.sort(scipy.linalg.subspace_angles(A.numpy(), B.numpy()))
    assert angles.shape == (min(p, q),)
    np.testing.assert_allclose(angles.numpy(), reference, atol=1e-10)
    assert torch.all(angles[:-1] <= angles[1:])


def test_principal_angles_known_cases():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(20, 4, generator=g, dtype=torch.float64)
    # the same subspace behind a random invertible mix: all angles 0
    R = torch.randn(4, 4, generator=g, dtype=torch.float64) + 4 * torch.eye(4, dtype=torch.float64)
    torch.testing.assert_close(
        vl.pca.principal_angles(A, A @ R), torch.zeros(4, dtype=torch.float64), atol=1e-7, rtol=0
    )
    # orthogonal subspaces: all angles pi/2
    E = torch.eye(6, dtype=torch.float64)
    torch.testing.assert_close(
        vl.pca.principal_angles(E[:, :2], E[:, 2:5]), torch.full((2,), math.pi / 2, dtype=torch.float64)
    )
    # one known angle, tiny (accuracy of the sine branch) and large (cosine branch)
    for t in (1e-7, 0.3, 1.2):
        a = E[:, :2]
        b = torch.stack([E[:, 0], math.cos(t) * E[:, 1] + math.sin(t) * E[:, 2]], 1)
        torch.testing.assert_close(
            vl.pca.principal_angles(a, b), torch.tensor([0.0, t], dtype=torch.float64), atol=1e-14, rtol=1e-9
        )


def test_principal_angles_rejects_bad_shapes():
    with pytest.raises(VaelibError):
        vl.pca.principal_angles(torch.randn(5, 2), torch.randn(6, 2))
    with pytest.raises(VaelibError):
        vl.pca.principal_angles(torch.randn(2, 3), torch.randn(2, 1))


# ---------------------------------------------------------------- random bases, code transforms, moments


def test_random_orthonormal_is_orthonormal_seeded_and_isotropic(one_thread):
    Q = vl.pca.random_orthonormal(30, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(Q.T @ Q, torch.eye(4, dtype=torch.float64))
    Q2 = vl.pca.random_orthonormal(30, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.equal(Q, Q2)
    # Haar measure: E[Q Q^T] = (M / N) I; check the diagonal by averaging
    g = torch.Generator().manual_seed(0)
    P = sum(vl.pca.random_orthonormal(6, 2, generator=g, dtype=torch.float64).pow(2).sum(1) for _ in range(500)) / 500
    torch.testing.assert_close(P, torch.full((6,), 2 / 6, dtype=torch.float64), atol=0.05, rtol=0)
    with pytest.raises(VaelibError):
        vl.pca.random_orthonormal(3, 4)


@pytest.mark.parametrize("linear", [True, False])
def test_transform_code_keeps_reconstructions(linear):
    torch.manual_seed(0)
    ae = vl.Autoencoder(
        vl.AutoencoderConfig(image_shape=(1, 3, 4), latent_dim=3, hidden_dims=(8,), linear=linear)
    ).double()
    x = torch.rand(7, 12, dtype=torch.float64)
    A = torch.randn(3, 3, dtype=torch.float64) + 3 * torch.eye(3, dtype=torch.float64)
    b = torch.tensor([5.0, -2.0, 0.5], dtype=torch.float64)
    before = [p.clone() for p in ae.parameters()]
    new = vl.autoencoder.transform_code(ae, A, b)
    with torch.no_grad():
        torch.testing.assert_close(new(x), ae(x))
        torch.testing.assert_close(new.encode(x), ae.encode(x) @ A.T + b)
    assert all(torch.equal(p, q) for p, q in zip(before, ae.parameters()))  # the original is untouched
    torch.testing.assert_close(
        vl.pca.principal_angles(new.decoder[0].weight.detach(), ae.decoder[0].weight.detach()),
        torch.zeros(3, dtype=torch.float64),
        atol=1e-7,
        rtol=0,
    )


def test_transform_code_rejects_vae_and_bad_matrix():
    with pytest.raises(VaelibError):
        vl.autoencoder.transform_code(vl.VAE(vl.VAEConfig(latent_dim=2, hidden_dims=(8,))), torch.eye(2))
    with pytest.raises(VaelibError):
        vl.autoencoder.transform_code(
            vl.Autoencoder(vl.AutoencoderConfig(latent_dim=2, hidden_dims=(8,))), torch.eye(3)
        )


def test_aggregate_moments_match_monte_carlo_of_the_mixture():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(5, 2, generator=g, dtype=torch.float64) * 2
    logvar = torch.randn(5, 2, generator=g, dtype=torch.float64)
    mean, second = vl.autoencoder.aggregate_moments(mu, logvar)
    # sample the mixture (1/n) sum_i N(mu_i, diag sigma_i^2)
    K = 200_000
    i = torch.randint(0, 5, (K,), generator=g)
    z = mu[i] + (0.5 * logvar[i]).exp() * torch.randn(K, 2, generator=g, dtype=torch.float64)
    torch.testing.assert_close(mean, z.mean(0), atol=0.03, rtol=0)
    torch.testing.assert_close(second, z.pow(2).mean(0), atol=0.1, rtol=0.02)
    # point codes: plain moments
    m0, s0 = vl.autoencoder.aggregate_moments(mu)
    torch.testing.assert_close(s0 - m0.pow(2), mu.var(0, unbiased=False))


# ---------------------------------------------------------------- a linear autoencoder finds the PCA subspace


def test_init_linear_autoencoder_is_a_centred_random_projection():
    ae = vl.Autoencoder(vl.AutoencoderConfig(image_shape=(1, 2, 5), latent_dim=3, linear=True)).double()
    mean = torch.linspace(-1, 1, 10, dtype=torch.float64)
    assert vl.autoencoder.init_linear_autoencoder_(ae, mean, generator=torch.Generator().manual_seed(0)) is ae
    Q = ae.decoder[0].weight.detach()
    torch.testing.assert_close(Q.T @ Q, torch.eye(3, dtype=torch.float64))
    x = torch.randn(6, 10, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ae(x), vl.pca.pca_reconstruct(x, mean, Q))
        torch.testing.assert_close(ae.encode(mean[None]), torch.zeros(1, 3, dtype=torch.float64))
    with pytest.raises(VaelibError):
        vl.autoencoder.init_linear_autoencoder_(
            vl.Autoencoder(vl.AutoencoderConfig(latent_dim=2, hidden_dims=(8,))), torch.zeros(784)
        )


def test_linear_autoencoder_trained_by_fit_spans_the_pca_subspace(one_thread):
    x, _ = _low_rank_data(n=2000, N=20, variances=(4.0, 2.0, 1.0), noise=0.05, seed=2, dtype=torch.float32)
    M = 3
    mean, U, _ = vl.pca.fit_pca(x, M)
    torch.manual_seed(0)
    ae = vl.Autoencoder(vl.AutoencoderConfig(image_shape=(1, 4, 5), latent_dim=M, linear=True))
    vl.autoencoder.init_linear_autoencoder_(ae, x.mean(0), generator=torch.Generator().manual_seed(0))
    start = vl.pca.principal_angles(ae.decoder[0].weight.detach(), U)
    assert start.max() > math.radians(30)  # the random start is far from the answer
    for lr, epochs in ((1e-2, 10), (1e-3, 5)):
        history = vl.fit(ae, x, x, vl.TrainConfig(epochs=epochs, lr=lr, batch_size=100, device="cpu"), progress=False)
    angles = vl.pca.principal_angles(ae.decoder[0].weight.detach(), U)
    assert angles.max() < math.radians(1.0)
    # same fraction of the variance explained, to within 0.5 %
    total = vl.pca.reconstruction_error(x, x.mean(0).expand_as(x)).item()
    pca_error = vl.pca.reconstruction_error(x, vl.pca.pca_reconstruct(x, mean, U)).item()
    ae_error = -history[-1]["test_reconstruction"]
    assert abs(ae_error - pca_error) < 0.005 * total


def test_box_samples_stay_in_the_widened_box_and_cover_it():
    codes = torch.tensor([[0.0, -1.0], [2.0, 3.0], [1.0, 0.0]], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    z = vl.autoencoder.box_samples(codes, 20_000, generator=g)
    assert z.shape == (20_000, 2) and z.dtype == torch.float64
    assert torch.all(z.min(0).values >= torch.tensor([0.0, -1.0], dtype=torch.float64))
    assert torch.all(z.max(0).values <= torch.tensor([2.0, 3.0], dtype=torch.float64))
    # uniform: mean at the centre, variance (max - min)^2 / 12
    torch.testing.assert_close(z.mean(0), torch.tensor([1.0, 1.0], dtype=torch.float64), atol=0.03, rtol=0)
    torch.testing.assert_close(z.var(0), torch.tensor([4.0, 16.0], dtype=torch.float64) / 12, rtol=0.03, atol=0)
    wide = vl.autoencoder.box_samples(codes, 20_000, width=2.0, generator=g)
    torch.testing.assert_close(wide.var(0), 4 * torch.tensor([4.0, 16.0], dtype=torch.float64) / 12, rtol=0.03, atol=0)
    with pytest.raises(VaelibError):
        vl.autoencoder.box_samples(codes, 0)
