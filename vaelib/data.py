"""Data: MNIST and Fashion-MNIST as tensors, and the three pixel modes.

Where the files live: the ``root`` argument, else the environment variable
``VAELIB_DATA``, else a per-user cache directory (``$XDG_CACHE_HOME/vaelib``
or ``~/.cache/vaelib``).  Under the root, the gzip'd (or plain) IDX files are
looked for in ``<root>/MNIST/raw/`` and ``<root>/FashionMNIST/raw/`` (the
layout torchvision uses); Fashion-MNIST is also found where Debian's
``dataset-fashion-mnist`` package puts it.  When the files are present the
network is never touched; when they are missing, torchvision downloads them
(if ``download=True``, with a timeout, removing what a failed download left
behind), and offline the error names every path searched.
"""

from __future__ import annotations

import gzip
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .devices import resolve_device
from .errors import DataError, VaelibError

__all__ = ["DATASETS", "data_root", "find_dataset", "load", "binarize"]

DATASETS = {
    # name: (folder under the root, torchvision class name, extra places to look, image shape (C, H, W))
    "mnist": ("MNIST", "MNIST", (), (1, 28, 28)),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST", ("/usr/share/datasets/fashion-mnist",), (1, 28, 28)),
}
DOWNLOAD_TIMEOUT = 30.0  # seconds a download may wait for the server before it gives up
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root``, else ``$VAELIB_DATA``, else the per-user cache."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get("VAELIB_DATA"):
        return Path(os.environ["VAELIB_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "vaelib"


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}")


def _candidates(name: str, root: Path) -> list[Path]:
    folder, _, extra, _ = DATASETS[name]
    return [root / folder / "raw", root / folder, *map(Path, extra)]


def _locate(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_dataset(name: str = "mnist", root: str | os.PathLike | None = None) -> Path | None:
    """The directory holding all four IDX files of ``name``, or None if none does."""
    _check_name(name)
    for directory in _candidates(name, data_root(root)):
        if all(_locate(directory, stem) for pair in _FILES.values() for stem in pair):
            return directory
    return None


def _read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (LeCun's format: magic, dims, big-endian unsigned bytes)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DataError(f"cannot read {path}: {err}; delete it and fetch the data set again") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file; delete it and fetch the data set again")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(raw) - offset != expected:
        raise DataError(f"{path} is truncated: {len(raw) - offset} bytes of data, {expected} expected")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _download(name: str, root: Path, timeout: float = DOWNLOAD_TIMEOUT) -> None:
    """torchvision's download of ``name`` into ``root``, with a socket timeout; on failure, remove what it made."""
    import torchvision  # imported here: only a download needs it

    folder, cls_name, _, _ = DATASETS[name]
    created = [p for p in (root, root / folder) if not p.exists()]
    cls = getattr(torchvision.datasets, cls_name)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # torchvision's urllib calls take no timeout of their own
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except BaseException:
        for path in reversed(created):  # the data set's folder, then the root if this call made it
            shutil.rmtree(path, ignore_errors=True)
        raise
    finally:
        socket.setdefaulttimeout(previous)


def load(
    name: str = "mnist",
    split: str = "train",
    *,
    root: str | os.PathLike | None = None,
    download: bool = True,
    device: str | torch.device = "cpu",
    timeout: float = DOWNLOAD_TIMEOUT,
) -> tuple[Tensor, Tensor]:
    """Images and labels of ``split`` ("train" or "test") of ``name``.

    Returns ``x`` (N, 784) float32 grey levels in [0, 1] and ``y`` (N,) int64,
    on ``device``.  Raises :class:`DataError` naming the paths searched when
    the files are missing and cannot be downloaded; a download that hears
    nothing from the server for ``timeout`` seconds fails.
    """
    _check_name(name)
    if split not in _FILES:
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    base = data_root(root)
    directory = find_dataset(name, base)
    if directory is None and download:
        try:
            _download(name, base, timeout)
        except Exception as err:  # offline, proxy, disk full: all end in the same advice
            reason = " ".join(str(err).split())
            searched = ", ".join(str(p) for p in _candidates(name, base))
            raise DataError(
                f"{name} is not on disk (searched {searched}) and the download into {base} failed "
                f"({type(err).__name__}: {reason}). Put the four IDX files (.gz or uncompressed) in "
                f"{base / DATASETS[name][0] / 'raw'}, or point VAELIB_DATA "
                "(or root=...) at a directory that holds them."
            ) from err
        directory = find_dataset(name, base)
    if directory is None:
        searched = ", ".join(str(p) for p in _candidates(name, base))
        raise DataError(
            f"{name} is not on disk: searched {searched}. Put the four IDX files (.gz or uncompressed) in "
            f"{base / DATASETS[name][0] / 'raw'}, set VAELIB_DATA (or pass root=...) to where they are, "
            "or allow download=True."
        )
    images_stem, labels_stem = _FILES[split]
    images = _read_idx(_locate(directory, images_stem))  # (N, 28, 28) uint8
    labels = _read_idx(_locate(directory, labels_stem))  # (N,) uint8
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{directory}: {images.shape[0]} images but {labels.shape[0]} labels")
    x = torch.from_numpy(images.reshape(images.shape[0], -1).astype(np.float32) / 255.0)
    y = torch.from_numpy(labels.astype(np.int64))
    device = resolve_device(device)  # a device this machine lacks is a DeviceError, not torch's driver error
    return x.to(device), y.to(device)


def binarize(x: Tensor, generator: torch.Generator | None = None, *, check: bool = True) -> Tensor:
    """One Bernoulli draw per pixel, with probability equal to its grey level.

    A fresh draw at every epoch is *dynamic* binarization (the protocol behind
    the published MNIST likelihoods); one draw kept for good is a *fixed*
    binarization.  ``x`` in [0, 1], floating point; same shape and device
    out.  ``check=False`` skips the range check (which synchronises with the
    device) inside a training loop whose data were checked once.
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        got = getattr(x, "dtype", type(x).__name__)
        raise VaelibError(f"binarize needs a floating-point tensor of grey levels in [0, 1], got {got}")
    if check and x.numel():
        lo, hi = (v.item() for v in torch.aminmax(x))
        if not (0 <= lo and hi <= 1):
            raise VaelibError(f"binarize needs grey levels in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; x / 255?")
    return torch.bernoulli(x, generator=generator)
