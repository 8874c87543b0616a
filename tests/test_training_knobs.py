"""The training details of Burda et al.'s code as TrainConfig fields (issue 16): the decoder's output
bias from the mean training pixel, Adam's epsilon and beta1.  Defaults change nothing; each knob
does what it says, is saved with the run and refused when changed on resume; the ablation
script summarises seeds and paired effects correctly."""

import json
import math
from dataclasses import asdict, replace

import pytest
import torch
from conftest import load_benchmark

import vaelib as vl
import vaelib.burda
from vaelib import streams
from vaelib.checkpoint import load_checkpoint
from vaelib.models import init_output_bias

ablation = load_benchmark("burda_ablation")


def test_defaults_are_pytorchs_adam_and_default_init():
    config = vl.TrainConfig()
    reference = torch.optim.Adam([torch.zeros(1, requires_grad=True)]).defaults
    assert (config.adam_beta1, 0.999) == reference["betas"] and config.adam_eps == reference["eps"]
    assert config.init_output_bias is False


@pytest.mark.parametrize(
    "field, value",
    [
        ("adam_eps", 0.0),
        ("adam_eps", -1e-4),
        ("adam_eps", float("nan")),
        ("adam_beta1", 1.0),
        ("adam_beta1", -0.1),
        ("adam_beta1", float("inf")),
        ("init_output_bias", 1),
        ("init_output_bias", "yes"),
    ],
)
def test_bad_knob_values_are_refused(field, value):
    with pytest.raises(vl.VaelibError, match=field):
        vl.TrainConfig(**{field: value})


def test_output_bias_is_the_logit_of_the_mean_pixel(tiny_vae, grey_data):
    x_train, _ = grey_data
    x_train = x_train.clone()
    x_train[:, 0] = 0.0  # a pixel that is always off: its logit is clipped, not -inf
    init_output_bias(tiny_vae, x_train)
    bias = tiny_vae.decoder[-1].bias.detach().double()
    mean = x_train.double().mean(0).clamp(1e-3, 1 - 1e-3)
    expected = torch.special.logit(mean)
    torch.testing.assert_close(bias, expected, rtol=0, atol=1e-6)
    assert bias[0].item() == pytest.approx(math.log(1e-3 / (1 - 1e-3)), abs=1e-6)
    # The decoder's output for a last hidden layer of zeros is the mean training image.
    x_hat = torch.sigmoid(bias)
    torch.testing.assert_close(x_hat, mean, rtol=0, atol=1e-6)


def test_output_bias_of_a_gaussian_decoder_is_the_mean_pixel(tiny_config, grey_data):
    model = vl.VAE(replace(tiny_config, likelihood="gaussian"))
    init_output_bias(model, grey_data[0])
    torch.testing.assert_close(model.decoder[-1].bias.detach(), grey_data[0].mean(0), rtol=0, atol=1e-6)


def test_output_bias_needs_an_mlp_vae(tiny_config, grey_data):
    conv = vl.VAE(vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=2, architecture="conv"))
    with pytest.raises(vl.VaelibError, match="architecture='mlp'"):
        init_output_bias(conv, grey_data[0])
    autoencoder = vl.Autoencoder(vl.AutoencoderConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,)))
    with pytest.raises(vl.VaelibError, match="Autoencoder"):
        init_output_bias(autoencoder, grey_data[0])
    with pytest.raises(vl.VaelibError, match="at least one"):
        init_output_bias(vl.VAE(tiny_config), grey_data[0][:0])
    with pytest.raises(vl.VaelibError):
        init_output_bias(vl.VAE(tiny_config), grey_data[0] * 2)  # not pixels in [0, 1]


