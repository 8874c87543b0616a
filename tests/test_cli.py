"""The vaelib command end to end on a small MNIST subset, and its error handling."""

import json
import subprocess
import sys

import pytest
import torch

import vaelib
import vaelib as vl
import vaelib.checkpoint
import vaelib.data
import vaelib.train
from vaelib.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_evaluate_sample_end_to_end(tmp_path, capsys, mnist_root):
    root = str(mnist_root)
    run = tmp_path / "run"
    code, out, err = _run(
        capsys,
        "train",
        "--epochs",
        "2",
        "--n-train",
        "1000",
        "--n-test",
        "200",
        "--latent-dim",
        "2",
        "--hidden",
        "64",
        "--lr-schedule",
        "burda",
        "--device",
        "cpu",
        "--data-root",
        root,
        "--out",
        str(run),
        "--quiet",
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["epochs_done"] == 2
    history = json.loads((run / "history.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0]["lr"] == 1e-3 and history[1]["lr"] == pytest.approx(
        1e-4
    )  # epoch 2 starts at 1640 of 3280: the last pass
    assert summary["test_elbo"] == pytest.approx(history[-1]["test_elbo"])

    # evaluate: the k-sample bound is at least the ELBO, so NLL <= -ELBO (up to Monte Carlo noise).
    code, out, err = _run(
        capsys, "evaluate", str(run), "--k", "200", "--n-test", "100", "--device", "cpu", "--data-root", root
    )
    assert code == 0, err
    scores = json.loads(out)
    assert scores["n_test"] == 100 and scores["k"] == 200
    assert scores["test_nll"] <= -scores["test_elbo"] + 0.5
    assert scores["test_elbo"] == pytest.approx(scores["test_reconstruction"] - scores["test_kl"], abs=1e-3)

    png = tmp_path / "samples.png"
    code, out, err = _run(capsys, "sample", str(run), "--n", "16", "--out", str(png), "--device", "cpu")
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The checkpoint the CLI wrote rebuilds the same model.
    model = vl.load_model(run / "checkpoint.pt")
    assert model.config == vl.VAEConfig(latent_dim=2, hidden_dims=(64,))


def test_info_reports_versions_and_data_root(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("VAELIB_DATA", str(tmp_path))
    code, out, _ = _run(capsys, "info")
    info = json.loads(out)
    assert code == 0
    assert info["torch"] == torch.__version__ and info["vaelib"] == vl.__version__
    assert info["data_root"] == str(tmp_path)
    assert info["datasets"]["mnist"] == "not found"


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "--epochs", "two", "--out", "x"], "--epochs"),
        (["train", "--likelihood", "poisson", "--out", "x"], "--likelihood"),
        (["evaluate", "run", "--k", "0"], "--k"),
        (["sample", "run"], "--out"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


def test_errors_in_input_give_one_line_and_exit_1(tmp_path, capsys):
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint at all")
    code, _, err = _run(capsys, "evaluate", str(bogus))
    assert code == 1 and "not a readable checkpoint" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(capsys, "sample", str(tmp_path / "missing"), "--out", str(tmp_path / "a.png"))
    assert code == 1 and "no checkpoint" in err
    code, _, err = _run(
        capsys,
        "train",
        "--out",
        str(tmp_path / "r"),
        "--data-root",
        str(tmp_path / "empty"),
        "--no-download",
        "--quiet",
    )
    # An empty root without the download must name the path searched.
    assert code == 1 and str(tmp_path / "empty") in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_gpu_is_a_clear_error(tmp_path, capsys, mnist_root):
    root = str(mnist_root)
    code, _, err = _run(
        capsys, "train", "--device", "cuda", "--n-train", "10", "--out", str(tmp_path / "r"), "--data-root", root
    )
    assert code == 1 and "CUDA" in err and "cpu" in err


def test_python_dash_m_runs_the_cli():
    done = subprocess.run([sys.executable, "-m", "vaelib", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"vaelib {vl.__version__}"
    done = subprocess.run(
        [sys.executable, "-m", "vaelib", "train", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "--latent-dim" in done.stdout


def test_train_flags_come_from_the_config_fields_with_their_choices_and_help():
    import argparse
    import dataclasses

    from vaelib.cli import build_parser, field_help

    parser = build_parser()
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    by_dest = {a.dest: a for a in train._actions}
    for cls, skip in ((vl.VAEConfig, {"image_shape"}), (vl.TrainConfig, set())):
        helps = field_help(cls)
        for field in dataclasses.fields(cls):
            if field.name in skip:
                continue
            action = by_dest[field.name]
            assert action.option_strings == ["--" + field.name.replace("_", "-")] or field.type == "bool"
            assert action.default == field.default, field.name
            assert helps[field.name] and helps[field.name] in action.help, field.name
            if field.name in cls.choices:
                assert tuple(action.choices) == tuple(cls.choices[field.name]), field.name
    assert set(field_help(vl.TrainConfig)) == {f.name for f in dataclasses.fields(vl.TrainConfig)}  # every field says


def test_named_random_streams_seed_what_they_say():
    from vaelib import streams

    assert streams.STREAMS["test_pixels"] == 2 and len(set(streams.STREAMS.values()) - {0}) == 4
    a = streams.generator(5, "eval").initial_seed()
    assert a == 5 + streams.STREAMS["eval"]
    with pytest.raises(KeyError, match="unknown random stream"):
        streams.generator(0, "nonsense")
    # build_model(seed=...) draws the initial weights from the "init" stream without touching the global generator
    state = torch.random.get_rng_state()
    one = vl.build_model(vl.VAEConfig(latent_dim=2, hidden_dims=(8,)), seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    two = vl.build_model(vl.VAEConfig(latent_dim=2, hidden_dims=(8,)), seed=3)
    assert all(torch.equal(p, q) for p, q in zip(one.parameters(), two.parameters()))
    torch.manual_seed(3 + streams.STREAMS["init"])
    three = vl.VAE(vl.VAEConfig(latent_dim=2, hidden_dims=(8,)))
    assert all(torch.equal(p, q) for p, q in zip(one.parameters(), three.parameters()))


def test_evaluate_uses_the_same_test_binarization_as_fit(tmp_path, mnist_root, capsys):
    """`vaelib evaluate` and fit's own test evaluation see the same binary test images (the test_pixels stream)."""
    run = tmp_path / "run"
    args = ["--epochs", "1", "--n-train", "300", "--n-test", "200", "--hidden-dims", "16", "--latent-dim", "2"]
    assert (
        main(
            [
                "train",
                "--out",
                str(run),
                *args,
                "--pixels",
                "dynamic",
                "--seed",
                "4",
                "--data-root",
                str(mnist_root),
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    model = vl.load_model(run / "checkpoint.pt")
    x, _ = vl.load("mnist", "test", root=mnist_root)
    from vaelib import streams

    x_bin = vl.binarize(x[:200], streams.generator(4, "test_pixels"))
    history = vaelib.checkpoint.load_checkpoint(run / "checkpoint.pt")["history"]
    expected = vl.evaluate(model, x_bin, seed=4 + streams.STREAMS["eval"])["elbo"]
    assert history[-1]["test_elbo"] == pytest.approx(expected, abs=1e-4)
    assert main(["evaluate", str(run), "--k", "2", "--n-test", "200", "--data-root", str(mnist_root)]) == 0
    reported = json.loads(capsys.readouterr().out)
    assert reported["seed"] == 4 and reported["pixels"] == "binarized"
    same = vl.evaluate(model, x_bin, k=2, batch_size=100, seed=4 + streams.STREAMS["nll"])  # the CLI's batches
    assert reported["test_elbo"] == pytest.approx(same["elbo"], abs=1e-4)


def test_sample_draws_from_a_shipped_model_by_name(tmp_path, capsys):
    """`vaelib sample mnist-cvae --label 7` needs no training: the grid is the shipped model's own draws."""
    import matplotlib.image

    png = tmp_path / "sevens.png"
    argv = ["sample", "mnist-cvae", "--label", "7", "--n", "16", "--seed", "3", "--out", str(png), "--device", "cpu"]
    assert main(argv) == 0, capsys.readouterr().err
    model = vl.load_pretrained("mnist-cvae")
    draws = vl.sample_prior(model, 16, y=7, generator=torch.Generator().manual_seed(3))
    expected = tmp_path / "expected.png"
    vl.plot.image_grid(draws, ncol=8).savefig(expected, dpi=100)
    assert (matplotlib.image.imread(png) == matplotlib.image.imread(expected)).all()
    other = tmp_path / "other.png"
    assert main([*argv[:3], "2", *argv[4:-3], str(other), "--device", "cpu"]) == 0
    assert not (matplotlib.image.imread(other) == matplotlib.image.imread(png)).all()  # the label matters
    capsys.readouterr()
    assert main(["sample", "mnist-3d", "--out", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert "no checkpoint at mnist-3d" in err and "no shipped model named 'mnist-3d'" in err and "mnist-cvae" in err
