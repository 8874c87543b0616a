"""Data: real MNIST (with VAELIB_DATA), where the files are looked for, IDX
parsing on small files written here, offline behaviour, and binarization."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

import vaelib
import vaelib as vl
import vaelib.checkpoint
import vaelib.data
import vaelib.train

FASHION = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------- real MNIST


def test_mnist_shapes_dtypes_and_range(mnist):
    for split, n in (("train", 60000), ("test", 10000)):
        x, y = mnist[f"{split}_x"], mnist[f"{split}_y"]
        assert x.shape == (n, 784) and y.shape == (n,)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.min().item() == 0.0 and x.max().item() == 1.0
        assert set(y.unique().tolist()) == set(range(10))
        # grey levels are multiples of 1/255
        levels = x[:100] * 255
        torch.testing.assert_close(levels, levels.round(), rtol=0, atol=1e-4)


def test_mnist_train_pixel_statistics(mnist):
    x = mnist["train_x"].double()
    assert x.mean().item() == pytest.approx(0.1307, abs=1e-3)
    assert x.std().item() == pytest.approx(0.3081, abs=1e-3)


def test_mnist_test_label_counts(mnist):
    counts = torch.bincount(mnist["test_y"], minlength=10).tolist()
    assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_mnist_loads_from_vaelib_data_without_the_network(mnist, no_download, monkeypatch):
    monkeypatch.setenv("VAELIB_DATA", str(mnist["root"]))
    x, y = vl.load("mnist", "test")  # root from the environment; download allowed but never needed
    assert torch.equal(x, mnist["test_x"]) and torch.equal(y, mnist["test_y"])
    assert vaelib.data.find_dataset("mnist") == mnist["root"] / "MNIST" / "raw"


def test_binarized_mnist_is_binary_with_the_grey_mean(mnist):
    x = mnist["test_x"]
    b = vl.binarize(x, torch.Generator().manual_seed(0))
    assert b.shape == x.shape and b.dtype == x.dtype
    assert set(b.unique().tolist()) == {0.0, 1.0}
    # 7.84 million pixels: the standard error of the mean is about 1e-4
    assert b.mean().item() == pytest.approx(x.mean().item(), abs=1e-3)
    assert torch.equal(b[x == 0], torch.zeros_like(b[x == 0]))
    assert torch.equal(b[x == 1], torch.ones_like(b[x == 1]))


# ---------------------------------------------------------------- Fashion-MNIST


@pytest.mark.skipif(
    not FASHION.is_dir(), reason=f"Fashion-MNIST is not installed at {FASHION} (Debian's dataset-fashion-mnist)"
)
def test_fashion_mnist_from_the_system_location(tmp_path, no_download):
    assert vaelib.data.find_dataset("fashion-mnist", root=tmp_path) == FASHION
    x, y = vl.load("fashion-mnist", "train", root=tmp_path)
    assert x.shape == (60000, 784) and x.dtype == torch.float32
    assert torch.bincount(y, minlength=10).tolist() == [6000] * 10
    xt, yt = vl.load("fashion-mnist", "test", root=tmp_path)
    assert xt.shape == (10000, 784)
    assert torch.bincount(yt, minlength=10).tolist() == [1000] * 10
    assert 0.0 <= x.min().item() and x.max().item() <= 1.0


# ---------------------------------------------------------------- where the files are looked for


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No VAELIB_DATA, an XDG cache and a HOME inside tmp_path."""
    monkeypatch.delenv("VAELIB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def test_data_root_precedence(clean_env, tmp_path):
    assert vaelib.data.data_root() == tmp_path / "xdg" / "vaelib"
    clean_env.delenv("XDG_CACHE_HOME")
    assert vaelib.data.data_root() == tmp_path / "home" / ".cache" / "vaelib"
    clean_env.setenv("VAELIB_DATA", str(tmp_path / "env"))
    assert vaelib.data.data_root() == tmp_path / "env"
    assert vaelib.data.data_root(tmp_path / "arg") == tmp_path / "arg"
    assert vaelib.data.data_root(str(tmp_path / "arg")) == tmp_path / "arg"
    clean_env.setenv("VAELIB_DATA", "")  # empty counts as unset
    assert vaelib.data.data_root() == tmp_path / "home" / ".cache" / "vaelib"


@pytest.mark.parametrize("gz", [False, True])
def test_load_prefers_argument_then_environment_then_cache(clean_env, tmp_path, fake_mnist_writer, no_download, gz):
    fake_mnist_writer(tmp_path / "arg" / "MNIST" / "raw", fill=1, gz=gz)
    fake_mnist_writer(tmp_path / "env" / "MNIST" / "raw", fill=2, gz=gz)
    fake_mnist_writer(tmp_path / "xdg" / "vaelib" / "MNIST" / "raw", fill=3, gz=gz)
    fake_mnist_writer(tmp_path / "home" / ".cache" / "vaelib" / "MNIST" / "raw", fill=4, gz=gz)

    def marker(**kwargs):
        x, _ = vl.load("mnist", "train", **kwargs)
        return round(x[0, 0].item() * 255)

    clean_env.setenv("VAELIB_DATA", str(tmp_path / "env"))
    assert marker(root=tmp_path / "arg") == 1
    assert marker() == 2
    clean_env.delenv("VAELIB_DATA")
    assert marker() == 3
    clean_env.delenv("XDG_CACHE_HOME")
    assert marker() == 4


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("layout", ["MNIST/raw", "MNIST"])
def test_load_parses_idx_files_exactly(tmp_path, fake_mnist_writer, no_download, gz, layout):
    arrays = fake_mnist_writer(tmp_path / layout, n_train=5, n_test=3, fill=9, gz=gz)
    assert vaelib.data.find_dataset("mnist", tmp_path) == tmp_path / layout
    for split in ("train", "test"):
        x, y = vl.load("mnist", split, root=tmp_path)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        expected_x = arrays[f"{split}_x"].reshape(len(arrays[f"{split}_x"]), -1).astype(np.float64) / 255
        np.testing.assert_allclose(x.numpy(), expected_x, rtol=0, atol=1e-7)
        assert y.tolist() == arrays[f"{split}_y"].tolist()


def test_load_mixes_plain_and_gzip_files(tmp_path, idx_writer, no_download):
    raw = tmp_path / "MNIST" / "raw"
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    idx_writer(raw / "train-images-idx3-ubyte.gz", images)
    idx_writer(raw / "train-labels-idx1-ubyte", np.array([3, 7], dtype=np.uint8))
    idx_writer(raw / "t10k-images-idx3-ubyte", images[:1])
    idx_writer(raw / "t10k-labels-idx1-ubyte.gz", np.array([5], dtype=np.uint8))
    x, y = vl.load("mnist", "train", root=tmp_path)
    assert y.tolist() == [3, 7]
    assert x[1, 0].item() == pytest.approx(((28 * 28) % 256) / 255)
    assert vl.load("mnist", "test", root=tmp_path)[1].tolist() == [5]


def test_load_moves_data_to_the_requested_device(tmp_path, fake_mnist_writer, no_download):
    fake_mnist_writer(tmp_path / "MNIST" / "raw")
    x, y = vl.load("mnist", root=tmp_path, device="cpu")
    assert x.device.type == "cpu" and y.device.type == "cpu"


# ---------------------------------------------------------------- missing and broken files


def test_missing_data_set_offline_names_the_paths_searched(clean_env, tmp_path):
    with pytest.raises(vl.DataError) as info:
        vl.load("mnist", root=tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message and str(tmp_path / "MNIST") in message
    assert "VAELIB_DATA" in message
    assert vaelib.data.find_dataset("mnist", tmp_path) is None


def test_a_failed_download_is_a_data_error_naming_the_paths(tmp_path, monkeypatch):
    def offline(name, root, timeout):
        raise OSError("Temporary failure in name resolution")

    monkeypatch.setattr(vl.data, "_download", offline)
    with pytest.raises(vl.DataError, match="download into .* failed .*name resolution") as info:
        vl.load("mnist", root=tmp_path, download=True)
    assert str(tmp_path / "MNIST" / "raw") in str(info.value)


def test_three_of_four_files_is_missing(tmp_path, fake_mnist_writer):
    fake_mnist_writer(tmp_path / "MNIST" / "raw")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    assert vaelib.data.find_dataset("mnist", tmp_path) is None
    with pytest.raises(vl.DataError, match="not on disk"):
        vl.load("mnist", root=tmp_path, download=False)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_idx_file_is_a_data_error(tmp_path, fake_mnist_writer, gz, no_download):
    fake_mnist_writer(tmp_path / "MNIST" / "raw", n_train=4, gz=gz)
    path = tmp_path / "MNIST" / "raw" / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    raw = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    cut = raw[: len(raw) - 100]
    path.write_bytes(gzip.compress(cut) if gz else cut)
    with pytest.raises(vl.DataError, match="truncated"):
        vl.load("mnist", "train", root=tmp_path)
    vl.load("mnist", "test", root=tmp_path)  # the other split is unaffected


def test_a_cut_gzip_stream_is_a_data_error(tmp_path, fake_mnist_writer, no_download):
    fake_mnist_writer(tmp_path / "MNIST" / "raw", n_train=4, gz=True)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(vl.DataError, match="cannot read"):
        vl.load("mnist", "train", root=tmp_path)


def test_a_file_that_is_not_idx_is_a_data_error(tmp_path, fake_mnist_writer, no_download):
    fake_mnist_writer(tmp_path / "MNIST" / "raw")
    (tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte").write_bytes(b"<html>404</html>")
    with pytest.raises(vl.DataError, match="not an unsigned-byte IDX file"):
        vl.load("mnist", "train", root=tmp_path)


def test_image_and_label_counts_must_agree(tmp_path, fake_mnist_writer, idx_writer, no_download):
    fake_mnist_writer(tmp_path / "MNIST" / "raw", n_train=3)
    idx_writer(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.zeros(4, dtype=np.uint8))
    with pytest.raises(vl.DataError, match="3 images but 4 labels"):
        vl.load("mnist", "train", root=tmp_path)


def test_unknown_names_and_splits(tmp_path):
    with pytest.raises(vl.DataError, match="unknown data set 'cifar'"):
        vl.load("cifar", root=tmp_path)
    with pytest.raises(vl.DataError, match="unknown data set"):
        vaelib.data.find_dataset("kmnist", tmp_path)
    with pytest.raises(vl.DataError, match="split must be 'train' or 'test'"):
        vl.load("mnist", "validation", root=tmp_path)


# ---------------------------------------------------------------- binarize


def test_binarize_draws_bernoulli_pixels():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(400, 50, generator=g)
    a = vl.binarize(x, torch.Generator().manual_seed(1))
    b = vl.binarize(x, torch.Generator().manual_seed(1))
    c = vl.binarize(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert set(a.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(a, b) and not torch.equal(a, c)
    n = x.numel()
    assert a.mean().item() == pytest.approx(x.mean().item(), abs=4 * 0.5 / n**0.5)
    # pixel by pixel the frequency follows the grey level: high-grey pixels are on more often
    assert a[x > 0.9].mean() > 0.85 and a[x < 0.1].mean() < 0.15
    assert torch.equal(vl.binarize(torch.zeros(3, 4)), torch.zeros(3, 4))
    assert torch.equal(vl.binarize(torch.ones(3, 4)), torch.ones(3, 4))


def test_a_download_takes_the_next_mirror_and_checks_md5(tmp_path, monkeypatch, fake_mnist_writer):
    """A loopback server plays two mirrors: the first sends a corrupt file, the second the right one."""
    import functools
    import hashlib
    import http.server
    import threading

    import torchvision

    served = tmp_path / "served"
    arrays = fake_mnist_writer(served / "good", n_train=5, n_test=4, fill=9, gz=True)
    (served / "bad").mkdir()
    resources = []
    for path in sorted((served / "good").iterdir()):
        resources.append((path.name, hashlib.md5(path.read_bytes()).hexdigest()))
        (served / "bad" / path.name).write_bytes(path.read_bytes()[:-1] + b"\0")  # one byte off
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [f"{base}/bad/", f"{base}/good/"])
        monkeypatch.setattr(torchvision.datasets.MNIST, "resources", resources)
        x, y = vl.load("mnist", "train", root=tmp_path / "data", timeout=10.0)
    finally:
        server.shutdown()
    assert x.shape == (5, 784) and torch.equal(y, torch.from_numpy(arrays["train_y"].astype(np.int64)))
    torch.testing.assert_close(x, torch.from_numpy(arrays["train_x"].reshape(5, -1) / 255.0).float())
    raw = tmp_path / "data" / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(name for name, _ in resources)  # no partial files
