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
    return subprocess.run([sys.executable, str(SCRIPT), "--root", root, "--device", "cpu", *args],
                          capture_output=True, text=True, timeout=300, env=env)


def test_benchmark_compares_three_loops_and_writes_json(tmp_path):
    root = os.environ.get("VAELIB_DATA")
    if not root:
        pytest.skip("VAELIB_DATA is not set; the benchmark reads MNIST from disk")
    out = tmp_path / "speed.json"
    done = _run("--n-train", "640", "--out", str(out), root=root)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["n_train"] == 640 and result["device"] == "cpu"
    ref, ours, floor = result["reference"], result["vaelib"], result["layers_only"]
    assert all(r["seconds"] > 0 for r in (ref, ours, floor))
    assert result["speedup"] == pytest.approx(ref["seconds"] / ours["seconds"])
    assert result["speedup_bound"] == pytest.approx(ref["seconds"] / floor["seconds"])
    # Five steps from random weights: both losses lie between a trained model's (~100 nats)
    # and an untrained one's (784 log 2 = 543 nats, the decoder's outputs start near 1/2).
    for loss in (ref["train_loss"], ours["train_loss"]):
        assert math.isfinite(loss) and 150 < loss < 560, loss
    assert result["loss_difference_nats"] == pytest.approx(ours["train_loss"] - ref["train_loss"])
    assert "vaelib.fit" in done.stdout and "layers only" in done.stdout


def test_benchmark_rejects_a_bad_subset_size(tmp_path):
    done = _run("--n-train", "0", root=str(tmp_path))
    assert done.returncode == 2
    assert "--n-train must be between 1 and 60000" in done.stderr