def test_fit_sets_the_bias_on_a_fresh_run_only(tiny_config, grey_data, fast_train, tmp_path):
    x_train, x_test = grey_data
    config = replace(fast_train, epochs=1, init_output_bias=True, lr=1e-12)  # a step too small to move it
    model = vl.VAE(tiny_config)
    vl.fit(model, x_train, x_test, config, checkpoint=tmp_path / "run.pt", progress=False)
    expected = torch.special.logit(x_train.mean(0).clamp(1e-3, 1 - 1e-3))
    torch.testing.assert_close(model.decoder[-1].bias.detach(), expected, rtol=0, atol=1e-5)
    # On resume the trained bias is kept: set it elsewhere, save, resume, and it must not be reset.
    state = load_checkpoint(tmp_path / "run.pt")
    assert state["train_config"]["init_output_bias"] is True
    resumed = vl.VAE(tiny_config)
    with torch.no_grad():
        resumed.decoder[-1].bias.fill_(0.25)
    vl.fit(resumed, x_train, x_test, replace(config, epochs=2), checkpoint=tmp_path / "run.pt", progress=False)
    # The checkpoint's weights were restored (not 0.25, not re-initialised from the data's mean)...
    torch.testing.assert_close(resumed.decoder[-1].bias.detach(), expected, rtol=0, atol=1e-5)


def test_fit_without_the_knob_leaves_pytorchs_bias(tiny_config, grey_data, fast_train):
    model = vl.VAE(tiny_config)
    before = model.decoder[-1].bias.detach().clone()
    vl.fit(model, *grey_data, replace(fast_train, epochs=1, lr=1e-12), progress=False)
    torch.testing.assert_close(model.decoder[-1].bias.detach(), before, rtol=0, atol=1e-8)


def test_the_optimizer_gets_the_eps_and_beta1_asked_for(tiny_config, grey_data, fast_train, tmp_path):
    x_train, _ = grey_data
    config = replace(fast_train, epochs=1, batch_size=len(x_train), adam_eps=1e-4, adam_beta1=0.99, lr=1e-2)
    torch.manual_seed(3)
    model = vl.VAE(tiny_config)
    reference = vl.VAE(tiny_config)
    reference.load_state_dict(model.state_dict())
    vl.fit(model, x_train, None, config, checkpoint=tmp_path / "run.pt", progress=False)
    group = load_checkpoint(tmp_path / "run.pt")["optimizer"]["param_groups"][0]
    assert group["eps"] == 1e-4 and group["betas"] == (0.99, 0.999)
    # One full-batch step by hand with the same batch order, noise and Adam gives the same weights;
    # PyTorch's default eps and beta1 give others, so the knobs reach the optimizer.
    for betas, eps, same in (((0.99, 0.999), 1e-4, True), ((0.9, 0.999), 1e-8, False)):
        by_hand = vl.VAE(tiny_config)
        by_hand.load_state_dict(reference.state_dict())
        optimizer = torch.optim.Adam(by_hand.parameters(), lr=1e-2, betas=betas, eps=eps)
        generator = streams.generator(config.seed, "train", "cpu")
        vl.train_epoch(by_hand, x_train, optimizer, batch_size=len(x_train), generator=generator)
        close = all(
            torch.allclose(got, want, rtol=1e-5, atol=1e-6)
            for got, want in zip(model.state_dict().values(), by_hand.state_dict().values())
        )
        assert close == same, (betas, eps)


@pytest.mark.parametrize("field, value", [("adam_eps", 1e-4), ("adam_beta1", 0.99), ("init_output_bias", True)])
def test_a_resumed_run_refuses_a_changed_knob(tiny_config, grey_data, fast_train, tmp_path, field, value):
    config = replace(fast_train, epochs=1)
    vl.fit(vl.VAE(tiny_config), *grey_data, config, checkpoint=tmp_path / "run.pt", progress=False)
    with pytest.raises(vl.CheckpointError, match=field):
        vl.fit(
            vl.VAE(tiny_config),
            *grey_data,
            replace(config, epochs=2, **{field: value}),
            checkpoint=tmp_path / "run.pt",
            progress=False,
        )


