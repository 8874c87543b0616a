"""Bad input gets a clear VaelibError, or is accepted where a user would expect it.

One test per gap that probing the public API and the CLI as a careful user
turned up (each failed on the code before this change), and more of the same
class of problem.
"""

import http.server
import inspect
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import vaelib as vl
import vaelib._checks
import vaelib.checkpoint
import vaelib.data
import vaelib.models
import vaelib.train
from vaelib.cli import MAX_SAMPLES, main

# ---------------------------------------------------------------- silent wrong results


def test_evaluate_on_an_empty_set_is_an_error_not_nan(tiny_vae):
    with pytest.raises(vl.VaelibError, match="no examples"):
        vl.evaluate(tiny_vae, torch.zeros(0, 16))


@pytest.mark.parametrize("batch_size", [-5, 0, 2.5])
def test_evaluate_rejects_a_bad_batch_size_instead_of_returning_zeros(tiny_vae, binary_data, batch_size):
    with pytest.raises(vl.VaelibError, match="batch_size must be an integer >= 1"):
        vl.evaluate(tiny_vae, binary_data[1], batch_size=batch_size)


@pytest.mark.parametrize("k", [0, -3, 1.5])
def test_evaluate_and_the_bounds_reject_a_bad_sample_count(tiny_vae, binary_data, k):
    x = binary_data[1][:8]
    with pytest.raises(vl.VaelibError, match=r"\bk\b.* must be an integer >= 1"):
        vl.evaluate(tiny_vae, x, k=k)
    with pytest.raises(vl.VaelibError, match=r"\bk\b.* must be an integer >= 1"):
        vl.iwae_bound(tiny_vae, x, k)
    with pytest.raises(vl.VaelibError, match=r"\bk\b.* must be an integer >= 1"):
        vl.log_marginal_likelihood(tiny_vae, x, k)
    with pytest.raises(vl.VaelibError, match=r"\bk\b.* must be an integer >= 1"):
        vl.objective(tiny_vae, x, k=k)


def test_empty_inputs_are_errors_everywhere(tiny_vae):
    empty = torch.zeros(0, 16)
    for call in (
        lambda: vl.objective(tiny_vae, empty),
        lambda: vl.log_marginal_likelihood(tiny_vae, empty, 10),
        lambda: vl.reconstruct(tiny_vae, empty),
        lambda: vl.encode_dataset(tiny_vae, empty),
        lambda: vl.fit(tiny_vae, empty, config=vl.TrainConfig(epochs=1, device="cpu"), progress=False),
    ):
        with pytest.raises(vl.VaelibError, match="no examples"):
            call()


def test_numpy_integers_are_integers(tiny_vae, binary_data):
    x = binary_data[1][:8]
    config = vl.TrainConfig(epochs=np.int64(1), batch_size=np.int32(64), k=np.int64(2), device="cpu")
    assert config.epochs == 1 and type(config.epochs) is int
    assert vl.iwae_bound(tiny_vae, x, np.int64(3)).shape == (8,)
    assert vl.sample_prior(tiny_vae, np.int64(4)).shape == (4, 16)
    assert "nll" in vl.evaluate(tiny_vae, x, k=np.int16(2), batch_size=np.int64(4))
    assert vl.VAEConfig(latent_dim=np.int64(3)).latent_dim == 3


# ---------------------------------------------------------------- a common input, accepted


def test_float64_inputs_are_cast_to_the_model_dtype(tiny_vae, binary_data):
    """torch.from_numpy(a / 255.) is float64: every entry point takes it and gives the float32 answer."""
    x32 = binary_data[1][:16]
    x64 = x32.double()

    def same(call):
        torch.manual_seed(0)
        a = call(x32)
        torch.manual_seed(0)
        b = call(x64)
        return a, b

    a, b = same(lambda x: vl.objective(tiny_vae, x, generator=torch.Generator().manual_seed(1)).elbo)
    torch.testing.assert_close(a, b)
    a, b = same(lambda x: vl.log_marginal_likelihood(tiny_vae, x, 20, generator=torch.Generator().manual_seed(2)))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(vl.reconstruct(tiny_vae, x32), vl.reconstruct(tiny_vae, x64))
    assert vl.evaluate(tiny_vae, x32, seed=3) == pytest.approx(vl.evaluate(tiny_vae, x64, seed=3))
    torch.testing.assert_close(vl.encode_dataset(tiny_vae, x32)[0], vl.encode_dataset(tiny_vae, x64)[0])
    assert tiny_vae.encode(x64)[0].dtype == torch.float32


def test_images_of_numpy_origin_train(tiny_config, binary_data):
    x = torch.from_numpy(binary_data[0].numpy().astype(np.float64))
    history = vl.fit(vl.VAE(tiny_config), x, config=vl.TrainConfig(epochs=1, device="cpu"), progress=False)
    assert np.isfinite(history[0]["train_elbo"])


def test_binarize_rejects_values_outside_the_unit_interval():
    with pytest.raises(vl.VaelibError, match=r"grey levels in \[0, 1\].*255"):
        vl.binarize(torch.full((2, 3), 255.0))
    with pytest.raises(vl.VaelibError, match="floating-point"):
        vl.binarize(torch.ones(2, 3, dtype=torch.uint8))


# ---------------------------------------------------------------- downloads


class _Silent(http.server.BaseHTTPRequestHandler):
    """Accepts the connection, reads the request, and never answers."""

    def do_GET(self):  # noqa: N802 (the name http.server calls)
        time.sleep(30)

    def log_message(self, *args):
        pass


@pytest.fixture
def silent_server():
    """The URL of a loopback HTTP server that accepts every request and never answers it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Silent)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


@pytest.fixture
def refusing_url():
    """The URL of a loopback port on which nothing listens: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.mark.parametrize("mirrors", ["silent", "refusing", "both"])
def test_a_dead_network_fails_within_the_timeout_in_all(tmp_path, monkeypatch, silent_server, refusing_url, mirrors):
    """Whatever the number of files and mirrors, the failed attempts share one budget: the call ends within it."""
    import torchvision

    urls = {"silent": [silent_server] * 3, "refusing": [refusing_url] * 3, "both": [refusing_url, silent_server] * 2}
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", urls[mirrors])
    root = tmp_path / "data"
    started = time.perf_counter()
    with pytest.raises(vl.DataError, match=r"download into .* failed \(TimeoutError: could not fetch .* within 2 s"):
        vl.load("mnist", root=root, timeout=2.0)
    assert time.perf_counter() - started < 2.0 + 1.0  # 4 files x 3 or 4 mirrors, and still within the budget
    assert not root.exists()  # no empty folders left behind


def test_the_default_timeout_bounds_every_attempt(tmp_path, monkeypatch):
    """`vl.load()` with its defaults gives the attempts a finite budget of at most 45 s in all."""
    import torchvision

    waits = []

    def unreachable(url, path, md5, wait):
        waits.append(wait)
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(vaelib.data, "_fetch", unreachable)
    with pytest.raises(vl.DataError, match="download into .* failed"):
        vl.load("mnist", root=tmp_path / "data")
    default = vaelib.data.DOWNLOAD_TIMEOUT
    assert inspect.signature(vl.load).parameters["timeout"].default == default <= 45
    mirrors = len(torchvision.datasets.MNIST.mirrors)
    assert len(waits) == mirrors  # the first file could not be fetched: no other is tried
    assert waits[0] == pytest.approx(default / mirrors)  # each mirror gets its share of the budget
    assert all(0 < wait <= default for wait in waits)


