"""Export a trained VAE for the web: a JSON manifest and one binary file of weights.

The book's live lab (``book/_static/vae_lab.js``) runs the exported model in
the reader's browser, with no runtime library: the manifest says how the
layers are wired, and the weights file holds every tensor, little-endian, one
after another.  :func:`export_web` writes both; ``vaelib export-web`` is the
same from the command line.

Supported: a :class:`vaelib.VAE` with ``architecture="mlp"``, unconditional
or conditional (``num_classes > 0``), with a Bernoulli or a Gaussian decoder.
The manifest (format ``vaelib-web``, version 1) holds:

* ``model``: image shape, P, D, number of classes, hidden widths,
  activation, likelihood and, for a Gaussian decoder, the floor of a learned
  log-variance;
* ``layers``: for each network (``encoder``, ``to_mu``, ``to_logvar``,
  ``decoder``) its linear layers in order, each ``[name, in, out]``; the
  activation follows every encoder layer and every decoder layer but the
  last;
* ``tensors``: each tensor's shape and byte offset in the weights file
  (PyTorch's row-major order, a weight being (out, in));
* ``dtype`` (``float32``, or ``float16`` with ``half=True``), the file's
  name, size and SHA-256, and the vaelib version.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import _checks
from ._version import __version__
from .errors import VaelibError
from .models import GAUSSIAN_LOGVAR_FLOOR, VAE

__all__ = ["export_web", "FORMAT", "FORMAT_VERSION"]

FORMAT = "vaelib-web"
FORMAT_VERSION = 1
SUPPORTED = "a vaelib.VAE with architecture='mlp' (unconditional or conditional, with a Bernoulli or Gaussian decoder)"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# The largest finite float16; a weight beyond it would be stored as infinity.
FLOAT16_MAX = float(np.finfo(np.float16).max)


def _linears(prefix: str, module: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The (state-dict name, layer) of every nn.Linear in ``module``, in forward order."""
    if isinstance(module, nn.Linear):
        return [(prefix, module)]
    return [(f"{prefix}.{name}", layer) for name, layer in module.named_children() if isinstance(layer, nn.Linear)]


def _model(model_or_name) -> tuple[VAE, str | None, dict | None]:
    """The model to export, with its pretrained name and record when it was given by name."""
    if isinstance(model_or_name, str):
        from .pretrained import load_pretrained, pretrained_models

        return load_pretrained(model_or_name), model_or_name, pretrained_models()[model_or_name]
    model = model_or_name
    if not isinstance(model, VAE):
        raise VaelibError(f"export_web supports {SUPPORTED}, or a pretrained model's name; got {type(model).__name__}")
    if model.config.architecture != "mlp":
        raise VaelibError(
            f"export_web supports {SUPPORTED}; got a VAE with architecture={model.config.architecture!r}, "
            "whose convolutions the web lab does not run"
        )
    return model, None, None


def export_web(
    model_or_pretrained_name: nn.Module | str,
    out_dir: str | os.PathLike,
    *,
    half: bool = False,
    name: str | None = None,
    decoder_only: bool = False,
) -> Path:
    """Write ``<name>.json`` (the manifest) and ``<name>.bin`` (the weights) into ``out_dir``; returns the manifest.

    ``model_or_pretrained_name``: a :class:`vaelib.VAE` with
    ``architecture="mlp"`` (conditional or not, Bernoulli or Gaussian
    decoder), or the name of a shipped model (:func:`vaelib.pretrained_models`).
    ``half=True`` stores the weights as float16 (half the bytes; the lab's
    bounds then move by a few hundredths of a nat), else float32.
    ``name`` defaults to the pretrained name, else ``"model"``.
    ``decoder_only=True`` leaves the encoder out (a lab panel that only
    decodes, such as the CVAE's digits on demand, loads half the bytes).
    Anything else (the conv architecture, an :class:`vaelib.Autoencoder`, a
    :class:`vaelib.linear_gaussian.LinearGaussian`) raises :class:`VaelibError`
    saying what is supported.  The module docstring describes the manifest.
    """
    model, pretrained, record = _model(model_or_pretrained_name)
    name = name or pretrained or "model"
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise VaelibError(f"name must be letters, digits, '.', '_' or '-' (a file name without a suffix), got {name!r}")
    if not isinstance(half, bool) or not isinstance(decoder_only, bool):
        raise VaelibError(f"half and decoder_only must be True or False, got {half!r} and {decoder_only!r}")
    out = _checks.path("out_dir", out_dir)
    if out.exists() and not out.is_dir():
        raise VaelibError(f"out_dir {out} is a file; name a directory for {name}.json and {name}.bin")

    config = model.config
    networks = {"encoder": model.encoder, "to_mu": model.to_mu, "to_logvar": model.to_logvar, "decoder": model.decoder}
    if decoder_only:
        networks = {"decoder": model.decoder}
    layers = {net: _linears(net, module) for net, module in networks.items()}
    tensors: list[tuple[str, torch.Tensor]] = []
    for named in layers.values():
        for layer_name, layer in named:
            tensors += [(f"{layer_name}.weight", layer.weight), (f"{layer_name}.bias", layer.bias)]
    learned_logvar = config.likelihood == "gaussian" and config.learn_gaussian_logvar
    if config.likelihood == "gaussian":
        tensors.append(("x_logvar", model.x_logvar))  # log sigma_x^2 per pixel, (P,)

    dtype = np.float16 if half else np.float32
    blobs, index, offset = [], {}, 0
    for tensor_name, tensor in tensors:
        values = tensor.detach().cpu().double().numpy()
        if not np.isfinite(values).all():
            raise VaelibError(f"{tensor_name} holds NaN or infinite values; the model cannot be exported")
        if half and np.abs(values).max(initial=0.0) > FLOAT16_MAX:
            raise VaelibError(
                f"{tensor_name} holds values beyond float16's range (|w| up to {np.abs(values).max():.3g} > "
                f"{FLOAT16_MAX:.0f}); export it without half=True"
            )
        blob = values.astype(np.dtype(dtype).newbyteorder("<"))  # little-endian whatever this machine's order
        index[tensor_name] = {"shape": list(values.shape), "offset": offset}
        blobs.append(blob.tobytes())
        offset += blob.nbytes
    data = b"".join(blobs)

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "vaelib_version": __version__,
        "source": f"pretrained model {pretrained}" if pretrained else "a vaelib.VAE",
        "model": {
            "image_shape": list(config.image_shape),
            "input_dim": config.input_dim,
            "latent_dim": config.latent_dim,
            "num_classes": config.num_classes,
            "hidden_dims": list(config.hidden_dims),
            "activation": config.activation,
            "likelihood": config.likelihood,
            "gaussian_logvar_floor": GAUSSIAN_LOGVAR_FLOOR if learned_logvar else None,
        },
        "layers": {
            net: [[layer_name, layer.in_features, layer.out_features] for layer_name, layer in named]
            for net, named in layers.items()
        },
        "dtype": np.dtype(dtype).name,
        "byte_order": "little",
        "weights": {"file": f"{name}.bin", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        "tensors": index,
    }
    if record is not None:  # the shipped model's test metrics, for the lab to quote beside the reader's numbers
        manifest["metrics"] = record.get("metrics")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.bin").write_bytes(data)
    path = out / f"{name}.json"
    path.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return path
