"""Checkpoints: everything needed to rebuild a model and resume its training.

A checkpoint is a ``torch.save``'d dict holding the model kind and config, the
weights, and, when it was written during training, the optimizer state, the
epoch, the training config and history, and the random-number state with the
kind of device it came from, with the vaelib version.  It is written to a
temporary file in the same directory and then renamed over the target, so an
interrupted save never destroys the previous checkpoint (and a temporary file
left by a killed process is removed by the next save); :func:`writable_path`
checks before training that the file can be written at all.  Loading uses
``weights_only=True``: a checkpoint cannot run code.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from . import _checks
from ._version import __version__
from .devices import resolve_device
from .errors import CheckpointError, VaelibError
from .models import MODELS, build_model

__all__ = ["save_checkpoint", "load_checkpoint", "load_model", "writable_path"]

FORMAT = "vaelib-checkpoint"
FORMAT_VERSION = 1
REQUIRED = ("model_kind", "model_config", "model_state")  # what every checkpoint holds besides its marker


def model_kind(model: nn.Module) -> str:
    """``"VAE"`` or ``"Autoencoder"``: the name under which a checkpoint stores the model's class."""
    for kind, (_, model_cls) in MODELS.items():
        if type(model) is model_cls:
            return kind
    raise VaelibError(f"expected a vaelib VAE or Autoencoder, got {type(model).__name__}")


def config_from_dict(kind: str, values: dict):
    """Rebuild a config of model ``kind`` ("VAE" or "Autoencoder") from a plain dict."""
    if kind not in MODELS:
        raise VaelibError(f"unknown model kind {kind!r}; expected one of {sorted(MODELS)}")
    cls = MODELS[kind][0]
    if not isinstance(values, dict):
        raise VaelibError(f"a {cls.__name__} must be given as a dict of fields, got {type(values).__name__}")
    unknown = set(values) - set(cls.__dataclass_fields__)
    if unknown:
        raise VaelibError(f"unknown {cls.__name__} fields {sorted(unknown)}; was this saved by a newer vaelib?")
    return cls(**values)


def _not_a_directory(path: Path) -> None:
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; name a checkpoint file inside it, e.g. {path / 'checkpoint.pt'}")


def writable_path(path: str | os.PathLike) -> Path:
    """``path`` as a ``Path`` once it is known that a checkpoint can be written there.

    Checks before any training, not after an epoch: that ``path`` is not a
    directory and that its directory can be created and written to.  Also
    removes the temporary files that an interrupted save (a killed process)
    left beside it.  Raises :class:`vaelib.CheckpointError` saying why not.
    """
    path = _checks.path("checkpoint", path)
    _not_a_directory(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as err:
        blocker = next((p for p in path.parents if p.is_file()), None)  # a file where a directory must be
        why = f"{blocker} is a file, not a directory" if blocker else (err.strerror or str(err))
        raise CheckpointError(
            f"cannot write the checkpoint {path}: {why}; choose a directory you can write to"
        ) from err
    remove_stale_temporaries(path)
    return path


def remove_stale_temporaries(path: str | os.PathLike) -> None:
    """Delete temporary files that an interrupted save of ``path`` (a killed process) left beside it."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **extra) -> Path:
    """Atomically write ``model`` (its kind, config and weights) and ``extra`` entries to ``path``.

    ``extra`` holds what resuming needs (``optimizer``, ``epoch``,
    ``train_config``, ``history``, ``rng_state``, ``rng_device``); values
    must be tensors, numbers, strings, or lists and dicts of them.
    """
    path = _checks.path("checkpoint", path)
    _not_a_directory(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vaelib_version": __version__,
        "torch_version": str(torch.__version__),
        "model_kind": model_kind(model),
        "model_config": asdict(model.config),
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
    remove_stale_temporaries(path)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read and verify a checkpoint; tensors are loaded onto the CPU."""
    path = _checks.path("checkpoint", path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint; name the file, e.g. {path / 'checkpoint.pt'}")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        global_name = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if global_name is None:  # bad bytes rather than a forbidden object
            raise CheckpointError(
                f"{path} is not a readable checkpoint (truncated or corrupt: {_first_line(err)}); "
                "use an earlier checkpoint or train again"
            ) from err
        # weights_only refuses anything but tensors and plain containers: a torch.save(model) file ends here.
        raise CheckpointError(
            f"{path} holds a pickled Python object ({global_name.group(1)}), not a vaelib checkpoint (was a whole "
            f"model saved with torch.save(model)?); vaelib loads only tensors and plain data, which cannot run code. "
            "Save the model with vl.fit(..., checkpoint=...), or save its state_dict()"
        ) from err
    except Exception as err:  # torch.load raises many types on bad bytes; all mean the same to the reader
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt: {type(err).__name__}: {_first_line(err)}); "
            "use an earlier checkpoint or train again"
        ) from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a vaelib checkpoint (no '{FORMAT}' marker); vaelib reads only the checkpoints that "
            "vl.fit(..., checkpoint=...) writes"
        )
    if not isinstance(state.get("format_version"), int) or state["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} uses checkpoint format {state.get('format_version')!r}; upgrade vaelib to read it"
        )
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise CheckpointError(f"{path} is an incomplete vaelib checkpoint: it lacks {', '.join(missing)}")
    return state


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved in a checkpoint, with its weights, in eval mode, on ``device``."""
    device = resolve_device(device)
    state = load_checkpoint(path)
    try:
        model = build_model(config_from_dict(state["model_kind"], state["model_config"]))
    except VaelibError as err:
        raise CheckpointError(f"{path}: {err}") from err
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
    except (RuntimeError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{path}: weights do not fit the model: {_first_line(err)}") from err


def _first_line(err: BaseException) -> str:
    """The first line of an exception's message (some have none), at most 200 characters."""
    return (str(err).splitlines() or [""])[0][:200]
