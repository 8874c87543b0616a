"""Shared fixtures for vaelib's tests.

Everything here is small and seeded so that each test is deterministic on the
CPU: synthetic 4x4 "images" (P = 16) drawn from a few prototypes, tiny model
configs, a writer for IDX files, and the real MNIST data set when the
environment variable ``VAELIB_DATA`` points at it.

Markers (declared in pyproject.toml, not here): ``cuda`` tests are skipped
with the reason "needs a CUDA GPU" when no GPU is usable; ``slow`` tests
train on real MNIST.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vaelib
import vaelib as vl
import vaelib.checkpoint
import vaelib.data
import vaelib.train

# One intra-op thread: the models here are tiny, and on a busy two-core machine PyTorch's
# second thread spin-waits for the first, which made this suite ten times slower (6 min
# instead of 25 s when measured beside other jobs); alone it is as fast with one thread.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


def load_benchmark(name: str):
    """The script benchmarks/<name>.py as a module: runners live with the benchmarks, not in the package.
    Its folder goes on sys.path, as when the script runs, for the modules the scripts share (machine.py)."""
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.append(str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The models that ship inside vaelib (vl.pretrained_models must hold at least these; the web export and the
# lab's parity tests run over all of them).
SHIPPED = (
    "notes-mnist-20",
    "mnist-2d",
    "mnist-cvae",
    "mnist-2d-small",
    "mnist-cvae-small",
    "burda-vae-k1",
    "burda-iwae-k5",
)

IMAGE_SHAPE = (1, 4, 4)  # the synthetic images: P = 16 pixels
P = 16


def pytest_runtest_setup(item):
    if item.get_closest_marker("cuda") is not None and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")


@pytest.fixture(autouse=True)
def _seed_torch():
    """Every test starts from the same global RNG state (model initialisation uses it)."""
    torch.manual_seed(0)
    yield


def _prototype_grey(n: int, seed: int) -> torch.Tensor:
    """n grey images in [0, 1], each a noisy mixture of two of four 4x4 prototypes."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.zeros(4, 4, 4)
    protos[0, :, :2] = 1.0  # left half
    protos[1, :2, :] = 1.0  # top half
    protos[2] = torch.eye(4)  # diagonal
    protos[3, 1:3, 1:3] = 1.0  # centre square
    protos = protos.reshape(4, P)
    which = torch.randint(0, 4, (n, 2), generator=g)
    t = torch.rand(n, 1, generator=g)
    mix = t * protos[which[:, 0]] + (1 - t) * protos[which[:, 1]]
    noise = 0.05 * torch.randn(n, P, generator=g)
    return (0.05 + 0.9 * mix + noise).clamp(0.0, 1.0)


@pytest.fixture
def grey_data() -> tuple[torch.Tensor, torch.Tensor]:
    """(train (512, 16), test (128, 16)) float32 grey levels in [0, 1]."""
    return _prototype_grey(512, seed=11), _prototype_grey(128, seed=12)


@pytest.fixture
def binary_data(grey_data) -> tuple[torch.Tensor, torch.Tensor]:
    """(train (512, 16), test (128, 16)) float32 binary pixels: one seeded draw from the grey data."""
    g = torch.Generator().manual_seed(13)
    train, test = grey_data
    return torch.bernoulli(train, generator=g), torch.bernoulli(test, generator=g)


@pytest.fixture
def tiny_config() -> vl.VAEConfig:
    """A 16-32-2 Bernoulli VAE config for the synthetic 4x4 data."""
    return vl.VAEConfig(image_shape=IMAGE_SHAPE, latent_dim=2, hidden_dims=(32,))


@pytest.fixture
def tiny_vae(tiny_config) -> vl.VAE:
    return vl.VAE(tiny_config)


@pytest.fixture
def fast_train() -> vl.TrainConfig:
    """A few quick CPU epochs over the synthetic data."""
    return vl.TrainConfig(epochs=3, batch_size=64, lr=1e-2, device="cpu", seed=0, eval_batch_size=64)


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` (uint8) as an IDX file (big-endian dims), gzip'd when ``path`` ends in .gz."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def write_fake_mnist(directory: Path, *, n_train: int = 3, n_test: int = 2, fill: int = 0, gz: bool = False) -> dict:
    """Write the four MNIST IDX files into ``directory``; pixel values encode ``fill`` so roots can be told apart.

    Returns the arrays written: ``train_x`` (n_train, 28, 28), ``train_y``, ``test_x``, ``test_y``.
    """
    rng = np.random.default_rng(fill)
    arrays = {
        "train_x": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train_y": rng.integers(0, 10, size=n_train, dtype=np.uint8),
        "test_x": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "test_y": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }
    arrays["train_x"][:, 0, 0] = fill  # a marker pixel
    suffix = ".gz" if gz else ""
    names = {
        "train_x": "train-images-idx3-ubyte",
        "train_y": "train-labels-idx1-ubyte",
        "test_x": "t10k-images-idx3-ubyte",
        "test_y": "t10k-labels-idx1-ubyte",
    }
    for key, stem in names.items():
        write_idx(Path(directory) / f"{stem}{suffix}", arrays[key])
    return arrays


@pytest.fixture
def idx_writer():
    """``write_idx(path, array)``: see :func:`write_idx`."""
    return write_idx


@pytest.fixture
def fake_mnist_writer():
    """``write_fake_mnist(directory, n_train=3, n_test=2, fill=0, gz=False)``: see :func:`write_fake_mnist`."""
    return write_fake_mnist


@pytest.fixture
def no_download(monkeypatch):
    """Make any attempt to download a data set fail the test."""

    def _refuse(name, root, timeout=None):
        raise AssertionError(f"vaelib tried to download {name} into {root}, but the files are on disk")

    monkeypatch.setattr(vl.data, "_download", _refuse)


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The one answer to "is MNIST available": the data root ``$VAELIB_DATA`` that holds it.

    Skips when ``VAELIB_DATA`` is unset; fails (does not skip) when it is set
    but the files are not there, since CI sets it and must test real data.
    """
    root = os.environ.get("VAELIB_DATA")
    if not root:
        pytest.skip(
            "VAELIB_DATA is not set; point it at a directory holding MNIST/raw/*.gz to run the real-MNIST tests"
        )
    if vaelib.data.find_dataset("mnist", root) is None:
        pytest.fail(
            f"VAELIB_DATA={root} but no MNIST IDX files were found in {root}/MNIST/raw or {root}/MNIST; "
            "put the four files (train/t10k images and labels, .gz or plain) there",
            pytrace=False,
        )
    return Path(root)


@pytest.fixture(scope="session")
def mnist(mnist_root) -> dict:
    """Real MNIST as loaded by ``vaelib.load`` from the ``mnist_root`` fixture."""
    train_x, train_y = vl.load("mnist", "train", root=mnist_root, download=False)
    test_x, test_y = vl.load("mnist", "test", root=mnist_root, download=False)
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y, "root": mnist_root}
