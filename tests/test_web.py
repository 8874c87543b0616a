"""vaelib.export_web and ``vaelib export-web``: the lab's manifest and weights file.

The weights are read back here with numpy from the manifest's offsets alone
(an independent reader, as the lab's JavaScript is one) and compared with the
model's state dict; the hash and the layer widths are checked against the
file and the model.  Unsupported models and bad arguments raise a
VaelibError that says what is supported; the command fails in one line.
tests/test_lab_browser.py runs the exports in Chromium.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHIPPED

import vaelib as vl
from vaelib.checkpoint import save_checkpoint
from vaelib.cli import main


def read_export(manifest_path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """The manifest and each tensor as a float64 array, read from the weights file by the manifest's offsets."""
    manifest = json.loads(manifest_path.read_text())
    data = (manifest_path.parent / manifest["weights"]["file"]).read_bytes()
    dtype = np.dtype({"float32": "<f4", "float16": "<f2"}[manifest["dtype"]])
    tensors = {}
    for name, entry in manifest["tensors"].items():
        count = int(np.prod(entry["shape"]))
        tensors[name] = np.frombuffer(data, dtype, count, entry["offset"]).reshape(entry["shape"]).astype(np.float64)
    return manifest, tensors


def _check_round_trip(model: vl.VAE, manifest_path: Path, half: bool, decoder_only: bool = False) -> dict:
    manifest, tensors = read_export(manifest_path)
    data = (manifest_path.parent / manifest["weights"]["file"]).read_bytes()
    assert manifest["format"] == "vaelib-web" and manifest["format_version"] == 1
    assert manifest["vaelib_version"] == vl.__version__ and manifest["byte_order"] == "little"
    assert manifest["dtype"] == ("float16" if half else "float32")
    assert manifest["weights"] == {
        "file": manifest_path.with_suffix(".bin").name,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    state = model.state_dict()
    expected = {k for k in state if not (decoder_only and k.split(".")[0] in ("encoder", "to_mu", "to_logvar"))}
    assert set(tensors) == expected  # every tensor, and only the model's
    assert sum(t.size for t in tensors.values()) * (2 if half else 4) == len(data)  # packed, nothing else
    for name, values in tensors.items():
        original = state[name].detach().cpu()
        stored = original.half() if half else original  # float16 is the nearest half-precision number
        assert np.array_equal(values, stored.double().numpy()), name
    # The widths: each network's layers chain, from its input to its output, as the model's own layers do.
    config = model.config
    P, D, C = config.input_dim, config.latent_dim, config.num_classes
    layers = manifest["layers"]
    decoder = [[n, i, o] for n, i, o in layers["decoder"]]
    assert decoder[0][1] == D + C and decoder[-1][2] == P
    assert all(a[2] == b[1] for a, b in zip(decoder, decoder[1:]))
    if not decoder_only:
        assert layers["encoder"][0][1] == P + C and layers["to_mu"][0][1] == layers["encoder"][-1][2]
        assert layers["to_mu"][0][2] == layers["to_logvar"][0][2] == D
    for name, n_in, n_out in (row for rows in layers.values() for row in rows):
        assert tensors[f"{name}.weight"].shape == (n_out, n_in) and tensors[f"{name}.bias"].shape == (n_out,)
    assert manifest["model"] == {
        "image_shape": list(config.image_shape),
        "input_dim": P,
        "latent_dim": D,
        "num_classes": C,
        "hidden_dims": list(config.hidden_dims),
        "activation": config.activation,
        "likelihood": config.likelihood,
        "gaussian_logvar_floor": manifest["model"]["gaussian_logvar_floor"],
    }
    return manifest


@pytest.mark.parametrize("half", [False, True], ids=["float32", "float16"])
@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_round_trips_by_name(tmp_path, name, half):
    path = vl.export_web(name, tmp_path, half=half)
    assert path == tmp_path / f"{name}.json"
    manifest = _check_round_trip(vl.load_pretrained(name), path, half)
    assert manifest["metrics"] == vl.pretrained_models()[name]["metrics"]  # the lab quotes the test NLL
    assert manifest["source"] == f"pretrained model {name}"


def test_a_conditional_gaussian_model_with_a_learned_variance_round_trips(tmp_path):
    config = vl.VAEConfig(
        image_shape=(1, 4, 4), latent_dim=3, hidden_dims=(8, 5), likelihood="gaussian", learn_gaussian_logvar=True,
        num_classes=4, activation="gelu",
    )  # fmt: skip
    model = vl.build_model(config, seed=3)
    manifest = _check_round_trip(model, vl.export_web(model, tmp_path, name="cgauss"), half=False)
    assert "x_logvar" in manifest["tensors"] and manifest["model"]["gaussian_logvar_floor"] == pytest.approx(
        np.log(1e-4)
    )
    assert "metrics" not in manifest and manifest["name"] == "cgauss"
    fixed = vl.build_model(vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=2, likelihood="gaussian"), seed=0)
    manifest = _check_round_trip(fixed, vl.export_web(fixed, tmp_path, half=True), half=True)
    assert manifest["model"]["gaussian_logvar_floor"] is None  # a fixed variance has no floor to apply
    assert manifest["name"] == "model"