def test_the_cli_fails_within_45_seconds_on_a_silent_network(tmp_path, silent_server):
    """The whole command, from start to the one-line error, on a network that never answers (default budget)."""
    import torchvision

    default_mirrors = torchvision.datasets.MNIST.mirrors
    sitecustomize = tmp_path / "site" / "sitecustomize.py"  # points torchvision's mirrors at the silent server
    sitecustomize.parent.mkdir()
    sitecustomize.write_text(
        "import torchvision.datasets\n"
        f"torchvision.datasets.MNIST.mirrors = {[silent_server] * len(default_mirrors)!r}\n"
    )
    started = time.perf_counter()
    done = _cli(
        "train",
        "--out",
        str(tmp_path / "run"),
        env_extra={"VAELIB_DATA": str(tmp_path / "data"), "PYTHONPATH": str(sitecustomize.parent)},
    )
    assert time.perf_counter() - started < 45
    assert done.returncode == 1 and "the download into" in done.stderr and "TimeoutError" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_failed_download_keeps_a_root_that_existed(tmp_path, monkeypatch):
    def offline(name, root, timeout):
        (root / "MNIST" / "raw").mkdir(parents=True)  # what torchvision makes before it fails
        raise OSError("network unreachable")

    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    monkeypatch.setattr(vaelib.data, "_download", lambda name, base, timeout: offline(name, base, timeout))
    with pytest.raises(vl.DataError):
        vl.load("mnist", root=root)
    assert (root / "notes.txt").exists()


# ---------------------------------------------------------------- devices


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_device_error_when_loading(tmp_path, tiny_config, binary_data, fast_train):
    path = tmp_path / "vae.pt"
    vl.fit(vl.VAE(tiny_config), binary_data[0], config=fast_train, checkpoint=path, progress=False)
    with pytest.raises(vl.DeviceError, match="no usable CUDA GPU"):
        vl.load_model(path, device="cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_load_checks_the_device_before_moving_data(mnist_root):
    with pytest.raises(vl.DeviceError, match="no usable CUDA GPU"):
        vl.load("mnist", "test", root=mnist_root, download=False, device="cuda")


# ---------------------------------------------------------------- checkpoints


def test_a_pickled_module_is_reported_as_such_not_as_truncated(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(vl.CheckpointError, match=r"pickled Python object \(torch\.nn\.modules\.linear\.Linear\)"):
        vaelib.checkpoint.load_checkpoint(path)


def test_a_marker_only_file_is_a_checkpoint_error_not_a_key_error(tmp_path):
    path = tmp_path / "marker.pt"
    torch.save({"format": vaelib.checkpoint.FORMAT, "format_version": 1}, path)
    with pytest.raises(vl.CheckpointError, match="incomplete vaelib checkpoint: it lacks model_kind"):
        vl.load_model(path)


def test_a_model_only_checkpoint_cannot_be_resumed(tmp_path, tiny_vae, binary_data):
    path = tmp_path / "weights.pt"
    vaelib.checkpoint.save_checkpoint(path, tiny_vae)
    with pytest.raises(vl.CheckpointError, match="no training state to resume"):
        vl.fit(tiny_vae, binary_data[0], config=vl.TrainConfig(epochs=1, device="cpu"), checkpoint=path, progress=False)


def test_resuming_with_fewer_epochs_than_trained_is_an_error(tmp_path, tiny_config, binary_data):
    path = tmp_path / "run.pt"
    config = vl.TrainConfig(epochs=3, batch_size=128, device="cpu")
    vl.fit(vl.VAE(tiny_config), binary_data[0], config=config, checkpoint=path, progress=False)
    fewer = vl.TrainConfig(epochs=2, batch_size=128, device="cpu")
    with pytest.raises(vl.CheckpointError, match="already trained 3 epochs, more than the 2 asked for"):
        vl.fit(vl.VAE(tiny_config), binary_data[0], config=fewer, checkpoint=path, progress=False)
    # the same number is not an error: the finished run is returned as it is
    again = vl.fit(vl.VAE(tiny_config), binary_data[0], config=config, checkpoint=path, progress=False)
    assert [h["epoch"] for h in again] == [1, 2, 3]


def test_a_temporary_file_left_by_a_killed_save_is_removed(tmp_path, tiny_config, binary_data, fast_train):
    path = tmp_path / "run.pt"
    stale = tmp_path / ".run.pt.abc123.tmp"
    stale.write_bytes(b"\0" * 100_000)  # what a SIGKILL during torch.save leaves
    other = tmp_path / ".other.pt.abc.tmp"
    other.write_bytes(b"x")  # another checkpoint's temporary file is not ours to remove
    vl.fit(vl.VAE(tiny_config), binary_data[0], config=fast_train, checkpoint=path, progress=False)
    assert not stale.exists() and other.exists() and path.exists()


def test_fit_checks_that_the_checkpoint_can_be_written_before_training(tmp_path, tiny_config, binary_data, monkeypatch):
    calls = []
    monkeypatch.setattr(vaelib.train, "train_epoch", lambda *a, **k: calls.append(1))
    blocker = tmp_path / "file"
    blocker.write_text("")
    for bad, pattern in ((blocker / "run.pt", "cannot write the checkpoint"), (tmp_path, "is a directory")):
        with pytest.raises(vl.CheckpointError, match=pattern):
            vl.fit(vl.VAE(tiny_config), binary_data[0], config=vl.TrainConfig(epochs=1, device="cpu"), checkpoint=bad)
    assert not calls  # no epoch was trained before the error


# ---------------------------------------------------------------- the CLI


def _cli(*args, env_extra=None):
    env = {**os.environ, "CI": "true", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "vaelib", *args], capture_output=True, text=True, timeout=300, env=env)


def test_sample_has_a_stated_bound(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sample", "run", "--n", str(MAX_SAMPLES + 1), "--out", "x.png"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"at most {MAX_SAMPLES}" in err and len(err.strip().splitlines()) == 1


def test_cli_errors_before_training_and_never_a_traceback(tmp_path, mnist_root):
    blocker = tmp_path / "file"
    blocker.write_text("")
    run = str(tmp_path / "r")
    cases = [  # (arguments, what the one line says, exit status: 2 for the arguments, 1 for the input)
        (["train", "--out", str(blocker), "--epochs", "1"], "is a file", 1),
        (["train", "--out", str(blocker / "sub"), "--epochs", "1"], "cannot write the checkpoint", 1),
        (["train", "--out", "/proc/vaelib-run", "--epochs", "1"], "cannot write the checkpoint", 1),
        (["train", "--out", run, "--epochs", "0"], "epochs must be an integer >= 1", 1),
        (["train", "--out", run, "--hidden-dims", "0"], "--hidden-dims: expected an integer >= 1", 2),
        (["sample", str(blocker), "--out", str(tmp_path / "a.png")], "not a readable checkpoint", 1),
        (["evaluate", str(tmp_path / "missing"), "--no-download"], "no checkpoint", 1),
    ]
    for args, message, status in cases:
        started = time.perf_counter()
        done = _cli(*args, env_extra={"VAELIB_DATA": str(mnist_root)})
        assert done.returncode == status, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert time.perf_counter() - started < 60  # the error came before any epoch


def test_evaluate_ignores_a_corrupt_history_file(tmp_path, mnist_root):
    run = tmp_path / "run"
    done = _cli(
        "train",
        "--out",
        str(run),
        "--epochs",
        "1",
        "--n-train",
        "200",
        "--n-test",
        "50",
        "--hidden-dims",
        "16",
        "--latent-dim",
        "2",
        "--quiet",
        env_extra={"VAELIB_DATA": str(mnist_root)},
    )
    assert done.returncode == 0, done.stderr
    (run / "history.json").write_text("{not json")
    done = _cli(
        "evaluate", str(run), "--k", "5", "--n-test", "20", "--no-download", env_extra={"VAELIB_DATA": str(mnist_root)}
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert '"dataset": "mnist"' in done.stdout  # the data set's name comes from the run record, not the history


# ---------------------------------------------------------------- learned decoder variance


def test_a_learned_decoder_variance_has_a_floor():
    config = vl.VAEConfig(
        image_shape=(1, 2, 2), latent_dim=1, hidden_dims=(4,), likelihood="gaussian", learn_gaussian_logvar=True
    )
    model = vl.VAE(config)
    x, mean = torch.zeros(1, 4), torch.zeros(1, 4)
    with torch.no_grad():
        model.x_logvar.fill_(-50.0)  # sigma_x^2 = e^-50 would make the density explode
    floor = vaelib.models.GAUSSIAN_LOGVAR_FLOOR
    expected = vl.gaussian.log_normal(x, mean, torch.full((4,), floor))
    torch.testing.assert_close(model.log_likelihood(x, mean), expected)
    assert floor == pytest.approx(np.log(1e-4))


# ---------------------------------------------------------------- train_epoch, the public loop


def _weights(model):
    return {name: value.clone() for name, value in model.state_dict().items()}


def _unchanged(model, before):
    return all(torch.equal(before[name], value) for name, value in model.state_dict().items())


@pytest.mark.parametrize(
    "x, kwargs, pattern",
    [
        (torch.full((8, 16), float("nan")), {}, "NaN or infinite"),
        (torch.tensor([[float("inf")] + [0.5] * 15] * 8), {}, "NaN or infinite"),
        (torch.full((8, 16), 2.0), {}, r"Bernoulli likelihood needs pixels in \[0, 1\]"),
        (torch.full((8, 16), -0.5), {"pixels": "dynamic"}, r"needs .* in \[0, 1\]"),
        (torch.zeros(0, 16), {}, "no examples"),
        (torch.rand(8, 16), {"batch_size": -1}, "batch_size must be an integer >= 1"),
        (torch.rand(8, 16), {"batch_size": 0}, "batch_size must be an integer >= 1"),
        (torch.rand(8, 16), {"batch_size": 2.5}, "batch_size must be an integer >= 1"),
        (torch.rand(8, 16), {"k": 0}, r"\bk must be an integer >= 1"),
        (torch.rand(8, 16), {"pixels": "colour"}, "pixels must be one of"),
    ],
)
def test_train_epoch_refuses_bad_input_before_any_step(tiny_vae, x, kwargs, pattern):
    optimizer = torch.optim.Adam(tiny_vae.parameters())
    before = _weights(tiny_vae)
    with pytest.raises(vl.VaelibError, match=pattern):
        vl.train_epoch(tiny_vae, x, optimizer, **{"batch_size": 4, **kwargs})
    assert _unchanged(tiny_vae, before)  # no weight became NaN, none moved


def test_train_epoch_refuses_an_optimizer_of_another_model(tiny_config, binary_data):
    model, other = vl.VAE(tiny_config), vl.VAE(tiny_config)
    with pytest.raises(vl.VaelibError, match="holds none of the model's parameters"):
        vl.train_epoch(model, binary_data[0], torch.optim.Adam(other.parameters()), batch_size=64)
    with pytest.raises(vl.VaelibError, match="torch.optim.Optimizer"):
        vl.train_epoch(model, binary_data[0], "adam", batch_size=64)
    # an optimizer over part of the model (a frozen encoder, say) is fine
    history = vl.train_epoch(model, binary_data[0], torch.optim.Adam(model.decoder.parameters()), batch_size=64)
    assert math.isfinite(history["elbo"])


def test_train_epoch_refuses_labels_that_do_not_fit(binary_data):
    cvae = vl.VAE(vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,), num_classes=3))
    x = binary_data[0][:32]
    optimizer = torch.optim.Adam(cvae.parameters())
    with pytest.raises(vl.VaelibError, match="holds 40 labels for 32 inputs"):
        vl.train_epoch(cvae, x, optimizer, batch_size=8, y=torch.zeros(40, dtype=torch.long))
    with pytest.raises(vl.VaelibError, match=r"labels must lie in \[0, 3\)"):
        vl.train_epoch(cvae, x, optimizer, batch_size=8, y=torch.full((32,), 3))


def test_train_epoch_trains_on_the_labels_it_checked(binary_data):
    """Labels given as a list are taken like a tensor (as fit and evaluate take them), not passed on unchecked."""
    x = binary_data[0][:24]
    y = [i % 3 for i in range(24)]
    losses = []
    for labels in (y, torch.tensor(y)):
        torch.manual_seed(0)
        cvae = vl.VAE(vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,), num_classes=3))
        optimizer = torch.optim.Adam(cvae.parameters())
        losses.append(vl.train_epoch(cvae, x, optimizer, batch_size=8, y=labels, generator=torch.Generator()))
    assert losses[0] == losses[1]


