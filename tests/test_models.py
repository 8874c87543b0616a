"""Model configs and architectures: validation, layer sizes, shapes, the
Gaussian likelihood's variance, and the errors for malformed inputs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn
from torch.distributions import Normal

import vaelib
import vaelib as vl
import vaelib.checkpoint
import vaelib.data
import vaelib.train
from vaelib.checkpoint import config_from_dict


def _linears(module: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


# ---------------------------------------------------------------- configs


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"activation": "foo"}, r"activation must be one of .*'foo'"),
        ({"likelihood": "x"}, r"likelihood must be one of .*'x'"),
        ({"architecture": "rnn"}, r"architecture must be one of"),
        ({"latent_dim": 0}, r"latent_dim must be an integer >= 1, got 0"),
        ({"latent_dim": 2.5}, r"latent_dim must be an integer >= 1, got 2.5"),
        ({"num_classes": -1}, r"num_classes must be an integer >= 0, got -1"),
        ({"num_classes": True}, r"num_classes must be an integer >= 0, got True"),
        ({"num_classes": 2.5}, r"num_classes must be an integer >= 0, got 2.5"),
        ({"learn_gaussian_logvar": "yes"}, r"learn_gaussian_logvar must be True or False, got 'yes'"),
        ({"gaussian_logvar": "a"}, r"gaussian_logvar must be a finite number, got 'a'"),
        ({"gaussian_logvar": float("nan")}, r"gaussian_logvar must be a finite number"),
        ({"hidden_dims": 8}, r"hidden_dims must be a sequence of positive integers, got 8"),
        ({"conv_channels": (8,)}, r"conv_channels must be 2 positive integers, got \(8,\)"),
        ({"image_shape": "144"}, r"image_shape must be 3 positive integers, got '144'"),
        ({"num_classes": 10, "architecture": "conv"}, r"conditional VAE .* needs architecture='mlp'"),
        ({"learn_gaussian_logvar": True, "gaussian_logvar": -20.0}, r"starts at or above its floor"),
        ({"latent_dim": -3}, r"latent_dim"),
        ({"hidden_dims": (400, 0)}, r"hidden_dims must be a sequence of positive integers"),
        ({"image_shape": (28, 28)}, r"image_shape must be 3 positive integers, got \(28, 28\)"),
        ({"image_shape": (1, 30, 30), "architecture": "conv"}, r"conv architecture needs H and W divisible by 4.*30"),
    ],
)
def test_vae_config_rejects_bad_values(kwargs, pattern):
    with pytest.raises(vl.VaelibError, match=pattern):
        vl.VAEConfig(**kwargs)


def test_conv_config_accepts_sizes_divisible_by_4_and_mlp_any_size():
    for config in (vl.VAEConfig(image_shape=(1, 32, 32), architecture="conv"), vl.VAEConfig(image_shape=(1, 30, 30))):
        model = vl.VAE(config)  # the MLP has no divisibility constraint
        x = torch.rand(3, *config.image_shape)
        x_param, mu, logvar = model(x)
        assert x_param.shape == (3, config.input_dim) and mu.shape == logvar.shape == (3, config.latent_dim)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"activation": "foo"}, r"activation must be one of .*'foo'"),
        ({"latent_dim": 0}, r"latent_dim must be an integer >= 1"),
    ],
)
def test_autoencoder_config_rejects_bad_values(kwargs, pattern):
    with pytest.raises(vl.VaelibError, match=pattern):
        vl.AutoencoderConfig(**kwargs)


def test_input_dim_is_the_product_of_the_image_shape():
    assert vl.VAEConfig().input_dim == 784
    assert vl.VAEConfig(image_shape=(3, 8, 4)).input_dim == 96
    assert vl.AutoencoderConfig(image_shape=(2, 5, 5)).input_dim == 50


# ---------------------------------------------------------------- architectures


def test_default_vae_is_784_400_20():
    model = vl.VAE()
    assert model.config == vl.VAEConfig()
    assert _linears(model.encoder) == [(784, 400)]
    assert _linears(model.to_mu) == [(400, 20)] and _linears(model.to_logvar) == [(400, 20)]
    assert _linears(model.decoder) == [(20, 400), (400, 784)]
    expected_params = (784 * 400 + 400) + 2 * (400 * 20 + 20) + (20 * 400 + 400) + (400 * 784 + 784)
    assert sum(p.numel() for p in model.parameters()) == expected_params
    # the decoder ends in logits: no nonlinearity after its last layer
    assert isinstance(model.decoder[-1], nn.Linear)
    assert isinstance(model.encoder[-1], nn.ReLU)

    x = torch.rand(5, 784)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 20)
    x_param, mu2, logvar2 = model(x)
    assert x_param.shape == (5, 784)
    assert torch.equal(mu, mu2) and torch.equal(logvar, logvar2)
    assert model.decode(torch.randn(5, 20)).shape == (5, 784)


def test_forward_uses_a_reparameterized_sample():
    model = vl.VAE()
    x = torch.rand(3, 784)
    g = torch.Generator().manual_seed(0)
    x_param, mu, logvar = model(x, generator=g)
    eps = torch.randn(3, 20, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x_param, model.decode(mu + torch.exp(0.5 * logvar) * eps))


def test_tanh_784_200_200_50_builds_the_right_layers():
    config = vl.VAEConfig(hidden_dims=(200, 200), latent_dim=50, activation="tanh")
    model = vl.VAE(config)
    assert _linears(model.encoder) == [(784, 200), (200, 200)]
    assert _linears(model.to_mu) == [(200, 50)]
    assert _linears(model.decoder) == [(50, 200), (200, 200), (200, 784)]
    activations = [type(m) for m in model.modules() if not isinstance(m, (nn.Linear, nn.Sequential, vl.VAE))]
    assert set(activations) == {nn.Tanh}
    assert len(activations) == 4  # two after the encoder's layers, two between the decoder's three
    assert isinstance(model.decoder[-1], nn.Linear)
    assert model.decode(torch.randn(2, 50)).shape == (2, 784)


def test_conv_vae_shapes_for_flat_and_image_inputs():
    config = vl.VAEConfig(architecture="conv", latent_dim=8)
    model = vl.VAE(config)
    convs = [m for m in model.encoder if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride) for c in convs] == [(1, 32, (2, 2)), (32, 64, (2, 2))]
    x = torch.rand(4, 784)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (4, 8)
    mu_img, logvar_img = model.encode(x.reshape(4, 1, 28, 28))
    torch.testing.assert_close(mu_img, mu)
    torch.testing.assert_close(logvar_img, logvar)
    assert model.decode(mu).shape == (4, 784)
    x_param, _, _ = model(x.reshape(4, 1, 28, 28))
    assert x_param.shape == (4, 784)


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_decode_accepts_samples_by_batch_by_latent(architecture):
    config = vl.VAEConfig(image_shape=(1, 8, 8), latent_dim=3, hidden_dims=(16,), architecture=architecture)
    model = vl.VAE(config)
    z = torch.randn(5, 4, 3)  # (K, B, D)
    out = model.decode(z)
    assert out.shape == (5, 4, 64)
    for k in range(5):
        torch.testing.assert_close(out[k], model.decode(z[k]))
    assert model.decode(torch.randn(2, 5, 4, 3)).shape == (2, 5, 4, 64)


def test_autoencoder_shapes_and_linear_case():
    model = vl.Autoencoder(vl.AutoencoderConfig(latent_dim=2, hidden_dims=(64,)))
    assert _linears(model.encoder) == [(784, 64), (64, 2)]
    assert _linears(model.decoder) == [(2, 64), (64, 784)]
    x = torch.rand(3, 784)
    assert model.encode(x).shape == (3, 2)
    assert model(x).shape == (3, 784)
    linear = vl.Autoencoder(vl.AutoencoderConfig(latent_dim=5, linear=True))
    assert _linears(linear.encoder) == [(784, 5)] and _linears(linear.decoder) == [(5, 784)]
    assert all(isinstance(m, (nn.Linear, nn.Sequential, vl.Autoencoder)) for m in linear.modules())


# ---------------------------------------------------------------- Gaussian likelihood


def test_gaussian_likelihood_with_fixed_variance_is_a_buffer():
    config = vl.VAEConfig(
        image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,), likelihood="gaussian", gaussian_logvar=-2.0
    )
    model = vl.VAE(config)
    buffers, params = dict(model.named_buffers()), dict(model.named_parameters())
    assert "x_logvar" in buffers and "x_logvar" not in params
    assert torch.equal(model.x_logvar, torch.full((16,), -2.0))
    assert not model.x_logvar.requires_grad
    x, mean = torch.rand(3, 16), torch.rand(3, 16)
    expected = Normal(mean, torch.exp(torch.tensor(-1.0))).log_prob(x).sum(-1)
    torch.testing.assert_close(model.log_likelihood(x, mean), expected)
    assert torch.equal(model.mean(mean), mean)  # the decoder gives the mean itself


def test_gaussian_likelihood_with_learned_variance_gets_gradients():
    config = vl.VAEConfig(
        image_shape=(1, 4, 4),
        latent_dim=2,
        hidden_dims=(8,),
        likelihood="gaussian",
        gaussian_logvar=0.5,
        learn_gaussian_logvar=True,
    )
    model = vl.VAE(config)
    params = dict(model.named_parameters())
    assert "x_logvar" in params and isinstance(model.x_logvar, nn.Parameter)
    assert "x_logvar" not in dict(model.named_buffers())
    assert torch.equal(model.x_logvar.detach(), torch.full((16,), 0.5))
    x = torch.rand(8, 16)
    (-vl.objective(model, x, generator=torch.Generator().manual_seed(0)).objective.mean()).backward()
    assert model.x_logvar.grad is not None
    assert model.x_logvar.grad.shape == (16,)
    assert (model.x_logvar.grad != 0).all()
    # the per-pixel variance is used pixel by pixel
    with torch.no_grad():
        model.x_logvar.copy_(torch.linspace(-1, 1, 16))
    mean = torch.rand(8, 16)
    expected = Normal(mean, torch.exp(0.5 * torch.linspace(-1, 1, 16))).log_prob(x).sum(-1)
    torch.testing.assert_close(model.log_likelihood(x, mean), expected)


def test_bernoulli_model_mean_is_the_sigmoid_of_the_logits():
    model = vl.VAE(vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,)))
    logits = torch.randn(3, 16)
    torch.testing.assert_close(model.mean(logits), 1 / (1 + torch.exp(-logits)))
    assert not hasattr(model, "x_logvar")


# ---------------------------------------------------------------- build_model


@pytest.mark.parametrize(
    "config",
    [
        vl.VAEConfig(),
        vl.VAEConfig(
            image_shape=(1, 8, 8),
            latent_dim=3,
            hidden_dims=(16, 8),
            activation="elu",
            likelihood="gaussian",
            learn_gaussian_logvar=True,
        ),
        vl.VAEConfig(image_shape=(1, 8, 8), architecture="conv", conv_channels=(4, 8)),
        vl.AutoencoderConfig(latent_dim=3, linear=True),
        vl.AutoencoderConfig(image_shape=(1, 6, 6), hidden_dims=(10,), activation="gelu"),
    ],
)
def test_build_model_rebuilds_an_equal_model(config):
    model = vl.build_model(config)
    assert type(model) is (vl.VAE if isinstance(config, vl.VAEConfig) else vl.Autoencoder)
    assert model.config == config
    again = vl.build_model(model.config)
    assert again.config == config
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in again.state_dict().items()} == shapes
    again.load_state_dict(model.state_dict())  # strict: same names and shapes
    # the plain-dict round trip used by checkpoints (lists come back as tuples)
    as_dict = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}
    kind = "VAE" if isinstance(config, vl.VAEConfig) else "Autoencoder"
    assert config_from_dict(kind, as_dict) == config


def test_build_model_rejects_other_objects():
    with pytest.raises(vl.VaelibError, match="VAEConfig or AutoencoderConfig.*dict"):
        vl.build_model({"latent_dim": 2})
    with pytest.raises(vl.VaelibError, match="unknown VAEConfig fields"):
        config_from_dict("VAE", {"latent_dim": 2, "depth": 3})
    with pytest.raises(vl.VaelibError, match="unknown model kind"):
        config_from_dict("GAN", {})


def test_configs_given_lists_equal_configs_given_tuples():
    """A config built from lists (as JSON or argparse give them) must equal the tuple one,
    or a checkpoint's config (always rebuilt with tuples) never matches its model."""
    from_lists = vl.VAEConfig(image_shape=[1, 4, 4], latent_dim=2, hidden_dims=[8])
    assert from_lists == vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,))
    hash(from_lists)  # a frozen config is hashable


