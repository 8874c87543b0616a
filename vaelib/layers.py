"""The pieces both models are built from: the activations, a multilayer perceptron and the
normalisation of a model config (a leaf, so that :mod:`vaelib.models` and :mod:`vaelib.autoencoder`
can both import it)."""

from __future__ import annotations

from torch import nn

from . import _checks

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
    """Check a model config's fields, each by its type (``_checks.config_fields``), and store its
    sequences as tuples of ints."""
    _checks.config_fields(config)
