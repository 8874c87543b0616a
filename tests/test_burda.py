"""The published-table experiment at a tiny size: it trains, resumes across
calls, evaluates with the k-sample bound and renders the table (issue: the CPU
path of the Burda et al. reproduction is exercised in CI)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from conftest import load_benchmark

import vaelib
import vaelib as vl
import vaelib.checkpoint
import vaelib.data
import vaelib.train

REPO = Path(__file__).resolve().parents[1]


burda = load_benchmark("burda_table")


def test_model_config_is_the_published_architecture():
    model = vl.VAE(vl.burda.config())
    widths = [m.out_features for m in model.encoder if hasattr(m, "out_features")]
    assert widths == [200, 200] and model.config.latent_dim == 50 and model.config.activation == "tanh"
    # 784*200 + 200 + 200*200 + 200 + 2 * (200*50 + 50) weights on each side, mirrored in the decoder
    encoder = 784 * 200 + 200 + 200 * 200 + 200 + 2 * (200 * 50 + 50)
    decoder = 50 * 200 + 200 + 200 * 200 + 200 + 200 * 784 + 784
    assert sum(p.numel() for p in model.parameters()) == encoder + decoder


def test_experiment_resumes_across_calls_and_reports_the_bound(tmp_path, mnist_root):
    root = str(mnist_root)
    kwargs = dict(
        epochs=2,
        run_dir=tmp_path,
        eval_k=20,
        n_train=300,
        n_test=40,
        batch_size=50,
        device="cpu",
        root=root,
        progress=False,
    )
    first = burda.run_experiment(5, time_limit=0.0, **kwargs)  # stops after its first epoch
    assert first["epochs_done"] == 1 and not first["finished"] and "test_nll" not in first
    done = burda.run_experiment(5, **kwargs)  # resumes from the checkpoint
    assert done["epochs_done"] == 2 and done["finished"]
    assert math.isfinite(done["test_nll"]) and done["test_nll"] > 0
    # L_20 is a tighter bound than the ELBO: NLL <= -ELBO, up to Monte Carlo noise on 40 images.
    assert done["test_nll"] <= -done["test_elbo"] + 1.0
    table = burda.render_table([done, {"k": 1, "epochs_done": 0}])
    assert "| IWAE | 5 | 2 |" in table and "85.54" in table and "not finished" in table


def test_experiment_trains_on_the_published_59600_images_by_default(tmp_path, mnist_root):
    root = str(mnist_root)
    # time_limit=0 stops after one epoch, before the evaluation: only the training set size is checked here
    row = burda.run_experiment(
        1,
        epochs=2,
        run_dir=tmp_path,
        n_test=10,
        batch_size=200,
        device="cpu",
        root=root,
        progress=False,
        time_limit=0.0,
    )
    assert row["n_train"] == 59_600 and row["epochs_done"] == 1
    assert vaelib.checkpoint.load_checkpoint(tmp_path / "k1.pt")["history"][0]["train_loss"] > 0


def test_script_writes_json_and_table(tmp_path, mnist_root):
    root = str(mnist_root)
    out = tmp_path / "results.json"
    cmd = [
        sys.executable,
        str(REPO / "benchmarks" / "burda_table.py"),
        "--k",
        "1",
        "2",
        "--epochs",
        "1",
        "--eval-k",
        "10",
        "--n-train",
        "200",
        "--n-test",
        "30",
        "--batch-size",
        "50",
        "--device",
        "cpu",
        "--run-dir",
        str(tmp_path / "runs"),
        "--schedule",
        "burda",
        "--out",
        str(out),
    ]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "VAELIB_DATA": root, "CI": "true"}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    assert [r["k"] for r in results["results"]] == [1, 2]
    assert all(r["finished"] and r["eval_k"] == 10 and r["n_test"] == 30 for r in results["results"])
    assert "10^(-i/7)" in results["protocol"]["optimizer"]
    # a schedule shrunk to one epoch is its first pass: the initial lr
    state = vaelib.checkpoint.load_checkpoint(tmp_path / "runs" / "k1.pt")
    assert state["history"][0]["lr"] == 1e-3
    assert results["protocol"]["epochs"] == 1
    assert results["table"] == burda.render_table(results["results"])
