"""Training: the loop, :func:`train_epoch`; :func:`fit` around it; and :func:`evaluate` (chapter 5).

``train_epoch`` is the whole algorithm, on one screen: shuffle, take a
mini-batch, compute the objective, step.  Its speed comes from keeping the
data as one tensor on the training device: each step gathers a batch out of
it (and, for dynamic binarization, draws its pixels there), so no per-image
Python work and no host synchronisation happen inside an epoch.

``fit`` is orchestration around that loop: the learning-rate schedule and KL
warm-up, evaluation on held-out data, atomic checkpoints after every epoch,
resuming, a time limit and a progress bar.  Its randomness comes from the
named streams of :mod:`vaelib.streams`, and the training stream's state is
checkpointed, so a resumed run continues exactly as an uninterrupted one
would on the same kind of device; on another (a GPU run resumed on a CPU, or
the reverse) it continues from a stream reseeded from the saved state.

Every entry point checks its input once (``train_epoch`` with ``check=True``,
``evaluate``, ``fit``) and passes ``check=False`` down to the per-step code.
"""

from __future__ import annotations

import bisect
import itertools
import math
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from . import _checks, streams
from .checkpoint import load_checkpoint, restore_weights, save_checkpoint, writable_path
from .data import binarize
from .devices import resolve_device
from .elbo import _check_memory, _log_marginal_likelihood, kl_warmup, objective
from .errors import CheckpointError, VaelibError
from .models import init_output_bias

__all__ = ["TrainConfig", "learning_rate", "train_epoch", "evaluate", "fit"]

LR_SCHEDULES = ("constant", "burda")
PIXELS = ("grey", "dynamic", "fixed")


@dataclass(frozen=True)
class TrainConfig:
    """How to train; saved in every checkpoint."""

    epochs: int = 10  #: passes over the training set
    batch_size: int = 128  #: examples per Adam step
    lr: float = 1e-3  #: Adam learning rate (the initial one under a schedule)
    adam_beta1: float = 0.9  #: Adam's decay of the gradient's running mean (Burda et al.'s code: 0.99)
    adam_eps: float = 1e-8  #: Adam's epsilon, added to the root of the squared-gradient average (Burda et al.: 1e-4)
    init_output_bias: bool = False  #: start the decoder's output bias at the training data's mean pixel (Burda et al.)
    lr_schedule: str = "constant"  #: "constant", or "burda": Burda et al.'s 8 passes of 3^i epochs, laid over epochs
    beta: float = 1.0  #: weight of the KL term (1 is the ELBO; a beta-VAE otherwise)
    warmup_epochs: int = 0  #: linear KL warm-up from beta/warmup_epochs to beta over this many epochs
    k: int = 1  #: importance samples per input: 1 trains the ELBO (VAE), k > 1 the bound L_k (IWAE)
    pixels: str = "grey"  #: "grey" levels in [0, 1], "dynamic" (a fresh binary draw per step) or "fixed" binary
    seed: int = 0  #: seeds every random stream of the run (vaelib.streams)
    device: str = "auto"  #: "auto" (CUDA, then MPS, then the CPU), "cpu", "cuda", "cuda:N" or "mps"
    amp: bool = False  #: bfloat16 autocast on CUDA (ignored elsewhere)
    eval_batch_size: int = 1000  #: examples per batch when evaluating the test set
    eval_every: int = 1  #: evaluate the test set every this many epochs (and after the last)
    eval_k: int = 1  #: with k > 1, also record the test NLL estimate -L_k at each evaluation

    choices: ClassVar[dict[str, tuple[str, ...]]] = {"lr_schedule": LR_SCHEDULES, "pixels": PIXELS}
    minimums: ClassVar[dict[str, int]] = {  # other int fields (warmup_epochs, seed): >= 0
        name: 1 for name in ("epochs", "batch_size", "k", "eval_batch_size", "eval_every", "eval_k")
    }

    def __post_init__(self):
        _checks.config_fields(self)  # each field by its type, as the model configs are checked
        _checks.number("lr", self.lr, positive=True)
        _checks.number("adam_eps", self.adam_eps, positive=True)
        _checks.number("beta", self.beta, minimum=0.0)
        if not 0 <= self.adam_beta1 < 1:
            raise VaelibError(f"adam_beta1 must be in [0, 1), got {self.adam_beta1}")
        if self.k > 1 and self.beta != 1.0:
            raise VaelibError("the importance-weighted bound (k > 1) has no KL weight; use beta=1 with k > 1")
        if self.k > 1 and self.warmup_epochs > 0:
            raise VaelibError(
                "KL warm-up weights the ELBO's KL term, which the bound L_k (k > 1) lacks; "
                "use warmup_epochs=0 with k > 1"
            )


