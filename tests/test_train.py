"""Training, evaluation and checkpoints: what ``fit`` learns and records, the
pixel modes, the IWAE objective, exact resumption, atomic saves, and a clear
error for every bad input.  All on the CPU with tiny synthetic data, except
the CUDA tests (skipped without a GPU) and one real-MNIST epoch (``slow``).
"""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path

import pytest
import torch

import vaelib
import vaelib as vl
import vaelib.checkpoint
import vaelib.data
import vaelib.train

HISTORY_KEYS = {"epoch", "beta", "lr", "train_loss", "train_elbo", "train_reconstruction", "train_kl", "seconds"}
TEST_KEYS = {"test_elbo", "test_reconstruction", "test_kl"}


def _without_seconds(history):
    return [{k: v for k, v in entry.items() if k != "seconds"} for entry in history]


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def _rows(x: torch.Tensor) -> list[tuple]:
    """The rows of x as a sorted list: the multiset of examples, whatever their order."""
    return sorted(map(tuple, x.tolist()))


def _record_encoder_inputs(model: vl.VAE) -> list[torch.Tensor]:
    """Record every batch the encoder sees (a forward pre-hook on the encoder network)."""
    seen: list[torch.Tensor] = []
    model.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    return seen


# ---------------------------------------------------------------- fit learns and records


def test_fit_history_has_the_documented_keys_and_the_elbo_improves(tiny_config, binary_data):
    train_x, test_x = binary_data
    model = vl.VAE(tiny_config)
    config = vl.TrainConfig(epochs=6, batch_size=64, lr=1e-2, device="cpu", eval_batch_size=50)
    history = vl.fit(model, train_x, test_x, config, progress=False)
    assert len(history) == 6
    for i, entry in enumerate(history):
        assert set(entry) == HISTORY_KEYS | TEST_KEYS
        assert entry["epoch"] == i + 1
        assert entry["beta"] == 1.0
        assert all(math.isfinite(v) for v in entry.values())
        assert entry["seconds"] > 0
        # with beta = 1 and k = 1 the loss is minus the ELBO, and ELBO = reconstruction - KL
        assert entry["train_loss"] == pytest.approx(-entry["train_elbo"], rel=1e-5)
        assert entry["train_elbo"] == pytest.approx(
            entry["train_reconstruction"] - entry["train_kl"], rel=1e-5, abs=1e-4
        )
        assert entry["test_elbo"] == pytest.approx(entry["test_reconstruction"] - entry["test_kl"], rel=1e-5, abs=1e-4)
        assert entry["train_kl"] >= 0 and entry["test_kl"] >= 0
    assert history[-1]["train_elbo"] > history[0]["train_elbo"] + 0.5
    assert history[-1]["test_elbo"] > history[0]["test_elbo"] + 0.5
    # the test ELBO recorded for the last epoch is the model's ELBO on the test set (up to sampling noise)
    assert not model.training
    with torch.no_grad():
        terms = vl.objective(model, test_x, k=200, generator=torch.Generator().manual_seed(1))
    per_example = terms.elbo
    # a one-sample estimate per example: its noise is at most the spread of log p(x|z), averaged over 128
    z = vl.gaussian.reparameterize(*model.encode(test_x), 200, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        spread = model.log_likelihood(test_x, model.decode(z)).std(0)
    tolerance = 4 * spread.pow(2).sum().sqrt().item() / len(test_x)
    assert history[-1]["test_elbo"] == pytest.approx(per_example.mean().item(), abs=tolerance)


def test_fit_without_test_data_records_train_keys_only(tiny_config, binary_data, fast_train):
    history = vl.fit(vl.VAE(tiny_config), binary_data[0], config=fast_train, progress=False)
    assert [set(entry) for entry in history] == [HISTORY_KEYS] * fast_train.epochs


def test_kl_warmup_weights_the_kl_in_the_loss(tiny_config, binary_data):
    config = vl.TrainConfig(epochs=4, batch_size=64, lr=1e-2, warmup_epochs=3, beta=2.0, device="cpu")
    history = vl.fit(vl.VAE(tiny_config), binary_data[0], config=config, progress=False)
    assert [h["beta"] for h in history] == pytest.approx([2 / 3, 4 / 3, 2.0, 2.0])
    for h in history:
        assert h["train_loss"] == pytest.approx(-(h["train_reconstruction"] - h["beta"] * h["train_kl"]), rel=1e-5)
        assert h["train_elbo"] == pytest.approx(h["train_reconstruction"] - h["train_kl"], rel=1e-5)


def test_burda_learning_rate_schedule():
    """Burda et al.: pass i = 0..7 lasts 3^i epochs at lr * 10^(-i/7), 3,280 epochs in all."""
    full = vl.TrainConfig(epochs=3280, lr=1e-3, lr_schedule="burda")
    starts = [0, 1, 4, 13, 40, 121, 364, 1093]  # first epoch of each pass: (3^i - 1) / 2
    for i, start in enumerate(starts):
        assert vaelib.train.learning_rate(start, full) == pytest.approx(1e-3 * 10 ** (-i / 7), rel=1e-12)
        if start > 0:  # the epoch before belongs to the previous pass
            assert vaelib.train.learning_rate(start - 1, full) == pytest.approx(1e-3 * 10 ** (-(i - 1) / 7), rel=1e-12)
    assert vaelib.train.learning_rate(3279, full) == pytest.approx(1e-4, rel=1e-12)
    # shrunk to 328 epochs (a tenth): the same passes, each a tenth as long
    short = dataclasses.replace(full, epochs=328)
    rates = [vaelib.train.learning_rate(e, short) for e in range(328)]
    assert rates == sorted(rates, reverse=True) and rates[0] == 1e-3 and rates[-1] == pytest.approx(1e-4)
    assert sum(r == pytest.approx(1e-4) for r in rates) == 218  # the last pass, from 1093 of 3280: epochs 110..327
    assert vaelib.train.learning_rate(5, vl.TrainConfig(epochs=10, lr=0.01)) == 0.01  # constant
    with pytest.raises(vl.VaelibError, match="epoch must be in"):
        vaelib.train.learning_rate(10, vl.TrainConfig(epochs=10))
    with pytest.raises(vl.VaelibError, match="lr_schedule must be"):
        vl.TrainConfig(lr_schedule="cosine")


def test_fit_follows_the_schedule_and_resumes_on_it(tiny_config, binary_data, tmp_path):
    config = vl.TrainConfig(epochs=8, batch_size=128, lr=1e-2, lr_schedule="burda", device="cpu")
    history = vl.fit(vl.VAE(tiny_config), binary_data[0], config=config, progress=False)
    assert [h["lr"] for h in history] == [vaelib.train.learning_rate(e, config) for e in range(8)]
    assert history[0]["lr"] == 1e-2 and history[-1]["lr"] == pytest.approx(1e-3)
    path = tmp_path / "vae.pt"
    vl.fit(vl.VAE(tiny_config), binary_data[0], config=config, checkpoint=path, time_limit=0.0, progress=False)
    with pytest.raises(vl.CheckpointError, match=r"epochs=8.*epochs=9.*laid over epochs"):
        vl.fit(
            vl.VAE(tiny_config),
            binary_data[0],
            config=dataclasses.replace(config, epochs=9),
            checkpoint=path,
            progress=False,
        )


def test_autoencoder_training_reduces_squared_error(grey_data):
    train_x, test_x = grey_data
    model = vl.Autoencoder(vl.AutoencoderConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(32,)))

    def squared_error():
        with torch.no_grad():
            return (model(test_x) - test_x).pow(2).sum(-1).mean().item()

    before = squared_error()
    history = vl.fit(
        model, train_x, test_x, vl.TrainConfig(epochs=6, batch_size=64, lr=1e-2, device="cpu"), progress=False
    )
    after = squared_error()
    assert after < 0.5 * before
    # the history reports minus the squared error, and no ELBO or KL: an autoencoder has neither
    assert history[-1]["test_reconstruction"] == pytest.approx(-after, rel=1e-4)
    assert history[-1]["train_loss"] == pytest.approx(-history[-1]["train_reconstruction"], rel=1e-5)
    assert not any(key.endswith(("_elbo", "_kl")) for h in history for key in h)
    assert history[-1]["train_reconstruction"] > history[0]["train_reconstruction"]


