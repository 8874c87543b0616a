"""The pieces both models are built from: the activations, a multilayer perceptron and the
normalisation of a model config (a leaf, so that :mod:`vaelib.models` and :mod:`vaelib.autoencoder`
can both import it)."""

from __future__ import annotations

from dataclasses import fields

from torch import nn

from . import _checks
from .errors import VaelibError

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU, "softplus": nn.Softplus}


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