def learning_rate(epoch: int, config: TrainConfig) -> float:
    r"""The Adam learning rate during (0-based) ``epoch``.

    ``"constant"``: ``config.lr``.  ``"burda"``: the schedule of Burda, Grosse
    and Salakhutdinov (2016, section 5): pass i = 0..7 lasts 3^i epochs at
    ``lr * 10**(-i / 7)``, 3,280 epochs in all,

    .. math::

        \eta_i = \eta_0 \cdot 10^{-i/7} \ \text{ for } 3^i \text{ epochs},
        \quad i = 0, 1, \dots, 7, \qquad \sum_{i=0}^{7} 3^i = 3280,

    with :math:`\eta_0` = ``config.lr``.  With ``epochs=3280`` it is theirs
    exactly; with fewer the same passes are shrunk in proportion: epoch
    :math:`t` of :math:`E` starts at :math:`3280\, t / E` on the original time
    line and takes the rate of the pass that holds that point, so epoch 0 uses
    ``lr``.
    """
    epoch = _checks.count("epoch", epoch, minimum=0)
    if epoch >= config.epochs:
        raise VaelibError(f"epoch must be in [0, {config.epochs}), got {epoch}")
    if config.lr_schedule == "constant":
        return config.lr
    position = epoch / config.epochs * _BURDA_PASS_ENDS[-1]  # where this epoch starts in the 3,280-epoch schedule
    i = bisect.bisect_right(_BURDA_PASS_ENDS, position)  # the pass that holds it
    return config.lr * 10 ** (-i / 7)


_BURDA_PASS_ENDS = list(itertools.accumulate(3**i for i in range(8)))  # 1, 4, 13, ..., 3280: where each pass ends


def progress_enabled(progress: bool | None) -> bool:
    """Progress bars show unless turned off or running in CI (the ``CI`` variable is set)."""
    if progress is not None:
        return progress
    return os.environ.get("CI", "").lower() in ("", "0", "false")


# The book prints this function (chapter 4), so its lines fit 88 characters.
# fmt: off
def train_epoch(
    model: nn.Module,
    x: Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    batch_size: int,
    beta: float = 1.0,
    k: int = 1,
    pixels: str = "grey",
    y: Tensor | None = None,
    generator: torch.Generator | None = None,
    amp: bool = False,
    check: bool = True,
) -> dict[str, float]:
    """One pass over ``x`` (N, P) in shuffled mini-batches, ascending :func:`objective`.

    ``x`` lives on the model's device.  ``pixels="dynamic"`` redraws binary
    pixels from the grey levels for every batch.  ``generator`` drives the
    shuffle, the pixels and the reparameterization noise.  Returns the
    epoch's means over the examples (nats): ``objective``, ``elbo``,
    ``reconstruction`` and ``kl`` (an autoencoder has no ``elbo`` or ``kl``).
    Bad input is a ``VaelibError`` before the first step; ``check=False``
    skips the pass over the values of ``x`` and ``y``, for data checked once
    already (as :func:`fit` does).
    """
    x, y, batch_size = _check_epoch(model, x, optimizer, batch_size, k, pixels, y,
                                    generator, check)
    model.train()
    totals: dict[str, Tensor] = {}
    bf16 = _bf16(amp, x.device)  # bfloat16 autocast, where it pays: on CUDA
    order = torch.randperm(len(x), generator=generator, device=x.device)  # new shuffle
    for i in range(0, len(x), batch_size):
        index = order[i : i + batch_size]
        x_batch = x.index_select(0, index)  # (B, P): x[index], 5x faster on a CPU
        if pixels == "dynamic":  # fresh binary pixels every time an image is used
            x_batch = binarize(x_batch, generator, check=False)
        y_batch = None if y is None else y.index_select(0, index)  # (B,)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            terms = objective(model, x_batch, beta=beta, k=k, y=y_batch,
                              generator=generator, check=False)
        loss = -terms.objective.mean()  # ascend the objective: descend its negative
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for name, value in terms.items():
            totals[name] = totals.get(name, 0.0) + value.detach().float().sum()
    means = {name: (t / len(x)).item() for name, t in totals.items()}  # one sync
    if not math.isfinite(means["objective"]):  # then the weights are not finite either
        raise VaelibError("the training loss became non-finite; lower lr or check the "
                          "data, and reload the weights (vl.fit puts them back itself)")
    return means


