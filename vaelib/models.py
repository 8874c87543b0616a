"""The VAE (chapters 4 and 5), optionally conditioned on a class label.

A frozen config dataclass describes a model completely;
:func:`vaelib.build_model` rebuilds a model from its config, which is how
checkpoints restore it.  The
parameter names (``encoder.*``, ``to_mu``, ``to_logvar``, ``decoder.*``,
``x_logvar``) are frozen: the pretrained weights shipped with vaelib rely on
them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _checks
from .elbo import bernoulli_log_likelihood
from .errors import VaelibError
from .gaussian import log_normal, reparameterize

__all__ = ["VAEConfig", "VAE"]

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU, "softplus": nn.Softplus}
ARCHITECTURES = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")
# A learned per-pixel variance is floored at this log-variance (sigma >= 0.01 on [0, 1] pixels): without a floor,
# pixels that are always 0 (MNIST's border) let sigma -> 0 and the log-density grow without bound.
GAUSSIAN_LOGVAR_FLOOR = math.log(1e-4)


def mlp(dims: list[int], activation: str | None, final_activation: bool = False) -> nn.Sequential:
    """Linear layers through ``dims`` with ``activation`` between them (and after the last if asked)."""
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if activation is not None and (i < len(dims) - 2 or final_activation):
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def normalise_config(config) -> None:
    """Check a config's choices and counts, and store sequence fields as tuples of ints.

    Tuples make configs built from lists (JSON, argparse) compare equal to,
    and hash like, configs built from tuples.  ``config.choices`` maps a
    field to its allowed values; the CLI reads the same mapping.
    """
    for f in fields(config):
        value = getattr(config, f.name)
        if f.name in config.choices:
            _checks.choice(f.name, value, config.choices[f.name])
        elif isinstance(value, (list, tuple)):
            try:
                value = tuple(_checks.count(f.name, v) for v in value)
            except VaelibError:
                raise VaelibError(f"{f.name} must be a sequence of positive integers, got {value!r}") from None
            object.__setattr__(config, f.name, value)  # frozen dataclass: the documented way to normalise a field
    if len(config.image_shape) != 3:
        raise VaelibError(f"image_shape must be (C, H, W) with positive sizes, got {config.image_shape}")
    object.__setattr__(config, "latent_dim", _checks.count("latent_dim", config.latent_dim))


@dataclass(frozen=True)
class VAEConfig:
    """Everything that defines a :class:`VAE`; saved in every checkpoint."""

    image_shape: tuple[int, int, int] = (1, 28, 28)  #: (C, H, W) of one input; P = C * H * W pixels
    latent_dim: int = 20  #: D, the size of z
    hidden_dims: tuple[int, ...] = (400,)  #: MLP hidden widths (encoder; the decoder mirrors them)
    activation: str = "relu"  #: nonlinearity between the layers
    architecture: str = "mlp"  #: "mlp", or "conv": two stride-2 convolutions each way (H, W divisible by 4)
    conv_channels: tuple[int, int] = (32, 64)  #: channels of the two convolutions when architecture="conv"
    likelihood: str = "bernoulli"  #: p(x|z): "bernoulli" (decoder gives logits) or "gaussian" (gives a mean)
    gaussian_logvar: float = 0.0  #: log sigma^2 of the Gaussian likelihood (the initial value when learned)
    learn_gaussian_logvar: bool = False  #: learn one log sigma^2 per pixel, floored at log(1e-4)
    num_classes: int = 0  #: condition encoder and decoder on a one-hot label with this many classes (0: none)

    choices: ClassVar[dict[str, tuple[str, ...]]] = {
        "activation": tuple(ACTIVATIONS),
        "architecture": ARCHITECTURES,
        "likelihood": LIKELIHOODS,
    }

    def __post_init__(self):
        normalise_config(self)
        if self.num_classes < 0:
            raise VaelibError(f"num_classes must be >= 0 (0: an unconditional VAE), got {self.num_classes}")
        if self.architecture == "conv" and (self.image_shape[1] % 4 or self.image_shape[2] % 4):
            raise VaelibError(f"the conv architecture needs H and W divisible by 4, got {self.image_shape}")
        if self.architecture == "conv" and self.num_classes:
            raise VaelibError("a conditional VAE (num_classes > 0) needs architecture='mlp'")
        if not math.isfinite(self.gaussian_logvar):
            raise VaelibError(f"gaussian_logvar must be finite, got {self.gaussian_logvar}")
        if self.learn_gaussian_logvar and self.gaussian_logvar < GAUSSIAN_LOGVAR_FLOOR:
            raise VaelibError(
                f"a learned gaussian_logvar starts at or above its floor log(1e-4) = {GAUSSIAN_LOGVAR_FLOOR:.2f}, "
                f"got {self.gaussian_logvar}"
            )

    @property
    def input_dim(self) -> int:
        """P, the number of values in one flattened input."""
        return math.prod(self.image_shape)


class VAE(nn.Module):
    """A VAE with a diagonal-Gaussian encoder ``q_phi(z|x)``, prior ``N(0, I)``
    and a Bernoulli or Gaussian decoder ``p_theta(x|z)``.

    ``encode(x) -> (mu, logvar)``; ``decode(z) -> x_param`` (logits or mean);
    ``forward(x) -> (x_param, mu, logvar)`` with one reparameterized sample.
    With ``num_classes > 0`` it is a conditional VAE (Sohn et al. 2015): the
    encoder sees ``[x, onehot(y)]`` and the decoder ``[z, onehot(y)]``, and
    every method takes the labels ``y`` (B,).

    The encoder outputs ``logvar = log sigma^2`` rather than ``sigma``: a
    linear layer's output ranges over all reals, and ``sigma = exp(logvar/2)``
    is then positive without a constraint, while the KL and the
    log-densities need ``log sigma^2`` anyway.
    """

    def __init__(self, config: VAEConfig | None = None):
        super().__init__()
        self.config = config = config or VAEConfig()
        # The model interface that vl.objective and vl.evaluate rely on (vaelib.elbo.LatentVariableModel):
        self.input_dim, self.latent_dim, self.likelihood = config.input_dim, config.latent_dim, config.likelihood
        P, D, C = config.input_dim, config.latent_dim, config.num_classes
        if config.architecture == "mlp":
            widths = [P + C, *config.hidden_dims]
            self.encoder = mlp(widths, config.activation, final_activation=True)  # (B, F)
            feat = widths[-1]
            self.decoder = mlp([D + C, *reversed(config.hidden_dims), P], config.activation)
        else:
            C_in, H, W = config.image_shape
            c1, c2 = config.conv_channels
            act = ACTIVATIONS[config.activation]
            feat = c2 * (H // 4) * (W // 4)
            self.encoder = nn.Sequential(
                nn.Unflatten(1, config.image_shape),
                nn.Conv2d(C_in, c1, 4, stride=2, padding=1),
                act(),  # (B, c1, H/2, W/2)
                nn.Conv2d(c1, c2, 4, stride=2, padding=1),
                act(),  # (B, c2, H/4, W/4)
                nn.Flatten(),
            )
            self.decoder = nn.Sequential(
                nn.Linear(D, feat),
                act(),
                nn.Unflatten(1, (c2, H // 4, W // 4)),
                nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1),
                act(),  # (B, c1, H/2, W/2)
                nn.ConvTranspose2d(c1, C_in, 4, stride=2, padding=1),  # (B, C, H, W)
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

    def _with_label(self, h: Tensor, y: Tensor | None) -> Tensor:
        """``[h, onehot(y)]`` for a conditional model (y broadcast over h's leading dims); h itself otherwise."""
        y = _checks.labels(y, h.shape[-2], self.config.num_classes)
        if y is None:
            return h
        onehot = F.one_hot(y.to(h.device), self.config.num_classes).to(h.dtype)  # (B, C)
        return torch.cat([h, onehot.expand(*h.shape[:-1], -1)], dim=-1)

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Parameters of ``q_phi(z|x)``: ``mu`` and ``logvar`` = log sigma^2, each (B, D)."""
        x = _checks.images(x, self.input_dim, values=False, dtype=self.to_mu.weight.dtype)
        h = self.encoder(self._with_label(x, y))  # (B, F)
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Parameters of ``p_theta(x|z)`` for z of shape (..., B, D): logits or means, (..., B, P)."""
        if z.shape[-1] != self.latent_dim:
            raise VaelibError(f"z has {z.shape[-1]} dimensions but the model's latent_dim is {self.latent_dim}")
        if self.config.num_classes or y is not None:
            if z.dim() < 2:
                raise VaelibError(f"z must have shape (..., B, D) to pair it with labels, got {tuple(z.shape)}")
            z = self._with_label(z, y)
        lead = z.shape[:-1]
        return self.decoder(z.reshape(-1, z.shape[-1])).reshape(*lead, self.input_dim)

    def log_likelihood(self, x: Tensor, x_param: Tensor) -> Tensor:
        """``log p_theta(x|z)`` from the decoder output; (..., P) -> (...,), nats, summed over pixels."""
        if self.likelihood == "bernoulli":
            return bernoulli_log_likelihood(x, x_param)
        logvar = self.x_logvar.clamp_min(GAUSSIAN_LOGVAR_FLOOR) if self.config.learn_gaussian_logvar else self.x_logvar
        return log_normal(x, x_param, logvar)

    def mean(self, x_param: Tensor) -> Tensor:
        """``x_hat = E[x|z]``: sigmoid of the logits, or the Gaussian mean."""
        return torch.sigmoid(x_param) if self.likelihood == "bernoulli" else x_param

    def forward(
        self, x: Tensor, y: Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One pass: encode, draw ``z = mu + sigma * eps``, decode.  Returns (x_param, mu, logvar)."""
        mu, logvar = self.encode(x, y)  # (B, D) each
        z = reparameterize(mu, logvar, generator=generator)  # (B, D)
        return self.decode(z, y), mu, logvar