def test_labels_without_values_are_refused_everywhere(binary_data):
    cvae = vl.VAE(vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,), num_classes=3))
    x, y = binary_data[0][:8], torch.zeros(8, dtype=torch.long, device="meta")
    optimizer = torch.optim.Adam(cvae.parameters())
    with pytest.raises(vl.VaelibError, match="y is on the meta device"):
        vl.train_epoch(cvae, x, optimizer, batch_size=4, y=y)
    with pytest.raises(vl.VaelibError, match="y is on the meta device"):
        vl.evaluate(cvae, x, y=y)
    with pytest.raises(vl.VaelibError, match="y is on the meta device"):
        vl.log_marginal_likelihood(cvae, x, 2, y=y)


@pytest.mark.cuda
def test_train_epoch_refuses_labels_on_another_device_than_x(binary_data):
    cvae = vl.VAE(vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,), num_classes=3)).cuda()
    x, y = binary_data[0][:8].cuda(), torch.zeros(8, dtype=torch.long)
    optimizer = torch.optim.Adam(cvae.parameters())
    with pytest.raises(vl.VaelibError, match=r"y is on cpu but x is on cuda:0; move the labels with y.to\('cuda:0'\)"):
        vl.train_epoch(cvae, x, optimizer, batch_size=4, y=y)


# ---------------------------------------------------------------- labels that do not match x


@pytest.fixture
def cvae3():
    return vl.VAE(vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,), num_classes=3))


