"""The published MNIST likelihood table of Burda, Grosse and Salakhutdinov (2016),
reproduced with vaelib (chapter 5).

Their one-stochastic-layer model: 784-200-200-50 with tanh, a Bernoulli
decoder, dynamically binarized MNIST, trained with the k-sample bound
(k = 1 is the VAE, k > 1 the IWAE) and evaluated on the test set with
L_5000.  Their Table 1 reports test negative log-likelihoods (nats).

``run_experiment`` trains one k with checkpoints, so a schedule longer than
one sitting resumes across separate calls; ``render_table`` sets the results
beside the published numbers.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

from .data import binarize, load
from .losses import log_marginal_likelihood
from .models import VAE, VAEConfig
from .train import TrainConfig, evaluate, fit, resolve_device

__all__ = ["PUBLISHED", "N_TRAIN", "model_config", "run_experiment", "machine_description", "render_table", "load_results"]

PUBLISHED = {1: 86.76, 5: 85.54, 50: 84.78}  # test NLL in nats, Burda et al. (2016) Table 1, one stochastic layer
N_TRAIN = 59_600  # they train on the first 59,600 MNIST images and keep the last 400 for validation


def model_config() -> VAEConfig:
    """The 784-200-200-50 tanh architecture with a Bernoulli decoder."""
    return VAEConfig(latent_dim=50, hidden_dims=(200, 200), activation="tanh", likelihood="bernoulli")


def machine_description(device: torch.device) -> str:
    """A one-line description of where a run happened."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}"


def run_experiment(
    k: int,
    *,
    epochs: int,
    run_dir: str | os.PathLike,
    eval_k: int = 5000,
    n_train: int | None = N_TRAIN,
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
    done, evaluate the test NLL with ``L_eval_k``.  ``lr_schedule="burda"``
    uses the published learning-rate decay, shrunk to ``epochs``
    (:func:`vaelib.train.learning_rate`).

    The checkpoint is ``run_dir/k{k}.pt``; with ``time_limit`` (seconds) a
    call stops after the epoch that passes it, and the next call resumes.
    Training uses the first ``n_train`` images (``None``: all 60,000), by
    default the published 59,600.  Returns a dict with ``k``,
    ``epochs_done``, ``finished`` and, when finished, ``test_nll`` and
    ``test_elbo`` (nats).
    """
    dev = resolve_device(device)
    run_dir = Path(run_dir)
    path = run_dir / f"k{k}.pt"
    x_train, _ = load("mnist", "train", root=root)
    x_test, _ = load("mnist", "test", root=root)
    x_train, x_test = x_train[:n_train], x_test[:n_test]
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule, k=k, pixels="dynamic",
                         seed=seed, device=device)
    torch.manual_seed(seed)
    model = VAE(model_config())
    history = fit(model, x_train, None, config, checkpoint=path, time_limit=time_limit, progress=progress)
    result = {"k": k, "epochs": epochs, "epochs_done": history[-1]["epoch"] if history else 0,
              "train_seconds_total": sum(h["seconds"] for h in history), "n_train": x_train.shape[0],
              "n_test": x_test.shape[0], "eval_k": eval_k, "machine": machine_description(dev)}
    result["finished"] = result["epochs_done"] >= epochs
    if result["finished"]:
        started = time.perf_counter()
        # The test set is binarized once with a fixed seed, as in the published protocol.
        x_bin = binarize(x_test.to(dev), torch.Generator(device=dev).manual_seed(seed + 2))
        model.to(dev).eval()
        generator = torch.Generator(device=dev).manual_seed(seed + 4)
        result["test_nll"] = -log_marginal_likelihood(model, x_bin, eval_k, generator=generator).mean().item()
        result["test_elbo"] = evaluate(model, x_bin, seed=seed + 5)["elbo"]
        result["eval_seconds"] = time.perf_counter() - started
    return result


def render_table(results: list[dict]) -> str:
    """A Markdown table of our test NLL beside the published one, per k."""
    lines = ["| objective | k | epochs | our test NLL (nats) | published (nats) | difference |", "|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: r["k"]):
        name = "VAE" if r["k"] == 1 else "IWAE"
        ours = r.get("test_nll")
        pub = PUBLISHED.get(r["k"])
        ours_s = f"{ours:.2f}" if ours is not None else "not finished"
        diff = f"{ours - pub:+.2f}" if ours is not None and pub is not None else "-"
        lines.append(f"| {name} | {r['k']} | {r.get('epochs_done', '?')} | {ours_s} | {pub if pub else '-'} | {diff} |")
    return "\n".join(lines)


def load_results(path: str | os.PathLike) -> dict:
    """Read a results file written by ``benchmarks/burda_table.py``."""
    with open(path) as f:
        return json.load(f)
