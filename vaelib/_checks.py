"""Input checks shared by the public functions (private: the errors they raise are the API).

One rule for each kind of argument: counts (:func:`count`, which takes numpy
and torch integers), numbers (:func:`number`), a model's inputs
(:func:`inputs`: flattened, sized, finite, in [0, 1] where the likelihood or a
binarization needs it, on the model's device), labels (:func:`labels`) and
random generators (:func:`generator`).  The checks that read values
synchronise with the device, so an entry point (``objective``, ``evaluate``,
``train_epoch``, ``fit``, ...) makes them once per call, and the code that
runs at every step (a model's ``encode`` and ``decode``,
``objective(check=False)``) checks shapes only.  :func:`allocation` refuses a
request that cannot fit in the device's memory before torch tries to allocate
it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
import os
from pathlib import Path

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


def config_fields(config) -> None:
    """Check every field of a frozen config dataclass against its annotation, and normalise it in place.

    ``bool`` fields must be True or False; ``int`` fields integers >= 0, or >= ``config.minimums[name]``
    where the config sets one; ``float`` fields finite numbers (ints and floats are stored as such);
    ``tuple[int, ...]`` fields sequences of positive integers, of the annotated length where it is fixed,
    stored as tuples (so that a config built from JSON or argparse lists equals one built from tuples);
    ``str`` fields strings, one of ``config.choices[name]`` where the config lists them.  A config's own
    ``__post_init__`` adds the rules that a field's type cannot say (signs of floats, combinations).
    """
    for f in dataclasses.fields(config):
        name, value = f.name, getattr(config, f.name)
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if name in config.choices:
            choice(name, value, config.choices[name])
        elif kind == "bool":
            if not isinstance(value, bool):
                raise VaelibError(f"{name} must be True or False, got {value!r}")
        elif kind == "int":
            value = count(name, value, minimum=getattr(config, "minimums", {}).get(name, 0))
        elif kind == "float":
            value = number(name, value)
        elif kind == "str":
            value = str(value) if isinstance(value, torch.device) else value  # a device field takes either
            if not isinstance(value, str):
                raise VaelibError(f"{name} must be a string, got {value!r}")
        elif kind.startswith("tuple[int"):
            size = None if kind.endswith("...]") else kind.count("int")
            what = "a sequence of positive integers" if size is None else f"{size} positive integers"
            try:
                if isinstance(value, (str, bytes)):
                    raise VaelibError(name)
                value = tuple(count(name, v) for v in value)
            except (TypeError, VaelibError):  # not a sequence, or an entry that is not a positive integer
                raise VaelibError(f"{name} must be {what}, got {value!r}") from None
            if size is not None and len(value) != size:
                raise VaelibError(f"{name} must be {what}, got {value!r}")
        object.__setattr__(config, name, value)  # frozen dataclass: the documented way to normalise a field


def tensor(
    name: str,
    value,
    *,
    floating: bool = False,
    dtype: torch.dtype | None = None,
    what: str = "a tensor of numbers (or a list or numpy array of them)",
) -> Tensor:
    """``value`` as a tensor: a list, a numpy array or a number is converted, a tensor returned as it is.

    With ``floating``, real numbers only: integers become ``dtype`` (the default float dtype when None), since
    they cannot be sampled around or differentiated.  What holds no numbers is refused, with a message that
    says ``name`` must be ``what``.
    """
    if not isinstance(value, Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            raise VaelibError(f"{name} must be {what}, got {type(value).__name__}") from None
    if not floating or value.is_floating_point():
        return value
    if value.is_complex():
        raise VaelibError(f"{name} must hold real numbers, got dtype {value.dtype}")
    return value.to(dtype or torch.get_default_dtype())


def broadcast(advice: str = "give them one shape", *, target: tuple[int, ...] | None = None, **named: Tensor) -> None:
    """Refuse tensors whose shapes do not broadcast against each other, naming them and their shapes; with a
    ``target`` shape, refuse any whose shape does not broadcast *to* it (expanding, never growing it)."""
    if target is not None:
        for name, t in named.items():
            try:
                fits = torch.broadcast_shapes(t.shape, target) == torch.Size(target)
            except RuntimeError:
                fits = False
            if not fits:
                raise VaelibError(f"{name} must have shape {tuple(target)}{advice}, got {tuple(t.shape)}")
        return
    try:
        torch.broadcast_shapes(*(t.shape for t in named.values()))
    except RuntimeError:
        shapes = ", ".join(f"{name} {tuple(t.shape)}" for name, t in named.items())
        raise VaelibError(f"the shapes of {shapes} do not broadcast against each other; {advice}") from None


def path(name: str, value) -> Path:
    """``value`` as a :class:`~pathlib.Path`: a ``str`` or an ``os.PathLike`` (not bytes, not a number)."""
    if not isinstance(value, (str, os.PathLike)):
        raise VaelibError(f"{name} must be a path (a str or a pathlib.Path), got {value!r}")
    return Path(value)


def finite(name: str, value: Tensor) -> Tensor:
    """``value`` itself, a floating-point tensor without NaN or infinity (one pass, one synchronisation)."""
    if not isinstance(value, Tensor) or not value.is_floating_point():
        got = getattr(value, "dtype", type(value).__name__)
        raise VaelibError(f"{name} must be a floating-point torch.Tensor, got {got}")
    if value.device.type == "meta":
        raise VaelibError(f"{name} is on the meta device: it has a shape but no values; pass real data")
    if not bool(torch.isfinite(value).all()):
        raise VaelibError(f"{name} contains NaN or infinite values; clean the data first")
    return value


def reference(model) -> Tensor | None:
    """A parameter or buffer of ``model``, for its device and dtype (None for a model that has neither)."""
    if isinstance(model, torch.nn.Module):
        return next(itertools.chain(model.parameters(), model.buffers()), None)
    return None


def weights(model) -> Tensor | None:
    """:func:`reference`, refusing what is not a torch module and a model whose weights are on the meta device
    (shapes without values)."""
    if not isinstance(model, torch.nn.Module):
        raise VaelibError(
            f"model must be a torch.nn.Module such as vl.VAE or vl.Autoencoder, got {type(model).__name__}"
        )
    ref = reference(model)
    if ref is not None and ref.device.type == "meta":
        raise VaelibError(
            "the model's weights are on the meta device (shapes without values); "
            "load real weights, e.g. vl.load_model or model.to_empty(device='cpu') and load_state_dict"
        )
    return ref


def images(
    x,
    input_dim: int | None = None,
    *,
    bernoulli: bool = False,
    binarizing: bool = False,
    values: bool = True,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Validate a batch of inputs and return it flattened to (B, P).

    Accepts (B, P), (B, H, W) or (B, C, H, W) floating-point tensors of any
    precision and casts them to ``dtype`` (the model's) when given, so
    ``torch.from_numpy(a / 255.)`` (float64) works.  With ``values`` (one pass
    over the data, which synchronises with the device) also checks that every
    value is finite and, for a Bernoulli likelihood or pixels that are to be
    binarized, that they lie in [0, 1].
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
        if x.device.type == "meta":
            raise VaelibError("x is on the meta device: it has a shape but no values; pass real data")
        # One pass over the data: min and max propagate NaN, and an infinity shows up as one of them.
        lo, hi = (v.item() for v in torch.aminmax(x))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise VaelibError("x contains NaN or infinite values; clean the data before training or evaluating")
        if (bernoulli or binarizing) and (lo < 0 or hi > 1):
            needs = "binarization needs grey levels" if binarizing else "a Bernoulli likelihood needs pixels"
            advice = "" if binarizing else " or use likelihood='gaussian'"
            raise VaelibError(
                f"{needs} in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; scale the images (x / 255){advice}"
            )
    return x


def inputs(model, x, *, values: bool = True, binarizing: bool = False, same_device: bool = False) -> Tensor:
    """``x`` checked for ``model`` by :func:`images` and cast to the model's dtype.

    The pixels must lie in [0, 1] when the model's likelihood is Bernoulli
    (or when they are to be binarized).  A model on the meta device (weights
    without values) is refused; with ``same_device`` so is an ``x`` on
    another device than the model's (entry points that move ``x`` batch by
    batch leave it False).  ``x`` stays on its own device.
    """
    ref = weights(model)
    if not hasattr(model, "input_dim"):
        raise VaelibError(
            f"model must be a vaelib model (vl.VAE, vl.Autoencoder, or an nn.Module with input_dim, encode and "
            f"decode), got a {type(model).__name__} without input_dim"
        )
    bernoulli = getattr(model, "likelihood", None) == "bernoulli"
    dtype = None if ref is None else ref.dtype
    x = images(x, model.input_dim, bernoulli=bernoulli, binarizing=binarizing, values=values, dtype=dtype)
    if same_device and ref is not None and x.device != ref.device:
        raise VaelibError(
            f"x is on {x.device} but the model is on {ref.device}; move the data with x.to({str(ref.device)!r})"
        )
    return x


def as_labels(y) -> Tensor:
    """``y`` as a tensor (a list, a numpy array or an int is converted); its dtype and shape are checked by
    :func:`labels`."""
    return tensor("y", y, what="integer class labels (a tensor, a list or an int)")


def labels(y, n: int, num_classes: int, *, values: bool = True) -> Tensor | None:
    """Class labels for a conditional model: an integer tensor (n,) with values in [0, num_classes).

    ``values=False`` checks everything but the range, which needs a pass over
    the labels (a host synchronisation on a GPU).
    """
    if num_classes == 0:
        if y is not None:
            raise VaelibError("labels were given, but the model is unconditional (num_classes=0)")
        return None
    if y is None:
        raise VaelibError(f"the model is conditioned on {num_classes} classes: pass labels y (one per input)")
    y = as_labels(y)
    if y.device.type == "meta":
        raise VaelibError("y is on the meta device: it has a shape but no values; pass real labels")
    if y.is_floating_point() or y.dtype == torch.bool or y.dim() != 1:
        raise VaelibError(
            f"y must be a 1-D integer tensor of class labels, got dtype {y.dtype}, shape {tuple(y.shape)}"
        )
    if y.shape[0] != n:
        raise VaelibError(f"y holds {y.shape[0]} labels for {n} inputs; pass one label per input")
    if values and n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise VaelibError(f"labels must lie in [0, {num_classes}), got values in [{int(y.min())}, {int(y.max())}]")
    return y.long()


def model_labels(model, y, n: int, *, values: bool = True) -> Tensor | None:
    """:func:`labels` for ``model``: its ``config.num_classes`` classes (none for a model without a config)."""
    num_classes = getattr(getattr(model, "config", None), "num_classes", 0)
    return labels(y, n, num_classes, values=values)


def generator(gen: torch.Generator | None, device: torch.device | None) -> None:
    """Refuse what is not a random generator, and one on another kind of device than the draws it is to make
    (any device when ``device`` is None)."""
    if gen is not None and not isinstance(gen, torch.Generator):
        raise VaelibError(f"generator must be a torch.Generator or None, got {type(gen).__name__}")
    if gen is not None and device is not None and gen.device.type != torch.device(device).type:
        raise VaelibError(
            f"the generator is on {gen.device} but the draws are made on {device}; "
            f"create it there: torch.Generator(device={str(device)!r})"
        )


def memory(device: torch.device) -> int | None:
    """Bytes of memory behind ``device``: the GPU's, or the machine's RAM for the CPU (None when unknown)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type in ("cpu", "mps"):  # Apple's GPU shares the machine's memory
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):  # no sysconf (Windows): no estimate, no refusal
            return None
    return None


def allocation(nbytes: float, device: torch.device, what: str, advice: str) -> None:
    """Refuse, before torch allocates it, a request of about ``nbytes`` bytes that ``device`` cannot hold."""
    available = memory(device)
    if available is not None and nbytes > available:
        raise VaelibError(
            f"{what} would need at least {nbytes / 2**30:,.1f} GiB on {device}, which has "
            f"{available / 2**30:,.1f} GiB; {advice}"
        )