def test_evaluate_matches_independent_estimates(tiny_vae, binary_data):
    test_x = binary_data[1]
    scores = vl.evaluate(tiny_vae, test_x, k=100, batch_size=50, seed=0)
    assert set(scores) == {"elbo", "reconstruction", "kl", "nll"}
    with torch.no_grad():
        mu, logvar = tiny_vae.encode(test_x)
        kl = vl.gaussian.kl_standard_normal(mu, logvar).mean().item()
        lml = vl.log_marginal_likelihood(tiny_vae, test_x, k=2000, generator=torch.Generator().manual_seed(1))
    assert scores["kl"] == pytest.approx(kl, rel=1e-5)  # closed form: no sampling noise
    assert scores["elbo"] == pytest.approx(scores["reconstruction"] - scores["kl"], rel=1e-5)
    assert scores["elbo"] <= -scores["nll"] + 0.05  # ELBO <= L_100 (up to noise)
    assert scores["nll"] == pytest.approx(-lml.mean().item(), abs=0.1)
    assert tiny_vae.training  # evaluate restores the mode it found
    ae = vl.Autoencoder(vl.AutoencoderConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,)))
    with torch.no_grad():
        sq = (ae(test_x) - test_x).pow(2).sum(-1).mean().item()
    assert vl.evaluate(ae, test_x)["reconstruction"] == pytest.approx(-sq, rel=1e-5)


# ---------------------------------------------------------------- pixel modes


@pytest.fixture
def strictly_grey():
    """128 grey images with every pixel strictly inside (0, 1), so binarization is random."""
    g = torch.Generator().manual_seed(30)
    return 0.2 + 0.6 * torch.rand(128, 16, generator=g)


def _fit_recording(tiny_config, x, pixels):
    model = vl.VAE(tiny_config)
    seen = _record_encoder_inputs(model)
    config = vl.TrainConfig(epochs=2, batch_size=32, lr=1e-3, pixels=pixels, device="cpu")
    vl.fit(model, x, config=config, progress=False)
    assert len(seen) == 8  # 4 batches in each of 2 epochs, and no test set
    return torch.cat(seen[:4]), torch.cat(seen[4:])


def test_grey_pixels_train_on_the_data_as_given(tiny_config, strictly_grey):
    epoch1, epoch2 = _fit_recording(tiny_config, strictly_grey, "grey")
    assert _rows(epoch1) == _rows(strictly_grey) == _rows(epoch2)


def test_fixed_pixels_train_on_one_binarization_kept_for_good(tiny_config, strictly_grey):
    epoch1, epoch2 = _fit_recording(tiny_config, strictly_grey, "fixed")
    assert set(epoch1.unique().tolist()) == {0.0, 1.0}
    assert _rows(epoch1) == _rows(epoch2)  # the same binary images in both epochs
    assert epoch1.mean().item() == pytest.approx(strictly_grey.mean().item(), abs=0.05)