# fmt: on


def _bf16(amp: bool, device: torch.device) -> bool:
    """Whether an epoch runs under bfloat16 autocast: when ``amp`` asks for it and on CUDA, where it pays."""
    return bool(amp) and device.type == "cuda"


def _check_epoch(model, x, optimizer, batch_size, k, pixels, y, generator, check) -> tuple[Tensor, Tensor | None, int]:
    """:func:`train_epoch`'s arguments, checked before its first step: ``x`` (flattened, in the model's dtype),
    the labels ``y`` as a tensor on x's device (or None) and the batch size as an int."""
    _checks.choice("pixels", pixels, PIXELS)
    batch_size, k = _checks.count("batch_size", batch_size), _checks.count("k", k)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise VaelibError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if not any(id(p) in held for p in model.parameters()):
        raise VaelibError(
            "the optimizer holds none of the model's parameters, so training would change nothing (was it made "
            "for another model?); create it from this one, e.g. torch.optim.Adam(model.parameters())"
        )
    x = _checks.inputs(model, x, values=check, binarizing=pixels == "dynamic", same_device=True)
    y = _checks.model_labels(model, y, x.shape[0], values=check)
    if y is not None and y.device != x.device:  # the batches of both are gathered with one index on x's device
        raise VaelibError(f"y is on {y.device} but x is on {x.device}; move the labels with y.to({str(x.device)!r})")
    _checks.generator(generator, x.device)
    if check and k > 1:
        _check_memory(model, min(batch_size, x.shape[0]), k, x.device)
    return x, y, batch_size


