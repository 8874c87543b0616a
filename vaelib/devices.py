"""Where tensors live: ``resolve_device`` turns "auto", "cpu", "cuda", "cuda:N" or
"mps" into a ``torch.device`` that this machine has.

"auto" picks CUDA, then Apple's MPS, then the CPU.  An MPS device that is
reported available but fails a first small computation (an old macOS, a
missing operator) falls back to the CPU with a warning that says why.
"""

from __future__ import annotations

import warnings

import torch

from .errors import DeviceError

__all__ = ["resolve_device"]

_USE = "use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def _mps_works() -> str | None:
    """None when a small computation runs on MPS, else the reason it failed."""
    try:
        x = torch.ones(4, device="mps")
        (x @ x).item()
    except Exception as err:  # any failure means the same thing here: MPS is unusable
        return f"{type(err).__name__}: {err}"
    return None


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The ``torch.device`` to run on.

    ``"auto"`` gives CUDA when a GPU is present, else MPS on Apple silicon
    when it works, else the CPU.  Asking explicitly for a device this
    machine lacks raises :class:`vaelib.DeviceError`.
    """
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            failure = _mps_works()
            if failure is None:
                return torch.device("mps")
            warnings.warn(
                f"Apple's MPS backend is available but failed a first computation ({failure}); "
                "using the CPU instead. Pass device='cpu' to silence this warning.",
                stacklevel=2,
            )
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise DeviceError(f"unknown device {device!r}; {_USE}") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {device!r} was requested but this machine has no usable CUDA GPU; use device='auto' or 'cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    elif dev.type == "mps":
        if not _mps_available():
            raise DeviceError(
                f"device {device!r} was requested but Apple's MPS backend is not available here; "
                "use device='auto' or 'cpu'"
            )
    elif dev.type != "cpu":
        raise DeviceError(f"device {device!r} is not supported; {_USE}")
    return dev
