"""The pretrained models shipped inside vaelib: each loads, matches its record and
its hash, runs on the CPU, and scores the ELBO its record says on the first
1,000 test images (fixed seed, k = 1).  The k = 5000 NLL is recorded by the
run that made the file (benchmarks/pretrained.py), not recomputed here."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import SHIPPED, load_benchmark

import vaelib as vl
import vaelib.pretrained
from vaelib import streams
from vaelib.checkpoint import config_from_dict, load_checkpoint

RECORDS = vl.pretrained_models()
REPO = Path(__file__).resolve().parents[1]


def test_every_planned_model_ships_or_has_its_resumable_checkpoint_committed():
    """A model of benchmarks/pretrained.py either ships by the recipe the script gives, or its run is under
    way (a new model, or a shipped one retrained by a new recipe): then its one resumable checkpoint is in
    the repository, made by exactly the command the script gives."""
    from dataclasses import fields

    from vaelib.cli import build_parser

    script = load_benchmark("pretrained")
    assert set(SHIPPED) <= set(RECORDS), f"missing: {set(SHIPPED) - set(RECORDS)}"
    assert set(RECORDS) <= set(script.SPECS)  # every shipped model has its recipe
    for name in script.SPECS:
        path = REPO / script.RUNS / name / "checkpoint.pt"
        if name in RECORDS and RECORDS[name]["command"] == script.command(name):
            continue  # shipped by today's recipe
        assert path.is_file(), f"{name} neither ships by its recipe nor has a resumable checkpoint at {path}"
        state = load_checkpoint(path)
        parsed = build_parser().parse_args(["train", *script.SPECS[name][2], "--out", "x"])
        planned = {f.name: getattr(parsed, f.name) for f in fields(vl.TrainConfig) if hasattr(parsed, f.name)}
        train = state["train_config"]
        for field, value in planned.items():  # every setting the command gives, as the checkpoint saved it
            if field != "device":
                assert train[field] == (list(value) if isinstance(value, tuple) else value), (name, field)
        assert train["epochs"] >= state["epoch"] >= 1  # at the end: export due
        assert len(state["history"]) == state["epoch"]  # one history entry per finished epoch


def test_every_promised_model_ships_with_its_record():
    assert set(SHIPPED) <= set(RECORDS), f"missing: {set(SHIPPED) - set(RECORDS)}"
    for name, record in RECORDS.items():
        for key in (
            "model_config",
            "train_config",
            "epochs",
            "train_seconds",
            "machine",
            "command",
            "history",
            "metrics",
            "check",
            "sha256",
        ):
            assert key in record, (name, key)
        metrics = record["metrics"]
        assert {"test_elbo", "test_nll", "nll_k", "n_test", "pixels"} <= set(metrics), name
        assert metrics["n_test"] == 10_000 and record["epochs"] == record["train_config"]["epochs"]
        assert len(record["history"]) == record["epochs"]
        assert record["command"].startswith("vaelib train ")
        if metrics["pixels"] != "grey":  # a likelihood needs binary pixels
            assert metrics["nll_k"] == 5000 and metrics["test_nll"] <= -metrics["test_elbo"]


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_a_shipped_model_loads_matches_its_record_and_hash_and_runs(name):
    record = RECORDS[name]
    model = vl.load_pretrained(name)
    assert not model.training and next(model.parameters()).device.type == "cpu"
    assert model.config == config_from_dict(record["model_kind"], record["model_config"])
    path = vaelib.pretrained._weights_dir() / f"{name}.pt"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"]
    state = torch.load(path, weights_only=True)  # a plain float32 state dict, nothing else
    assert all(t.dtype == torch.float32 for t in state.values()) and set(state) == set(model.state_dict())
    y = torch.arange(4) % 10 if model.config.num_classes else None
    samples = vl.sample_prior(model, 4, y=y, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (4, 784) and torch.isfinite(samples).all()


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_a_shipped_model_scores_its_recorded_elbo(name, mnist):
    record = RECORDS[name]
    check, config = record["check"], record["train_config"]
    model = vl.load_pretrained(name)
    x, y = mnist["test_x"], mnist["test_y"]
    if config["pixels"] != "grey":  # the test set binarized once, as the run that made the file did
        x = vl.binarize(x, streams.generator(config["seed"], "test_pixels"))
    n = check["n_test"]
    labels = y[:n] if model.config.num_classes else None
    elbo = vl.evaluate(model, x[:n], y=labels, seed=check["seed"])["elbo"]
    assert elbo == pytest.approx(check["elbo"], abs=0.05)


def test_an_unknown_name_lists_the_available_ones():
    with pytest.raises(vl.VaelibError, match="no pretrained model 'mnist-3d'; available: .*notes-mnist-20"):
        vl.load_pretrained("mnist-3d")


def test_a_changed_or_corrupt_weight_file_is_a_checkpoint_error_naming_it(tmp_path, monkeypatch):
    name = "notes-mnist-20"
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(vaelib.pretrained._weights_dir() / f"{name}.json", folder)
    weights = folder / f"{name}.pt"
    original = (vaelib.pretrained._weights_dir() / f"{name}.pt").read_bytes()
    monkeypatch.setattr(vaelib.pretrained, "_weights_dir", lambda: folder)
    weights.write_bytes(original[:-10] + b"0123456789")  # changed bytes: the hash no longer matches
    with pytest.raises(vl.CheckpointError, match=f"{name}.pt does not match its record"):
        vl.load_pretrained(name)
    weights.write_bytes(b"garbage")  # corrupt, and the record updated to its hash: it still cannot load
    record = json.loads((folder / f"{name}.json").read_text())
    record["sha256"] = hashlib.sha256(b"garbage").hexdigest()
    (folder / f"{name}.json").write_text(json.dumps(record))
    with pytest.raises(vl.CheckpointError, match=f"{name}.pt could not be loaded"):
        vl.load_pretrained(name)
    weights.unlink()
    with pytest.raises(vl.CheckpointError, match="weights of 'notes-mnist-20' are missing"):
        vl.load_pretrained(name)