def test_dynamic_pixels_draw_fresh_binary_pixels_each_epoch(tiny_config, strictly_grey):
    epoch1, epoch2 = _fit_recording(tiny_config, strictly_grey, "dynamic")
    assert set(epoch1.unique().tolist()) == {0.0, 1.0} == set(epoch2.unique().tolist())
    assert _rows(epoch1) != _rows(epoch2)
    for epoch in (epoch1, epoch2):
        assert epoch.mean().item() == pytest.approx(strictly_grey.mean().item(), abs=0.05)


def test_binarization_needs_pixels_in_unit_interval(tiny_config):
    for pixels in ("fixed", "dynamic"):
        with pytest.raises(vl.VaelibError, match=r"\[0, 1\]"):
            vl.fit(
                vl.VAE(tiny_config),
                torch.full((8, 16), 1.5),
                config=vl.TrainConfig(epochs=1, pixels=pixels, device="cpu"),
                progress=False,
            )


# ---------------------------------------------------------------- k > 1: the importance-weighted bound


def test_k_greater_than_one_trains_the_iwae_bound(tiny_config, binary_data):
    x = binary_data[0][:256]
    model = vl.VAE(tiny_config)
    vl.fit(model, x, config=vl.TrainConfig(epochs=3, batch_size=64, lr=1e-2, device="cpu"), progress=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # an lr so small that the weights stay put: the epoch's loss is then a Monte Carlo estimate of -L_k
    k = 20
    config = vl.TrainConfig(epochs=1, batch_size=64, lr=1e-30, k=k, device="cpu", seed=5)
    history = vl.fit(model, x, config=config, progress=False)
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    R = 32
    with torch.no_grad():
        replicas = vl.iwae_bound(model, x.repeat(R, 1), k, generator=torch.Generator().manual_seed(1)).reshape(R, -1)
        elbo = vl.objective(model, x, k=R, generator=torch.Generator().manual_seed(2)).elbo.mean().item()
    reference = replicas.mean().item()
    noise = replicas.var(0).sum().sqrt().item() / x.shape[0]  # the spread of a one-draw-per-example mean
    loss = history[0]["train_loss"]
    assert loss == pytest.approx(-reference, abs=4 * noise + 1e-3)
    # and it is not minus the ELBO: L_k is the tighter bound
    assert -loss > elbo + 10 * noise
    assert history[0]["train_elbo"] == pytest.approx(elbo, abs=0.05)


def test_iwae_training_improves_its_bound(tiny_config, binary_data):
    config = vl.TrainConfig(epochs=4, batch_size=64, lr=1e-2, k=5, device="cpu")
    history = vl.fit(vl.VAE(tiny_config), binary_data[0], config=config, progress=False)
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.5
    assert all(-h["train_loss"] >= h["train_elbo"] for h in history)  # L_5 >= ELBO, sample by sample


def test_iwae_rejects_a_kl_weight():
    with pytest.raises(vl.VaelibError, match="beta=1 with k > 1"):
        vl.TrainConfig(k=5, beta=0.5)
    vl.TrainConfig(k=5, beta=1.0)


def test_iwae_rejects_kl_warmup():
    """k > 1 ignores the KL weight, so a warm-up (a KL weight below 1) must be refused like beta != 1."""
    with pytest.raises(vl.VaelibError, match="k > 1"):
        vl.TrainConfig(k=5, warmup_epochs=3)


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_gives_identical_outputs(tiny_config, binary_data, fast_train, tmp_path):
    path = tmp_path / "run" / "vae.pt"
    model = vl.VAE(tiny_config)
    vl.fit(model, binary_data[0], config=fast_train, checkpoint=path, progress=False)
    loaded = vl.load_model(path)
    assert type(loaded) is vl.VAE and loaded.config == tiny_config and not loaded.training
    _assert_same_weights(loaded, model)
    x = binary_data[1]
    with torch.no_grad():
        for a, b in zip(model.encode(x), loaded.encode(x)):
            assert torch.equal(a, b)
        z = torch.randn(5, 2)
        assert torch.equal(model.decode(z), loaded.decode(z))


def test_autoencoder_checkpoint_round_trip(grey_data, fast_train, tmp_path):
    model = vl.Autoencoder(vl.AutoencoderConfig(image_shape=(1, 4, 4), latent_dim=3, linear=True))
    vl.fit(model, grey_data[0], config=fast_train, checkpoint=tmp_path / "ae.pt", progress=False)
    loaded = vl.load_model(tmp_path / "ae.pt")
    assert type(loaded) is vl.Autoencoder and loaded.config == model.config
    assert torch.equal(loaded(grey_data[1]), model(grey_data[1]))


def test_checkpoint_holds_everything_needed_to_resume(tiny_config, binary_data, fast_train, tmp_path):
    path = tmp_path / "vae.pt"
    model = vl.VAE(tiny_config)
    history = vl.fit(model, binary_data[0], config=fast_train, checkpoint=path, progress=False)
    state = torch.load(path, map_location="cpu", weights_only=False)  # read independently of vaelib
    for key in (
        "model_kind",
        "model_config",
        "model_state",
        "optimizer",
        "epoch",
        "rng_state",
        "train_config",
        "history",
        "vaelib_version",
    ):
        assert key in state, key
    assert state["model_kind"] == "VAE"
    assert (
        vl.VAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in state["model_config"].items()})
        == tiny_config
    )
    assert state["epoch"] == fast_train.epochs
    assert state["train_config"] == dataclasses.asdict(fast_train)
    assert state["history"] == history
    assert state["vaelib_version"] == vl.__version__
    assert isinstance(state["rng_state"], torch.Tensor) and state["rng_state"].dtype == torch.uint8
    assert set(state["optimizer"]) == {"state", "param_groups"}
    assert state["optimizer"]["param_groups"][0]["lr"] == fast_train.lr
    assert len(state["optimizer"]["state"]) == len(list(model.parameters()))
    for name, value in model.state_dict().items():
        assert torch.equal(state["model_state"][name], value)
    # no temporary file is left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vae.pt"]


