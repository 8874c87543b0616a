"""Which details of Burda et al.'s training close the gap to their numbers?  A controlled ablation at k = 1.

The model is theirs (784-200-200-50 tanh, Bernoulli decoder, dynamic
binarization, the first 59,600 training images) and so is the shape of the
schedule (eight passes of 3^i epochs at 1e-3 * 10^(-i/7)), shrunk to
``EPOCHS`` epochs.  Each setting changes one training detail of vaelib's
defaults towards their code, or several together:

* ``bias``: the decoder's output bias starts at the logit of the mean
  training pixel (``TrainConfig.init_output_bias``);
* ``eps``: Adam's epsilon 1e-4 instead of 1e-8 (``adam_eps``);
* ``beta1``: Adam's beta1 0.99 instead of 0.9 (``adam_beta1``);
* ``all``: the three together; ``all-b20``: the three with batch 20 (theirs)
  instead of 100, five times as many Adam steps per epoch.

Every setting runs with seeds 0, 1 and 2, and every run is scored the same
way: the test NLL -L_5000 on all 10,000 test images, binarized once with one
seed for all runs (a paired comparison), and -L_5000 on the 400 held-out
training images (their validation set).  The runs were first scored with
L_1000; ``check-k`` showed on the shipped models and on finished runs that
L_1000 ranks them alike but sits 0.14 to 0.19 nats above L_5000, more than
the 0.1 allowed, so every run is scored again with L_5000: a run whose final
weights are on disk is only rescored, the others are trained again (seeded)
and scored.  A new score waits in ``runs/ablation/<run>/result.json`` until
every run has one; then all replace the committed results at once, which are
never a mix of two scores.

    python benchmarks/burda_ablation.py run --time-limit 3000 &   # two workers, one per core
    python benchmarks/burda_ablation.py run --time-limit 3000 &
    python benchmarks/burda_ablation.py status
    python benchmarks/burda_ablation.py report     # -> vaelib/results/burda_ablation.json
    python benchmarks/burda_ablation.py check-k [RUN ...]  # -> results/burda_ablation_check_k.json
    python benchmarks/burda_ablation.py rescore RUN ...    # a waiting score again, after a change of the code

A worker takes the next run that no other worker holds, one thread each,
with a resumable checkpoint under ``runs/ablation/<run>/``; rerun it to go
on.  A finished run keeps its weights (``final.pt``) and their record
(``trained.json``: configs and history) side by side, removes its checkpoint
and is scored; its record with the scores is ``result.json``.  Across
sessions, commit what a run has on disk (``git add -f``); delete the weights
once the results are promoted.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from machine import describe  # benchmarks/machine.py

import vaelib as vl
from vaelib import streams
from vaelib.checkpoint import load_checkpoint
from vaelib.cli import _write_json  # atomic: the file is whole, or the previous one stays

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "burda_ablation"
SUMMARY = HERE.parent / "vaelib" / "results" / "burda_ablation.json"  # shipped: vl.burda.ablation() reads it
CHECK_K = HERE / "results" / "burda_ablation_check_k.json"
RUNS = HERE.parent / "runs" / "ablation"
EPOCHS = 100
SEEDS = (0, 1, 2)
NLL_K = 5000  # importance samples of the score: the test protocol of Burda et al.
CHECK_KS = (1000, 5000)  # check-k: the first score against the protocol's
SCORE_SEED = 0  # one binarization of the test set and one noise seed for every run
BASE = vl.TrainConfig(
    epochs=EPOCHS,
    batch_size=100,
    lr=1e-3,
    lr_schedule="burda",
    k=1,
    pixels="dynamic",
    device="cpu",
    eval_every=10,  # the held-out ELBO (k = 1) for the learning curves: cheap
    eval_k=1,
)
SETTINGS = {  # name: (what it changes, TrainConfig fields)
    "baseline": ("vaelib's defaults: PyTorch's bias init, Adam eps 1e-8, beta1 0.9; batch 100", {}),
    "bias": ("+ output bias at the logit of the mean training pixel", {"init_output_bias": True}),
    "eps": ("+ Adam eps 1e-4", {"adam_eps": 1e-4}),
    "beta1": ("+ Adam beta1 0.99", {"adam_beta1": 0.99}),
    "all": ("+ all three", {"init_output_bias": True, "adam_eps": 1e-4, "adam_beta1": 0.99}),
    "all-b20": (
        "+ all three, batch 20",
        {"init_output_bias": True, "adam_eps": 1e-4, "adam_beta1": 0.99, "batch_size": 20},
    ),
}


def runs() -> list[tuple[str, str, int]]:
    """Every run as (run name, setting, seed), seed by seed, so that each setting has a first seed early."""
    return [(f"{name}-s{seed}", name, seed) for seed in SEEDS for name in SETTINGS]


def config(setting: str, seed: int) -> vl.TrainConfig:
    return replace(BASE, seed=seed, **SETTINGS[setting][1])


def _data() -> dict[str, torch.Tensor]:
    """Training images, the 400 held-out ones and the test set, the last two binarized once for every run."""
    x_train, _ = vl.load("mnist", "train", download=False)
    x_test, _ = vl.load("mnist", "test", download=False)
    return {
        "train": x_train[: vl.burda.N_TRAIN],
        "valid": vl.binarize(x_train[vl.burda.N_TRAIN :], streams.generator(SCORE_SEED, "train_pixels")),
        "test": vl.binarize(x_test, streams.generator(SCORE_SEED, "test_pixels")),
        "test_grey": x_test,
    }


def _nll(model, x: torch.Tensor, k: int) -> float:
    """-mean L_k of binary x (nats), with the same noise for every model."""
    generator = streams.generator(SCORE_SEED, "nll")
    return -vl.log_marginal_likelihood(model, x, k, generator=generator).mean().item()


def _scored(run: str) -> bool:
    """Whether ``run`` has a score with NLL_K samples, committed or waiting for the other runs."""
    out = RESULTS / f"{run}.json"
    return (RUNS / run / "result.json").exists() or (out.exists() and json.loads(out.read_text())["nll_k"] == NLL_K)


def train_one(run: str, setting: str, seed: int, data, deadline: float) -> bool:
    """Train (or resume) one run until it finishes or the deadline passes, then score it.  A finished run
    keeps its weights (``final.pt``) and their record (``trained.json``, configs and history) side by side
    until it is scored, so a run whose weights are on disk is only scored; the scores of those weights with
    another k stay in the record, suffixed with their k."""
    if _scored(run):
        return True
    final, trained = RUNS / run / "final.pt", RUNS / run / "trained.json"
    cfg = config(setting, seed)
    if final.exists():  # trained already (on this disk): only the score is missing
        if not trained.exists():
            raise SystemExit(f"{final} has no record beside it ({trained.name}); remove it to train {run} again")
        model, record = _kept(run, trained, setting, seed)
    else:
        model = vl.build_model(vl.burda.config(), seed=seed)
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        history = vl.fit(
            model,
            data["train"],
            data["test_grey"],
            cfg,
            checkpoint=RUNS / run / "checkpoint.pt",
            time_limit=None if math.isinf(left) else left,  # fit takes a finite limit, or none
            progress=False,
        )
        if history[-1]["epoch"] < cfg.epochs:
            return False
        record = {
            "run": run,
            "setting": setting,
            "seed": seed,
            "changes": SETTINGS[setting][0],
            "train_config": asdict(cfg),
            "model_config": asdict(vl.burda.config()),
            "n_train": vl.burda.N_TRAIN,
            "train_seconds": round(sum(h["seconds"] for h in history), 1),
            "machine": describe(),
            "vaelib_version": vl.__version__,
            "history": history,
        }
        # Before scoring, so that an interrupted score costs no training: the record, then the weights (each
        # whole or absent), then the checkpoint goes; cut short before the weights, the run resumes at its end.
        _write_json(trained, record)
        torch.save(model.state_dict(), final.with_suffix(".part"))
        final.with_suffix(".part").replace(final)
        (RUNS / run / "checkpoint.pt").unlink(missing_ok=True)
    if time.monotonic() > deadline:
        return False
    _write_json(RUNS / run / "result.json", _score(model, data, record))
    return True


def _kept(run: str, record_path: Path, setting: str, seed: int) -> tuple[torch.nn.Module, dict]:
    """The kept final weights of ``run`` as a model, and the record at ``record_path``, which must be of the
    run's settings."""
    record = json.loads(record_path.read_text())
    if record["train_config"] != asdict(config(setting, seed)):
        raise SystemExit(f"{record_path} is the record of other settings than {run}'s; remove it and final.pt")
    model = vl.build_model(vl.burda.config())
    model.load_state_dict(torch.load(RUNS / run / "final.pt", weights_only=True))
    return model, record


