"""The VAE (chapters 4 and 5), optionally conditioned on a class label, and :func:`build_model`.

A frozen config dataclass describes a model completely;
:func:`vaelib.build_model` builds the model a config describes (a ``VAE`` or
an ``Autoencoder``), which is how checkpoints restore it.  The parameter
names (``encoder.*``, ``to_mu``, ``to_logvar``, ``decoder.*``,
``x_logvar``) are frozen: the pretrained weights shipped with vaelib rely on
them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _checks
from .autoencoder import Autoencoder, AutoencoderConfig
from .bernoulli import bernoulli_log_likelihood
from .errors import VaelibError
from .gaussian import log_normal, reparameterize
from .layers import ACTIVATIONS, mlp, normalise_config
from .streams import STREAMS

__all__ = ["VAEConfig", "VAE", "build_model", "init_output_bias"]

ARCHITECTURES = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")
# A learned per-pixel variance is floored at this log-variance (sigma >= 0.01 on [0, 1] pixels): without a floor,
# pixels that are always 0 (MNIST's border) let sigma -> 0 and the log-density grow without bound.
GAUSSIAN_LOGVAR_FLOOR = math.log(1e-4)


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
    minimums: ClassVar[dict[str, int]] = {"latent_dim": 1}  # other int fields: >= 0

    def __post_init__(self):
        normalise_config(self)
        if self.architecture == "conv" and (self.image_shape[1] % 4 or self.image_shape[2] % 4):
            raise VaelibError(f"the conv architecture needs H and W divisible by 4, got {self.image_shape}")
        if self.architecture == "conv" and self.num_classes:
            raise VaelibError("a conditional VAE (num_classes > 0) needs architecture='mlp'")
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
        """``[h, onehot(y)]`` for a conditional model (y broadcast over h's leading dims); h itself otherwise.

        Only the labels' shape is checked here, at every step; their range is
        checked once per call by the entry points (``objective``, ``fit``, ...),
        since reading it would wait for a GPU.  On the CPU ``one_hot`` checks it anyway.
        """
        num_classes = self.config.num_classes
        y = _checks.labels(y, h.shape[-2], num_classes, values=False)
        if y is None:
            return h
        try:
            onehot = F.one_hot(y.to(h.device), num_classes).to(h.dtype)  # (B, C)
        except RuntimeError:  # a label outside [0, C), found by one_hot's own check on the CPU
            lo, hi = int(y.min()), int(y.max())  # on the CPU: no device to wait for
            if 0 <= lo and hi < num_classes:
                raise
            raise VaelibError(f"labels must lie in [0, {num_classes}), got values in [{lo}, {hi}]") from None
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


MODELS = {"VAE": (VAEConfig, VAE), "Autoencoder": (AutoencoderConfig, Autoencoder)}  # kind: (config, model)


def build_model(config, *, seed: int | None = None) -> nn.Module:
    """The model a config describes: a ``VAE`` for a :class:`VAEConfig`, an ``Autoencoder`` for an
    ``AutoencoderConfig``.

    With ``seed`` the initial weights are drawn from the "init" random stream
    of that seed (``vaelib.streams.STREAMS``) without touching torch's
    global generator; without it they come from the global generator.
    """
    for config_cls, model_cls in MODELS.values():
        if isinstance(config, config_cls):
            if seed is None:
                return model_cls(config)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_checks.count("seed", seed, minimum=0) + STREAMS["init"])
                return model_cls(config)
    raise VaelibError(f"build_model needs a VAEConfig or AutoencoderConfig, got {type(config).__name__}")


@torch.no_grad()
def init_output_bias(model: nn.Module, x: Tensor, *, check: bool = True) -> None:
    r"""Set the decoder's output bias so that it decodes the mean training image when its last hidden layer is 0.

    For a Bernoulli decoder the bias of pixel :math:`j` becomes the logit of
    the mean pixel, :math:`b_j = \log \bar x_j - \log(1 - \bar x_j)` with
    :math:`\bar x_j = \frac{1}{N} \sum_n x_{nj}` clipped to [0.001, 0.999]
    (so that pixels that are always 0 get a finite bias); for a Gaussian
    decoder it becomes :math:`\bar x_j` itself.  Burda, Grosse and
    Salakhutdinov's code starts every model so (``get_train_bias_np``); the
    decoder then needs no early epochs to learn where the strokes usually are.

    ``model``: a :class:`VAE` with ``architecture="mlp"``; ``x``: (N, P) training inputs in [0, 1].
    ``check=False`` skips the pass over the values of ``x``, for data checked already (as :func:`vaelib.fit`
    does).
    """
    if not isinstance(model, VAE) or model.config.architecture != "mlp":
        raise VaelibError(
            f"init_output_bias needs a VAE with architecture='mlp' (one output bias per pixel), "
            f"got {type(model).__name__}{'' if not isinstance(model, VAE) else ' with ' + model.config.architecture}"
        )
    x = _checks.images(x, model.input_dim, bernoulli=model.likelihood == "bernoulli", values=check)
    if x.shape[0] == 0:
        raise VaelibError("init_output_bias needs at least one training image to take the mean of")
    x_mean = x.double().mean(dim=0)  # (P,); float64: a mean over 60,000 images
    if model.likelihood == "bernoulli":
        x_mean = x_mean.clamp(1e-3, 1 - 1e-3)
        bias = torch.log(x_mean) - torch.log1p(-x_mean)  # logit
    else:
        bias = x_mean
    output = model.decoder[-1]  # the last Linear layer: (B, H) -> (B, P)
    output.bias.copy_(bias.to(output.bias))