def test_checkpoint_loads_without_unpickling_code(tiny_config, binary_data, fast_train, tmp_path):
    """vaelib promises checkpoints that load with torch.load(weights_only=True); every value must be plain."""
    path = tmp_path / "vae.pt"
    vl.fit(vl.VAE(tiny_config), binary_data[0], config=fast_train, checkpoint=path, progress=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["format"] == "vaelib-checkpoint"
    assert vaelib.checkpoint.load_checkpoint(path)["epoch"] == fast_train.epochs


@pytest.mark.parametrize("pixels", ["grey", "dynamic"])
def test_resumed_training_equals_uninterrupted_training(tiny_config, binary_data, tmp_path, pixels):
    train_x, test_x = binary_data
    if pixels == "dynamic":
        train_x, test_x = train_x * 0.8 + 0.1, test_x * 0.8 + 0.1  # grey levels to binarize
    config = vl.TrainConfig(epochs=4, batch_size=64, lr=1e-2, pixels=pixels, device="cpu", seed=3, eval_batch_size=64)

    torch.manual_seed(0)
    straight = vl.VAE(tiny_config)
    full = vl.fit(straight, train_x, test_x, config, checkpoint=tmp_path / "a.pt", progress=False)

    torch.manual_seed(0)
    first = vl.VAE(tiny_config)
    part = vl.fit(
        first, train_x, test_x, dataclasses.replace(config, epochs=2), checkpoint=tmp_path / "b.pt", progress=False
    )
    assert len(part) == 2
    torch.manual_seed(123)  # a fresh model with other initial weights: everything must come from the checkpoint
    resumed = vl.VAE(tiny_config)
    rest = vl.fit(resumed, train_x, test_x, config, checkpoint=tmp_path / "b.pt", progress=False)

    assert _without_seconds(rest) == _without_seconds(full)
    _assert_same_weights(resumed, straight)
    a = torch.load(tmp_path / "a.pt", weights_only=False)
    b = torch.load(tmp_path / "b.pt", weights_only=False)
    assert torch.equal(a["rng_state"], b["rng_state"])
    for i, s in a["optimizer"]["state"].items():
        for key, value in s.items():
            assert torch.equal(value, b["optimizer"]["state"][i][key])


def test_time_limit_stops_early_and_a_later_call_continues(tiny_config, binary_data, tmp_path):
    x = binary_data[0]
    config = vl.TrainConfig(epochs=3, batch_size=64, lr=1e-2, device="cpu")
    torch.manual_seed(0)
    straight = vl.VAE(tiny_config)
    full = vl.fit(straight, x, config=config, progress=False)

    path = tmp_path / "vae.pt"
    torch.manual_seed(0)
    model = vl.VAE(tiny_config)
    assert len(vl.fit(model, x, config=config, checkpoint=path, time_limit=0.0, progress=False)) == 1
    assert vaelib.checkpoint.load_checkpoint(path)["epoch"] == 1
    assert len(vl.fit(vl.VAE(tiny_config), x, config=config, checkpoint=path, time_limit=0.0, progress=False)) == 2
    model = vl.VAE(tiny_config)
    history = vl.fit(model, x, config=config, checkpoint=path, time_limit=3600.0, progress=False)
    assert _without_seconds(history) == _without_seconds(full)
    _assert_same_weights(model, straight)
    # a finished run is not trained further
    again = vl.VAE(tiny_config)
    assert _without_seconds(vl.fit(again, x, config=config, checkpoint=path, progress=False)) == _without_seconds(full)
    _assert_same_weights(again, straight)


def test_resume_may_change_epochs_and_device_only(tiny_config, binary_data, tmp_path):
    x = binary_data[0]
    path = tmp_path / "vae.pt"
    config = vl.TrainConfig(epochs=1, batch_size=64, lr=1e-2, device="cpu")
    vl.fit(vl.VAE(tiny_config), x, config=config, checkpoint=path, progress=False)
    history = vl.fit(
        vl.VAE(tiny_config),
        x,
        config=dataclasses.replace(config, epochs=2, device="auto"),
        checkpoint=path,
        progress=False,
    )
    assert [h["epoch"] for h in history] == [1, 2]
    for change in (
        {"lr": 1e-3},
        {"batch_size": 32},
        {"seed": 1},
        {"beta": 0.5},
        {"pixels": "dynamic"},
        {"warmup_epochs": 2},
        {"k": 2},
    ):
        with pytest.raises(vl.CheckpointError, match="only epochs and device may change"):
            vl.fit(
                vl.VAE(tiny_config),
                x,
                config=dataclasses.replace(config, epochs=3, **change),
                checkpoint=path,
                progress=False,
            )
    # resume=False starts over and overwrites
    history = vl.fit(
        vl.VAE(tiny_config),
        x,
        config=dataclasses.replace(config, lr=1e-3),
        checkpoint=path,
        resume=False,
        progress=False,
    )
    assert len(history) == 1


def test_resume_rejects_a_checkpoint_for_another_model(tiny_config, binary_data, fast_train, tmp_path):
    path = tmp_path / "vae.pt"
    vl.fit(vl.VAE(tiny_config), binary_data[0], config=fast_train, checkpoint=path, progress=False)
    more = dataclasses.replace(fast_train, epochs=fast_train.epochs + 1)
    other = vl.VAE(dataclasses.replace(tiny_config, latent_dim=3))
    with pytest.raises(
        vl.CheckpointError, match=r"was made for VAE\(.*latent_dim=2.*but the model is VAE\(.*latent_dim=3"
    ):
        vl.fit(other, binary_data[0], config=more, checkpoint=path, progress=False)
    ae = vl.Autoencoder(vl.AutoencoderConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(32,)))
    with pytest.raises(vl.CheckpointError, match="was made for VAE.*Autoencoder"):
        vl.fit(ae, binary_data[0], config=more, checkpoint=path, progress=False)