def test_checkpoints_from_before_the_knobs_resume_with_the_defaults(tiny_config, grey_data, fast_train, tmp_path):
    config = replace(fast_train, epochs=1)
    vl.fit(vl.VAE(tiny_config), *grey_data, config, checkpoint=tmp_path / "run.pt", progress=False)
    state = torch.load(tmp_path / "run.pt", weights_only=False)
    for name in ("adam_eps", "adam_beta1", "init_output_bias"):
        del state["train_config"][name]  # as saved by vaelib 0.3.0
    torch.save(state, tmp_path / "run.pt")
    history = vl.fit(vl.VAE(tiny_config), *grey_data, replace(config, epochs=2), checkpoint=tmp_path / "run.pt")
    assert [h["epoch"] for h in history] == [1, 2]


def test_cli_has_a_flag_for_each_knob():
    from vaelib.cli import build_parser

    args = build_parser().parse_args(
        ["train", "--out", "x", "--adam-eps", "1e-4", "--adam-beta1", "0.99", "--init-output-bias"]
    )
    assert (args.adam_eps, args.adam_beta1, args.init_output_bias) == (1e-4, 0.99, True)
    defaults = build_parser().parse_args(["train", "--out", "x"])
    assert (defaults.adam_eps, defaults.adam_beta1, defaults.init_output_bias) == (1e-8, 0.9, False)


def _record(setting: str, seed: int, nll: float) -> dict:
    return {
        "setting": setting,
        "seed": seed,
        "test_nll": nll,
        "valid_nll": nll + 1,
        "test_elbo": -nll - 4,
        "train_seconds": 3600.0,
        "n_test": 10_000,
        "nll_k": 5000,
        "machine": "a test",
        # evaluated every second epoch, one seed also at epoch 3
        "history": [
            {"epoch": e, **({"test_elbo": -nll - 10 + e} if e % 2 == 0 or seed == e else {})} for e in (1, 2, 3, 4)
        ],
    }


def test_ablation_summary_pairs_seeds_and_gives_the_standard_error():
    records = [_record("baseline", s, v) for s, v in zip((0, 1, 2), (90.0, 91.0, 92.0))]
    records += [_record("bias", s, v) for s, v in zip((0, 1, 2), (89.0, 89.5, 91.5))]
    records += [_record("all", 0, 88.0)]
    summary = ablation.summarize(records)
    base = summary["settings"]["baseline"]["test_nll"]
    assert base["mean"] == pytest.approx(91.0) and base["sd"] == pytest.approx(1.0) and base["n"] == 3
    effect = summary["effects"]["bias vs baseline"]
    diffs = [-1.0, -1.5, -0.5]
    assert effect["diffs"] == pytest.approx(diffs) and effect["mean"] == pytest.approx(-1.0)
    assert effect["se"] == pytest.approx(0.5 / math.sqrt(3))
    assert summary["effects"]["all vs baseline"]["se"] is None  # one seed: no spread to report
    assert "eps vs baseline" not in summary["effects"]  # no runs, no effect
    # The learning curve: the mean over seeds, at the epochs that every seed evaluated.
    assert summary["settings"]["baseline"]["curve"] == {"epoch": [2, 4], "test_elbo": [-99.0, -97.0]}


def test_ablation_summary_refuses_runs_scored_with_different_k():
    records = [_record("baseline", 0, 90.0), {**_record("bias", 0, 89.0), "nll_k": 1000}]
    with pytest.raises(ValueError, match=r"different numbers of samples \[1000, 5000\]"):
        ablation.summarize(records)


