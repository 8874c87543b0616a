"""Models: the VAE and the plain autoencoder (chapters 1 and 5).

A frozen config dataclass describes each model completely; ``build_model``
rebuilds a model from its config, which is how checkpoints restore it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import Tensor, nn

from .errors import VaelibError
from .losses import bernoulli_log_likelihood, check_images, gaussian_log_likelihood, reparameterize

__all__ = ["VAEConfig", "VAE", "AutoencoderConfig", "Autoencoder", "build_model", "config_from_dict"]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU, "softplus": nn.Softplus}


def _mlp(dims: list[int], activation: str | None, final_activation: bool = False) -> nn.Sequential:
    """Linear layers through ``dims`` with ``activation`` between them (and after the last if asked)."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if activation is not None and (i < len(dims) - 2 or final_activation):
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def _as_int_tuple(config, name: str) -> None:
    """Store a sequence field as a tuple of ints, so configs built from lists (JSON,
    argparse) compare equal to, and hash like, configs built from tuples."""
    value = getattr(config, name)
    try:
        value = tuple(int(v) for v in value)
    except TypeError:
        raise VaelibError(f"{name} must be a sequence of integers, got {value!r}") from None
    object.__setattr__(config, name, value)  # frozen dataclass: the documented way to normalise a field


def _check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise VaelibError(f"{name} must be one of {sorted(choices)}, got {value!r}")


@dataclass(frozen=True)
class VAEConfig:
    """Everything that defines a :class:`VAE`; saved in every checkpoint."""

    image_shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W) of one input; P = C * H * W pixels
    latent_dim: int = 20  # D, the size of z
    hidden_dims: tuple[int, ...] = (400,)  # MLP hidden widths (encoder; the decoder mirrors them)
    activation: str = "relu"  # nonlinearity: relu, tanh, elu, gelu or softplus
    architecture: str = "mlp"  # "mlp" or "conv" (two stride-2 convolutions each way; H, W divisible by 4)
    conv_channels: tuple[int, int] = (32, 64)  # channels of the two convolutions when architecture="conv"
    likelihood: str = "bernoulli"  # p(x|z): "bernoulli" (decoder gives logits) or "gaussian" (decoder gives a mean)
    gaussian_logvar: float = 0.0  # log sigma^2 of the Gaussian likelihood (its initial value when learned)
    learn_gaussian_logvar: bool = False  # learn one log-variance per pixel instead of fixing it

    def __post_init__(self):
        for name in ("image_shape", "hidden_dims", "conv_channels"):
            _as_int_tuple(self, name)
        _check_choice("activation", self.activation, _ACTIVATIONS)
        _check_choice("architecture", self.architecture, {"mlp", "conv"})
        _check_choice("likelihood", self.likelihood, {"bernoulli", "gaussian"})
        if self.latent_dim < 1:
            raise VaelibError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise VaelibError(f"image_shape must be (C, H, W) with positive sizes, got {self.image_shape}")
        if any(h < 1 for h in self.hidden_dims):
            raise VaelibError(f"hidden_dims must be positive, got {self.hidden_dims}")
        if self.architecture == "conv" and (self.image_shape[1] % 4 or self.image_shape[2] % 4):
            raise VaelibError(f"the conv architecture needs H and W divisible by 4, got {self.image_shape}")

    @property
    def input_dim(self) -> int:
        """P, the number of values in one flattened input."""
        return math.prod(self.image_shape)


