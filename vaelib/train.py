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
would (on the CPU).
"""

from __future__ import annotations

import bisect
import itertools
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from . import _checks, streams
from .checkpoint import load_checkpoint, remove_stale_temporaries, restore_weights, save_checkpoint
from .data import binarize
from .devices import resolve_device
from .elbo import kl_warmup, log_marginal_likelihood, objective
from .errors import CheckpointError, VaelibError

__all__ = ["TrainConfig", "learning_rate", "train_epoch", "evaluate", "fit"]

LR_SCHEDULES = ("constant", "burda")
PIXELS = ("grey", "dynamic", "fixed")


@dataclass(frozen=True)
class TrainConfig:
    """How to train; saved in every checkpoint."""

    epochs: int = 10  #: passes over the training set
    batch_size: int = 128  #: examples per Adam step
    lr: float = 1e-3  #: Adam learning rate (the initial one under a schedule)
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

    def __post_init__(self):
        for name in ("epochs", "batch_size", "k", "eval_batch_size", "eval_every", "eval_k"):
            object.__setattr__(self, name, _checks.count(name, getattr(self, name)))
        for name in ("warmup_epochs", "seed"):
            object.__setattr__(self, name, _checks.count(name, getattr(self, name), minimum=0))
        object.__setattr__(self, "lr", _checks.number("lr", self.lr, positive=True))
        object.__setattr__(self, "beta", _checks.number("beta", self.beta, minimum=0.0))
        for name, allowed in self.choices.items():
            _checks.choice(name, getattr(self, name), allowed)
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
) -> dict[str, float]:
    """One pass over ``x`` (N, P) in shuffled mini-batches, ascending :func:`objective`.

    ``x`` lives on the model's device and was checked once (values in
    [0, 1] for a Bernoulli decoder).  ``pixels="dynamic"`` redraws binary
    pixels from the grey levels for every batch.  ``generator`` drives the
    shuffle, the pixels and the reparameterization noise.  Returns the
    epoch's means over the examples (nats): ``objective``, ``elbo``,
    ``reconstruction`` and ``kl`` (an autoencoder has no ``elbo`` or ``kl``).
    """
    _checks.choice("pixels", pixels, PIXELS)
    model.train()
    totals: dict[str, Tensor] = {}
    bf16 = amp and x.device.type == "cuda"  # bfloat16 autocast, where it pays
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
    return {name: (total / len(x)).item() for name, total in totals.items()}  # one sync


# fmt: on


def _reference(model: nn.Module) -> Tensor:
    """A parameter of the model, for its device and dtype."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    if tensor is None:
        raise VaelibError(f"{type(model).__name__} has no parameters or buffers to place data next to")
    return tensor


