"""The ``vaelib`` command: train, evaluate, sample, export-web, info.

    vaelib train --dataset mnist --latent-dim 20 --epochs 10 --out runs/mnist
    vaelib evaluate runs/mnist --k 5000
    vaelib sample runs/mnist --n 64 --out samples.png
    vaelib sample mnist-cvae --label 7 --out sevens.png   # a shipped model, by name
    vaelib export-web runs/mnist --out lab/ --half          # for the book's live lab
    vaelib info

The flags of ``train`` are generated from the fields of :class:`vaelib.VAEConfig`
and :class:`vaelib.TrainConfig`: a field ``hidden_dims`` is the flag
``--hidden-dims``, its help is the field's ``#:`` comment and its choices are
the tuples the config checks against, so the configs, the CLI and the API
reference cannot drift apart.  Errors print one line and exit non-zero;
the command never prints a traceback, and a Ctrl-C at any moment (torch
is imported inside :func:`main`) ends it with one line and exit status 130.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import re
import sys
import typing
from dataclasses import MISSING, asdict, fields
from pathlib import Path

from ._version import __version__
from .errors import VaelibError

CHECKPOINT_NAME = "checkpoint.pt"
RUN_RECORD = "run.json"  # the data a run trains on (--dataset, --n-train, --n-test), written before its first epoch
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


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, got {text}")
    return value


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
        type=_seconds,
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
    s.add_argument("run", help="run directory, checkpoint file, or the name of a shipped model (e.g. mnist-cvae)")
    s.add_argument("--n", type=_bounded(1, MAX_SAMPLES), default=64, help=f"number of samples, 1 to {MAX_SAMPLES}")
    s.add_argument("--label", type=_integer(0), default=None, help="the class to draw (conditional VAEs)")
    s.add_argument("--out", required=True, help="PNG file to write")
    s.add_argument("--seed", type=_integer(0), default=0)
    s.add_argument("--device", default="auto")

    w = sub.add_parser(
        "export-web",
        help="export a model for the book's live lab: a JSON manifest and a file of weights",
        description="Write NAME.json and NAME.bin for the lab's JavaScript (book/_static/vae_lab.js); MLP VAEs "
        "only, conditional or not, with a Bernoulli or Gaussian decoder (see vaelib.export_web).",
    )
    w.add_argument("run", metavar="RUN_OR_NAME", help="run directory, checkpoint file, or a shipped model's name")
    w.add_argument("--out", required=True, help="directory for NAME.json and NAME.bin")
    w.add_argument("--half", action="store_true", help="store the weights as float16 (half the bytes of float32)")
    w.add_argument("--decoder-only", action="store_true", help="leave the encoder out (for a lab that only decodes)")
    w.add_argument("--name", default=None, help="NAME (default: the shipped model's name or the run directory's)")

    sub.add_parser("info", help="versions, devices and data root")
    return parser


def _checkpoint_path(run: str) -> Path:
    path = Path(run)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def _config(cls, args, **extra):
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}, **extra)


def _write_json(path: Path, value) -> None:
    """Write ``value`` as JSON, atomically: an interrupted write leaves the previous file."""
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(json.dumps(value, indent=1) + "\n")
    os.replace(partial, path)


def run_data(checkpoint: Path) -> dict:
    """The data flags a run was trained with (``dataset``, ``n_train``, ``n_test``): its ``run.json``, else the
    data set's name that vaelib 0.3 kept in the checkpoint, else nothing."""
    from .checkpoint import load_checkpoint

    record = checkpoint.parent / RUN_RECORD
    if record.is_file():
        try:
            data = json.loads(record.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as err:
            data = err
        if not isinstance(data, dict):
            raise VaelibError(
                f"{record} is not a readable run record ({data!r:.100}); restore it from --dataset, --n-train "
                "and --n-test, or delete it to take the run as one on MNIST"
            )
        return data
    dataset = load_checkpoint(checkpoint).get("dataset") if checkpoint.is_file() else None
    return {"dataset": dataset} if dataset else {}


def _check_data(out: Path, args) -> None:
    """Refuse to resume a run on other data than it was trained on, as fit refuses other settings."""
    given = {"dataset": args.dataset, "n_train": args.n_train, "n_test": args.n_test}
    checkpoint = out / CHECKPOINT_NAME
    if checkpoint.is_file():
        recorded = run_data(checkpoint)
        changed = [key for key in given if key in recorded and recorded[key] != given[key]]
        if changed:
            flags = ", ".join(f"--{key.replace('_', '-')} {recorded[key]}" for key in changed)
            asked = ", ".join(f"--{key.replace('_', '-')} {given[key]}" for key in changed)
            raise VaelibError(
                f"{out} was trained with {flags} (None: all images), not {asked}; rerun with the run's data flags, "
                "or use a new --out to start afresh"
            )
    _write_json(out / RUN_RECORD, given)


def _train(args) -> dict:
    from .checkpoint import writable_path
    from .data import DATASETS, load
    from .models import VAEConfig, build_model
    from .train import TrainConfig, fit

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise VaelibError(f"--out {out} is a file; name a directory for the run")
    model_config = _config(VAEConfig, args, image_shape=DATASETS[args.dataset][3])
    train_config = _config(TrainConfig, args)
    writable_path(out / CHECKPOINT_NAME)  # a clear error before anything is loaded or written
    _check_data(out, args)
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
    )
    record = {
        "dataset": args.dataset,
        "n_train": args.n_train,
        "n_test": args.n_test,
        "model": asdict(model_config),
        "train": asdict(train_config),
        "history": history,
    }
    _write_json(out / "history.json", record)
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
    dataset = run_data(path).get("dataset") or "mnist"
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


