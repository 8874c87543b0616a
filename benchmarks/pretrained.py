"""Train and export the pretrained models that ship inside vaelib (``vl.load_pretrained``).

Each model is trained by the ``vaelib train`` command in SPECS, with a
resumable checkpoint under ``runs/pretrained/<name>/``; rerun ``train`` until
it reports the run finished (``--time-limit`` splits a long run into
sittings; a resumed run continues exactly where it stopped).  ``export``
then measures the finished model on all 10,000 MNIST test images and writes
``vaelib/weights/<name>.pt`` (float32 weights) and ``<name>.json`` (its
record).  ``status`` prints where each run stands.

    python benchmarks/pretrained.py train notes-mnist-20 --time-limit 3000
    python benchmarks/pretrained.py export notes-mnist-20
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch
from machine import describe  # benchmarks/machine.py

import vaelib as vl
from vaelib import streams
from vaelib.checkpoint import load_checkpoint
from vaelib.cli import main as vaelib_main
from vaelib.cli import run_data

REPO = Path(__file__).resolve().parents[1]
RUNS = Path("runs/pretrained")  # relative to the repository root, where the commands run
WEIGHTS = REPO / "vaelib" / "weights"
NLL_K = 5000  # importance samples of the test NLL (the published protocol)
CHECK_N = 1000  # the tests recompute the ELBO on this many test images ...
CHECK_SEED = 0  # ... with this seed and k = 1

_BURDA = (
    f"--latent-dim 50 --hidden-dims 200 200 --activation tanh --pixels dynamic --n-train {vl.burda.N_TRAIN} "
    "--lr 1e-3 --lr-schedule burda --eval-k 100"
)
# What the ablation (benchmarks/burda_ablation.py, vl.burda.ablation()) found worth taking from Burda et al.'s
# code: the output bias at the logit of the mean pixel, Adam's eps 1e-4 and batches of 20.  Adam's beta1 stays
# at 0.9: 0.99 cost nats alone and a little with the others.
_BURDA_CODE = "--init-output-bias --adam-eps 1e-4 --batch-size 20 --eval-every 40"
SPECS = {
    # name: (description, target, the `vaelib train` arguments)
    "notes-mnist-20": (
        "the notes' 784-400-20 ReLU VAE, Bernoulli decoder on grey levels, Adam 1e-3, batch 128",
        "held-out ELBO on all 10,000 test images of at least -102 nats",
        "--latent-dim 20 --hidden-dims 400 --pixels grey --epochs 100".split(),
    ),
    "mnist-2d": (
        "a 784-512-256-2 ReLU VAE with a 2-D latent space, Bernoulli decoder on grey levels, Adam 1e-3, batch 128",
        "a decoded manifold of legible digits across the grid; its ELBO is recorded",
        "--latent-dim 2 --hidden-dims 512 256 --pixels grey --epochs 100".split(),
    ),
    "mnist-cvae": (
        "a conditional VAE, 784+10-512-256-2 ReLU with the one-hot label given to encoder and decoder, "
        "Bernoulli decoder on grey levels, Adam 1e-3, batch 128",
        "legible digits of the requested class, with the 2-D latent carrying the style",
        "--num-classes 10 --latent-dim 2 --hidden-dims 512 256 --pixels grey --epochs 60".split(),
    ),
    "mnist-2d-small": (
        "mnist-2d's recipe with a quarter of its weights, 784-256-128-2 ReLU, for the book's lab page "
        "(whose assets must stay under 3 MB)",
        "a decoded manifold of legible digits across the grid; its ELBO is recorded",
        "--latent-dim 2 --hidden-dims 256 128 --pixels grey --epochs 100".split(),
    ),
    "mnist-cvae-small": (
        "mnist-cvae's recipe with a quarter of its weights, 784+10-256-128-2 ReLU, for the book's lab page",
        "legible digits of the requested class, with the 2-D latent carrying the style",
        "--num-classes 10 --latent-dim 2 --hidden-dims 256 128 --pixels grey --epochs 60".split(),
    ),
    "burda-vae-k1": (
        "Burda et al.'s 784-200-200-50 tanh VAE trained on the ELBO, dynamic binarization, 59,600 training "
        "images, their learning-rate decay compressed to 1,600 epochs; batch 20, the output bias started at "
        "the logit of the mean pixel and Adam's eps 1e-4, as in their code",
        "test NLL (L_5000, all 10,000 test images binarized once) of at most the published "
        f"{vl.burda.PUBLISHED_NLL[1]} nats; stretch 86.35 (nbip/IWAE's TF2 reproduction)",
        f"{_BURDA} {_BURDA_CODE} --k 1 --epochs 1600".split(),
    ),
    "burda-iwae-k5": (
        "the same model trained on the bound L_5 (IWAE), dynamic binarization, 59,600 training images, "
        "the learning-rate decay compressed to 1,200 epochs; batch 20, the output bias started at the logit "
        "of the mean pixel and Adam's eps 1e-4, as in their code",
        f"test NLL of at most the published {vl.burda.PUBLISHED_NLL[5]} nats; stretch 85.18 (nbip/IWAE)",
        f"{_BURDA} {_BURDA_CODE} --k 5 --epochs 1200".split(),
    ),
}


def command(name: str) -> str:
    """The command that trains ``name`` from scratch (rerun it to resume)."""
    return " ".join(["vaelib", "train", *SPECS[name][2], "--out", str(RUNS / name)])


def train(name: str, time_limit: float | None) -> int:
    args = ["train", *SPECS[name][2], "--out", str(RUNS / name), "--quiet", "--no-download"]
    if time_limit is not None:
        args += ["--time-limit", str(time_limit)]
    return vaelib_main(args)


def _dataset(name: str) -> str:
    """The data set the run trained on, as the CLI recorded it (`vaelib evaluate` reads the same)."""
    return run_data(RUNS / name / "checkpoint.pt").get("dataset") or "mnist"


def _test_set(state: dict, dataset: str, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """All 10,000 test images, binarized exactly as fit and `vaelib evaluate` do when the run binarizes,
    with their labels when the model is conditioned on them."""
    config = state["train_config"]
    x, y = vl.load(dataset, "test", download=False)
    x = x.to(device)
    if config["pixels"] != "grey":
        x = vl.binarize(x, streams.generator(config["seed"], "test_pixels", device))
    return x, (y if state["model_config"].get("num_classes") else None)


PREVIOUS_KEYS = ("description", "command", "train_config", "epochs", "train_seconds", "machine", "metrics", "history")


def _replaced(name: str) -> dict | None:
    """What a model trained by a new recipe replaces: the shipped record's recipe, scores and learning curve
    (kept in the new record as ``previous``, so the book can set the two side by side), or the previous one
    that record kept when the recipe is the same."""
    path = WEIGHTS / f"{name}.json"
    if not path.exists():
        return None
    shipped = json.loads(path.read_text())
    if shipped.get("command") == command(name):  # the same recipe, exported again
        return shipped.get("previous")
    return {key: shipped[key] for key in PREVIOUS_KEYS if key in shipped}


def export(name: str) -> int:
    state = load_checkpoint(RUNS / name / "checkpoint.pt")
    config = state["train_config"]
    if state["epoch"] < config["epochs"]:
        print(f"{name}: {state['epoch']} of {config['epochs']} epochs done; train further first", file=sys.stderr)
        return 3
    model = vl.load_model(RUNS / name / "checkpoint.pt", "cpu")
    previous = _replaced(name)
    x_test, y_test = _test_set(state, _dataset(name), "cpu")
    started = time.perf_counter()
    scores = vl.evaluate(model, x_test, y=y_test, seed=config["seed"] + streams.STREAMS["eval"])
    y_check = None if y_test is None else y_test[:CHECK_N]
    check = vl.evaluate(model, x_test[:CHECK_N], y=y_check, seed=CHECK_SEED)["elbo"]
    nll = None
    if config["pixels"] != "grey":  # a likelihood needs binary pixels
        generator = streams.generator(config["seed"], "nll", "cpu")
        nll = -vl.log_marginal_likelihood(model, x_test, NLL_K, y=y_test, generator=generator).mean().item()
    eval_seconds = time.perf_counter() - started

    WEIGHTS.mkdir(parents=True, exist_ok=True)
    weights = WEIGHTS / f"{name}.pt"
    torch.save({key: value.float().contiguous() for key, value in model.state_dict().items()}, weights)
    history = state["history"]
    record = {
        "name": name,
        "description": SPECS[name][0],
        "target": SPECS[name][1],
        "model_kind": state["model_kind"],
        "model_config": state["model_config"],
        "train_config": config,
        "dataset": _dataset(name),
        "n_train": 60_000
        if "--n-train" not in SPECS[name][2]
        else int(SPECS[name][2][SPECS[name][2].index("--n-train") + 1]),
        "epochs": state["epoch"],
        "train_seconds": round(sum(h["seconds"] for h in history), 1),
        "machine": describe(),
        "vaelib_version": state["vaelib_version"],
        "command": command(name),
        "history": history,
        "metrics": {
            "test_elbo": scores["elbo"],
            "test_reconstruction": scores["reconstruction"],
            "test_kl": scores["kl"],
            "test_nll": nll,
            "nll_k": NLL_K if nll is not None else None,
            "n_test": x_test.shape[0],
            "pixels": config["pixels"],
            "eval_seconds": round(eval_seconds, 1),
        },
        "check": {"n_test": CHECK_N, "seed": CHECK_SEED, "k": 1, "elbo": check},
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }
    if previous is not None:
        record["previous"] = previous
    (WEIGHTS / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: record[k] for k in ("name", "epochs", "train_seconds", "metrics", "check")}, indent=1))
    return 0


def status() -> int:
    for name in SPECS:
        path = RUNS / name / "checkpoint.pt"
        if not path.exists():
            print(f"{name}: not started")
            continue
        state = load_checkpoint(path)
        last = next((h for h in reversed(state["history"]) if "test_elbo" in h), {})
        print(
            f"{name}: {state['epoch']}/{state['train_config']['epochs']} epochs, "
            f"{sum(h['seconds'] for h in state['history']) / 3600:.2f} h; last test ELBO "
            f"{last.get('test_elbo', float('nan')):.2f}, NLL(L_k) {last.get('test_nll', float('nan')):.2f}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["train", "export", "status", "command"])
    parser.add_argument("name", nargs="?", choices=sorted(SPECS))
    parser.add_argument("--time-limit", type=float, default=None, help="seconds of training in this sitting")
    args = parser.parse_args(argv)
    if args.action == "status":
        return status()
    if args.name is None:
        parser.error(f"{args.action} needs a model name: {', '.join(SPECS)}")
    if args.action == "command":
        print(command(args.name))
        return 0
    return train(args.name, args.time_limit) if args.action == "train" else export(args.name)


if __name__ == "__main__":
    sys.exit(main())