def test_labels_must_match_x_in_length_everywhere(cvae3, binary_data):
    """The issue's case: 1,000 images with 10,000 labels were scored against the first 1,000 labels, silently."""
    x = binary_data[1][:20]
    y_long = torch.arange(60) % 3  # more labels than inputs
    y_short = torch.arange(10) % 3
    calls = {
        "evaluate": lambda y: vl.evaluate(cvae3, x, y=y, batch_size=8),
        "evaluate k>1": lambda y: vl.evaluate(cvae3, x, y=y, k=3, batch_size=8),
        "log_marginal_likelihood": lambda y: vl.log_marginal_likelihood(cvae3, x, 3, y=y, batch_size=8),
        "iwae_bound": lambda y: vl.iwae_bound(cvae3, x, 3, y=y),
        "objective": lambda y: vl.objective(cvae3, x, y=y),
        "encode_dataset": lambda y: vl.encode_dataset(cvae3, x, batch_size=8, y=y),
        "kl_per_dimension": lambda y: vl.kl_per_dimension(cvae3, x, batch_size=8, y=y),
        "active_units": lambda y: vl.active_units(cvae3, x, batch_size=8, y=y),
        "reconstruct": lambda y: vl.reconstruct(cvae3, x, y=y),
        "fit": lambda y: vl.fit(cvae3, x, config=vl.TrainConfig(epochs=1, device="cpu"), y_train=y, progress=False),
        "fit test": lambda y: vl.fit(
            cvae3, x, x, vl.TrainConfig(epochs=1, device="cpu"), y_train=y_short.repeat(2), y_test=y, progress=False
        ),
        "sample_prior": lambda y: vl.sample_prior(cvae3, 20, y=y),
    }
    for name, call in calls.items():
        for y, n in ((y_long, 60), (y_short, 10)):
            with pytest.raises(vl.VaelibError, match=f"y holds {n} labels for 20 inputs"):
                call(y)
            assert name  # (the name says which call failed when the match does not)
    with pytest.raises(vl.VaelibError, match=r"labels must lie in \[0, 3\)"):
        vl.sample_prior(cvae3, 4, y=7)
    with pytest.raises(vl.VaelibError, match=r"labels must lie in \[0, 3\)"):
        vl.evaluate(cvae3, x, y=torch.full((20,), -1))
    with pytest.raises(vl.VaelibError, match="y_test was given without x_test"):
        vl.fit(cvae3, x, config=vl.TrainConfig(epochs=1, device="cpu"), y_train=y_short.repeat(2), y_test=y_short)


def test_labels_are_checked_once_per_call_not_at_every_step(cvae3, binary_data, monkeypatch):
    """Reading the labels' range waits for a GPU: fit checks each split once, encode/decode never."""
    x, y = binary_data[0][:128], torch.arange(128) % 3
    value_checks = []
    real = vaelib._checks.labels

    def counting(y, n, num_classes, *, values=True):
        value_checks.append(values)
        return real(y, n, num_classes, values=values)

    monkeypatch.setattr(vaelib._checks, "labels", counting)
    config = vl.TrainConfig(epochs=2, batch_size=16, device="cpu")  # 2 x 8 steps, each with an encode and a decode
    vl.fit(cvae3, x, x[:32], config, y_train=y, y_test=y[:32], progress=False)
    assert value_checks.count(True) == 2  # the training labels and the test labels, once each
    assert value_checks.count(False) >= 2 * 8 * 2  # the steps check the labels' shape only


# ---------------------------------------------------------------- NaN in the chapters' toolboxes


def test_em_step_refuses_nan_data():
    model = vl.linear_gaussian.LinearGaussian.random(5, 2, generator=torch.Generator().manual_seed(0))
    x, _ = model.sample(50, generator=torch.Generator().manual_seed(1))
    x[3, 2] = float("nan")
    with pytest.raises(vl.VaelibError, match="x contains NaN or infinite values"):
        model.em_step(x)
    x[3, 2] = float("inf")
    with pytest.raises(vl.VaelibError, match="x contains NaN or infinite values"):
        model.em_step(x, learn_variance=False)
    with pytest.raises(vl.VaelibError, match="NaN"):
        vl.linear_gaussian.fit_linear_encoder(x, torch.zeros(50, 2))


def test_pca_and_the_linear_gaussian_model_refuse_nan_data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, 5, generator=gen, dtype=torch.float64)
    bad = x.clone()
    bad[4, 1] = float("nan")
    with pytest.raises(vl.VaelibError, match="x contains NaN"):
        vl.pca.fit_pca(bad, 2)
    with pytest.raises(vl.VaelibError, match="A contains NaN"):
        vl.pca.principal_angles(bad[:, :2], x[:, :2])
    model = vl.linear_gaussian.LinearGaussian.random(5, 2, generator=gen)
    for method in (model.log_marginal, model.posterior, model.encode, model.posterior_distribution):
        with pytest.raises(vl.VaelibError, match="x contains NaN"):
            method(bad)
    mu, logvar = model.encode(x)
    for method in (model.elbo, model.kl_to_posterior, model.expected_log_likelihood):
        with pytest.raises(vl.VaelibError, match="x contains NaN"):
            method(bad, mu, logvar)
    with pytest.raises(vl.VaelibError, match=r"x must be \(\.\.\., 5\)"):
        model.log_marginal(x[:, :4])
    with pytest.raises(vl.VaelibError, match="W contains NaN"):
        vl.linear_gaussian.LinearGaussian(torch.full((5, 2), float("nan")), torch.zeros(5))


def test_counts_of_the_toolboxes_follow_the_one_rule():
    model = vl.linear_gaussian.LinearGaussian.random(np.int64(5), 2)  # numpy integers are counts too
    for bad, match in ((-1, "n must be an integer >= 1, got -1"), (2.5, "n must be an integer >= 1, got 2.5")):
        with pytest.raises(vl.VaelibError, match=match):
            model.sample(bad)
    with pytest.raises(vl.VaelibError, match="P must be an integer >= 1, got -1"):
        vl.linear_gaussian.LinearGaussian.random(-1, 2)
    with pytest.raises(vl.VaelibError, match="D must be an integer >= 1, got 0"):
        vl.pca.random_orthonormal(4, 0)
    images = torch.rand(4, 16)
    with pytest.raises(vl.VaelibError, match="ncol must be an integer >= 1, got 0"):
        vl.plot.tile(images, 0)
    with pytest.raises(vl.VaelibError, match="ncol must be an integer >= 1, got 0"):
        vl.plot.image_grid(images, 0)
    with pytest.raises(vl.VaelibError, match="n must be an integer >= 1, got -1"):
        vl.plot.reconstructions(images, images, -1)


def test_histogram_classifier_takes_labels_as_lists():
    gen = torch.Generator().manual_seed(0)
    z, y = torch.randn(100, 2, generator=gen), torch.randint(0, 3, (100,), generator=gen)
    assert vl.information.histogram_classifier(z, y.tolist(), z, y.numpy()) == vl.information.histogram_classifier(
        z, y, z, y
    )


def test_histogram_classifier_refuses_nan_codes():
    gen = torch.Generator().manual_seed(0)
    z, y = torch.randn(100, 2, generator=gen), torch.randint(0, 3, (100,), generator=gen)
    bad = z.clone()
    bad[5, 1] = float("nan")
    with pytest.raises(vl.VaelibError, match="z_fit contains NaN"):
        vl.information.histogram_classifier(bad, y, z, y)
    with pytest.raises(vl.VaelibError, match="z contains NaN"):
        vl.information.histogram_classifier(z, y, bad, y)
    with pytest.raises(vl.VaelibError, match="bins must be an integer"):
        vl.information.histogram_classifier(z, y, z, y, bins=2.5)


