"""The ``vaelib`` command: train, evaluate, sample, info.

    vaelib train --dataset mnist --latent-dim 20 --epochs 10 --out runs/mnist
    vaelib evaluate runs/mnist --k 5000
    vaelib sample runs/mnist --n 64 --out samples.png
    vaelib info

Errors in the arguments or the input print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from .errors import VaelibError

CHECKPOINT_NAME = "checkpoint.pt"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump, exit 2
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _checkpoint_path(run: str) -> Path:
    path = Path(run)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .data import DATASETS

    parser = _Parser(prog="vaelib", description="Variational autoencoders: train, evaluate and sample.")
    parser.add_argument("--version", action="version", version=f"vaelib {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a VAE and save its checkpoint and history")
    t.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
    t.add_argument("--latent-dim", type=_positive_int, default=20, help="size of z (default 20)")
    t.add_argument("--architecture", choices=["mlp", "conv"], default="mlp")
    t.add_argument("--hidden", type=_positive_int, nargs="*", default=[400], help="hidden widths of the MLP (default 400)")
    t.add_argument("--activation", choices=["relu", "tanh", "elu", "gelu", "softplus"], default="relu")
    t.add_argument("--likelihood", choices=["bernoulli", "gaussian"], default="bernoulli")
    t.add_argument("--gaussian-logvar", type=float, default=0.0, help="log variance of a Gaussian likelihood")
    t.add_argument("--learn-logvar", action="store_true", help="learn the Gaussian likelihood's variance per pixel")
    t.add_argument("--epochs", type=_positive_int, default=10)
    t.add_argument("--batch-size", type=_positive_int, default=128)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--lr-schedule", choices=["constant", "burda"], default="constant",
                   help="constant, or Burda et al.'s 8-pass decay shrunk to --epochs")
    t.add_argument("--beta", type=float, default=1.0, help="KL weight (1 = the ELBO)")
    t.add_argument("--warmup-epochs", type=int, default=0, help="linear KL warm-up length")
    t.add_argument("--k", type=_positive_int, default=1, help="importance samples per input (1 = VAE, >1 = IWAE)")
    t.add_argument("--pixels", choices=["grey", "dynamic", "fixed"], default="grey")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    t.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")
    t.add_argument("--n-train", type=_positive_int, default=None, help="train on the first N images only")
    t.add_argument("--n-test", type=_positive_int, default=None, help="evaluate on the first N test images only")
    t.add_argument("--data-root", default=None, help="data directory (default: $VAELIB_DATA or ~/.cache/vaelib)")
    t.add_argument("--no-download", action="store_true", help="never download: fail if the data set is not on disk")
    t.add_argument("--time-limit", type=float, default=None, help="stop after the epoch passing this many seconds; rerun to resume")
    t.add_argument("--out", required=True, help="run directory for checkpoint.pt and history.json")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("evaluate", help="test ELBO and importance-sampled NLL of a trained run (nats)")
    e.add_argument("run", help="run directory or checkpoint file")
    e.add_argument("--k", type=_positive_int, default=5000, help="importance samples (default 5000)")
    e.add_argument("--n-test", type=_positive_int, default=None, help="evaluate on the first N test images only")
    e.add_argument("--batch-size", type=_positive_int, default=100)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="auto")
    e.add_argument("--data-root", default=None)

    s = sub.add_parser("sample", help="decode draws from the prior into a PNG grid")
    s.add_argument("run", help="run directory or checkpoint file")
    s.add_argument("--n", type=_positive_int, default=64, help="number of samples")
    s.add_argument("--out", required=True, help="PNG file to write")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")

    sub.add_parser("info", help="versions, device and data root")
    return parser


def _train(args) -> dict:
    from .data import load
    from .models import VAE, VAEConfig
    from .train import TrainConfig, fit

    config = VAEConfig(latent_dim=args.latent_dim, hidden_dims=tuple(args.hidden), activation=args.activation,
                       architecture=args.architecture, likelihood=args.likelihood,
                       gaussian_logvar=args.gaussian_logvar, learn_gaussian_logvar=args.learn_logvar)
    train = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule, beta=args.beta,
                        warmup_epochs=args.warmup_epochs, k=args.k, pixels=args.pixels, seed=args.seed,
                        device=args.device, amp=args.amp)
    x_train, _ = load(args.dataset, "train", root=args.data_root, download=not args.no_download)
    x_test, _ = load(args.dataset, "test", root=args.data_root, download=not args.no_download)
    torch.manual_seed(args.seed)
    model = VAE(config)
    out = Path(args.out)
    history = fit(model, x_train[: args.n_train], x_test[: args.n_test], train, checkpoint=out / CHECKPOINT_NAME,
                  time_limit=args.time_limit, progress=False if args.quiet else None)
    (out / "history.json").write_text(json.dumps({"dataset": args.dataset, "model": asdict(config),
                                                  "train": asdict(train), "history": history}, indent=1) + "\n")
    last = history[-1]
    return {"run": str(out), "epochs_done": last["epoch"], "test_elbo": last.get("test_elbo"), "train_elbo": last["train_elbo"]}


def _evaluate(args) -> dict:
    from .checkpoint import load_checkpoint, load_model
    from .data import binarize, load
    from .train import evaluate, resolve_device

    path = _checkpoint_path(args.run)
    device = resolve_device(args.device)
    model = load_model(path, device)
    state = load_checkpoint(path)
    pixels = state.get("train_config", {}).get("pixels", "grey")
    dataset = "mnist"
    history_file = path.parent / "history.json"
    if history_file.exists():
        dataset = json.loads(history_file.read_text()).get("dataset", "mnist")
    x, _ = load(dataset, "test", root=args.data_root)
    x = x[: args.n_test].to(device)
    if pixels != "grey":
        x = binarize(x, torch.Generator(device=device).manual_seed(args.seed))
    scores = evaluate(model, x, k=args.k, batch_size=args.batch_size, seed=args.seed)
    return {"run": str(path), "dataset": dataset, "n_test": x.shape[0], "pixels": "binarized" if pixels != "grey" else "grey",
            "k": args.k, **{f"test_{key}": value for key, value in scores.items()}}


def _sample(args) -> dict:
    from .checkpoint import load_model
    from .explore import sample_prior
    from .plot import image_grid
    from .train import resolve_device

    device = resolve_device(args.device)
    model = load_model(_checkpoint_path(args.run), device)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    x_hat = sample_prior(model, args.n, generator=generator)
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise VaelibError(f"--out must name a .png file, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    image_grid(x_hat, ncol=min(8, args.n)).savefig(out, dpi=100)
    return {"out": str(out), "n": args.n}


def _info(args) -> dict:
    import platform

    import torchvision

    from . import __version__
    from .data import DATASETS, data_root, find_dataset
    from .train import resolve_device

    return {
        "vaelib": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "torchvision": torchvision.__version__, "cuda_available": torch.cuda.is_available(),
        "device": str(resolve_device("auto")), "data_root": str(data_root()),
        "datasets": {name: str(find_dataset(name) or "not found") for name in DATASETS},
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vaelib`` command; returns the exit status."""
    args = _build_parser().parse_args(argv)
    handler = {"train": _train, "evaluate": _evaluate, "sample": _sample, "info": _info}[args.command]
    try:
        result = handler(args)
    except VaelibError as err:
        print(f"vaelib {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"vaelib {args.command}: interrupted; the last completed epoch's checkpoint is kept", file=sys.stderr)
        return 130
    print(json.dumps(result, indent=1))
    return 0
