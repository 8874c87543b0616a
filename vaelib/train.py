"""Training: one plain loop, ``fit``, and ``evaluate`` (chapter 5).

The data live as tensors on the training device; each step indexes a batch
out of them (and, for dynamic binarization, draws its pixels there), so no
per-image Python work and no host synchronisation happen inside an epoch.
All randomness (shuffling, binarization, the reparameterization noise) comes
from one ``torch.Generator`` whose state is checkpointed, so a resumed run
continues exactly as an uninterrupted one would (on the CPU).
"""

from __future__ import annotations

import bisect
import itertools
import math
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from .checkpoint import load_checkpoint, restore_weights, save_checkpoint
from .data import binarize
from .errors import CheckpointError, DeviceError, VaelibError
from .information import kl_standard_normal
from .losses import check_images, elbo, kl_warmup, log_marginal_likelihood, log_weights
from .models import Autoencoder

__all__ = ["TrainConfig", "learning_rate", "resolve_device", "fit", "evaluate", "progress_enabled"]


@dataclass(frozen=True)
class TrainConfig:
    """How to train; saved in every checkpoint."""

    epochs: int = 10  # passes over the training set
    batch_size: int = 128  # examples per Adam step
    lr: float = 1e-3  # Adam learning rate (the initial one under a schedule)
    lr_schedule: str = "constant"  # "constant", or "burda": Burda et al.'s 8 passes of 3^i epochs at lr * 10^(-i/7), laid over `epochs`
    beta: float = 1.0  # weight of the KL term (1 is the ELBO; beta-VAE otherwise)
    warmup_epochs: int = 0  # linear KL warm-up from beta/warmup_epochs to beta over this many epochs
    k: int = 1  # importance samples per input: 1 trains the ELBO (VAE), k > 1 the bound L_k (IWAE)
    pixels: str = "grey"  # "grey" levels in [0, 1], "dynamic" (fresh Bernoulli draw per step) or "fixed" binarization
    seed: int = 0  # seeds shuffling, binarization and the reparameterization noise
    device: str = "auto"  # "auto" (CUDA if present, else CPU), "cpu", "cuda" or "cuda:N"
    amp: bool = False  # bfloat16 autocast on CUDA (ignored on the CPU)
    eval_batch_size: int = 1000  # examples per batch when evaluating the test set

    def __post_init__(self):
        for name in ("epochs", "batch_size", "k", "eval_batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise VaelibError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.warmup_epochs < 0:
            raise VaelibError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise VaelibError(f"lr must be a positive number, got {self.lr}")
        if not (self.beta >= 0 and math.isfinite(self.beta)):
            raise VaelibError(f"beta must be a non-negative number, got {self.beta}")
        if self.lr_schedule not in ("constant", "burda"):
            raise VaelibError(f"lr_schedule must be 'constant' or 'burda', got {self.lr_schedule!r}")
        if self.pixels not in ("grey", "dynamic", "fixed"):
            raise VaelibError(f"pixels must be 'grey', 'dynamic' or 'fixed', got {self.pixels!r}")
        if self.k > 1 and self.beta != 1.0:
            raise VaelibError("the importance-weighted bound (k > 1) has no KL weight; use beta=1 with k > 1")
        if self.k > 1 and self.warmup_epochs > 0:
            raise VaelibError("KL warm-up weights the ELBO's KL term, which the bound L_k (k > 1) lacks; use warmup_epochs=0 with k > 1")


def learning_rate(epoch: int, config: TrainConfig) -> float:
    """The Adam learning rate during (0-based) ``epoch``.

    ``"constant"``: ``config.lr``.  ``"burda"``: the schedule of Burda, Grosse
    and Salakhutdinov (2016, section 5): pass i = 0..7 lasts 3^i epochs at
    ``lr * 10**(-i / 7)``, 3,280 epochs in all.  With ``epochs=3280`` it is
    theirs exactly; with fewer the same passes are shrunk in proportion (an
    epoch takes the rate of the pass in which it starts, so epoch 0 uses ``lr``).
    """
    if not 0 <= epoch < config.epochs:
        raise VaelibError(f"epoch must be in [0, {config.epochs}), got {epoch}")
    if config.lr_schedule == "constant":
        return config.lr
    position = epoch / config.epochs * _BURDA_PASS_ENDS[-1]  # where this epoch starts in the 3,280-epoch schedule
    i = bisect.bisect_right(_BURDA_PASS_ENDS, position)  # the pass that holds it
    return config.lr * 10 ** (-i / 7)


_BURDA_PASS_ENDS = list(itertools.accumulate(3**i for i in range(8)))  # 1, 4, 13, ..., 3280: where each pass ends


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` gives CUDA when a GPU is present, else the CPU; CUDA asked for without one is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise DeviceError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} was requested but this machine has no usable CUDA GPU; use device='auto' or 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    elif dev.type != "cpu":
        raise DeviceError(f"device {device!r} is not supported; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return dev


def progress_enabled(progress: bool | None) -> bool:
    """Progress bars show unless turned off or running in CI (the ``CI`` variable is set)."""
    if progress is not None:
        return progress
    return os.environ.get("CI", "").lower() in ("", "0", "false")


def _batch_stats(model: nn.Module, x: Tensor, beta: float, k: int, generator) -> tuple[Tensor, Tensor]:
    """The training loss (mean over the batch) and per-batch sums of (objective, elbo, reconstruction, kl)."""
    if isinstance(model, Autoencoder):
        sq_err = (model(x) - x).pow(2).sum(-1)  # (B,) squared error, summed over pixels
        zero = torch.zeros_like(sq_err)
        return sq_err.mean(), torch.stack([-sq_err, -sq_err, -sq_err, zero]).sum(1)
    if k == 1:
        terms = elbo(model, x, generator=generator, check=False)
        objective = terms.reconstruction - beta * terms.kl  # (B,)
        stats = torch.stack([objective, terms.elbo, terms.reconstruction, terms.kl])
    else:
        mu, logvar = model.encode(x)
        log_w, log_px_z = log_weights(model, x, mu, logvar, k, generator=generator)  # (k, B)
        objective = torch.logsumexp(log_w, 0) - math.log(k)  # (B,) L_k
        reconstruction, kl = log_px_z.mean(0), kl_standard_normal(mu, logvar)
        stats = torch.stack([objective, reconstruction - kl, reconstruction, kl])
    return -objective.mean(), stats.float().sum(1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: Tensor,
    *,
    k: int = 1,
    batch_size: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Mean test ELBO, reconstruction and KL (nats), and with ``k > 1`` the
    importance-sampled negative log-likelihood ``nll = -mean L_k``.

    For an :class:`Autoencoder`, ``reconstruction`` is minus the mean squared
    error summed over pixels.  ``x``: (N, P) on the model's device or the CPU.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    bernoulli = getattr(model.config, "likelihood", None) == "bernoulli"
    x = check_images(x, model.config.input_dim, bernoulli)
    generator = torch.Generator(device=device).manual_seed(seed)
    sums = torch.zeros(4, device=device)
    for i in range(0, x.shape[0], batch_size):
        xb = x[i : i + batch_size].to(device)
        sums += _batch_stats(model, xb, 1.0, 1, generator)[1]
    _, elbo_sum, recon_sum, kl_sum = (sums / x.shape[0]).tolist()
    out = {"elbo": elbo_sum, "reconstruction": recon_sum, "kl": kl_sum}
    if k > 1 and not isinstance(model, Autoencoder):
        lml = log_marginal_likelihood(model, x, k, batch_size=max(1, min(batch_size, 100)), generator=generator)
        out["nll"] = -lml.mean().item()
    model.train(was_training)
    return out


def _prepare(x: Tensor | None, model: nn.Module, config: TrainConfig, device, seed_offset: int) -> Tensor | None:
    if x is None:
        return None
    bernoulli = getattr(model.config, "likelihood", None) == "bernoulli"
    x = check_images(x, model.config.input_dim, bernoulli and config.pixels == "grey")
    if config.pixels != "grey" and ((x < 0).any() or (x > 1).any()):
        raise VaelibError("binarization needs grey levels in [0, 1]; scale the images (x / 255) first")
    x = x.to(device=device, dtype=torch.float32)
    if config.pixels == "fixed" or (config.pixels == "dynamic" and seed_offset > 1):
        # Fixed binarization, and the test set under dynamic binarization: one seeded draw kept for good.
        x = binarize(x, torch.Generator(device=device).manual_seed(config.seed + seed_offset))
    return x


def fit(
    model: nn.Module,
    train_x: Tensor,
    test_x: Tensor | None = None,
    config: TrainConfig = TrainConfig(),
    *,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = True,
    time_limit: float | None = None,
    progress: bool | None = None,
) -> list[dict]:
    """Train ``model`` with Adam and return its history, one dict per epoch.

    ``train_x`` (N, P) and ``test_x`` (M, P) hold inputs in [0, 1] (any
    device; they are moved to the training device once).  A VAE maximises the
    ELBO (``k = 1``, KL weighted by ``beta`` and the warm-up) or ``L_k``; an
    Autoencoder minimises squared error.  Each history entry holds ``epoch``,
    ``beta``, ``lr``, ``train_loss``, ``train_elbo``, ``train_reconstruction``,
    ``train_kl``, the same for ``test_`` when ``test_x`` is given, and
    ``seconds`` (nats per example, means over the data).

    With ``checkpoint``, the state is saved atomically after every epoch and,
    if ``resume`` and the file exists, training continues from it.
    ``time_limit`` (seconds) stops after the epoch that passes it; call again
    to continue.  A progress bar shows unless ``progress=False`` or ``CI`` is set.
    """
    device = resolve_device(config.device)
    model.to(device).train()
    # The fused kernel updates all parameters in one pass: on two CPU cores it cuts an epoch of the
    # default model from about 5 s to 3 s (benchmarks/RESULTS.md); the arithmetic is Adam's.
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    history: list[dict] = []
    start_epoch = 0
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and resume and path.exists():
        state = load_checkpoint(path)
        # A schedule is laid over the number of epochs, so under one only the device may change.
        free = ("epochs", "device") if config.lr_schedule == "constant" else ("device",)
        saved = replace(TrainConfig(**state["train_config"]), **{name: getattr(config, name) for name in free})
        if saved != config:
            why = "" if config.lr_schedule == "constant" else f" (the {config.lr_schedule!r} schedule is laid over the number of epochs)"
            raise CheckpointError(
                f"{path} was trained with {saved} but fit was called with {config}; "
                f"only {' and '.join(free)} may change on resume{why}"
            )
        restore_weights(model, state, path)
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["rng_state"].to(generator.get_state().device))
        history, start_epoch = list(state["history"]), int(state["epoch"])

    train_x = _prepare(train_x, model, config, device, seed_offset=1)
    test_x = _prepare(test_x, model, config, device, seed_offset=2)
    n = train_x.shape[0]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=config.amp and device.type == "cuda")
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
        sums = torch.zeros(4, device=device)
        order = torch.randperm(n, generator=generator, device=device)
        for i in range(0, n, config.batch_size):
            # index_select, not x[idx]: the same gather at a fifth of the cost on the CPU
            x = train_x.index_select(0, order[i : i + config.batch_size])  # (B, P)
            if config.pixels == "dynamic":
                x = binarize(x, generator)
            with autocast:
                loss, stats = _batch_stats(model, x, beta, config.k, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sums += stats.detach()
        objective, elbo_mean, recon, kl = (sums / n).tolist()  # the epoch's one synchronisation
        if not math.isfinite(objective):
            raise VaelibError(
                f"the training loss became non-finite at epoch {epoch + 1}; lower lr (now {lr}) or check the data"
            )
        entry = {"epoch": epoch + 1, "beta": beta, "lr": lr, "train_loss": -objective, "train_elbo": elbo_mean,
                 "train_reconstruction": recon, "train_kl": kl}
        if test_x is not None:
            scores = evaluate(model, test_x, batch_size=config.eval_batch_size, seed=config.seed + 3)
            entry.update({f"test_{key}": value for key, value in scores.items()})
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        entry["seconds"] = time.perf_counter() - t0
        history.append(entry)
        if path is not None:
            save_checkpoint(path, model, optimizer=optimizer.state_dict(), epoch=epoch + 1,
                            train_config=asdict(config), history=history, rng_state=generator.get_state())
        bar.update(1)
        bar.set_postfix(elbo=f"{entry.get('test_elbo', elbo_mean):.2f}")
        if time_limit is not None and time.perf_counter() - started > time_limit:
            break
    bar.close()
    model.eval()
    return history