def _model_device(model: nn.Module) -> torch.device:
    ref = _checks.weights(model)
    if ref is None:
        raise VaelibError(f"{type(model).__name__} has no parameters or buffers to place data next to")
    return ref.device


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: Tensor,
    *,
    y: Tensor | None = None,
    k: int = 1,
    batch_size: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Mean ELBO, reconstruction and KL of ``x`` (nats per example) and, with
    ``k > 1``, the importance-sampled negative log-likelihood ``nll = -mean L_k``.

    ``x``: (N, P) on the model's device or the CPU, any floating dtype, with
    labels ``y`` (N,) for a conditional model.  The noise comes from a
    generator seeded with ``seed``.  The model is scored in eval mode and
    left in the mode it was in.  For an :class:`vaelib.Autoencoder` only
    ``reconstruction`` is returned: minus the squared error summed over
    pixels, not nats.
    """
    k, batch_size = _checks.count("k", k), _checks.count("batch_size", batch_size)
    seed = _checks.count("seed", seed, minimum=0)
    device = _model_device(model)
    x = _checks.inputs(model, x)
    y = _checks.model_labels(model, y, x.shape[0])
    if k > 1:
        _check_memory(model, min(batch_size, 100, x.shape[0]), k, device, chunk=1)
    return _scores(model, x, y, k, batch_size, seed)


def _scores(model: nn.Module, x: Tensor, y: Tensor | None, k: int, batch_size: int, seed: int) -> dict[str, float]:
    """:func:`evaluate` on inputs and labels checked already."""
    device = _model_device(model)
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    totals: dict[str, Tensor] = {}
    try:
        for i in range(0, x.shape[0], batch_size):
            y_batch = None if y is None else y[i : i + batch_size]
            terms = objective(model, x[i : i + batch_size].to(device), y=y_batch, generator=generator, check=False)
            for name, value in terms.items():
                if name != "objective":  # evaluation reports the ELBO (beta = 1), whatever training weighted
                    totals[name] = totals.get(name, 0.0) + value.float().sum()
        scores = {name: (total / x.shape[0]).item() for name, total in totals.items()}
        if k > 1 and "elbo" in scores:
            lml = _log_marginal_likelihood(model, x, k, y=y, batch_size=min(batch_size, 100), generator=generator)
            scores["nll"] = -lml.mean().item()
    finally:
        model.train(was_training)
    return scores


def _prepare(model: nn.Module, x, y, config: TrainConfig, device, split: str) -> tuple[Tensor | None, Tensor | None]:
    """A data set and its labels, each checked once, on the training device; binarized once where the protocol
    says so."""
    if x is None:
        if y is not None:
            raise VaelibError(f"y_{split} was given without x_{split}; pass both, or neither")
        return None, None
    x = _checks.inputs(model, x, binarizing=config.pixels != "grey").to(device)
    y = _checks.model_labels(model, y, x.shape[0])
    if config.pixels == "fixed" or (config.pixels == "dynamic" and split == "test"):
        # Fixed binarization, and the test set under dynamic binarization: one seeded draw kept for good.
        x = binarize(x, streams.generator(config.seed, f"{split}_pixels", device), check=False)
    return x, None if y is None else y.to(device)


def fit(
    model: nn.Module,
    x_train: Tensor,
    x_test: Tensor | None = None,
    config: TrainConfig = TrainConfig(),
    *,
    y_train: Tensor | None = None,
    y_test: Tensor | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = True,
    time_limit: float | None = None,
    progress: bool | None = None,
) -> list[dict]:
    """Train ``model`` with Adam, one :func:`train_epoch` after another, and return its history.

    ``x_train`` (N, P) and ``x_test`` (M, P): inputs in [0, 1], with labels ``y_train`` and ``y_test`` for a
    conditional VAE; each is checked once and moved to ``config.device`` once.  Every history entry holds
    ``epoch``, ``beta``, ``lr``, ``train_loss`` (minus the objective), ``train_elbo``, ``train_reconstruction``,
    ``train_kl`` and ``seconds``, and the same ``test_`` scores (with ``test_nll`` when ``eval_k > 1``) every
    ``eval_every`` epochs and after the last: nats per example.  With ``checkpoint`` the run is saved after every
    epoch and, with ``resume``, continued from the file (only ``epochs`` and ``device`` may change).
    ``time_limit`` (seconds) stops after the epoch that passes it.  A non-finite loss is an error that puts the
    weights back to the last finite epoch's (from the checkpoint, else from a copy kept in memory).  The model
    is left in eval mode, on ``config.device``, whether fit returns or raises.
    """
    if not isinstance(config, TrainConfig):
        raise VaelibError(f"config must be a vl.TrainConfig, e.g. vl.TrainConfig(epochs=10); got {config!r}")
    time_limit = None if time_limit is None else _checks.number("time_limit", time_limit, minimum=0.0)
    device = resolve_device(config.device)
    path = None if checkpoint is None else writable_path(checkpoint)
    try:
        train = _prepare(model, x_train, y_train, config, device, "train")  # (x, y)
        test = _prepare(model, x_test, y_test, config, device, "test")
        optimizer, generator = _start(model, config, device)
        history = _resume(path, model, optimizer, generator, config) if path and resume and path.exists() else []
        if config.init_output_bias and not history:  # a fresh run; a resumed one has its trained bias
            init_output_bias(model, train[0], check=False)  # checked by _prepare
        # What a non-finite loss puts back: a copy of the weights, or (None) the checkpoint once it holds them.
        last_finite = _weights(model) if path is None or not history else None
        started = time.perf_counter()
        with _progress_bar(progress, config.epochs, len(history)) as bar:
            for epoch in range(len(history), config.epochs):
                history.append(_epoch(model, optimizer, generator, config, epoch, train, test, path, last_finite))
                if path is not None:
                    save_checkpoint(path, model, **_run_state(optimizer, history, config, generator))
                last_finite = None if path is not None else _weights(model)
                _advance(bar, history[-1])
                if time_limit is not None and time.perf_counter() - started > time_limit:
                    break
    finally:
        model.eval()
    return history


def _start(model: nn.Module, config: TrainConfig, device: torch.device):
    """The model on the training device, with its Adam optimizer and the run's training generator."""
    model.to(device)
    # The fused kernel updates all parameters in one pass: on two CPU cores it cuts an epoch of the
    # default model from about 5 s to 3 s (benchmarks/RESULTS.md); the arithmetic is Adam's.
    betas = (config.adam_beta1, 0.999)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=betas, eps=config.adam_eps, fused=True)
    return optimizer, streams.generator(config.seed, "train", device)