def test_decoder_only_leaves_the_encoder_out(tmp_path):
    model = vl.load_pretrained("mnist-cvae")
    full = vl.export_web(model, tmp_path, name="full")
    path = vl.export_web(model, tmp_path, name="decoder", decoder_only=True)
    manifest = _check_round_trip(model, path, half=False, decoder_only=True)
    assert list(manifest["layers"]) == ["decoder"]
    assert path.with_suffix(".bin").stat().st_size < full.with_suffix(".bin").stat().st_size / 2


@pytest.mark.parametrize(
    "model, message",
    [
        (lambda: vl.VAE(vl.VAEConfig(architecture="conv")), r"got a VAE with architecture='conv'"),
        (lambda: vl.Autoencoder(vl.AutoencoderConfig()), r"got Autoencoder"),
        (lambda: vl.linear_gaussian.LinearGaussian.random(6, 2), r"got LinearGaussian"),
        (lambda: torch.nn.Linear(2, 2), r"got Linear"),
        (lambda: 3, r"got int"),
    ],
    ids=["conv", "autoencoder", "linear-gaussian", "module", "number"],
)
def test_an_unsupported_model_is_refused_with_what_is_supported(tmp_path, model, message):
    with pytest.raises(vl.VaelibError, match=message) as err:
        vl.export_web(model(), tmp_path)
    assert "vaelib.VAE with architecture='mlp'" in str(err.value)
    assert not list(tmp_path.iterdir())  # nothing written


def test_bad_arguments_are_refused_before_anything_is_written(tmp_path):
    model = vl.build_model(vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(4,)), seed=0)
    with pytest.raises(vl.VaelibError, match=r"no pretrained model 'mnist-3d'; available: burda-iwae-k5"):
        vl.export_web("mnist-3d", tmp_path)
    with pytest.raises(vl.VaelibError, match=r"name must be letters, digits"):
        vl.export_web(model, tmp_path, name="../escape")
    with pytest.raises(vl.VaelibError, match=r"half and decoder_only must be True or False"):
        vl.export_web(model, tmp_path, half="yes")
    (tmp_path / "file").write_text("")
    with pytest.raises(vl.VaelibError, match=r"is a file; name a directory for model.json and model.bin"):
        vl.export_web(model, tmp_path / "file")
    with torch.no_grad():
        model.decoder[0].weight[0, 0] = 1e5  # beyond float16's largest finite number, 65504
    with pytest.raises(vl.VaelibError, match=r"decoder.0.weight holds values beyond float16's range"):
        vl.export_web(model, tmp_path, half=True)
    with torch.no_grad():
        model.to_mu.bias[0] = float("nan")
    with pytest.raises(vl.VaelibError, match=r"to_mu.bias holds NaN or infinite values"):
        vl.export_web(model, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def _cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_command_exports_by_name_and_by_run(tmp_path, capsys):
    code, out, err = _cli(capsys, "export-web", "burda-vae-k1", "--out", str(tmp_path / "lab"), "--half")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["manifest"] == str(tmp_path / "lab" / "burda-vae-k1.json") and summary["dtype"] == "float16"
    _check_round_trip(vl.load_pretrained("burda-vae-k1"), Path(summary["manifest"]), half=True)

    model = vl.build_model(vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(6,), num_classes=3), seed=2)
    save_checkpoint(tmp_path / "runs" / "tiny" / "checkpoint.pt", model)
    code, out, err = _cli(capsys, "export-web", str(tmp_path / "runs" / "tiny"), "--out", str(tmp_path / "lab"))
    assert code == 0, err
    assert json.loads(out)["manifest"] == str(tmp_path / "lab" / "tiny.json")  # named after the run directory
    _check_round_trip(model, tmp_path / "lab" / "tiny.json", half=False)
    checkpoint = tmp_path / "runs" / "tiny" / "checkpoint.pt"
    code, out, err = _cli(capsys, "export-web", str(checkpoint), "--out", str(tmp_path / "lab"), "--name", "mine")
    assert code == 0 and json.loads(out)["bytes"] == (tmp_path / "lab" / "mine.bin").stat().st_size
    code, out, err = _cli(capsys, "export-web", str(checkpoint), "--out", str(tmp_path / "lab"), "--decoder-only")
    assert code == 0 and list(json.loads((tmp_path / "lab" / "tiny.json").read_text())["layers"]) == ["decoder"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["mnist-3d"], "no checkpoint at mnist-3d and no shipped model named 'mnist-3d'"),
        (["conv-run"], "export_web supports a vaelib.VAE with architecture='mlp'"),
        (["mnist-2d", "--name", "a/b"], "name must be letters, digits"),
    ],
    ids=["unknown", "conv", "bad-name"],
)
def test_the_command_fails_in_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    save_checkpoint(tmp_path / "conv-run" / "checkpoint.pt", vl.VAE(vl.VAEConfig(architecture="conv")))
    code, out, err = _cli(capsys, "export-web", *args, "--out", str(tmp_path / "lab"))
    assert code == 1 and out == ""
    assert err.startswith(f"vaelib export-web: error: {message}") and err.count("\n") == 1, err
