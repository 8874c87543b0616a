"""The speed benchmark runs end to end at a tiny size: its three loops run on the
same images, and the JSON holds what benchmarks/RESULTS.md reports."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "epoch_speed.py"


def _run(*args, root):
    env = {**os.environ, "CI": "true"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--root", root, "--device", "cpu", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_benchmark_interleaves_four_loops_and_writes_json(tmp_path, mnist_root):
    root = str(mnist_root)
    out = tmp_path / "speed.json"
    done = _run("--n-train", "640", "--rounds", "2", "--out", str(out), root=root)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["n_train"] == 640 and result["device"] == "cpu" and result["rounds"] == 2
    seconds = result["seconds"]
    assert set(seconds) == {"reference", "fit", "train_epoch", "layers_only"}
    for spread in seconds.values():
        assert len(spread["runs"]) == 2 and spread["min"] <= spread["median"] <= spread["max"]
        assert all(s > 0 for s in spread["runs"])
    median = {name: spread["median"] for name, spread in seconds.items()}
    assert result["speedup"] == pytest.approx(median["reference"] / median["fit"])
    assert result["speedup_bound"] == pytest.approx(median["reference"] / median["layers_only"])
    assert result["fit_over_layers_only"] == pytest.approx(median["fit"] / median["layers_only"])
    # Five steps from random weights: every loss lies between a trained model's (~100 nats)
    # and an untrained one's (784 log 2 = 543 nats, the decoder's outputs start near 1/2).
    for loss in result["train_loss"].values():
        assert math.isfinite(loss) and 150 < loss < 560, loss
    # fit runs train_epoch on the same weights, batches and noise: the same loss
    assert result["train_loss"]["fit"] == pytest.approx(result["train_loss"]["train_epoch"], abs=1e-3)
    assert "vaelib.fit" in done.stdout and "vaelib.train_epoch" in done.stdout and "layers only" in done.stdout


def test_benchmark_rejects_a_bad_subset_size(tmp_path):
    done = _run("--n-train", "0", root=str(tmp_path))
    assert done.returncode == 2
    assert "--n-train must be between 1 and 60000" in done.stderr
