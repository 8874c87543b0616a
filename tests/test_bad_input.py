"""Bad input gets a clear VaelibError, or is accepted where a user would expect it.

One test per gap that probing the public API and the CLI as a careful user
turned up (each failed on the code before this change), and more of the same
class of problem.
"""

import http.server
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

import vaelib as vl
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


def test_a_server_that_never_answers_times_out_and_leaves_nothing_behind(tmp_path, monkeypatch):
    import torchvision

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Silent)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [f"http://127.0.0.1:{server.server_port}/"])
        root = tmp_path / "data"
        started = time.perf_counter()
        with pytest.raises(vl.DataError, match="download into .* failed"):
            vl.load("mnist", root=root, timeout=1.0)
        assert time.perf_counter() - started < 20  # each of torchvision's attempts gave up after the timeout
        assert not root.exists()  # no empty folders left behind
    finally:
        server.shutdown()


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
    assert '"dataset": "mnist"' in done.stdout  # the data set's name comes from the checkpoint


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