# ---------------------------------------------------------------- malformed inputs


@pytest.mark.parametrize("model_cls, config", [(vl.VAE, vl.VAEConfig()), (vl.Autoencoder, vl.AutoencoderConfig())])
def test_wrong_inputs_raise_errors_naming_the_problem(model_cls, config):
    model = model_cls(config)
    with pytest.raises(vl.VaelibError, match=r"x has 700 values per example but the model expects 784"):
        model.encode(torch.rand(2, 700))
    with pytest.raises(vl.VaelibError, match=r"floating-point.*torch.uint8"):
        model.encode(torch.zeros(2, 784, dtype=torch.uint8))
    with pytest.raises(vl.VaelibError, match=r"floating-point.*torch.int64"):
        model.encode(torch.zeros(2, 784, dtype=torch.long))
    with pytest.raises(vl.VaelibError, match=r"shape \(B, P\)"):
        model.encode(torch.rand(784))
    with pytest.raises(vl.VaelibError, match="torch.Tensor"):
        model.encode([[0.0] * 784])
    D = config.latent_dim
    with pytest.raises(vl.VaelibError, match=rf"z has {D + 1} dimensions but the model's latent_dim is {D}"):
        model.decode(torch.randn(2, D + 1))


def test_the_public_surface_follows_its_rule():
    """At most 40 top-level names; each chapter toolbox is a module whose __all__ lists its own names;
    no public name has two homes."""
    import types

    assert len(vl.__all__) <= 40
    for name in vl.__all__:
        assert hasattr(vl, name), name
    namespaces = (
        "gaussian", "information", "pca", "autoencoder", "elbo", "estimators", "linear_gaussian", "burda", "plot"
    )  # fmt: skip
    homes = {name: "vaelib" for name in vl.__all__ if name not in namespaces}
    for module in namespaces:
        assert isinstance(getattr(vl, module), types.ModuleType), module
        for name in getattr(vl, module).__all__:
            assert hasattr(getattr(vl, module), name), f"vl.{module}.{name}"
            assert name not in homes, f"{name} is public in both {homes[name]} and vl.{module}"
            homes[name] = f"vl.{module}"
