"""Pretrained models shipped inside the package, with the records of how they were made.

Each model is two files under ``vaelib/weights/``: ``<name>.pt``, a float32
state dict (no optimizer state), loadable with
``torch.load(..., weights_only=True)``, and ``<name>.json``, its record: the
model and training configs, epochs, wall time, machine, the command that
reproduces it, the per-epoch history, the test metrics and the SHA-256 of the
weight file.  ``benchmarks/pretrained.py`` trains and exports them.

The module also keeps the published numbers that the Burda et al. models are
compared with.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from .checkpoint import build_model, config_from_dict
from .devices import resolve_device
from .errors import CheckpointError, VaelibError
from .models import VAEConfig

__all__ = ["load_pretrained", "pretrained_models", "BURDA_PUBLISHED_NLL", "BURDA_N_TRAIN", "burda_config"]

# Burda, Grosse and Salakhutdinov (2016), Table 1, one stochastic layer: test NLL (nats) by training k.
BURDA_PUBLISHED_NLL = {1: 86.76, 5: 85.54, 50: 84.78}
BURDA_N_TRAIN = 59_600  # they train on the first 59,600 MNIST images and keep the last 400 for validation


def burda_config() -> VAEConfig:
    """Burda et al.'s 784-200-200-50 tanh architecture with a Bernoulli decoder."""
    return VAEConfig(latent_dim=50, hidden_dims=(200, 200), activation="tanh", likelihood="bernoulli")


def _weights_dir() -> Path:
    return Path(str(resources.files("vaelib") / "weights"))


def pretrained_models() -> dict[str, dict]:
    """The records of the shipped models, by name (see the module docstring for what a record holds)."""
    records = {}
    for path in sorted(_weights_dir().glob("*.json")):
        with open(path, encoding="utf-8") as f:
            records[path.stem] = json.load(f)
    return records


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_pretrained(name: str, device: str = "cpu") -> nn.Module:
    """The shipped model ``name``, with its trained weights, in eval mode on ``device``.

    Raises :class:`VaelibError` listing the available names for an unknown
    one, and :class:`CheckpointError` naming the file when the weights are
    corrupt or their SHA-256 does not match the record.
    """
    records = pretrained_models()
    if name not in records:
        raise VaelibError(f"no pretrained model {name!r}; available: {', '.join(sorted(records)) or 'none'}")
    record = records[name]
    path = _weights_dir() / f"{name}.pt"
    if not path.is_file():
        raise CheckpointError(f"the weights of {name!r} are missing: no file {path}; reinstall vaelib")
    digest = _sha256(path)
    if digest != record["sha256"]:
        raise CheckpointError(
            f"{path} does not match its record (SHA-256 {digest[:12]}..., expected "
            f"{record['sha256'][:12]}...): the file is corrupt or was changed; reinstall vaelib"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = build_model(config_from_dict(record["model_kind"], record["model_config"]))
        model.load_state_dict(state)
    except Exception as err:  # any failure to read or fit the weights means the file is unusable
        raise CheckpointError(
            f"{path} could not be loaded as the weights of {name!r}: {type(err).__name__}: "
            f"{(str(err).splitlines() or [''])[0][:200]}"
        ) from err
    return model.to(resolve_device(device)).eval()