def _score(model, data, record: dict) -> dict:
    """``record`` with the scores of ``model``: -L_NLL_K of the test and validation images and the test ELBO.
    A score of these weights with another k stays in the record, suffixed with its k."""
    started = time.perf_counter()
    model.eval()
    with torch.no_grad():
        scores = {
            "test_nll": _nll(model, data["test"], NLL_K),
            "valid_nll": _nll(model, data["valid"], NLL_K),
            **{f"test_{key}": value for key, value in vl.evaluate(model, data["test"], seed=SCORE_SEED).items()},
        }
    if record.get("nll_k", NLL_K) != NLL_K:  # the earlier score of these weights, kept beside the new one
        record |= {f"{key}_{record['nll_k']}": record[key] for key in ("test_nll", "valid_nll")}
    record |= {
        "test_nll": scores["test_nll"],
        "valid_nll": scores["valid_nll"],
        "test_elbo": scores["test_elbo"],
        "test_kl": scores["test_kl"],
        "nll_k": NLL_K,
        "n_test": data["test"].shape[0],
        "n_valid": data["valid"].shape[0],
        "eval_seconds": round(time.perf_counter() - started, 1),
        "score_machine": describe(),
    }
    return record


def rescore(names: list[str]) -> int:
    """Score again, with the current code, runs whose new score waits and whose final weights are on disk:
    after a change in how a score is computed, so that every run is scored alike."""
    torch.set_num_threads(1)  # beside the workers, one core each
    data = _data()
    settings = {name: (setting, seed) for name, setting, seed in runs()}
    for name in names:
        pending, final = RUNS / name / "result.json", RUNS / name / "final.pt"
        if name not in settings or not (pending.exists() and final.exists()):
            print(f"{name}: no waiting score with final weights beside it; nothing to score again", file=sys.stderr)
            return 1
        model, record = _kept(name, pending, *settings[name])
        _write_json(pending, _score(model, data, record))
        print(f"{name} scored again: test NLL {record['test_nll']:.3f}", flush=True)
    return 0


