"""The ``vaelib`` command: train, evaluate, sample, info.

    vaelib train --dataset mnist --latent-dim 20 --epochs 10 --out runs/mnist
    vaelib evaluate runs/mnist --k 5000
    vaelib sample runs/mnist --n 64 --out samples.png
    vaelib info

The flags of ``train`` are generated from the fields of :class:`vaelib.VAEConfig`
and :class:`vaelib.TrainConfig`: a field ``hidden_dims`` is the flag
``--hidden-dims``, its help is the field's ``#:`` comment and its choices are
the tuples the config checks against, so the configs, the CLI and the API
reference cannot drift apart.  Errors print one line and exit non-zero;
the command never prints a traceback.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import typing
from dataclasses import MISSING, asdict, fields
from pathlib import Path

import torch

from .errors import VaelibError

CHECKPOINT_NAME = "checkpoint.pt"
MAX_SAMPLES = 1024  # `vaelib sample --n`: one PNG grid of at most 32 x 32 images
DATA_FLAGS = ("dataset", "n_train", "n_test", "data_root", "no_download")  # train flags that are not config fields


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump, exit 2
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _integer(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def _bounded(minimum: int, maximum: int):
    inner = _integer(minimum)

    def parse(text: str) -> int:
        value = inner(text)
        if value > maximum:
            raise argparse.ArgumentTypeError(f"expected at most {maximum}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def field_help(cls) -> dict[str, str]:
    """The ``#:`` comment after each field of a config dataclass (the same text Sphinx's autodoc shows)."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # no source (a frozen application): flags without help text
        return {}
    matches = (re.match(r"\s+(\w+)\s*:[^#]*#:\s*(.+)$", line) for line in source.splitlines())
    return {m.group(1): m.group(2).strip() for m in matches if m}


def add_config_flags(parser: argparse.ArgumentParser, cls, *, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of the config dataclass ``cls``, typed, with its default, help and choices."""
    hints = typing.get_type_hints(cls)
    helps = field_help(cls)
    group = parser.add_argument_group(f"{cls.__name__} fields")
    for f in fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        default = f.default if f.default is not MISSING else f.default_factory()
        options = {"default": default, "help": helps.get(f.name, ""), "dest": f.name}
        if hint is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
        elif typing.get_origin(hint) is tuple:
            args = typing.get_args(hint)
            nargs = "*" if args[-1] is Ellipsis else len(args)
            group.add_argument(flag, type=_integer(1), nargs=nargs, metavar="N", **options)
        elif hint is int:
            group.add_argument(flag, type=_integer(0), **options)
        elif hint is float:
            group.add_argument(flag, type=float, **options)
        else:
            group.add_argument(flag, choices=cls.choices.get(f.name), **options)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``vaelib`` command (also rendered in the book's CLI reference)."""
    from . import __version__
    from .data import DATASETS
    from .models import VAEConfig
    from .train import TrainConfig

    parser = _Parser(prog="vaelib", description="Variational autoencoders: train, evaluate and sample.")
    parser.add_argument("--version", action="version", version=f"vaelib {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser(
        "train",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,  # every flag's help ends with its default
        help="train a VAE and save its checkpoint and history",
        description="Train a VAE; rerun the same command to resume from the run's checkpoint.",
    )
    t.add_argument("--out", required=True, help="run directory for checkpoint.pt and history.json")
    t.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="stop after the epoch that passes this many seconds; rerun to resume",
    )
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    data = t.add_argument_group("data")
    data.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
    data.add_argument("--n-train", type=_integer(1), default=None, help="train on the first N images only")
    data.add_argument("--n-test", type=_integer(1), default=None, help="evaluate on the first N test images only")
    data.add_argument("--data-root", default=None, help="data directory (default: $VAELIB_DATA or ~/.cache/vaelib)")
    data.add_argument("--no-download", action="store_true", help="never download: fail if the data is not on disk")
    add_config_flags(t, VAEConfig, skip=("image_shape",))
    add_config_flags(t, TrainConfig)

    e = sub.add_parser("evaluate", help="test ELBO and importance-sampled NLL of a trained run (nats)")
    e.add_argument("run", help="run directory or checkpoint file")
    e.add_argument("--k", type=_integer(1), default=5000, help="importance samples (default 5000)")
    e.add_argument("--n-test", type=_integer(1), default=None, help="evaluate on the first N test images only")
    e.add_argument("--batch-size", type=_integer(1), default=100)
    e.add_argument(
        "--seed",
        type=_integer(0),
        default=None,
        help="seed of the test binarization and the noise (default: the run's training seed)",
    )
    e.add_argument("--device", default="auto")
    e.add_argument("--data-root", default=None)
    e.add_argument("--no-download", action="store_true", help="never download: fail if the data is not on disk")

    s = sub.add_parser("sample", help="decode draws from the prior into a PNG grid")
    s.add_argument("run", help="run directory or checkpoint file")
    s.add_argument("--n", type=_bounded(1, MAX_SAMPLES), default=64, help=f"number of samples, 1 to {MAX_SAMPLES}")
    s.add_argument("--label", type=_integer(0), default=None, help="the class to draw (conditional VAEs)")
    s.add_argument("--out", required=True, help="PNG file to write")
    s.add_argument("--seed", type=_integer(0), default=0)
    s.add_argument("--device", default="auto")

    sub.add_parser("info", help="versions, devices and data root")
    return parser


