"""Input checks shared by the public functions (private: the errors they raise are the API)."""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from .errors import VaelibError


def count(name: str, value, *, minimum: int = 1) -> int:
    """``value`` as a Python int >= ``minimum``; numpy and torch integer scalars are fine, bools and floats are not."""
    if isinstance(value, Tensor) and value.dim() == 0 and not value.is_floating_point() and value.dtype != torch.bool:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise VaelibError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise VaelibError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def number(name: str, value, *, minimum: float | None = None, positive: bool = False) -> float:
    """``value`` as a finite Python float (>= ``minimum``, or > 0 with ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise VaelibError(f"{name} must be a finite number, got {value!r}")
    if positive and not value > 0:
        raise VaelibError(f"{name} must be > 0, got {value}")
    if minimum is not None and value < minimum:
        raise VaelibError(f"{name} must be >= {minimum}, got {value}")
    return float(value)


def choice(name: str, value, choices) -> None:
    if value not in choices:
        raise VaelibError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def images(
    x,
    input_dim: int | None = None,
    *,
    bernoulli: bool = False,
    values: bool = True,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Validate a batch of inputs and return it flattened to (B, P).

    Accepts (B, P), (B, H, W) or (B, C, H, W) floating-point tensors of any
    precision and casts them to ``dtype`` (the model's) when given, so
    ``torch.from_numpy(a / 255.)`` (float64) works.  With ``values`` (which
    synchronises with the device) also checks that every value is finite and,
    for a Bernoulli likelihood, that pixels lie in [0, 1].
    """
    if not isinstance(x, Tensor):
        raise VaelibError(f"x must be a torch.Tensor, got {type(x).__name__}; use torch.as_tensor(x)")
    if not torch.is_floating_point(x):
        raise VaelibError(f"x must be a floating-point tensor (e.g. x.float() / 255), got dtype {x.dtype}")
    if x.dim() in (3, 4):
        x = x.reshape(x.shape[0], -1)
    if x.dim() != 2:
        raise VaelibError(f"x must have shape (B, P) or (B, C, H, W), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise VaelibError("x holds no examples (its first dimension is 0); pass at least one input")
    if input_dim is not None and x.shape[1] != input_dim:
        raise VaelibError(
            f"x has {x.shape[1]} values per example but the model expects {input_dim}; "
            "check the data set and the model config"
        )
    if dtype is not None and x.dtype != dtype:
        x = x.to(dtype)
    if values:
        # One pass over the data: min and max propagate NaN, and an infinity shows up as one of them.
        lo, hi = (v.item() for v in torch.aminmax(x))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise VaelibError("x contains NaN or infinite values; clean the data before training or evaluating")
        if bernoulli and (lo < 0 or hi > 1):
            raise VaelibError(
                f"a Bernoulli likelihood needs pixels in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; "
                "scale the images (x / 255) or use likelihood='gaussian'"
            )
    return x


def labels(y, n: int, num_classes: int) -> Tensor:
    """Class labels for a conditional model: an integer tensor (n,) with values in [0, num_classes)."""
    if num_classes == 0:
        if y is not None:
            raise VaelibError("labels were given, but the model is unconditional (num_classes=0)")
        return None
    if y is None:
        raise VaelibError(f"the model is conditioned on {num_classes} classes: pass labels y (one per input)")
    if not isinstance(y, Tensor):
        y = torch.as_tensor(y)
    if y.is_floating_point() or y.dtype == torch.bool or y.dim() != 1:
        raise VaelibError(
            f"y must be a 1-D integer tensor of class labels, got dtype {y.dtype}, shape {tuple(y.shape)}"
        )
    if y.shape[0] != n:
        raise VaelibError(f"y holds {y.shape[0]} labels for {n} inputs; pass one label per input")
    if n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise VaelibError(f"labels must lie in [0, {num_classes}), got values in [{int(y.min())}, {int(y.max())}]")
    return y.long()
