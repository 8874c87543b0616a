"""Pretrained models shipped inside the package, with the records of how they were made.

Each model is two files under ``vaelib/weights/``: ``<name>.pt``, a float32
state dict (no optimizer state), loadable with
``torch.load(..., weights_only=True)``, and ``<name>.json``, its record: the
model and training configs, epochs, wall time, machine, the command that
reproduces it, the per-epoch history, the test metrics and the SHA-256 of the
weight file.  ``benchmarks/pretrained.py`` trains and exports them.  A
missing or damaged record is an error that names its file, and it does not
stop the other models from loading.  (The architecture, split and published
numbers of the ``burda-*`` models are in :mod:`vaelib.burda`.)
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from .checkpoint import config_from_dict
from .devices import resolve_device
from .errors import CheckpointError, VaelibError
from .models import build_model

__all__ = ["load_pretrained", "pretrained_models"]

RECORD_KEYS = ("model_kind", "model_config", "sha256")  # what loading a model needs of its record


def _weights_dir() -> Path:
    return Path(str(resources.files("vaelib") / "weights"))


def _names() -> list[str]:
    """The shipped models: every name with a record or a weight file."""
    return sorted({path.stem for pattern in ("*.json", "*.pt") for path in _weights_dir().glob(pattern)})


def _record(name: str) -> dict:
    """The record of model ``name``, or a :class:`CheckpointError` that names its file and what is wrong."""
    path = _weights_dir() / f"{name}.json"
    if not path.is_file():
        raise CheckpointError(f"the record of {name!r} is missing: no file {path} beside its weights; reinstall vaelib")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"{path} is not a readable record ({type(err).__name__}: {err}); reinstall vaelib"
        ) from err
    missing = [key for key in RECORD_KEYS if not isinstance(record, dict) or key not in record]
    if missing:
        raise CheckpointError(f"{path} is an incomplete record: it lacks {', '.join(missing)}; reinstall vaelib")
    return record


def pretrained_models() -> dict[str, dict]:
    """The records of the shipped models, by name (see the module docstring for what a record holds).

    Raises :class:`CheckpointError` naming the file when a record is
    missing or damaged; :func:`load_pretrained` still loads the other models.
    """
    return {name: _record(name) for name in _names()}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_pretrained(name: str, device: str = "cpu") -> nn.Module:
    """The shipped model ``name``, with its trained weights, in eval mode on ``device``.

    Raises :class:`VaelibError` listing the available names for an unknown
    one, and :class:`CheckpointError` naming the file when the record is
    missing or damaged, or the weights are corrupt or their SHA-256 does not
    match the record.  Only this model's files are read.
    """
    names = _names()
    if name not in names:
        raise VaelibError(f"no pretrained model {name!r}; available: {', '.join(names) or 'none'}")
    record = _record(name)
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