def test_ablation_rescores_kept_weights_and_replaces_the_results_together(monkeypatch, tmp_path):
    """A run whose final weights are on disk is scored again without training, keeping its earlier score
    beside the new one; the new scores wait until every run has one, then replace the results at once."""
    monkeypatch.setattr(ablation, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(ablation, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(ablation, "SEEDS", (0,))
    monkeypatch.setattr(ablation, "SETTINGS", {k: ablation.SETTINGS[k] for k in ("baseline", "bias")})
    monkeypatch.setattr(ablation, "NLL_K", 3)  # a fast score for the test
    monkeypatch.setattr(ablation, "describe", lambda: "a test")
    pixels = torch.Generator().manual_seed(5)
    data = {"test": vl.binarize(torch.rand(12, 784, generator=pixels)), "valid": torch.zeros(4, 784)}
    earlier = {"run": "", "train_config": {}, "test_nll": 99.0, "valid_nll": 98.0, "nll_k": 1000, "history": []}
    models = {}
    for name, setting in (("baseline-s0", "baseline"), ("bias-s0", "bias")):
        models[name] = vl.build_model(vl.burda.config(), seed=len(models))
        (ablation.RUNS / name).mkdir(parents=True)
        torch.save(models[name].state_dict(), ablation.RUNS / name / "final.pt")
        ablation.RESULTS.mkdir(exist_ok=True)
        record = {**earlier, "run": name, "train_config": asdict(ablation.config(setting, 0))}
        (ablation.RUNS / name / "trained.json").write_text(json.dumps(record))  # the weights' own record
        (ablation.RESULTS / f"{name}.json").write_text(json.dumps(record))  # committed, scored with L_1000

    assert ablation.train_one("baseline-s0", "baseline", 0, data, deadline=math.inf)
    pending = json.loads((ablation.RUNS / "baseline-s0" / "result.json").read_text())
    with torch.no_grad():
        l_3 = vl.log_marginal_likelihood(
            models["baseline-s0"].eval(), data["test"], 3, generator=streams.generator(0, "nll")
        )
    assert pending["test_nll"] == pytest.approx(-l_3.mean().item())
    assert (pending["nll_k"], pending["test_nll_1000"], pending["valid_nll_1000"]) == (3, 99.0, 98.0)
    assert not ablation._promote()  # bias-s0 has no new score yet: the committed results stay as they were
    assert json.loads((ablation.RESULTS / "baseline-s0.json").read_text())["nll_k"] == 1000

    assert ablation.train_one("bias-s0", "bias", 0, data, deadline=math.inf)
    assert ablation._promote()
    scores = {p.stem: json.loads(p.read_text())["nll_k"] for p in ablation.RESULTS.glob("*.json")}
    assert scores == {"baseline-s0": 3, "bias-s0": 3}
    assert not list(ablation.RUNS.glob("*/result.json"))

    (ablation.RUNS / "bias-s0" / "final.pt").rename(ablation.RUNS / "baseline-s0" / "final.pt")
    monkeypatch.setattr(ablation, "NLL_K", 4)
    with pytest.raises(SystemExit, match="trained.json is the record of other settings than baseline-s0's"):
        ablation.train_one("baseline-s0", "bias", 0, data, deadline=math.inf)  # weights of another setting
    (ablation.RUNS / "baseline-s0" / "trained.json").unlink()
    with pytest.raises(SystemExit, match="final.pt has no record beside it.*remove it to train baseline-s0 again"):
        ablation.train_one("baseline-s0", "baseline", 0, data, deadline=math.inf)  # weights without a record


def test_a_run_interrupted_before_its_score_keeps_the_record_of_its_own_training(monkeypatch, tmp_path):
    """The weights of a finished run and the record of that training are kept side by side before the score
    is computed: a score interrupted, then computed in a later sitting, goes with its own history, never with
    the committed record of an earlier run of the same name."""
    monkeypatch.setattr(ablation, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(ablation, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(ablation, "BASE", replace(ablation.BASE, epochs=1, batch_size=20, eval_every=1))
    monkeypatch.setattr(ablation, "NLL_K", 2)
    monkeypatch.setattr(ablation, "describe", lambda: "a test")
    pixels = torch.Generator().manual_seed(7)
    grey = torch.rand(60, 784, generator=pixels)
    data = {"train": grey[:40], "test_grey": grey[40:], "test": vl.binarize(grey[40:]), "valid": vl.binarize(grey[:4])}
    ablation.RESULTS.mkdir()
    (ablation.RESULTS / "eps-s0.json").write_text(json.dumps({"history": "an earlier run's", "nll_k": 1000}))
    (ablation.RUNS / "eps-s0").mkdir(parents=True)

    def interrupted(*args):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(ablation, "_score", interrupted)
        with pytest.raises(KeyboardInterrupt):
            ablation.train_one("eps-s0", "eps", 0, data, deadline=math.inf)
    run = ablation.RUNS / "eps-s0"
    assert sorted(path.name for path in run.iterdir()) == ["final.pt", "trained.json"]  # no checkpoint left
    trained = json.loads((run / "trained.json").read_text())
    assert [h["epoch"] for h in trained["history"]] == [1] and trained["machine"] == "a test"

    assert ablation.train_one("eps-s0", "eps", 0, data, deadline=math.inf)  # a later sitting: the score only
    result = json.loads((run / "result.json").read_text())
    assert result["history"] == trained["history"] and result["train_config"] == trained["train_config"]
    assert result["nll_k"] == 2 and "test_nll_1000" not in result
    model = vl.build_model(vl.burda.config())
    model.load_state_dict(torch.load(run / "final.pt", weights_only=True))
    with torch.no_grad():
        l_2 = vl.log_marginal_likelihood(model.eval(), data["test"], 2, generator=streams.generator(0, "nll"))
    assert result["test_nll"] == pytest.approx(-l_2.mean().item())


def test_rescore_scores_a_waiting_result_again_with_the_current_code(monkeypatch, tmp_path):
    """After a change in how a score is computed, `rescore` recomputes a waiting score from the kept weights
    and keeps the rest of the record; it refuses a run with no weights beside its score."""
    monkeypatch.setattr(ablation, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(ablation, "NLL_K", 3)
    monkeypatch.setattr(ablation, "describe", lambda: "a test")
    pixels = torch.Generator().manual_seed(6)
    data = {"test": vl.binarize(torch.rand(12, 784, generator=pixels)), "valid": torch.zeros(4, 784)}
    monkeypatch.setattr(ablation, "_data", lambda: data)
    model = vl.build_model(vl.burda.config(), seed=3)
    (ablation.RUNS / "bias-s1").mkdir(parents=True)
    torch.save(model.state_dict(), ablation.RUNS / "bias-s1" / "final.pt")
    stale = {"run": "bias-s1", "train_config": asdict(ablation.config("bias", 1)), "history": [{"epoch": 1}],
             "test_nll": 1.0, "valid_nll": 2.0, "nll_k": 3}  # fmt: skip
    (ablation.RUNS / "bias-s1" / "result.json").write_text(json.dumps(stale))

    assert ablation.main(["rescore", "bias-s1"]) == 0
    record = json.loads((ablation.RUNS / "bias-s1" / "result.json").read_text())
    with torch.no_grad():
        l_3 = vl.log_marginal_likelihood(model.eval(), data["test"], 3, generator=streams.generator(0, "nll"))
    assert record["test_nll"] == pytest.approx(-l_3.mean().item())
    assert record["history"] == [{"epoch": 1}] and record["nll_k"] == 3 and "test_nll_3" not in record
    assert sorted(path.name for path in (ablation.RUNS / "bias-s1").iterdir()) == ["final.pt", "result.json"]

    (ablation.RUNS / "bias-s1" / "final.pt").unlink()
    assert ablation.main(["rescore", "bias-s1"]) == 1  # no weights: nothing to score again
    (ablation.RUNS / "eps-s1").mkdir()
    torch.save(model.state_dict(), ablation.RUNS / "eps-s1" / "final.pt")
    (ablation.RUNS / "eps-s1" / "result.json").write_text(json.dumps(stale))  # the record of another setting
    with pytest.raises(SystemExit, match="eps-s1"):
        ablation.main(["rescore", "eps-s1"])


def test_ablation_status_says_where_each_run_stands(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(ablation, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(ablation, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(ablation, "SEEDS", (0,))
    monkeypatch.setattr(ablation, "SETTINGS", {k: ablation.SETTINGS[k] for k in ("baseline", "bias", "eps", "beta1")})
    for run in ("baseline-s0", "bias-s0", "eps-s0"):
        (ablation.RUNS / run).mkdir(parents=True)
    (ablation.RUNS / "baseline-s0" / "result.json").write_text(
        json.dumps({"nll_k": ablation.NLL_K, "test_nll": 97.25, "valid_nll": 96.5})
    )
    for run in ("bias-s0", "eps-s0"):
        (ablation.RUNS / run / "final.pt").write_bytes(b"")
    (ablation.RUNS / "bias-s0" / "trained.json").write_text("{}")
    assert ablation.main(["status"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "baseline-s0: waiting for the other runs, test NLL 97.25, valid NLL 96.50",
        f"bias-s0: trained, to be scored with L_{ablation.NLL_K}",
        "eps-s0: weights without their record (trained.json): remove final.pt to train it again",
        "beta1-s0: to be trained",
    ]


def test_the_shipped_ablation_summary_is_the_report_of_the_committed_runs():
    """vl.burda.ablation() (what chapter 5 reads) is `burda_ablation.py report` of the per-run results in
    benchmarks/results/burda_ablation/, and each of those is a whole record of a finished run."""
    records = [json.loads(p.read_text()) for p in sorted(ablation.RESULTS.glob("*.json"))]
    assert records, "no finished ablation runs are committed"
    shipped = vl.burda.ablation()
    made_by_report = ("runs_done", "runs_planned", "check_k")
    assert {k: v for k, v in shipped.items() if k not in made_by_report} == ablation.summarize(records)
    if ablation.CHECK_K.exists():
        assert shipped["check_k"] == json.loads(ablation.CHECK_K.read_text())
    assert shipped["runs_done"] == len(records) and shipped["runs_planned"] == len(ablation.runs())
    for record in records:
        assert record["run"] == f"{record['setting']}-s{record['seed']}"
        assert record["history"][-1]["epoch"] == record["train_config"]["epochs"] == ablation.EPOCHS
        assert record["nll_k"] == shipped["nll_k"] and record["n_test"] == 10_000
        assert record["test_nll"] <= -record["test_elbo"]  # L_k is above the ELBO


def test_results_md_reports_the_shipped_ablation_summary():
    report = (ablation.HERE / "RESULTS.md").read_text()
    section = report[report.index("### What the gap is made of") :]
    for row in ablation.markdown_table(vl.burda.ablation()):
        assert row in section, row


def test_a_missing_ablation_summary_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr(vaelib.burda.resources, "files", lambda package: tmp_path)
    with pytest.raises(vl.VaelibError, match="burda_ablation.json is missing or damaged.*burda_ablation.py report"):
        vl.burda.ablation()


def test_ablation_settings_are_the_published_details():
    assert ablation.config("baseline", 1) == replace(ablation.BASE, seed=1)
    both = ablation.config("all-b20", 2)
    assert (both.adam_eps, both.adam_beta1, both.init_output_bias, both.batch_size) == (1e-4, 0.99, True, 20)
    assert ablation.BASE.lr_schedule == "burda" and ablation.BASE.pixels == "dynamic" and ablation.BASE.k == 1
    names = [run for run, _, _ in ablation.runs()]
    assert len(names) == len(set(names)) == len(ablation.SETTINGS) * len(ablation.SEEDS)
    assert asdict(ablation.config("eps", 0))["adam_eps"] == 1e-4