# ---------------------------------------------------------------- one rule for counts, one value check for all models


def test_sample_counts_follow_one_rule_that_takes_numpy_integers():
    mu, logvar = torch.zeros(3), torch.zeros(3)
    f = vl.estimators.integrand("quadratic")
    for estimator in (vl.estimators.score_function_gradient, vl.estimators.reparameterized_gradient):
        g_mu, _ = estimator(f, mu, logvar, np.int64(4))
        assert g_mu.shape == (4, 3)
        for bad in (0, 2.0, True):
            with pytest.raises(vl.VaelibError, match="n_samples must be an integer >= 1"):
                estimator(f, mu, logvar, bad)
    assert vl.gaussian.reparameterize(mu, logvar, np.int32(5)).shape == (5, 3)
    with pytest.raises(vl.VaelibError, match="n_samples must be an integer >= 1"):
        vl.gaussian.reparameterize(mu, logvar, 3.0)
    estimate, _ = vl.information.gaussian_kl_monte_carlo(mu, logvar, mu, logvar, np.int64(10))
    assert estimate.item() == 0.0
    with pytest.raises(vl.VaelibError, match="n_samples .* must be an integer >= 2"):
        vl.information.gaussian_kl_monte_carlo(mu, logvar, mu, logvar, 1)


def test_the_autoencoder_gets_the_vaes_value_check(grey_data):
    ae = vl.Autoencoder(vl.AutoencoderConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,)))
    vae = vl.VAE(vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,), likelihood="gaussian"))
    bad = grey_data[0][:8].clone()
    bad[0, 0] = float("nan")
    for model in (ae, vae):
        with pytest.raises(vl.VaelibError, match="NaN or infinite"):
            vl.objective(model, bad)
        with pytest.raises(vl.VaelibError, match="15 values per example"):
            vl.objective(model, torch.rand(4, 15))
        with pytest.raises(vl.VaelibError, match="NaN or infinite"):
            vl.reconstruct(model, bad)
    with pytest.raises(vl.VaelibError, match="no latent distribution: k, beta"):
        vl.objective(ae, grey_data[0][:8], k=5)
    with pytest.raises(vl.VaelibError, match="no latent distribution"):
        vl.fit(ae, grey_data[0], config=vl.TrainConfig(epochs=1, beta=0.5, device="cpu"), progress=False)


def test_fixed_binarization_scans_each_split_once_with_one_message(tiny_config, monkeypatch):
    scans = []
    real = torch.aminmax
    monkeypatch.setattr(torch, "aminmax", lambda x, *a, **k: scans.append(x.shape) or real(x, *a, **k))
    x = torch.rand(64, 16)
    config = vl.TrainConfig(epochs=1, batch_size=32, pixels="fixed", device="cpu")
    vl.fit(vl.VAE(tiny_config), x, x[:16], config, progress=False)
    assert scans == [(64, 16), (16, 16)]  # the training set, then the test set: one pass each
    with pytest.raises(vl.VaelibError) as info:
        vl.fit(vl.VAE(tiny_config), x * 3, config=config, progress=False)
    assert str(info.value).startswith("binarization needs grey levels in [0, 1], got values in [")


# ---------------------------------------------------------------- huge requests and devices


def test_inputs_and_models_without_values_are_refused(tiny_vae, binary_data):
    x = binary_data[1][:8]
    meta_x = x.to("meta")
    for call in (
        lambda: vl.objective(tiny_vae, meta_x),
        lambda: vl.evaluate(tiny_vae, meta_x),
        lambda: vl.log_marginal_likelihood(tiny_vae, meta_x, 5),
        lambda: vl.reconstruct(tiny_vae, meta_x),
    ):
        with pytest.raises(vl.VaelibError, match="meta device"):
            call()
    meta_model = vl.VAE(tiny_vae.config).to("meta")
    for call in (
        lambda: vl.objective(meta_model, x),
        lambda: vl.evaluate(meta_model, x),
        lambda: vl.encode_dataset(meta_model, x),
        lambda: vl.sample_prior(meta_model, 4),
        lambda: vl.latent_grid(meta_model, 3),
    ):
        with pytest.raises(vl.VaelibError, match="weights are on the meta device"):
            call()


def test_an_absurd_sample_count_is_refused_before_any_allocation(tiny_vae, binary_data):
    x = binary_data[1][:8]
    huge = 10**13
    for call, advice in (
        (lambda: vl.objective(tiny_vae, x, k=huge), "iwae_bound"),
        (lambda: vl.iwae_bound(tiny_vae, x, huge), "fewer samples"),
        (lambda: vl.log_marginal_likelihood(tiny_vae, x, huge), "fewer samples"),
        (lambda: vl.evaluate(tiny_vae, x, k=huge), "fewer samples"),
        (lambda: vl.sample_prior(tiny_vae, huge), "ask for fewer"),
        (lambda: vl.latent_grid(tiny_vae, 10**7), "ask for fewer"),
        (lambda: vl.train_epoch(tiny_vae, x, torch.optim.Adam(tiny_vae.parameters()), batch_size=8, k=huge), ""),
    ):
        with pytest.raises(vl.VaelibError, match=rf"would need at least [\d,.]+ GiB on cpu, which has .*{advice}"):
            call()


@pytest.mark.cuda
def test_inputs_on_another_device_than_the_model(tiny_vae, binary_data):
    x = binary_data[1][:8]
    gpu = vl.VAE(tiny_vae.config).cuda()
    with pytest.raises(vl.VaelibError, match=r"x is on cpu but the model is on cuda:0; move the data"):
        vl.objective(gpu, x)
    with pytest.raises(vl.VaelibError, match="generator is on cpu"):
        vl.objective(gpu, x.cuda(), generator=torch.Generator())
    # the entry points that move data batch by batch take it from the CPU
    assert math.isfinite(vl.evaluate(gpu, x)["elbo"])
    assert vl.log_marginal_likelihood(gpu, x, 5, generator=torch.Generator(device="cuda")).device.type == "cuda"


# ---------------------------------------------------------------- data files and roots


def test_swapped_image_and_label_files_are_a_data_error(tmp_path, fake_mnist_writer, no_download):
    raw = tmp_path / "MNIST" / "raw"
    fake_mnist_writer(raw, n_train=3, n_test=3)
    images, labels = raw / "t10k-images-idx3-ubyte", raw / "t10k-labels-idx1-ubyte"
    images.rename(raw / "swap")
    labels.rename(images)
    (raw / "swap").rename(labels)
    with pytest.raises(
        vl.DataError, match=r"t10k-images-idx3-ubyte holds an array of shape \(3,\), not images .*swapped"
    ):
        vl.load("mnist", "test", root=tmp_path)
    vl.load("mnist", "train", root=tmp_path)  # the other split is fine


def test_a_data_root_that_is_a_file_is_a_data_error(tmp_path, monkeypatch, no_download, capsys):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("VAELIB_DATA", str(blocker))
    for download in (True, False):
        with pytest.raises(vl.DataError, match=r"data root .*not-a-dir \(from \$VAELIB_DATA\) is a file, not a dir"):
            vl.load("mnist", download=download)
    with pytest.raises(vl.DataError, match=r"\(from the root argument\) is a file"):
        vl.load("mnist", root=blocker)
    assert main(["info"]) == 0  # info reports the problem instead of failing
    assert "is a file, not a directory" in json.loads(capsys.readouterr().out)["datasets"]["mnist"]