def test_resume_with_a_config_given_as_lists(binary_data, fast_train, tmp_path):
    """Configs built from lists (JSON, argparse) must resume from their own checkpoints."""
    config = vl.VAEConfig(image_shape=[1, 4, 4], latent_dim=2, hidden_dims=[32])
    path = tmp_path / "vae.pt"
    vl.fit(vl.VAE(config), binary_data[0], config=fast_train, checkpoint=path, progress=False)
    more = dataclasses.replace(fast_train, epochs=fast_train.epochs + 1)
    history = vl.fit(vl.VAE(config), binary_data[0], config=more, checkpoint=path, progress=False)
    assert len(history) == more.epochs


@pytest.mark.parametrize("error", [OSError("No space left on device"), KeyboardInterrupt()])
def test_an_interrupted_save_keeps_the_previous_checkpoint(tiny_config, binary_data, tmp_path, monkeypatch, error):
    path = tmp_path / "vae.pt"
    real_save = torch.save
    calls = {"n": 0}
    previous = {}

    def failing_save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            return real_save(obj, f, *args, **kwargs)
        previous["bytes"] = path.read_bytes()  # the first epoch's checkpoint, as it is on disk now
        f.write(b"PK\x03\x04 half a zip archive")
        f.flush()
        raise error

    monkeypatch.setattr(vl.checkpoint.torch, "save", failing_save)
    config = vl.TrainConfig(epochs=2, batch_size=64, lr=1e-2, device="cpu")
    with pytest.raises(type(error)):
        vl.fit(vl.VAE(tiny_config), binary_data[0], config=config, checkpoint=path, progress=False)
    monkeypatch.undo()
    assert calls["n"] == 2
    assert path.read_bytes() == previous["bytes"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vae.pt"]  # no temporary file left behind
    assert vaelib.checkpoint.load_checkpoint(path)["epoch"] == 1
    assert vl.load_model(path).config == tiny_config


# ---------------------------------------------------------------- bad checkpoints


@pytest.fixture
def real_checkpoint(tiny_config, binary_data, fast_train, tmp_path) -> Path:
    path = tmp_path / "real.pt"
    vl.fit(vl.VAE(tiny_config), binary_data[0], config=fast_train, checkpoint=path, progress=False)
    return path


def _assert_rejected(path, pattern, tiny_config, binary_data, fast_train):
    with pytest.raises(vl.CheckpointError, match=pattern):
        vaelib.checkpoint.load_checkpoint(path)
    with pytest.raises(vl.CheckpointError, match=pattern):
        vl.load_model(path)
    with pytest.raises(vl.CheckpointError, match=pattern):
        vl.fit(vl.VAE(tiny_config), binary_data[0], config=fast_train, checkpoint=path, progress=False)


def test_random_bytes_are_a_corrupt_checkpoint(tmp_path, tiny_config, binary_data, fast_train):
    path = tmp_path / "noise.pt"
    path.write_bytes(bytes(random.Random(0).getrandbits(8) for _ in range(4096)))
    _assert_rejected(path, "not a readable checkpoint", tiny_config, binary_data, fast_train)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_any_garbage_gives_a_checkpoint_error(tmp_path):
    """Whatever bytes a damaged file holds, loading it raises CheckpointError, never a raw exception."""
    escaped = {}
    for seed in range(200):
        rng = random.Random(seed)
        path = tmp_path / f"garbage{seed}.pt"
        path.write_bytes(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 400))))
        try:
            vaelib.checkpoint.load_checkpoint(path)
        except vl.CheckpointError:
            pass
        except Exception as err:  # noqa: BLE001 - collecting what escapes
            escaped.setdefault(type(err).__name__, []).append(seed)
        else:
            escaped.setdefault("no error", []).append(seed)
    assert not escaped, f"load_checkpoint let these through (exception: seeds): {escaped}"