class VAE(nn.Module):
    """A VAE with a diagonal-Gaussian encoder ``q_phi(z|x)``, prior ``N(0, I)``
    and a Bernoulli or Gaussian decoder ``p_theta(x|z)``.

    ``encode(x) -> (mu, logvar)``; ``decode(z) -> x_param`` (logits or mean);
    ``forward(x) -> (x_param, mu, logvar)`` with one reparameterized sample.
    """

    def __init__(self, config: VAEConfig | None = None):
        super().__init__()
        self.config = config = config or VAEConfig()
        P, D = config.input_dim, config.latent_dim
        if config.architecture == "mlp":
            widths = [P, *config.hidden_dims]
            self.encoder = _mlp(widths, config.activation, final_activation=True)  # (B, F)
            feat = widths[-1]
            self.decoder = _mlp([D, *reversed(config.hidden_dims), P], config.activation)
        else:
            C, H, W = config.image_shape
            c1, c2 = config.conv_channels
            act = _ACTIVATIONS[config.activation]
            self._conv_shape = (c2, H // 4, W // 4)
            feat = c2 * (H // 4) * (W // 4)
            self.encoder = nn.Sequential(
                nn.Unflatten(1, config.image_shape),
                nn.Conv2d(C, c1, 4, stride=2, padding=1), act(),  # (B, c1, H/2, W/2)
                nn.Conv2d(c1, c2, 4, stride=2, padding=1), act(),  # (B, c2, H/4, W/4)
                nn.Flatten(),
            )
            self.decoder = nn.Sequential(
                nn.Linear(D, feat), act(),
                nn.Unflatten(1, self._conv_shape),
                nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), act(),  # (B, c1, H/2, W/2)
                nn.ConvTranspose2d(c1, C, 4, stride=2, padding=1),  # (B, C, H, W)
                nn.Flatten(),
            )
        self.to_mu = nn.Linear(feat, D)
        self.to_logvar = nn.Linear(feat, D)
        if config.likelihood == "gaussian":
            logvar = torch.full((P,), float(config.gaussian_logvar))
            if config.learn_gaussian_logvar:
                self.x_logvar = nn.Parameter(logvar)
            else:
                self.register_buffer("x_logvar", logvar)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Parameters of ``q_phi(z|x)``: ``mu`` and ``logvar`` = log sigma^2, each (B, D)."""
        x = check_images(x, self.config.input_dim, values=False)
        h = self.encoder(x)  # (B, F)
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: Tensor) -> Tensor:
        """Parameters of ``p_theta(x|z)`` for z of shape (..., D): logits or means, (..., P)."""
        if z.shape[-1] != self.config.latent_dim:
            raise VaelibError(f"z has {z.shape[-1]} dimensions but the model's latent_dim is {self.config.latent_dim}")
        lead = z.shape[:-1]
        return self.decoder(z.reshape(-1, z.shape[-1])).reshape(*lead, self.config.input_dim)

    def log_likelihood(self, x: Tensor, x_param: Tensor) -> Tensor:
        """``log p_theta(x|z)`` from the decoder output; (..., P) -> (...,), nats."""
        if self.config.likelihood == "bernoulli":
            return bernoulli_log_likelihood(x, x_param)
        return gaussian_log_likelihood(x, x_param, self.x_logvar)

    def mean(self, x_param: Tensor) -> Tensor:
        """``x_hat = E[x|z]``: sigmoid of the logits, or the Gaussian mean."""
        return torch.sigmoid(x_param) if self.config.likelihood == "bernoulli" else x_param

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """One pass: encode, draw ``z = mu + sigma * eps``, decode.  Returns (x_param, mu, logvar)."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, generator=generator)  # (B, D)
        return self.decode(z), mu, logvar


@dataclass(frozen=True)
class AutoencoderConfig:
    """Everything that defines an :class:`Autoencoder`; saved in every checkpoint."""

    image_shape: tuple[int, int, int] = (1, 28, 28)  # (C, H, W) of one input; P = C * H * W
    latent_dim: int = 2  # M, the size of the code z
    hidden_dims: tuple[int, ...] = (400,)  # hidden widths of the encoder (the decoder mirrors them)
    activation: str = "relu"  # nonlinearity between layers
    linear: bool = False  # True: e and d are single affine maps, no hidden layers (the PCA case)

    likelihood = "gaussian"  # squared error is the Gaussian log-likelihood up to a constant

    def __post_init__(self):
        for name in ("image_shape", "hidden_dims"):
            _as_int_tuple(self, name)
        _check_choice("activation", self.activation, _ACTIVATIONS)
        if self.latent_dim < 1:
            raise VaelibError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise VaelibError(f"image_shape must be (C, H, W) with positive sizes, got {self.image_shape}")

    @property
    def input_dim(self) -> int:
        return math.prod(self.image_shape)


class Autoencoder(nn.Module):
    """A deterministic autoencoder ``x_hat = d(e(x))`` trained on squared error.

    With ``linear=True``, ``e(x) = E x + b_e`` and ``d(z) = U z + b_d``: its
    optimum spans the same subspace as PCA with M components.
    """

    def __init__(self, config: AutoencoderConfig | None = None):
        super().__init__()
        self.config = config = config or AutoencoderConfig()
        P, M = config.input_dim, config.latent_dim
        hidden = () if config.linear else config.hidden_dims
        activation = None if config.linear else config.activation
        self.encoder = _mlp([P, *hidden, M], activation)
        self.decoder = _mlp([M, *reversed(hidden), P], activation)

    def encode(self, x: Tensor) -> Tensor:
        """The code ``z = e(x)``, (B, M)."""
        return self.encoder(check_images(x, self.config.input_dim, values=False))

    def decode(self, z: Tensor) -> Tensor:
        """The reconstruction ``x_hat = d(z)``, (..., P)."""
        if z.shape[-1] != self.config.latent_dim:
            raise VaelibError(f"z has {z.shape[-1]} dimensions but the model's latent_dim is {self.config.latent_dim}")
        return self.decoder(z)

    def mean(self, x_param: Tensor) -> Tensor:
        return x_param

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))


_CONFIGS = {"VAE": (VAEConfig, VAE), "Autoencoder": (AutoencoderConfig, Autoencoder)}


def config_from_dict(kind: str, values: dict):
    """Rebuild a config of model ``kind`` ("VAE" or "Autoencoder") from a plain dict."""
    if kind not in _CONFIGS:
        raise VaelibError(f"unknown model kind {kind!r}; expected one of {sorted(_CONFIGS)}")
    cls = _CONFIGS[kind][0]
    names = {f.name for f in fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise VaelibError(f"unknown {cls.__name__} fields {sorted(unknown)}; was this saved by a newer vaelib?")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def build_model(config) -> nn.Module:
    """The model a config describes: ``VAE`` for :class:`VAEConfig`, ``Autoencoder`` for :class:`AutoencoderConfig`."""
    for cls, model_cls in _CONFIGS.values():
        if isinstance(config, cls):
            return model_cls(config)
    raise VaelibError(f"build_model needs a VAEConfig or AutoencoderConfig, got {type(config).__name__}")


def model_kind(model: nn.Module) -> str:
    for kind, (_, model_cls) in _CONFIGS.items():
        if type(model) is model_cls:
            return kind
    raise VaelibError(f"expected a vaelib VAE or Autoencoder, got {type(model).__name__}")


def config_dict(config) -> dict:
    return asdict(config)