def _checkpoint_path(run: str) -> Path:
    path = Path(run)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def _config(cls, args, **extra):
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}, **extra)


def _train(args) -> dict:
    from .checkpoint import build_model
    from .data import DATASETS, load
    from .models import VAEConfig
    from .train import TrainConfig, fit

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise VaelibError(f"--out {out} is a file; name a directory for the run")
    model_config = _config(VAEConfig, args, image_shape=DATASETS[args.dataset][3])
    train_config = _config(TrainConfig, args)
    x_train, y_train = load(args.dataset, "train", root=args.data_root, download=not args.no_download)
    x_test, y_test = load(args.dataset, "test", root=args.data_root, download=not args.no_download)
    labels = model_config.num_classes > 0
    model = build_model(model_config, seed=train_config.seed)
    history = fit(
        model,
        x_train[: args.n_train],
        x_test[: args.n_test],
        train_config,
        y_train=y_train[: args.n_train] if labels else None,
        y_test=y_test[: args.n_test] if labels else None,
        checkpoint=out / CHECKPOINT_NAME,
        time_limit=args.time_limit,
        progress=False if args.quiet else None,
        dataset=args.dataset,
    )
    record = {
        "dataset": args.dataset,
        "n_train": args.n_train,
        "n_test": args.n_test,
        "model": asdict(model_config),
        "train": asdict(train_config),
        "history": history,
    }
    (out / "history.json").write_text(json.dumps(record, indent=1) + "\n")
    last = history[-1]
    return {
        "run": str(out),
        "epochs_done": last["epoch"],
        "finished": last["epoch"] >= train_config.epochs,
        "test_elbo": next((h["test_elbo"] for h in reversed(history) if "test_elbo" in h), None),
        "train_elbo": last.get("train_elbo"),
    }


def _evaluate(args) -> dict:
    from . import streams
    from .checkpoint import load_checkpoint, load_model
    from .data import binarize, load
    from .devices import resolve_device
    from .train import evaluate

    path = _checkpoint_path(args.run)
    device = resolve_device(args.device)
    model = load_model(path, device)
    state = load_checkpoint(path)
    train_config = state.get("train_config", {})
    pixels = train_config.get("pixels", "grey")
    seed = train_config.get("seed", 0) if args.seed is None else args.seed
    dataset = state.get("dataset") or "mnist"
    x, y = load(dataset, "test", root=args.data_root, download=not args.no_download)
    x, y = x[: args.n_test].to(device), y[: args.n_test]
    if pixels != "grey":  # the same binarization of the test set as fit used: the "test_pixels" stream
        x = binarize(x, streams.generator(seed, "test_pixels", device))
    labels = y if getattr(model.config, "num_classes", 0) else None
    scores = evaluate(model, x, y=labels, k=args.k, batch_size=args.batch_size, seed=seed + streams.STREAMS["nll"])
    return {
        "run": str(path),
        "dataset": dataset,
        "n_test": x.shape[0],
        "pixels": "binarized" if pixels != "grey" else "grey",
        "k": args.k,
        "seed": seed,
        **{f"test_{key}": value for key, value in scores.items()},
    }


def _sample(args) -> dict:
    from .checkpoint import load_model
    from .devices import resolve_device
    from .explore import sample_prior
    from .plot import image_grid

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise VaelibError(f"--out must name a .png file, got {out}")
    if out.is_dir():
        raise VaelibError(f"--out {out} is a directory; name a .png file")
    device = resolve_device(args.device)
    model = load_model(_checkpoint_path(args.run), device)
    conditional = getattr(model.config, "num_classes", 0)
    if conditional and args.label is None:
        raise VaelibError(f"this model is conditioned on {conditional} classes: pass --label (0 to {conditional - 1})")
    if args.label is not None and not 0 <= args.label < conditional:
        raise VaelibError(f"--label {args.label} is out of range for this model (classes: {conditional})")
    generator = torch.Generator(device=device).manual_seed(args.seed)
    x_hat = sample_prior(model, args.n, y=args.label, generator=generator)
    out.parent.mkdir(parents=True, exist_ok=True)
    image_grid(x_hat, ncol=min(8 if args.n <= 64 else 32, args.n)).savefig(out, dpi=100)
    return {"out": str(out), "n": args.n}


def _info(args) -> dict:
    import platform

    import torchvision

    from . import __version__
    from .data import DATASETS, data_root, find_dataset
    from .devices import resolve_device

    mps = getattr(torch.backends, "mps", None)
    return {
        "vaelib": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda_available": torch.cuda.is_available(),
        "mps_available": bool(mps and mps.is_available()),
        "device": str(resolve_device("auto")),
        "data_root": str(data_root()),
        "datasets": {name: str(find_dataset(name) or "not found") for name in DATASETS},
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vaelib`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    handler = {"train": _train, "evaluate": _evaluate, "sample": _sample, "info": _info}[args.command]
    try:
        result = handler(args)
    except VaelibError as err:
        print(f"vaelib {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"vaelib {args.command}: interrupted; the last completed epoch's checkpoint is kept", file=sys.stderr)
        return 130
    except OSError as err:  # a full disk, a permission, a vanished file: say which, without a traceback
        print(f"vaelib {args.command}: error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # a bug: one line, and where to report it
        print(
            f"vaelib {args.command}: internal error: {type(err).__name__}: {err} "
            "(please report it with the command you ran)",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(result, indent=1))
    return 0