def test_an_unreadable_data_root_is_a_data_error(tmp_path, monkeypatch, no_download):
    root = tmp_path / "locked"
    root.mkdir()
    real_access = os.access
    monkeypatch.setattr(vaelib.data.os, "access", lambda p, mode: False if Path(p) == root else real_access(p, mode))
    with pytest.raises(vl.DataError, match=r"cannot read the data root .*locked \(from the root argument\): perm"):
        vl.load("mnist", root=root)
    # an unreadable folder below the root: the permission error of the file system itself
    monkeypatch.undo()
    real_is_file = Path.is_file

    def is_file(path):
        if path.parent.name == "raw":
            raise PermissionError(13, "Permission denied", str(path))
        return real_is_file(path)

    monkeypatch.setattr(Path, "is_file", is_file)
    with pytest.raises(vl.DataError, match=r"cannot read .*MNIST/raw: permission denied"):
        vl.load("mnist", root=root)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any directory whatever its mode")
def test_an_unreadable_data_root_on_disk(tmp_path, no_download):
    root = tmp_path / "locked"
    root.mkdir()
    root.chmod(0)
    try:
        with pytest.raises(vl.DataError, match="cannot read the data root"):
            vl.load("mnist", root=root)
    finally:
        root.chmod(0o755)


# ---------------------------------------------------------------- pretrained records


@pytest.fixture
def weights_copy(tmp_path, monkeypatch):
    """A copy of two shipped models' files, used by vl.load_pretrained in place of the package's."""
    import shutil

    import vaelib.pretrained

    folder = tmp_path / "weights"
    folder.mkdir()
    for name in ("notes-mnist-20", "mnist-2d"):
        for suffix in (".json", ".pt"):
            shutil.copy(vaelib.pretrained._weights_dir() / f"{name}{suffix}", folder)
    monkeypatch.setattr(vaelib.pretrained, "_weights_dir", lambda: folder)
    return folder


def test_a_malformed_record_names_its_file_and_the_other_models_still_load(weights_copy):
    (weights_copy / "mnist-2d.json").write_text('{"model_kind": "VAE", ')  # cut short
    with pytest.raises(vl.CheckpointError, match=r"mnist-2d.json is not a readable record \(JSONDecodeError"):
        vl.load_pretrained("mnist-2d")
    with pytest.raises(vl.CheckpointError, match="mnist-2d.json"):
        vl.pretrained_models()
    assert vl.load_pretrained("notes-mnist-20").config.latent_dim == 20
    (weights_copy / "mnist-2d.json").write_text('{"model_kind": "VAE"}')
    with pytest.raises(
        vl.CheckpointError, match="mnist-2d.json is an incomplete record: it lacks model_config, sha256"
    ):
        vl.load_pretrained("mnist-2d")


def test_a_missing_record_is_named_not_an_unknown_model(weights_copy):
    (weights_copy / "mnist-2d.json").unlink()
    with pytest.raises(vl.CheckpointError, match=r"the record of 'mnist-2d' is missing: no file .*mnist-2d.json"):
        vl.load_pretrained("mnist-2d")
    assert vl.load_pretrained("notes-mnist-20").config.latent_dim == 20
    with pytest.raises(vl.VaelibError, match="no pretrained model 'mnist-3d'; available: mnist-2d, notes-mnist-20"):
        vl.load_pretrained("mnist-3d")


# ---------------------------------------------------------------- resume on another kind of device


def _fake_cuda_state(state: torch.Tensor) -> torch.Tensor:
    """A generator state in CUDA's format (16 bytes: seed and offset) in place of a CPU one."""
    return torch.tensor(list(range(16)), dtype=torch.uint8)


@pytest.mark.parametrize("legacy", [False, True])
def test_a_run_saved_on_cuda_resumes_on_the_cpu(tiny_config, binary_data, tmp_path, legacy):
    """A CUDA generator's state cannot be set on a CPU generator: the stream is reseeded from it, deterministically."""
    config = vl.TrainConfig(epochs=1, batch_size=64, lr=1e-2, device="cpu", eval_batch_size=64)
    path = tmp_path / "run.pt"
    vl.fit(vl.VAE(tiny_config), binary_data[0], binary_data[1], config, checkpoint=path, progress=False)
    state = torch.load(path, weights_only=True)
    assert state["rng_device"] == "cpu" and state["rng_state"].numel() == 5056
    state["rng_state"] = _fake_cuda_state(state["rng_state"])
    if legacy:  # a checkpoint of vaelib 0.3 does not say where its state came from
        del state["rng_device"]
    else:
        state["rng_device"] = "cuda"
    torch.save(state, path)
    more = vl.TrainConfig(epochs=3, batch_size=64, lr=1e-2, device="cpu", eval_batch_size=64)
    runs = []
    for copy in ("a", "b"):
        (tmp_path / copy).mkdir()
        (tmp_path / copy / "run.pt").write_bytes(path.read_bytes())
        model = vl.VAE(tiny_config)
        history = vl.fit(model, binary_data[0], binary_data[1], more, checkpoint=tmp_path / copy / "run.pt")
        runs.append((history, model))
    (first, model_a), (second, model_b) = runs
    assert [h["epoch"] for h in first] == [1, 2, 3]
    assert all(math.isfinite(h["test_elbo"]) for h in first)
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in first] == [
        {k: v for k, v in h.items() if k != "seconds"} for h in second
    ]  # the same checkpoint continues the same way
    assert all(torch.equal(a, b) for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values()))


class _FakeCudaGenerator:
    """What vaelib.streams.restore uses of a CUDA generator: its device, its 16-byte state, set_state, manual_seed."""

    device = torch.device("cuda")

    def __init__(self):
        self.state, self.seed = torch.zeros(16, dtype=torch.uint8), None

    def get_state(self):
        return self.state.clone()

    def set_state(self, state):
        assert state.numel() == 16 and state.device.type == "cpu"
        self.state = state.clone()

    def manual_seed(self, seed):
        self.seed = seed
        return self


def test_a_cpu_state_restores_into_a_cuda_generator_and_back():
    from vaelib import streams

    cpu_state = torch.Generator().manual_seed(5).get_state()
    gpu = _FakeCudaGenerator()
    streams.restore(gpu, cpu_state, "cpu")  # CPU -> CUDA: reseeded from the CPU state
    assert gpu.seed is not None and 0 <= gpu.seed < 2**63
    again = _FakeCudaGenerator()
    streams.restore(again, cpu_state, None)  # legacy: 5,056 bytes say "cpu"
    assert again.seed == gpu.seed
    other = _FakeCudaGenerator()
    streams.restore(other, torch.Generator().manual_seed(6).get_state(), "cpu")
    assert other.seed != gpu.seed  # another state, another continuation
    cuda_state = torch.arange(16, dtype=torch.uint8)
    same = _FakeCudaGenerator()
    streams.restore(same, cuda_state, "cuda")  # CUDA -> CUDA: exact
    assert torch.equal(same.state, cuda_state) and same.seed is None
    cpu = torch.Generator()
    streams.restore(cpu, cuda_state, "cuda")  # CUDA -> CPU: reseeded, deterministically
    draw = torch.rand(3, generator=cpu)
    streams.restore(cpu, cuda_state, None)
    assert torch.equal(torch.rand(3, generator=cpu), draw)
    streams.restore(cpu, cpu_state, "cpu")  # CPU -> CPU: exact
    assert torch.equal(cpu.get_state(), cpu_state)


