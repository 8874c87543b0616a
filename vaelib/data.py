"""Data: MNIST and Fashion-MNIST as tensors, and the three pixel modes.

Where the files live: the ``root`` argument, else the environment variable
``VAELIB_DATA``, else a per-user cache directory (``$XDG_CACHE_HOME/vaelib``
or ``~/.cache/vaelib``).  Under the root, the gzip'd (or plain) IDX files are
looked for in ``<root>/MNIST/raw/`` and ``<root>/FashionMNIST/raw/`` (the
layout torchvision uses); Fashion-MNIST is also found where Debian's
``dataset-fashion-mnist`` package puts it.  When the files are present the
network is never touched; when they are missing, torchvision downloads them
(if ``download=True``) from the mirrors torchvision lists, checked against
their MD5 sums; a silent or refusing network fails within ``timeout`` seconds
in all, removing what the failed download left behind, and the error names
every path searched.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import _checks
from ._version import __version__
from .devices import resolve_device
from .errors import DataError, VaelibError

__all__ = ["DATASETS", "data_root", "find_dataset", "load", "binarize"]

DATASETS = {
    # name: (folder under the root, torchvision class name, extra places to look, image shape (C, H, W))
    "mnist": ("MNIST", "MNIST", (), (1, 28, 28)),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST", ("/usr/share/datasets/fashion-mnist",), (1, 28, 28)),
}
DOWNLOAD_TIMEOUT = 20.0  # seconds that a download's failed attempts may take in all, over every file and mirror
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root``, else ``$VAELIB_DATA``, else the per-user cache."""
    if root is not None:
        return _checks.path("root", root).expanduser()
    if os.environ.get("VAELIB_DATA"):
        return Path(os.environ["VAELIB_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "vaelib"


def _source(root) -> str:
    """Where the data root came from, for the errors."""
    if root is not None:
        return "the root argument"
    return "$VAELIB_DATA" if os.environ.get("VAELIB_DATA") else "the per-user cache"


def _check_root(root) -> Path:
    """The data root, refused when it is a file or a directory that cannot be read."""
    base = data_root(root)
    if base.exists() and not base.is_dir():
        raise DataError(
            f"the data root {base} (from {_source(root)}) is a file, not a directory; point VAELIB_DATA "
            "(or root=...) at the directory that holds the data sets, or is to hold them"
        )
    if base.is_dir() and not os.access(base, os.R_OK | os.X_OK):
        raise DataError(
            f"cannot read the data root {base} (from {_source(root)}): permission denied; make it readable "
            "(chmod u+rx) or point VAELIB_DATA (or root=...) at another directory"
        )
    return base


def _check_name(name: str) -> None:
    if not isinstance(name, str) or name not in DATASETS:
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
    """The directory holding all four IDX files of ``name``, or None if none does.

    Raises :class:`DataError` when the data root (``root``, else
    ``$VAELIB_DATA``, else the per-user cache) is a file or cannot be read.
    """
    _check_name(name)
    for directory in _candidates(name, _check_root(root)):
        try:
            if all(_locate(directory, stem) for pair in _FILES.values() for stem in pair):
                return directory
        except PermissionError as err:
            raise DataError(
                f"cannot read {directory}: permission denied ({err.filename}); make it readable or point "
                "VAELIB_DATA (or root=...) at another directory"
            ) from err
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
    """Fetch the four gzip'd IDX files of ``name`` into ``<root>/<folder>/raw`` from torchvision's mirrors.

    The attempts that fail share ``timeout`` seconds in all, each mirror of a
    file getting an equal part of what is left, so a silent or refusing
    network fails within ``timeout`` whatever the number of files and
    mirrors; an attempt that receives data is limited only in how long each
    network operation may wait.  On failure, what this call created is
    removed.
    """
    import torchvision  # only a download needs it: its mirror list and the files' MD5 sums

    folder, cls_name, _, _ = DATASETS[name]
    cls = getattr(torchvision.datasets, cls_name)
    raw = root / folder / "raw"
    created = [p for p in (root, root / folder, raw) if not p.exists()]
    spent = 0.0  # seconds taken by the attempts that failed
    try:
        raw.mkdir(parents=True, exist_ok=True)
        for filename, md5 in cls.resources:
            failures, fetched = [], False
            for left, mirror in zip(range(len(cls.mirrors), 0, -1), cls.mirrors):
                if fetched or (wait := (timeout - spent) / left) <= 0:
                    break
                started = time.monotonic()
                try:
                    _fetch(f"{mirror}{filename}", raw / filename, md5, wait)
                    fetched = True
                except (OSError, http.client.HTTPException) as err:  # refused, timed out, cut off, bad checksum
                    spent += time.monotonic() - started
                    failures.append(f"{mirror}: {type(err).__name__}: {err}")
            if not fetched:
                tried = "; ".join(failures) or "no time left"
                raise TimeoutError(f"could not fetch {filename} within {timeout:g} s in all ({tried})")
    except BaseException:
        for path in reversed(created):  # the raw folder, the data set's, then the root if this call made them
            shutil.rmtree(path, ignore_errors=True)
        raise


def _fetch(url: str, path: Path, md5: str, wait: float) -> None:
    """Download ``url`` to ``path`` through a temporary file, each network operation waiting at most ``wait``
    seconds; the file must have the MD5 sum ``md5``."""
    partial = path.with_name(f"{path.name}.part")
    digest = hashlib.md5(usedforsecurity=False)
    request = urllib.request.Request(url, headers={"User-Agent": f"vaelib/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=wait) as response, open(partial, "wb") as f:
            while chunk := response.read(1 << 16):
                f.write(chunk)
                digest.update(chunk)
        if digest.hexdigest() != md5:
            raise OSError(f"the file from {url} does not have the published MD5 sum {md5}")
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


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
    the files are missing and cannot be downloaded: a download whose failed
    attempts take ``timeout`` seconds in all gives up, so a silent or
    refusing network fails within that time.
    """
    _check_name(name)
    if split not in _FILES:
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    timeout = _checks.number("timeout", timeout, positive=True)
    directory = find_dataset(name, root)  # also refuses a root that is a file or cannot be read
    base = data_root(root)
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
    images_path, labels_path = _locate(directory, images_stem), _locate(directory, labels_stem)
    images = _read_idx(images_path)  # (N, 28, 28) uint8
    labels = _read_idx(labels_path)  # (N,) uint8
    height_width = DATASETS[name][3][1:]
    if images.ndim != 3 or images.shape[1:] != height_width:
        raise DataError(
            f"{images_path} holds an array of shape {images.shape}, not images (N, {height_width[0]}, "
            f"{height_width[1]}); are the image and label files swapped or misnamed? Fetch the data set again"
        )
    if labels.ndim != 1:
        raise DataError(
            f"{labels_path} holds an array of shape {labels.shape}, not labels (N,); are the image and label "
            "files swapped or misnamed? Fetch the data set again"
        )
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
    _checks.generator(generator, x.device)
    return torch.bernoulli(x, generator=generator)