def _data(model: nn.Module, x: Tensor, *, grey_ok: bool = True, check: bool = True) -> Tensor:
    """x flattened, checked and cast to the model's dtype (still on its own device)."""
    bernoulli = getattr(model, "likelihood", None) == "bernoulli"
    return _checks.images(
        x, model.input_dim, bernoulli=bernoulli and grey_ok, values=check, dtype=_reference(model).dtype
    )


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

    ``x``: (N, P) on the model's device or the CPU, any floating dtype.  The
    noise comes from a generator seeded with ``seed``.  For an
    :class:`vaelib.Autoencoder` only ``reconstruction`` is returned: minus
    the squared error summed over pixels, not nats.
    """
    k = _checks.count("k", k)
    batch_size = _checks.count("batch_size", batch_size)
    device = _reference(model).device
    x = _data(model, x)
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device).manual_seed(int(seed))
    totals: dict[str, Tensor] = {}
    for i in range(0, x.shape[0], batch_size):
        y_batch = None if y is None else y[i : i + batch_size]
        terms = objective(model, x[i : i + batch_size].to(device), y=y_batch, generator=generator, check=False)
        for name, value in terms.items():
            if name != "objective":  # evaluation reports the ELBO (beta = 1), whatever training weighted
                totals[name] = totals.get(name, 0.0) + value.float().sum()
    scores = {name: (total / x.shape[0]).item() for name, total in totals.items()}
    if k > 1 and "elbo" in scores:
        lml = log_marginal_likelihood(model, x, k, y=y, batch_size=min(batch_size, 100), generator=generator)
        scores["nll"] = -lml.mean().item()
    model.train(was_training)
    return scores


def _prepare(x: Tensor | None, model: nn.Module, config: TrainConfig, device, split: str) -> Tensor | None:
    """The data set on the training device, binarized once when the protocol says so."""
    if x is None:
        return None
    x = _data(model, x, grey_ok=config.pixels == "grey")
    if config.pixels != "grey":
        lo, hi = (v.item() for v in torch.aminmax(x))
        if lo < 0 or hi > 1:
            raise VaelibError("binarization needs grey levels in [0, 1]; scale the images (x / 255) first")
    x = x.to(device)
    if config.pixels == "fixed" or (config.pixels == "dynamic" and split == "test"):
        # Fixed binarization, and the test set under dynamic binarization: one seeded draw kept for good.
        x = binarize(x, streams.generator(config.seed, f"{split}_pixels", device))
    return x


def _check_writable(path: Path) -> None:
    """Fail before training, not after an epoch, when the checkpoint cannot be written."""
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; name a checkpoint file inside it, e.g. {path / 'checkpoint.pt'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as err:
        raise CheckpointError(
            f"cannot write the checkpoint {path}: {err.strerror or err}; choose a directory you can write to"
        ) from err


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
    dataset: str | None = None,
) -> list[dict]:
    """Train ``model`` with Adam, one :func:`train_epoch` after another, and return its history.

    ``x_train`` (N, P) and ``x_test`` (M, P) hold inputs in [0, 1] (any
    device and floating dtype; they are moved to the training device once),
    with labels ``y_train``/``y_test`` for a conditional VAE.  A VAE
    maximises the ELBO (``k = 1``, KL weighted by ``beta`` and the warm-up)
    or ``L_k``; an Autoencoder minimises squared error.  Each history entry
    holds ``epoch``, ``beta``, ``lr``, ``train_loss`` (minus the objective),
    ``train_elbo``, ``train_reconstruction``, ``train_kl``, the same for
    ``test_`` when ``x_test`` is given (every ``eval_every`` epochs, with
    ``test_nll`` when ``eval_k > 1``) and ``seconds``: nats per example,
    means over the data.

    With ``checkpoint``, the state is saved atomically after every epoch
    (with ``dataset``, the data set's name, when given) and, if ``resume``
    and the file exists, training continues from it.  ``time_limit``
    (seconds) stops after the epoch that passes it; call again to continue.
    A loss that turns non-finite stops training with an error and puts the
    weights back to the last epoch whose loss was finite.  A progress bar
    shows unless ``progress=False`` or ``CI`` is set.
    """
    device = resolve_device(config.device)
    model.to(device).train()
    # The fused kernel updates all parameters in one pass: on two CPU cores it cuts an epoch of the
    # default model from about 5 s to 3 s (benchmarks/RESULTS.md); the arithmetic is Adam's.
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)
    generator = streams.generator(config.seed, "train", device)
    history: list[dict] = []
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None:
        _check_writable(path)
        remove_stale_temporaries(path)
    if path is not None and resume and path.exists():
        history = _resume(path, model, optimizer, generator, config)
    start_epoch = history[-1]["epoch"] if history else 0

    x_train = _prepare(x_train, model, config, device, "train")
    x_test = _prepare(x_test, model, config, device, "test")
    num_classes = getattr(getattr(model, "config", None), "num_classes", 0)
    y_train = _checks.labels(y_train, x_train.shape[0], num_classes)
    y_train = None if y_train is None else y_train.to(device)
    y_test = None if x_test is None else _checks.labels(y_test, x_test.shape[0], num_classes)
    started = time.perf_counter()
    show = progress_enabled(progress)
    # tqdm.auto picks a notebook widget and warns on import when ipywidgets is missing: import it only to show a bar
    if show:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    bar = tqdm(total=config.epochs, initial=start_epoch, disable=not show, desc="epochs", unit="epoch")
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        beta = kl_warmup(epoch, config.warmup_epochs, config.beta)
        lr = learning_rate(epoch, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        last_finite = {name: value.detach().clone() for name, value in model.state_dict().items()}
        means = train_epoch(
            model,
            x_train,
            optimizer,
            batch_size=config.batch_size,
            beta=beta,
            k=config.k,
            pixels=config.pixels,
            y=y_train,
            generator=generator,
            amp=config.amp,
        )
        if not math.isfinite(means["objective"]):
            model.load_state_dict(last_finite)
            raise VaelibError(
                f"the training loss became non-finite in epoch {epoch + 1}; the model's weights were put back "
                f"to those after epoch {epoch} (the last finite ones). Lower lr (now {lr}) or check the data"
            )
        entry = {
            "epoch": epoch + 1,
            "beta": beta,
            "lr": lr,
            "train_loss": -means.pop("objective"),
            **{f"train_{name}": value for name, value in means.items()},
        }
        if x_test is not None and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs):
            scores = evaluate(
                model,
                x_test,
                y=y_test,
                k=config.eval_k,
                batch_size=config.eval_batch_size,
                seed=config.seed + streams.STREAMS["eval"],
            )
            entry.update({f"test_{name}": value for name, value in scores.items()})
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        entry["seconds"] = time.perf_counter() - t0
        history.append(entry)
        if path is not None:
            save_checkpoint(
                path,
                model,
                optimizer=optimizer.state_dict(),
                epoch=epoch + 1,
                history=history,
                train_config=asdict(config),
                rng_state=generator.get_state(),
                dataset=dataset,
            )
        bar.update(1)
        bar.set_postfix(elbo=f"{entry.get('test_elbo', entry.get('train_elbo', -entry['train_loss'])):.2f}")
        if time_limit is not None and time.perf_counter() - started > time_limit:
            break
    bar.close()
    model.eval()
    return history


def _resume(path: Path, model: nn.Module, optimizer, generator, config: TrainConfig) -> list[dict]:
    """Load a run's state from its checkpoint into the model, optimizer and generator; return its history."""
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
    generator.set_state(state["rng_state"].to(generator.get_state().device))
    return list(state["history"])
