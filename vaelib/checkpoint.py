"""Checkpoints: everything needed to rebuild a model and resume its training.

A checkpoint is a ``torch.save``'d dict holding the model kind and config, the
weights, the optimizer state, the epoch, the training config and history, the
random-number state and the vaelib version.  It is written to a temporary
file in the same directory and then renamed over the target, so an
interrupted save never destroys the previous checkpoint.  Loading uses
``weights_only=True``: a checkpoint cannot run code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError
from .models import build_model, config_dict, config_from_dict, model_kind

__all__ = ["save_checkpoint", "load_checkpoint", "load_model", "FORMAT"]

FORMAT = "vaelib-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **extra) -> Path:
    """Atomically write ``model`` (its kind, config and weights) and ``extra`` entries to ``path``.

    ``extra`` holds what resuming needs (``optimizer``, ``epoch``,
    ``train_config``, ``history``, ``rng_state``); values must be tensors,
    numbers, strings, or lists and dicts of them.
    """
    from . import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vaelib_version": __version__,
        "torch_version": str(torch.__version__),
        "model_kind": model_kind(model),
        "model_config": config_dict(model.config),
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the usual permissions
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read and verify a checkpoint; tensors are loaded onto the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises many types on bad bytes; all mean the same to the reader
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt: {type(err).__name__}: {_first_line(err)}); "
            "use an earlier checkpoint or train again"
        ) from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vaelib checkpoint (no '{FORMAT}' marker); was it written by vaelib.save_checkpoint?")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} uses checkpoint format {state['format_version']}; upgrade vaelib to read it")
    return state


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved in a checkpoint, with its weights, in eval mode."""
    state = load_checkpoint(path)
    model = build_model(config_from_dict(state["model_kind"], state["model_config"]))
    restore_weights(model, state, path)
    return model.to(device).eval()


def restore_weights(model: nn.Module, state: dict, path: str | os.PathLike = "checkpoint") -> None:
    """Load a checkpoint's weights into ``model``, refusing one made for another config."""
    kind, saved = state["model_kind"], config_from_dict(state["model_kind"], state["model_config"])
    if model_kind(model) != kind or model.config != saved:
        raise CheckpointError(
            f"{path} was made for {kind}({saved}) but the model is {model_kind(model)}({model.config}); "
            "build the model from the checkpoint (vaelib.load_model) or use a matching checkpoint"
        )
    try:
        model.load_state_dict(state["model_state"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit the model: {_first_line(err)}") from err


def _first_line(err: BaseException) -> str:
    """The first line of an exception's message (some have none), at most 200 characters."""
    return (str(err).splitlines() or [""])[0][:200]
