"""Reproduce the one-stochastic-layer rows of Burda, Grosse and Salakhutdinov
(2016), Table 1, with vaelib, and write the results as JSON.

Each k trains from its own checkpoint under --run-dir, so a long schedule is
split over several invocations (e.g. ``--time-limit 540`` per 10-minute
slot); rerun the same command until every row is finished.  On a CPU use a
short schedule and say so: the numbers are honest but far from the paper's
3,280 epochs.

    python benchmarks/burda_table.py --epochs 5 --n-test 1000 --out benchmarks/results/burda_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from machine import describe  # benchmarks/machine.py

import vaelib as vl
from vaelib import streams


def run_experiment(
    k: int,
    *,
    epochs: int,
    run_dir: str | os.PathLike,
    eval_k: int = 5000,
    n_train: int | None = vl.burda.N_TRAIN,
    n_test: int | None = None,
    batch_size: int = 100,
    lr: float = 1e-3,
    lr_schedule: str = "constant",
    seed: int = 0,
    device: str = "auto",
    time_limit: float | None = None,
    root: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> dict:
    """Train (or resume) the model for one ``k`` and, once all ``epochs`` are
    done, evaluate the test NLL with ``L_eval_k`` on the test set binarized once.

    The checkpoint is ``run_dir/k{k}.pt``; with ``time_limit`` (seconds) a
    call stops after the epoch that passes it, and the next call resumes.
    Training uses the first ``n_train`` images (``None``: all 60,000), by
    default the published 59,600.  Returns a dict with ``k``,
    ``epochs_done``, ``finished`` and, when finished, ``test_nll`` and
    ``test_elbo`` (nats).
    """
    dev = vl.resolve_device(device)
    path = Path(run_dir) / f"k{k}.pt"
    x_train, _ = vl.load("mnist", "train", root=root)
    x_test, _ = vl.load("mnist", "test", root=root)
    x_train, x_test = x_train[:n_train], x_test[:n_test]
    config = vl.TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        lr_schedule=lr_schedule,
        k=k,
        pixels="dynamic",
        seed=seed,
        device=device,
    )
    model = vl.build_model(vl.burda.config(), seed=seed)
    history = vl.fit(model, x_train, None, config, checkpoint=path, time_limit=time_limit, progress=progress)
    result = {
        "k": k,
        "epochs": epochs,
        "epochs_done": history[-1]["epoch"] if history else 0,
        "train_seconds_total": sum(h["seconds"] for h in history),
        "n_train": x_train.shape[0],
        "n_test": x_test.shape[0],
        "eval_k": eval_k,
        "machine": describe(dev),
    }
    result["finished"] = result["epochs_done"] >= epochs
    if result["finished"]:
        started = time.perf_counter()
        # The test set is binarized once, with the run's "test_pixels" stream: the same draw as fit's.
        x_bin = vl.binarize(x_test.to(dev), streams.generator(seed, "test_pixels", dev))
        model.to(dev).eval()
        nll_noise = streams.generator(seed, "nll", dev)
        result["test_nll"] = -vl.log_marginal_likelihood(model, x_bin, eval_k, generator=nll_noise).mean().item()
        result["test_elbo"] = vl.evaluate(model, x_bin, seed=seed + streams.STREAMS["eval"])["elbo"]
        result["eval_seconds"] = time.perf_counter() - started
    return result


def render_table(results: list[dict]) -> str:
    """A Markdown table of our test NLL beside the published one, per k."""
    lines = [
        "| objective | k | epochs | our test NLL (nats) | published (nats) | difference |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: r["k"]):
        name = "VAE" if r["k"] == 1 else "IWAE"
        ours = r.get("test_nll")
        pub = vl.burda.PUBLISHED_NLL.get(r["k"])
        ours_s = f"{ours:.2f}" if ours is not None else "not finished"
        diff = f"{ours - pub:+.2f}" if ours is not None and pub is not None else "-"
        lines.append(f"| {name} | {r['k']} | {r.get('epochs_done', '?')} | {ours_s} | {pub if pub else '-'} | {diff} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 5, 50], help="training samples per input (1 = VAE)")
    parser.add_argument("--epochs", type=int, required=True, help="total epochs per model")
    parser.add_argument("--eval-k", type=int, default=5000, help="importance samples for the test log-likelihood")
    parser.add_argument(
        "--n-train",
        type=int,
        default=vl.burda.N_TRAIN,
        help="train on the first N images (default: the published 59,600; the last 400 are their validation set)",
    )
    parser.add_argument("--n-test", type=int, default=None, help="evaluate on the first N test images")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3, help="the (initial) Adam learning rate")
    parser.add_argument(
        "--schedule",
        choices=["constant", "burda"],
        default="constant",
        help="learning rate: constant, or the published 8-pass decay shrunk to --epochs",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds of training per invocation")
    parser.add_argument("--run-dir", default="runs/burda", help="where checkpoints live between invocations")
    parser.add_argument("--out", required=True, help="JSON results file (kept in the repo)")
    args = parser.parse_args(argv)

    deadline = None if args.time_limit is None else time.perf_counter() + args.time_limit
    rows = []
    for k in args.k:
        left = None if deadline is None else max(0.0, deadline - time.perf_counter())
        rows.append(
            run_experiment(
                k,
                epochs=args.epochs,
                run_dir=args.run_dir,
                eval_k=args.eval_k,
                n_train=args.n_train,
                n_test=args.n_test,
                batch_size=args.batch_size,
                lr=args.lr,
                lr_schedule=args.schedule,
                device=args.device,
                time_limit=left,
            )
        )
        print(json.dumps(rows[-1]), flush=True)
    out = {
        "protocol": {
            "model": "784-200-200-50 tanh MLP encoder and decoder, Bernoulli decoder "
            "(Burda et al. 2016, one stochastic layer)",
            "data": f"MNIST, first {rows[0]['n_train']:,} training images, dynamic binarization for training; "
            "test set binarized once (seeded)",
            "optimizer": (
                f"Adam, lr {args.lr} constant, batch {args.batch_size}"
                if args.schedule == "constant"
                else f"Adam, lr {args.lr} * 10^(-i/7) over 8 passes of 3^i epochs shrunk to {args.epochs}, "
                f"batch {args.batch_size}"
            ),
            "epochs": args.epochs,
            "eval_k": args.eval_k,
            "n_train": rows[0]["n_train"],
            "n_test": rows[0]["n_test"],
            "published_schedule": "3,280 epochs with lr 1e-3 * 10^(-i/7) for 3^i epochs, i = 0..7; batch 20; "
            "59,600 training images",
        },
        "results": rows,
        "table": render_table(rows),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(out["table"])
    return 0 if all(r["finished"] for r in rows) else 3


if __name__ == "__main__":
    sys.exit(main())