def _model(run: str, device):
    """The model of a run directory or a checkpoint file, or a shipped model by its name."""
    from .checkpoint import load_model
    from .errors import CheckpointError
    from .pretrained import _names, load_pretrained

    path = _checkpoint_path(run)
    if not path.exists() and run in _names():
        return load_pretrained(run, device)
    if not path.exists():
        raise CheckpointError(
            f"no checkpoint at {path} and no shipped model named {run!r} (shipped: {', '.join(_names()) or 'none'})"
        )
    return load_model(path, device)


def _sample(args) -> dict:
    import torch

    from .devices import resolve_device
    from .explore import sample_prior
    from .plot import image_grid

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise VaelibError(f"--out must name a .png file, got {out}")
    if out.is_dir():
        raise VaelibError(f"--out {out} is a directory; name a .png file")
    device = resolve_device(args.device)
    model = _model(args.run, device)
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


def _export_web(args) -> dict:
    from .web import export_web

    path = _checkpoint_path(args.run)
    model = _model(args.run, "cpu")  # one line naming what was searched when it is neither a run nor a name
    by_name = not path.exists()  # then export_web loads it by name and keeps its record's test metrics
    name = args.name or (args.run if by_name else path.parent.name if path.name == CHECKPOINT_NAME else path.stem)
    source = args.run if by_name else model
    manifest = export_web(source, args.out, half=args.half, name=name, decoder_only=args.decoder_only)
    record = json.loads(manifest.read_text())
    return {
        "manifest": str(manifest),
        "weights": str(manifest.parent / record["weights"]["file"]),
        "bytes": record["weights"]["bytes"],
        "dtype": record["dtype"],
        "sha256": record["weights"]["sha256"],
    }


def _found(name: str) -> str:
    """Where ``vaelib info`` finds a data set: its directory, "not found", or why it cannot look."""
    from .data import find_dataset

    try:
        return str(find_dataset(name) or "not found")
    except VaelibError as err:
        return f"error: {err}"


def _info(args) -> dict:
    import platform

    import torch
    import torchvision

    from .data import DATASETS, data_root
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
        "datasets": {name: _found(name) for name in DATASETS},
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vaelib`` command; returns the exit status.

    Everything, the import of torch included, runs inside the handlers, so
    no error and no Ctrl-C ends in a traceback.
    """
    prefix = "vaelib"  # then "vaelib <command>", once the arguments are parsed
    try:
        args = build_parser().parse_args(argv)
        prefix = f"vaelib {args.command}"
        handlers = {"train": _train, "evaluate": _evaluate, "sample": _sample, "export-web": _export_web, "info": _info}
        result = handlers[args.command](args)
        print(json.dumps(result, indent=1))
    except KeyboardInterrupt:
        kept = ""
        if prefix == "vaelib train" and (Path(args.out) / CHECKPOINT_NAME).is_file():  # else nothing is kept
            kept = "; the checkpoint of the last finished epoch is kept: rerun the command to resume"
        print(f"{prefix}: interrupted{kept}", file=sys.stderr)
        return 130
    except (VaelibError, OSError) as err:  # bad input; a full disk, a permission, a vanished file
        print(f"{prefix}: error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # a bug: one line, and where to report it
        print(
            f"{prefix}: internal error: {type(err).__name__}: {err} (please report it with the command you ran)",
            file=sys.stderr,
        )
        return 1
    return 0