def test_empty_file_is_a_corrupt_checkpoint(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    with pytest.raises(vl.CheckpointError, match="not a readable checkpoint"):
        vaelib.checkpoint.load_checkpoint(path)


def test_truncated_checkpoint(real_checkpoint, tiny_config, binary_data, fast_train):
    data = real_checkpoint.read_bytes()
    real_checkpoint.write_bytes(data[: len(data) // 2])
    _assert_rejected(real_checkpoint, "truncated or corrupt", tiny_config, binary_data, fast_train)


@pytest.mark.parametrize("content", [{"weights": torch.zeros(3)}, torch.zeros(3), {"format": "other"}])
def test_a_torch_file_that_is_not_a_vaelib_checkpoint(tmp_path, content, tiny_config, binary_data, fast_train):
    path = tmp_path / "other.pt"
    torch.save(content, path)
    _assert_rejected(path, "not a vaelib checkpoint", tiny_config, binary_data, fast_train)


def test_a_checkpoint_from_a_newer_format(tmp_path):
    path = tmp_path / "future.pt"
    torch.save({"format": "vaelib-checkpoint", "format_version": 99}, path)
    with pytest.raises(vl.CheckpointError, match="format 99.*upgrade vaelib"):
        vaelib.checkpoint.load_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(vl.CheckpointError, match="no checkpoint at"):
        vl.load_model(tmp_path / "missing.pt")
    with pytest.raises(vl.CheckpointError, match="is a directory, not a checkpoint; name the file"):
        vaelib.checkpoint.load_checkpoint(tmp_path)  # a directory is not a checkpoint either


# ---------------------------------------------------------------- bad inputs to fit


@pytest.mark.parametrize(
    "make_x, pattern",
    [
        (lambda: torch.tensor([[float("nan")] + [0.5] * 15] * 4), "NaN or infinite"),
        (lambda: torch.tensor([[float("inf")] + [0.5] * 15] * 4), "NaN or infinite"),
        (lambda: torch.full((4, 16), 1.5), r"Bernoulli likelihood needs pixels in \[0, 1\]"),
        (lambda: torch.full((4, 16), -0.1), r"Bernoulli likelihood needs pixels in \[0, 1\]"),
        (lambda: torch.rand(4, 15), "15 values per example but the model expects 16"),
        (lambda: torch.rand(64), r"shape \(B, P\)"),
        (lambda: torch.zeros(4, 16, dtype=torch.uint8), "floating-point"),
        (lambda: torch.zeros(4, 16, dtype=torch.int32), "floating-point"),
    ],
)
def test_fit_rejects_bad_data_with_a_clear_error(tiny_config, fast_train, make_x, pattern):
    with pytest.raises(vl.VaelibError, match=pattern):
        vl.fit(vl.VAE(tiny_config), make_x(), config=fast_train, progress=False)
    with pytest.raises(vl.VaelibError, match=pattern):  # the test set is checked just as well
        vl.fit(vl.VAE(tiny_config), torch.rand(8, 16), make_x(), config=fast_train, progress=False)


def test_gaussian_likelihood_accepts_pixels_outside_unit_interval(grey_data):
    config = vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(16,), likelihood="gaussian")
    standardized = (grey_data[0] - 0.5) * 4
    history = vl.fit(vl.VAE(config), standardized, config=vl.TrainConfig(epochs=1, device="cpu"), progress=False)
    assert math.isfinite(history[0]["train_elbo"])


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"k": 0}, r"\bk\b must be an integer >= 1, got 0"),
        ({"k": -1}, r"\bk\b must be an integer >= 1"),
        ({"k": 1.5}, r"\bk\b must be an integer >= 1, got 1.5"),
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"eval_every": 0}, "eval_every must be an integer >= 1"),
        ({"eval_k": True}, "eval_k must be an integer >= 1, got True"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"lr": float("nan")}, "lr must be a finite number"),
        ({"beta": -1.0}, "beta must be >= 0.0"),
        ({"warmup_epochs": -1}, "warmup_epochs must be an integer >= 0"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"pixels": "colour"}, "pixels must be one of 'grey', 'dynamic', 'fixed'; got 'colour'"),
        ({"lr_schedule": "cosine"}, "lr_schedule must be one of 'constant', 'burda'"),
        ({"amp": "yes"}, "amp must be True or False, got 'yes'"),
        ({"init_output_bias": 1}, "init_output_bias must be True or False, got 1"),
        ({"adam_beta1": 1.0}, r"adam_beta1 must be in \[0, 1\), got 1.0"),
        ({"device": 0}, "device must be a string, got 0"),
    ],
)
def test_train_config_rejects_bad_values(kwargs, pattern):
    with pytest.raises(vl.VaelibError, match=pattern):
        vl.TrainConfig(**kwargs)


def test_configs_store_each_field_as_its_type():
    """numpy numbers, lists and torch devices are normalised, so that configs compare (and resume) alike."""
    import numpy as np

    config = vl.TrainConfig(epochs=np.int64(3), lr=np.float32(0.5), device=torch.device("cpu"))
    assert config == vl.TrainConfig(epochs=3, lr=0.5, device="cpu")
    assert (type(config.epochs), type(config.lr), type(config.beta)) == (int, float, float)
    model_config = vl.VAEConfig(image_shape=[1, 4, 4], hidden_dims=[8, np.int64(4)], gaussian_logvar=1)
    assert model_config == vl.VAEConfig(image_shape=(1, 4, 4), hidden_dims=(8, 4), gaussian_logvar=1.0)


def test_a_non_finite_loss_is_an_error(tiny_config, binary_data, tmp_path):
    model = vl.VAE(tiny_config)
    with torch.no_grad():
        model.to_mu.weight[0, 0] = float("nan")
    path = tmp_path / "vae.pt"
    with pytest.raises(vl.VaelibError, match=r"non-finite in epoch 1.*put back to those after epoch 0.*Lower lr"):
        vl.fit(model, binary_data[0], config=vl.TrainConfig(epochs=3, device="cpu"), checkpoint=path, progress=False)
    assert not path.exists()  # nothing non-finite was saved