def _promote() -> bool:
    """Once every run has a score with NLL_K samples, move the waiting ones into RESULTS."""
    if not all(_scored(name) for name, _, _ in runs()):
        return False
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name, _, _ in runs():
        pending = RUNS / name / "result.json"
        if pending.exists():
            pending.replace(RESULTS / f"{name}.json")
    return True


def run(time_limit: float | None) -> int:
    """Train and score runs until all are done or the time is up.  Several workers share the list: each run
    is claimed with a lock on its directory, which the system releases when the worker ends, however it
    ends."""
    torch.set_num_threads(1)  # two workers share two cores
    deadline = time.monotonic() + (time_limit if time_limit is not None else math.inf)
    data = _data()
    for name, setting, seed in runs():
        if _scored(name):
            continue
        (RUNS / name).mkdir(parents=True, exist_ok=True)
        with open(RUNS / name / "lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another worker holds it
                continue
            if not train_one(name, setting, seed, data, deadline):
                print(f"time limit reached during {name}; rerun to resume", flush=True)
                return 0
        (RUNS / name / "lock").unlink(missing_ok=True)
        print(f"{name} done", flush=True)
    if _promote():
        print(f"every run is scored with L_{NLL_K}: the results are in {RESULTS}; now run report")
    else:
        print("no run left to start; the other workers' runs are not finished")
    return 0


def status() -> int:
    for name, _, _ in runs():
        pending, out = RUNS / name / "result.json", RESULTS / f"{name}.json"
        path = pending if pending.exists() else out
        rec = json.loads(path.read_text()) if path.exists() else None
        if rec is not None and rec["nll_k"] == NLL_K:
            where = "waiting for the other runs" if path == pending else "done"
            print(f"{name}: {where}, test NLL {rec['test_nll']:.2f}, valid NLL {rec['valid_nll']:.2f}")
        elif (RUNS / name / "checkpoint.pt").exists():
            state = load_checkpoint(RUNS / name / "checkpoint.pt")
            last = state["history"][-1]
            print(f"{name}: epoch {state['epoch']}/{EPOCHS}, train ELBO {last['train_elbo']:.2f}")
        elif (RUNS / name / "final.pt").exists() and not (RUNS / name / "trained.json").exists():
            print(f"{name}: weights without their record (trained.json): remove final.pt to train it again")
        elif (RUNS / name / "final.pt").exists():
            print(f"{name}: trained, to be scored with L_{NLL_K}")
        else:
            print(f"{name}: to be trained" + (f" again (scored with L_{rec['nll_k']})" if rec else ""))
    return 0


def _mean_sd(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
        "values": values,
    }


def _mean_curve(histories: list[list[dict]]) -> dict:
    """The held-out ELBO against the epoch, averaged over seeds, at the epochs every run evaluated."""
    evaluated = [{h["epoch"]: h["test_elbo"] for h in history if "test_elbo" in h} for history in histories]
    epochs = sorted(set.intersection(*(set(e) for e in evaluated)))
    return {"epoch": epochs, "test_elbo": [statistics.fmean(e[epoch] for e in evaluated) for epoch in epochs]}


def summarize(records: list[dict]) -> dict:
    """Per setting: mean and standard deviation over seeds of each score; per knob: the paired difference
    from the baseline (same seed), its mean and standard error.  Negative effects lower the NLL."""
    ks = {rec["nll_k"] for rec in records}
    if len(ks) != 1:
        raise ValueError(f"the runs are scored with different numbers of samples {sorted(ks)}: score them alike")
    by_setting: dict[str, dict[int, dict]] = {}
    for rec in records:
        by_setting.setdefault(rec["setting"], {})[rec["seed"]] = rec
    settings = {}
    for name in SETTINGS:
        recs = by_setting.get(name, {})
        if not recs:
            continue
        settings[name] = {
            "changes": SETTINGS[name][0],
            "seeds": sorted(recs),
            **{score: _mean_sd([recs[s][score] for s in sorted(recs)]) for score in ("test_nll", "valid_nll")},
            "test_elbo": _mean_sd([recs[s]["test_elbo"] for s in sorted(recs)]),
            "train_hours": sum(recs[s]["train_seconds"] for s in recs) / 3600,
            "curve": _mean_curve([recs[s]["history"] for s in sorted(recs)]),
        }
    effects = {}
    pairs = [(name, "baseline") for name in SETTINGS if name not in ("baseline", "all-b20")]
    pairs.append(("all-b20", "all"))
    for name, reference in pairs:
        common = sorted(set(by_setting.get(name, {})) & set(by_setting.get(reference, {})))
        if not common:
            continue
        diffs = [by_setting[name][s]["test_nll"] - by_setting[reference][s]["test_nll"] for s in common]
        effects[f"{name} vs {reference}"] = {
            "mean": statistics.fmean(diffs),
            "se": statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else None,
            "seeds": common,
            "diffs": diffs,
        }
    return {
        "epochs": EPOCHS,
        "nll_k": ks.pop(),
        "n_test": records[0]["n_test"],
        "settings": settings,
        "effects": effects,
        "machines": sorted({rec["machine"] for rec in records}),  # the runs resumed across sittings
    }


def report() -> int:
    records = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    if not records:
        print(f"no finished runs in {RESULTS}", file=sys.stderr)
        return 1
    summary = summarize(records)
    summary["runs_done"] = len(records)
    summary["runs_planned"] = len(runs())
    if CHECK_K.exists():  # how far L_1000, the first score, sits above L_5000 on the models check-k measured
        summary["check_k"] = json.loads(CHECK_K.read_text())
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text(json.dumps(summary, indent=1) + "\n")
    print("\n".join(markdown_table(summary)))
    return 0


def markdown_table(summary: dict) -> list[str]:
    """The summary as the rows of RESULTS.md's table: per setting, the mean and sd of the test NLL over the
    seeds, and the paired effect with its standard error (tests/test_training_knobs.py checks they agree)."""
    effects = {pair.split(" vs ")[0]: (pair.split(" vs ")[1], e) for pair, e in summary["effects"].items()}
    rows = [
        f"| setting | what changes from vaelib's defaults | test NLL, -L_{summary['nll_k']} (nats) | sd | seeds "
        "| effect (nats) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, s in summary["settings"].items():
        nll = s["test_nll"]
        sd = "-" if nll["sd"] is None else f"{nll['sd']:.2f}"
        effect = ""
        if name in effects:
            reference, e = effects[name]
            se = "" if e["se"] is None else f" (se {e['se']:.2f})"
            effect = f"{e['mean']:+.2f}{se}" + (f" against `{reference}`" if reference != "baseline" else "")
        rows.append(f"| `{name}` | {s['changes']} | {nll['mean']:.2f} | {sd} | {nll['n']} | {effect} |")
    return rows


def _nll_1000_and_5000(model, x: torch.Tensor, seed: int, recorded: dict[int, float]) -> dict:
    """-L_1000 and -L_5000 on ``x`` with the run's "nll" noise stream; a value ``recorded`` (by k) with this
    test set and this stream is not computed again."""
    started = time.perf_counter()
    nll = {k: recorded[k] for k in CHECK_KS if k in recorded}
    for k in CHECK_KS:
        if k not in nll:
            generator = streams.generator(seed, "nll")
            nll[k] = -vl.log_marginal_likelihood(model, x, k, generator=generator).mean().item()
    seconds = round(time.perf_counter() - started, 1)
    return {"nll_1000": nll[1000], "nll_5000": nll[5000], "difference": nll[1000] - nll[5000], "seconds": seconds}


def _recorded_nll(record: dict) -> dict[int, float]:
    """The test NLLs a run's record holds, by k: its score and the earlier score of the same weights."""
    nll = {record["nll_k"]: record["test_nll"]}
    nll |= {int(key.rsplit("_", 1)[1]): value for key, value in record.items() if key.startswith("test_nll_")}
    return nll


def check_k(runs: list[str] | None) -> int:
    """L_1000 against L_5000 on the shipped Burda models (their records hold L_5000, scored by export) and
    on the finished ablation runs named in ``runs`` (default: all) whose final weights are still on disk
    (their results hold one or both)."""
    x_test, _ = vl.load("mnist", "test", download=False)
    rows = {}
    for name, record in vl.pretrained_models().items():
        if name.startswith("burda-"):
            seed = record["train_config"]["seed"]
            x = vl.binarize(x_test, streams.generator(seed, "test_pixels"))  # the export's test set
            model = vl.load_pretrained(name)
            rows[name] = _nll_1000_and_5000(model, x, seed, {5000: record["metrics"]["test_nll"]})
            print(name, rows[name], flush=True)
    x = vl.binarize(x_test, streams.generator(SCORE_SEED, "test_pixels"))  # the ablation's test set
    for run in runs or sorted(path.parent.name for path in RUNS.glob("*/final.pt")):
        path, pending, result = RUNS / run / "final.pt", RUNS / run / "result.json", RESULTS / f"{run}.json"
        result = pending if pending.exists() else result
        if not (path.exists() and result.exists()):
            print(f"{run}: not finished, or its final weights are gone; skipped", file=sys.stderr)
            continue
        model = vl.build_model(vl.burda.config())
        model.load_state_dict(torch.load(path, weights_only=True))
        recorded = _recorded_nll(json.loads(result.read_text()))  # scored by train_one, the same way
        rows[run] = _nll_1000_and_5000(model.eval(), x, SCORE_SEED, recorded)
        print(run, rows[run], flush=True)
    order_1000 = sorted(rows, key=lambda n: rows[n]["nll_1000"])
    order_5000 = sorted(rows, key=lambda n: rows[n]["nll_5000"])
    result = {
        "models": rows,
        "same_order": order_1000 == order_5000,
        "max_difference": max(abs(r["difference"]) for r in rows.values()),
        "machine": describe(),
    }
    CHECK_K.write_text(json.dumps(result, indent=1) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    r = sub.add_parser("run", help="train this worker's share of the runs")
    r.add_argument("--time-limit", type=float, default=None, help="seconds in this sitting")
    sub.add_parser("status")
    sub.add_parser("report")
    s = sub.add_parser("rescore", help="score again runs whose new score waits and whose final weights are kept")
    s.add_argument("runs", nargs="+", help="ablation runs, such as baseline-s0")
    c = sub.add_parser("check-k", help="L_1000 against L_5000 on the shipped models and finished runs")
    c.add_argument("runs", nargs="*", help="ablation runs to include (default: every one with final weights)")
    args = parser.parse_args(argv)
    if args.action == "run":
        return run(args.time_limit)
    if args.action == "rescore":
        return rescore(args.runs)
    if args.action == "check-k":
        return check_k(args.runs)
    return {"status": status, "report": report}[args.action]()


if __name__ == "__main__":
    sys.exit(main())