@pytest.mark.cuda
def test_a_run_moves_between_cuda_and_the_cpu(tiny_config, binary_data, tmp_path):
    """For real: trained on the GPU, resumed on the CPU, and the other way round."""
    for first, second in (("cuda", "cpu"), ("cpu", "cuda")):
        path = tmp_path / f"{first}-{second}.pt"
        config = vl.TrainConfig(epochs=1, batch_size=64, lr=1e-2, device=first)
        vl.fit(vl.VAE(tiny_config), binary_data[0], binary_data[1], config, checkpoint=path, progress=False)
        assert torch.load(path, weights_only=True)["rng_device"] == first
        model = vl.VAE(tiny_config)
        more = vl.TrainConfig(epochs=2, batch_size=64, lr=1e-2, device=second)
        history = vl.fit(model, binary_data[0], binary_data[1], more, checkpoint=path, progress=False)
        assert [h["epoch"] for h in history] == [1, 2] and math.isfinite(history[-1]["test_elbo"])
        assert next(model.parameters()).device.type == second
        assert torch.load(path, weights_only=True)["rng_device"] == second


# ---------------------------------------------------------------- the CLI: time limits, data, Ctrl-C


@pytest.mark.parametrize("value", ["nan", "-5", "inf", "soon"])
def test_a_time_limit_must_be_a_finite_number_of_seconds(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--out", str(tmp_path / "run"), "--time-limit", value, "--epochs", "1", "--n-train", "10"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--time-limit" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(vl.VaelibError, match="time_limit must be"):
        vl.fit(vl.VAE(), torch.rand(4, 784), config=vl.TrainConfig(epochs=1, device="cpu"), time_limit=float(value)
               if value != "soon" else value, progress=False)  # fmt: skip


def test_a_run_refuses_other_data_on_resume(tmp_path, mnist_root, capsys):
    run = tmp_path / "run"
    args = ["train", "--out", str(run), "--epochs", "2", "--n-train", "200", "--n-test", "50", "--hidden-dims", "16",
            "--latent-dim", "2", "--time-limit", "0", "--quiet", "--data-root", str(mnist_root)]  # fmt: skip
    assert main(args) == 0
    assert json.loads((run / "run.json").read_text()) == {"dataset": "mnist", "n_train": 200, "n_test": 50}
    checkpoint = (run / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    for flag, value, said in (("--dataset", "fashion-mnist", "--dataset mnist"), ("--n-train", "300", "--n-train 200")):
        changed = [*args[:2], *args[2:], flag, value]
        assert main(changed) == 1
        err = capsys.readouterr().err
        assert f"was trained with {said}" in err and "use a new --out" in err and len(err.strip().splitlines()) == 1
    assert (run / "checkpoint.pt").read_bytes() == checkpoint  # nothing was trained on the other data
    # a run of vaelib 0.3 kept the data set's name in its checkpoint
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    torch.save({**state, "dataset": "mnist"}, run / "checkpoint.pt")
    (run / "run.json").unlink()
    assert main([*args, "--dataset", "fashion-mnist"]) == 1
    assert "was trained with --dataset mnist" in capsys.readouterr().err
    assert main(args) == 0  # the same data resumes
    assert json.loads(capsys.readouterr().out)["epochs_done"] == 2


# Started before anything else in the child (a sitecustomize module on PYTHONPATH): the moment the import of
# torch reaches its compiled core, the process sends itself SIGINT, as a Ctrl-C in the middle of loading torch
# would.  No race with a watcher that polls /proc for libtorch, as an earlier version did.
_CTRL_C_DURING_TORCH_IMPORT = """
import os, signal, sys


class CtrlCWhileTorchLoads:
    def find_spec(self, name, path=None, target=None):
        if name == "torch._C":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None


sys.meta_path.insert(0, CtrlCWhileTorchLoads())
"""


def _interrupt_while_torch_loads(command: list[str], hook_dir: Path) -> subprocess.CompletedProcess:
    """Run ``command`` with a Ctrl-C delivered while ``import torch`` is under way, before the arguments are
    parsed (vaelib imports torch on first use, so this is the first thing any command does)."""
    (hook_dir / "sitecustomize.py").write_text(_CTRL_C_DURING_TORCH_IMPORT)
    path = os.pathsep.join(filter(None, [str(hook_dir), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "CI": "true", "PYTHONPATH": path}
    # SIGINT at its default, as in a terminal: a run started in the background by a non-interactive shell
    # inherits it ignored, and Python then leaves it ignored.
    restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, preexec_fn=restore)


def test_ctrl_c_while_torch_loads_ends_in_one_line(tmp_path):
    console_script = Path(sys.executable).with_name("vaelib")
    commands = [[sys.executable, "-m", "vaelib", "info"]]
    if console_script.exists():
        commands.append([str(console_script), "info"])
    for command in commands:
        done = _interrupt_while_torch_loads(command, tmp_path)
        assert done.returncode == 130, (command, done.stderr)
        assert done.stderr == "vaelib: interrupted\n", (command, done.stderr)  # before the arguments were parsed
        assert done.stdout == "", (command, done.stdout)  # info never ran


def test_the_ctrl_c_hook_fires_inside_the_import_of_torch(tmp_path):
    """The hook above interrupts ``import torch`` itself, not the code after it."""
    probe = "import sys\ntry:\n    import torch\nexcept KeyboardInterrupt:\n    sys.exit(7)\nsys.exit(0)\n"
    done = _interrupt_while_torch_loads([sys.executable, "-c", probe], tmp_path)
    assert done.returncode == 7, done.stderr


def test_ctrl_c_says_what_is_kept_only_where_something_is(tmp_path, monkeypatch, capsys):
    import vaelib.checkpoint
    import vaelib.data

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(vaelib.checkpoint, "load_model", interrupt)
    monkeypatch.setattr(vaelib.data, "load", interrupt)
    assert main(["evaluate", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err
    assert err == "vaelib evaluate: interrupted\n" and "checkpoint" not in err
    assert main(["train", "--out", str(tmp_path / "run")]) == 130
    assert capsys.readouterr().err == "vaelib train: interrupted\n"  # before the first epoch: nothing kept
    monkeypatch.setattr(vaelib.cli, "_check_data", lambda out, args: None)
    (tmp_path / "run").mkdir(exist_ok=True)  # made by the first call's writability check
    (tmp_path / "run" / "checkpoint.pt").touch()  # an epoch was saved
    assert main(["train", "--out", str(tmp_path / "run")]) == 130
    assert "vaelib train: interrupted; the checkpoint of the last finished epoch is kept" in capsys.readouterr().err


# ---------------------------------------------------------------- error messages name what exists


def test_every_name_an_error_message_gives_exists():
    """Messages send the reader to vl.X, vaelib.X or vaelib.module.X: each of those must exist."""
    import ast
    import importlib

    package = Path(vl.__file__).parent
    named = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                named |= set(re.findall(r"\b(?:vl|vaelib)\.(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*", node.value))
    assert "vl.load_model" in named or "vaelib.load_model" in named  # the scan sees the messages
    for name in sorted(named):
        parts = name.split(".")
        obj = importlib.import_module("vaelib")
        for i, attr in enumerate(parts[1:], 1):
            if not hasattr(obj, attr):
                obj = importlib.import_module(".".join(["vaelib", *parts[1 : i + 1]]))
            else:
                obj = getattr(obj, attr)


# ---------------------------------------------------------------- the adversarial sweep's cases


def test_objective_refuses_a_bad_proposal_or_noise_and_casts_good_noise(tiny_vae, binary_data):
    x = binary_data[0][:5]
    for q in ((0.0,), (0.0, 0.0, 0.0), "prior", (0.0, "a")):
        with pytest.raises(vl.VaelibError, match=r"q must be a pair \(mu, logvar\)"):
            vl.objective(tiny_vae, x, q=q)
    with pytest.raises(vl.VaelibError, match="q's mu contains NaN"):
        vl.objective(tiny_vae, x, q=(float("nan"), 0.0))
    eps = torch.randn(5, tiny_vae.latent_dim, generator=torch.Generator().manual_seed(0))
    with pytest.raises(vl.VaelibError, match="eps must be a floating-point torch.Tensor"):
        vl.objective(tiny_vae, x, eps=eps.tolist())
    with pytest.raises(vl.VaelibError, match=r"eps must be \(k, B, D\) with \(B, D\) = \(5, 2\)"):
        vl.objective(tiny_vae, x, eps=torch.zeros(2))
    with pytest.raises(vl.VaelibError, match="eps contains NaN"):
        vl.objective(tiny_vae, x, eps=torch.full_like(eps, float("nan")))
    single = vl.objective(tiny_vae, x, eps=eps).objective
    assert torch.equal(vl.objective(tiny_vae, x, eps=eps.double()).objective, single)  # cast, like x


def test_generators_and_models_of_the_wrong_type_are_refused(tiny_vae, binary_data):
    x = binary_data[0][:4]
    calls = {
        "objective": lambda g: vl.objective(tiny_vae, x, generator=g),
        "forward": lambda g: tiny_vae(x, generator=g),
        "sample_prior": lambda g: vl.sample_prior(tiny_vae, 3, generator=g),
        "binarize": lambda g: vl.binarize(x, g),
    }
    for name, call in calls.items():
        with pytest.raises(vl.VaelibError, match="generator must be a torch.Generator or None, got str"):
            call("x")
    for call in (vl.objective, vl.evaluate, vl.reconstruct, vl.encode_dataset, vl.kl_per_dimension):
        with pytest.raises(vl.VaelibError, match="model must be a torch.nn.Module such as vl.VAE"):
            call(None, x)
    with pytest.raises(vl.VaelibError, match="model must be a vaelib model"):
        vl.objective(torch.nn.Linear(16, 2), x)


def test_the_importance_weighted_bounds_need_a_latent_distribution(binary_data):
    ae = vl.Autoencoder(vl.AutoencoderConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,)))
    x = binary_data[0][:4]
    with pytest.raises(vl.VaelibError, match="iwae_bound needs a model with a latent distribution.*Autoencoder"):
        vl.iwae_bound(ae, x, 3)
    with pytest.raises(vl.VaelibError, match="log_marginal_likelihood needs a model with a latent distribution"):
        vl.log_marginal_likelihood(ae, x, 3)


def test_the_elbo_helpers_refuse_what_has_no_answer():
    for beta in (float("nan"), -1.0, "a"):
        with pytest.raises(vl.VaelibError, match="beta must be"):
            vl.elbo.kl_warmup(0, 2, beta=beta)
    assert vl.elbo.kl_warmup(0, 2, beta=np.float32(0.5)) == 0.25
    with pytest.raises(vl.VaelibError, match="k must be an integer >= 1, got 0"):
        vl.elbo.log_weights(
            vl.VAE(vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=2)),
            torch.zeros(1, 16),
            torch.zeros(1, 2),
            torch.zeros(1, 2),
            0,
        )
    with pytest.raises(vl.VaelibError, match=r"log_w holds no samples along dim=0 \(shape \(0, 4\)\)"):
        vl.elbo.log_mean_exp(torch.zeros(0, 4))
    with pytest.raises(vl.VaelibError, match="dim=5 is not a dimension of log_w"):
        vl.elbo.log_mean_exp(torch.zeros(3, 4), dim=5)


def test_train_epoch_says_when_the_loss_diverges(tiny_vae, binary_data):
    optimizer = torch.optim.SGD(tiny_vae.parameters(), lr=1e30)
    with pytest.raises(vl.VaelibError, match="the training loss became non-finite; lower lr or check the data"):
        vl.train_epoch(tiny_vae, binary_data[0][:8], optimizer, batch_size=2)


def test_paths_and_configs_of_the_wrong_type_are_refused(tiny_vae, binary_data, tmp_path):
    x = binary_data[0][:8]
    with pytest.raises(vl.VaelibError, match=r"config must be a vl.TrainConfig, e.g. vl.TrainConfig\(epochs=10\)"):
        vl.fit(tiny_vae, x, None, None, progress=False)
    with pytest.raises(vl.VaelibError, match="checkpoint must be a path"):
        vl.fit(tiny_vae, x, None, vl.TrainConfig(epochs=1, device="cpu"), checkpoint=5, progress=False)
    with pytest.raises(vl.VaelibError, match="checkpoint must be a path"):
        vl.load_model(None)
    with pytest.raises(vl.CheckpointError, match=r"is a directory, not a checkpoint; name the file, e\.g\."):
        vl.load_model(tmp_path)
    with pytest.raises(vl.VaelibError, match="out_dir must be a path"):
        vl.export_web(tiny_vae, None)
    with pytest.raises(vl.DataError, match=r"unknown data set \['mnist'\]"):
        vl.load(["mnist"])
    with pytest.raises(vl.VaelibError, match="root must be a path"):
        vl.load(root=5, download=False)


def test_the_explore_functions_refuse_inputs_that_do_not_fit(tiny_vae, binary_data):
    x = binary_data[0][:5]
    with pytest.raises(vl.VaelibError, match=r"x_a must be one input of 16 values.*got shape \(17,\)"):
        vl.interpolate(tiny_vae, torch.rand(17), x[0])
    with pytest.raises(vl.VaelibError, match=r"x_a must be one input of 16 values.*got shape \(2, 16\)"):
        vl.interpolate(tiny_vae, x[:2], x[0])
    cvae = vl.VAE(vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,), num_classes=3))
    with pytest.raises(vl.VaelibError, match="y must be integer class labels"):
        vl.latent_grid(cvae, 3, y="1")
    with pytest.raises(vl.VaelibError, match="active_units needs at least 2 inputs"):
        vl.active_units(tiny_vae, x[:1])
    with pytest.raises(vl.VaelibError, match="threshold must be a finite number"):
        vl.active_units(tiny_vae, x, threshold=float("nan"))


def test_a_checkpoint_below_a_file_names_the_file(tiny_vae, binary_data, tmp_path):
    (tmp_path / "notes").write_text("a file")
    config = vl.TrainConfig(epochs=1, device="cpu")
    with pytest.raises(vl.CheckpointError, match=r"notes is a file, not a directory; choose a directory"):
        vl.fit(tiny_vae, binary_data[0][:8], None, config, checkpoint=tmp_path / "notes" / "ck.pt", progress=False)