def test_a_loss_that_diverges_later_is_an_error(tiny_config, binary_data):
    """NaN appearing in the second epoch (injected after the first step of epoch 2) stops training there."""
    model = vl.VAE(tiny_config)
    steps = {"n": 0}

    def poison(module, args, output):
        steps["n"] += 1
        return output * float("nan") if steps["n"] > 8 else output  # 8 batches of 64 in the first epoch

    hook = model.to_mu.register_forward_hook(poison)
    with pytest.raises(vl.VaelibError, match="non-finite in epoch 2.*after epoch 1"):
        vl.fit(model, binary_data[0], config=vl.TrainConfig(epochs=3, batch_size=64, device="cpu"), progress=False)
    # the model is left at its weights after epoch 1: finite, and they score a finite ELBO
    hook.remove()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert torch.isfinite(vl.objective(model, binary_data[1]).elbo).all()


# ---------------------------------------------------------------- devices


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_a_gpu_is_a_device_error(tiny_config, binary_data):
    with pytest.raises(vl.DeviceError, match="cpu"):
        vl.resolve_device("cuda")
    with pytest.raises(vl.DeviceError, match="cpu"):
        vl.resolve_device("cuda:0")
    with pytest.raises(vl.DeviceError, match="no usable CUDA"):
        vl.fit(vl.VAE(tiny_config), binary_data[0], config=vl.TrainConfig(device="cuda"), progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_auto_device_is_the_cpu_without_a_gpu():
    assert vl.resolve_device("auto") == torch.device("cpu")
    assert vl.resolve_device() == torch.device("cpu")


def test_explicit_and_unknown_devices():
    assert vl.resolve_device("cpu") == torch.device("cpu")
    assert vl.resolve_device(torch.device("cpu")) == torch.device("cpu")
    for bad in ("tpu", "gpu", "cuda:x"):
        with pytest.raises(vl.DeviceError, match="'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"):
            vl.resolve_device(bad)


# ---------------------------------------------------------------- progress output


def test_progress_is_silent_in_ci(tiny_config, binary_data, fast_train, monkeypatch, capsys):
    monkeypatch.setenv("CI", "true")
    vl.fit(vl.VAE(tiny_config), binary_data[0], config=fast_train)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


@pytest.mark.parametrize("ci, progress", [("true", True), (None, None), ("false", None)])
def test_progress_bar_shows_when_asked_or_outside_ci(
    tiny_config, binary_data, fast_train, monkeypatch, capsys, ci, progress
):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    vl.fit(vl.VAE(tiny_config), binary_data[0], config=fast_train, progress=progress)
    err = capsys.readouterr().err
    assert "epochs" in err and f"{fast_train.epochs}/{fast_train.epochs}" in err


def test_progress_false_is_silent_outside_ci(tiny_config, binary_data, fast_train, monkeypatch, capsys):
    monkeypatch.delenv("CI", raising=False)
    vl.fit(vl.VAE(tiny_config), binary_data[0], config=fast_train, progress=False)
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------- CUDA


@pytest.mark.cuda
def test_cpu_and_cuda_agree_on_the_elbo(tiny_config, binary_data):
    model = vl.VAE(tiny_config)
    x = binary_data[0][:64]
    eps = torch.randn(4, 64, 2, generator=torch.Generator().manual_seed(0))
    cpu = vl.objective(model, x, k=4, eps=eps)
    gpu_model = vl.VAE(tiny_config).cuda()
    gpu_model.load_state_dict(model.state_dict())
    gpu = vl.objective(gpu_model, x.cuda(), k=4, eps=eps.cuda())
    torch.testing.assert_close(gpu.elbo.cpu(), cpu.elbo, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gpu.kl.cpu(), cpu.kl, rtol=1e-4, atol=1e-4)


@pytest.mark.cuda
def test_fit_on_cuda_with_amp(tiny_config, binary_data, tmp_path):
    model = vl.VAE(tiny_config)
    config = vl.TrainConfig(epochs=3, batch_size=64, lr=1e-2, device="cuda", amp=True)
    history = vl.fit(model, binary_data[0], binary_data[1], config, checkpoint=tmp_path / "gpu.pt", progress=False)
    assert next(model.parameters()).device.type == "cuda"
    assert all(math.isfinite(v) for h in history for v in h.values())
    assert history[-1]["train_elbo"] > history[0]["train_elbo"]
    loaded = vl.load_model(tmp_path / "gpu.pt")  # a GPU checkpoint loads on the CPU
    assert next(loaded.parameters()).device.type == "cpu"


# ---------------------------------------------------------------- real MNIST


@pytest.mark.slow
def test_one_epoch_on_mnist_reaches_minus_130_nats(mnist):
    """The default VAE (784-400-20, Bernoulli, grey pixels), one epoch over the 60,000 training
    images at batch 128 with Adam (lr 1e-3), must reach a test ELBO above -130 nats.

    One epoch measured about -127 nats here; -130 leaves a margin for other seeds and
    platforms while still failing a model that learns too little (an untrained one scores
    about -550, a model that only learns the pixel means about -206).
    """
    torch.manual_seed(0)
    model = vl.VAE()
    config = vl.TrainConfig(epochs=1, batch_size=128, device="cpu", seed=0)
    history = vl.fit(model, mnist["train_x"], mnist["test_x"], config, progress=False)
    test_elbo = history[0]["test_elbo"]
    assert test_elbo > -130.0, f"test ELBO after one epoch: {test_elbo:.2f} nats"
    assert history[0]["test_kl"] > 10.0  # the latent code is used, not collapsed


# ---------------------------------------------------------------- behaviour that one-line changes would break


def test_the_loss_is_the_batch_mean_not_its_sum(grey_data):
    """One step of plain SGD on one batch moves the weights by lr times the gradient of the *mean* loss."""
    x = grey_data[0][:8]
    config = vl.AutoencoderConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,))  # no noise in its loss
    model, reference = vl.Autoencoder(config), vl.Autoencoder(config)
    reference.load_state_dict(model.state_dict())
    lr = 0.1
    vl.train_epoch(model, x, torch.optim.SGD(model.parameters(), lr=lr), batch_size=8)
    loss = (reference(x) - x).pow(2).sum(-1).mean()  # minus the objective, averaged over the batch
    grads = torch.autograd.grad(loss, list(reference.parameters()))
    for (name, after), before, grad in zip(model.named_parameters(), reference.parameters(), grads):
        torch.testing.assert_close(after, before - lr * grad, rtol=1e-5, atol=1e-7, msg=name)