def _epoch(model, optimizer, generator, config: TrainConfig, epoch: int, train, test, path, last_finite) -> dict:
    """Train one epoch at its KL weight and learning rate, evaluate the test set when it is due, and return the
    epoch's history entry; or, when the loss is not finite, put the last finite weights back (``last_finite``, or
    the checkpoint's when it is None) and raise."""
    started = time.perf_counter()
    beta, lr = kl_warmup(epoch, config.warmup_epochs, config.beta), learning_rate(epoch, config)
    for group in optimizer.param_groups:
        group["lr"] = lr
    try:
        means = train_epoch(
            model, train[0], optimizer, batch_size=config.batch_size, beta=beta, k=config.k, pixels=config.pixels,
            y=train[1], generator=generator, amp=config.amp, check=False,
        )  # fmt: skip
    except VaelibError:  # a refusal (weights untouched), or a non-finite loss that took the weights with it
        if all(bool(p.isfinite().all()) for p in model.parameters()):
            raise
        if last_finite is None:  # the checkpoint holds the last finite epoch
            restore_weights(model, load_checkpoint(path), path)
        else:
            model.load_state_dict(last_finite)
        raise VaelibError(
            f"the training loss became non-finite in epoch {epoch + 1}; the model's weights were put back "
            f"to those after epoch {epoch} (the last finite ones). Lower lr (now {lr}) or check the data"
        ) from None
    entry = {"epoch": epoch + 1, "beta": beta, "lr": lr, "train_loss": -means.pop("objective")}
    entry.update({f"train_{name}": value for name, value in means.items()})
    if test[0] is not None and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs):
        scores = _scores(model, *test, config.eval_k, config.eval_batch_size, config.seed + streams.STREAMS["eval"])
        entry.update({f"test_{name}": value for name, value in scores.items()})
    return {**entry, "seconds": _since(started, train[0].device)}


def _weights(model: nn.Module) -> dict[str, Tensor]:
    """A copy of the model's weights: what a non-finite loss puts back when no checkpoint holds them."""
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def _since(started: float, device: torch.device) -> float:
    """Seconds since ``started``, once the device has finished its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def _progress_bar(progress: bool | None, total: int, initial: int):
    """A tqdm bar over the epochs, shown as :func:`progress_enabled` says."""
    show = progress_enabled(progress)
    # tqdm.auto picks a notebook widget and warns on import when ipywidgets is missing: import it only to show a bar
    if show:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(total=total, initial=initial, disable=not show, desc="epochs", unit="epoch")


def _advance(bar, entry: dict) -> None:
    """Move the progress bar on by an epoch, showing the epoch's ELBO (test, else train)."""
    shown = next(entry[key] for key in ("test_elbo", "train_elbo", "train_reconstruction") if key in entry)
    bar.update(1)
    bar.set_postfix(elbo=f"{shown:.2f}")


def _run_state(optimizer, history: list[dict], config: TrainConfig, generator: torch.Generator) -> dict:
    """What a checkpoint holds besides the model, to resume the run."""
    return {
        "optimizer": optimizer.state_dict(),
        "epoch": history[-1]["epoch"],
        "history": history,
        "train_config": asdict(config),
        "rng_state": generator.get_state(),
        "rng_device": generator.device.type,  # the state is device-specific (vaelib.streams.restore)
    }


def _resume(path: Path, model: nn.Module, optimizer, generator, config: TrainConfig) -> list[dict]:
    """Load a run's state from its checkpoint into the model, optimizer and generator; return its history.

    A run may resume on another kind of device than it was saved on; the
    training stream is then reseeded deterministically, so the numbers
    continue exactly only on the same kind of device (see
    :func:`vaelib.streams.restore`).
    """
    state = load_checkpoint(path)
    if "train_config" not in state or "optimizer" not in state:
        raise CheckpointError(f"{path} holds a model but no training state to resume; use another checkpoint path")
    # A schedule is laid over the number of epochs, so under one only the device may change.
    free = ("epochs", "device") if config.lr_schedule == "constant" else ("device",)
    unknown = set(state["train_config"]) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise CheckpointError(f"{path} has TrainConfig fields {sorted(unknown)} that this vaelib lacks; upgrade vaelib")
    saved = replace(TrainConfig(**state["train_config"]), **{name: getattr(config, name) for name in free})
    if saved != config:
        changed = [f.name for f in fields(TrainConfig) if getattr(saved, f.name) != getattr(config, f.name)]
        why = "" if config.lr_schedule == "constant" else f" (the {config.lr_schedule!r} schedule is laid over epochs)"
        raise CheckpointError(
            f"{path} was trained with other settings ({', '.join(f'{n}={getattr(saved, n)!r}' for n in changed)}) "
            f"than fit was given ({', '.join(f'{n}={getattr(config, n)!r}' for n in changed)}); "
            f"only {' and '.join(free)} may change on resume{why}. Use a new checkpoint path to start afresh"
        )
    done = int(state["epoch"])
    if done > config.epochs:
        raise CheckpointError(
            f"{path} has already trained {done} epochs, more than the {config.epochs} asked for; "
            f"ask for epochs >= {done}, or use a new checkpoint path to start afresh"
        )
    restore_weights(model, state, path)
    optimizer.load_state_dict(state["optimizer"])
    streams.restore(generator, state["rng_state"], state.get("rng_device"))
    return list(state["history"])