def test_evaluate_leaves_the_model_in_the_mode_it_found(tiny_vae, binary_data):
    for training in (False, True):
        tiny_vae.train(training)
        vl.evaluate(tiny_vae, binary_data[1], k=2)
        assert tiny_vae.training is training
        assert all(m.training is training for m in tiny_vae.modules())


def test_the_last_epoch_is_evaluated_when_eval_every_does_not_divide_the_epochs(tiny_config, binary_data):
    config = vl.TrainConfig(epochs=5, batch_size=128, eval_every=2, device="cpu")
    history = vl.fit(vl.VAE(tiny_config), binary_data[0], binary_data[1], config, progress=False)
    assert ["test_elbo" in h for h in history] == [False, True, False, True, True]


def test_amp_runs_the_forward_pass_in_bfloat16_when_the_device_takes_it(tiny_vae, binary_data, monkeypatch):
    """``amp`` enters bfloat16 autocast where it pays, on CUDA; the device check is replaced so it runs on the CPU."""
    assert vaelib.train._bf16(True, torch.device("cuda")) is True
    assert vaelib.train._bf16(True, torch.device("cpu")) is False
    assert vaelib.train._bf16(False, torch.device("cuda")) is False
    dtypes = []
    tiny_vae.decoder[0].register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    optimizer = torch.optim.Adam(tiny_vae.parameters())
    vl.train_epoch(tiny_vae, binary_data[0], optimizer, batch_size=256, amp=True)
    assert dtypes == [torch.float32] * 2  # on the CPU, amp changes nothing
    monkeypatch.setattr(vaelib.train, "_bf16", lambda amp, device: amp)  # as if this CPU were a GPU
    dtypes.clear()
    history = vl.train_epoch(tiny_vae, binary_data[0], optimizer, batch_size=256, amp=True)
    assert dtypes == [torch.bfloat16] * 2 and math.isfinite(history["elbo"])
    dtypes.clear()
    vl.train_epoch(tiny_vae, binary_data[0], optimizer, batch_size=256, amp=False)
    assert dtypes == [torch.float32] * 2


@pytest.mark.cuda
def test_amp_on_cuda_runs_in_bfloat16(tiny_config, binary_data):
    model = vl.VAE(tiny_config).cuda()
    dtypes = []
    model.decoder[0].register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    vl.train_epoch(model, binary_data[0].cuda(), torch.optim.Adam(model.parameters()), batch_size=256, amp=True)
    assert dtypes == [torch.bfloat16] * 2


def test_the_bound_refuses_a_kl_weight_instead_of_ignoring_it(tiny_vae, binary_data):
    x = binary_data[1][:8]
    for beta in (0.5, 2.0, 0.0):
        with pytest.raises(vl.VaelibError, match="has no KL weight; use beta=1 with k > 1"):
            vl.objective(tiny_vae, x, k=5, beta=beta)
    assert vl.objective(tiny_vae, x, k=5, beta=1.0).objective.shape == (8,)


def test_fit_leaves_the_model_in_eval_mode_when_it_returns_or_raises(tiny_config, binary_data, fast_train):
    model = vl.VAE(tiny_config)
    vl.fit(model, binary_data[0], config=fast_train, progress=False)
    assert not model.training
    broken = vl.VAE(tiny_config)
    with torch.no_grad():
        broken.to_mu.weight[0, 0] = float("nan")
    with pytest.raises(vl.VaelibError, match="non-finite"):
        vl.fit(broken, binary_data[0], config=fast_train, progress=False)
    assert not broken.training


def test_a_loss_that_diverges_after_a_checkpoint_puts_back_the_checkpoints_weights(tiny_config, binary_data, tmp_path):
    """With a checkpoint, the last finite weights come from the file, not from a copy made every epoch."""
    model = vl.VAE(tiny_config)
    steps = {"n": 0}

    def poison(module, args, output):
        steps["n"] += 1
        return output * float("nan") if steps["n"] > 16 else output  # from the first step of epoch 3

    path = tmp_path / "run.pt"
    hook = model.to_mu.register_forward_hook(poison)
    with pytest.raises(vl.VaelibError, match="non-finite in epoch 3.*after epoch 2"):
        vl.fit(model, binary_data[0], config=vl.TrainConfig(epochs=4, batch_size=64, device="cpu"), checkpoint=path)
    hook.remove()
    saved = vaelib.checkpoint.load_checkpoint(path)
    assert saved["epoch"] == 2
    _assert_same_weights(model, vl.load_model(path))
