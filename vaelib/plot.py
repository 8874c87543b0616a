"""Figures.  Each function builds and returns a ``matplotlib.figure.Figure``;
none shows, prints or touches pyplot's global state, so they are safe in
scripts, tests and notebooks alike.  The returned figures know how to render
themselves as PNG, so a notebook displays one that ends a cell.

``STYLE`` is the book's one plotting style: every function here draws under
it, and a notebook that draws with pyplot itself applies it once with
``plt.style.use(vl.plot.STYLE)``.
"""

from __future__ import annotations

import functools
import io
import math
import numbers
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure as _MplFigure
from torch import Tensor

from . import _checks
from .errors import VaelibError

__all__ = [
    "STYLE",
    "Figure",
    "image_grid",
    "image_rows",
    "reconstructions",
    "latent_scatter",
    "manifold",
    "training_curves",
    "compare_runs",
    "seed_spread",
    "reparameterization_graph",
    "tile",
]

STYLE = {  # matplotlib rcParams: the book's one style
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "figure.constrained_layout.use": True,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.6,
    "lines.markersize": 4,
    "image.cmap": "gray_r",  # images are ink on paper: dark strokes on white
    "legend.frameon": False,
}


def _styled(function):
    """Draw under STYLE without touching the caller's rcParams."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return function(*args, **kwargs)

    return wrapper


class Figure(_MplFigure):
    """A matplotlib Figure that a notebook displays as PNG without pyplot.

    The PNG has a palette of 256 colours: a notebook stores it, and a plot or
    a grey image needs no more (the book's figures take about half the bytes
    of a full-colour PNG).  ``savefig`` is matplotlib's, unchanged.
    """

    def _ipython_display_(self) -> None:
        """Show the figure in a notebook as :meth:`_repr_png_` draws it.  IPython asks this method first; its
        matplotlib support would otherwise draw every Figure, this one included, as a full-colour PNG."""
        from IPython.display import display

        display({"image/png": self._repr_png_(), "text/plain": repr(self)}, raw=True)

    def _repr_png_(self) -> bytes:
        from PIL import Image  # a dependency of matplotlib

        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=STYLE["savefig.dpi"], bbox_inches="tight")
        buffer.seek(0)
        out = io.BytesIO()
        Image.open(buffer).convert("RGB").quantize(256).save(out, format="PNG", optimize=True)
        return out.getvalue()


def _images(x: Tensor | np.ndarray, shape: tuple[int, int] | None) -> np.ndarray:
    """(N, P) or (N, H, W) or (N, 1, H, W) -> (N, H, W) numpy in [0, 1]."""
    if shape is not None:
        try:  # two positive integers, or torch's reshape fails with a riddle
            h, w = shape
            shape = _checks.count("the image height", h), _checks.count("the image width", w)
        except (TypeError, ValueError):
            raise VaelibError(f"shape must be (H, W), two positive integers, got {shape!r}") from None
    try:
        a = x.detach().float().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError):
        raise VaelibError(f"x must be images: a tensor or array of numbers, got {type(x).__name__}") from None
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim == 2:
        side = int(round(math.sqrt(a.shape[1])))
        h, w = shape or (side, side)
        if h * w != a.shape[1]:
            raise VaelibError(f"cannot view {a.shape[1]} values as an image; pass shape=(H, W)")
        a = a.reshape(a.shape[0], h, w)
    if a.ndim != 3:
        raise VaelibError(f"expected images of shape (N, P), (N, H, W) or (N, 1, H, W), got {a.shape}")
    if a.shape[0] == 0:  # nothing to tile: the canvas would have a negative size
        raise VaelibError(f"there are no images to draw (shape {a.shape}); pass at least one")
    return a


def _references(references) -> None:
    """None, or a dict of label -> number (a published result to draw as a line)."""
    if references is None:
        return
    if not isinstance(references, Mapping):
        raise VaelibError(f"references must be a dict of label -> value, got {type(references).__name__}")
    for label, value in references.items():
        if isinstance(value, Tensor) and value.numel() == 1:
            continue  # a one-number tensor draws like the number
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise VaelibError(f"references must map each label to a number, got {label!r}: {value!r}")


def _history(name: str, history) -> None:
    """A training history: a non-empty list of dicts, one per epoch, each with its ``epoch``."""
    if isinstance(history, (Mapping, str, bytes)) or not isinstance(history, Sequence) or not history:
        raise VaelibError(
            f"{name} must be a non-empty list of dicts, one per epoch, as vl.fit returns; got {type(history).__name__}"
            + (" (empty: train for at least one epoch)" if isinstance(history, Sequence) and not history else "")
        )
    for i, entry in enumerate(history):
        if not isinstance(entry, Mapping):
            raise VaelibError(f"entry {i} of {name} must be a dict of values for one epoch, got {entry!r}")
        if "epoch" not in entry:
            raise VaelibError(
                f"entry {i} of {name} has no 'epoch' (its keys: {sorted(entry)}); record the epoch of every "
                "entry, as vl.fit does"
            )


def tile(x: Tensor | np.ndarray, ncol: int = 8, *, shape: tuple[int, int] | None = None, pad: int = 1) -> np.ndarray:
    """Tile N images into one (rows*H, ncol*W) array, with ``pad`` pixels of white between them.

    Values are ink (0 = background); the plots show them with ``gray_r``, so the
    zero padding draws as white.
    """
    ncol, pad = _checks.count("ncol", ncol), _checks.count("pad", pad, minimum=0)
    a = _images(x, shape)
    n, h, w = a.shape
    nrow = math.ceil(n / ncol)
    out = np.zeros((nrow * (h + pad) - pad, ncol * (w + pad) - pad), dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, ncol)
        out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = a[i]
    return out


def _show(ax, image: np.ndarray, title: str | None = None) -> None:
    ax.imshow(image, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)


@_styled
def image_grid(
    x: Tensor | np.ndarray, ncol: int = 8, *, title: str | None = None, shape=None, size: float = 0.6
) -> Figure:
    """A grid of images (dark strokes on white), ``ncol`` per row, ``size`` inches wide each."""
    size = _checks.number("size", size, positive=True)
    grid = tile(x, ncol, shape=shape)
    fig = Figure(
        figsize=(size * ncol, size * grid.shape[0] / grid.shape[1] * ncol + (0.4 if title else 0)), layout="constrained"
    )
    _show(fig.add_subplot(), grid, title)
    return fig


@_styled
def image_rows(
    rows: Sequence[Tensor], labels: Sequence[str], *, signed: bool = False, inches: float = 0.75, shape=None
) -> Figure:
    """One labelled row of images per tensor in ``rows`` (each (n, P)), e.g. inputs above reconstructions.

    Grey levels are clipped to [0, 1] and drawn as ink on paper.  With
    ``signed=True`` each image is a direction (a principal component, a
    decoder column): scaled by its largest magnitude and drawn red for
    positive, blue for negative.
    """
    rows = list(rows)  # a (rows, n, P) tensor is a sequence of rows too
    try:
        labels = [str(label) for label in labels]  # a number, such as a class, labels a row as well
    except TypeError:
        raise VaelibError(f"labels must be a list of strings, one per row, got {labels!r}") from None
    if len(rows) != len(labels) or not rows:
        raise VaelibError(f"image_rows needs one label per row, got {len(rows)} rows and {len(labels)} labels")
    inches = _checks.number("inches", inches, positive=True)
    rows = [_checks.tensor(f"row {i}", row) for i, row in enumerate(rows)]
    for label, row in zip(labels, rows):
        if row.dim() == 0 or len(row) == 0:
            raise VaelibError(f"the row {label!r} holds no images (shape {tuple(row.shape)}); pass at least one")
    n = max(len(r) for r in rows)
    label_inches = 0.075 * max(len(label) for label in labels)  # room for the row labels at 10 pt
    fig = Figure(figsize=(inches * n + label_inches, (inches + 0.1) * len(rows)), layout="constrained")
    for ax, row, label in zip(fig.subplots(len(rows), 1, squeeze=False)[:, 0], rows, labels):
        row = torch.as_tensor(row).detach().float().cpu().reshape(len(row), -1)  # (n, P)
        if signed:
            row = row / row.abs().amax(1, keepdim=True).clamp_min(1e-12)  # a zero direction stays zero, not NaN
            style = {"cmap": "RdBu_r", "vmin": -1, "vmax": 1}
        else:
            row, style = row.clamp(0, 1), {"cmap": "gray_r", "vmin": 0, "vmax": 1}
        ax.imshow(tile(row, n, shape=shape), interpolation="nearest", **style)
        ax.set(xticks=[], yticks=[])
        ax.grid(False)
        ax.spines[:].set_visible(False)
        ax.set_ylabel(label, rotation=0, ha="right", va="center")
    return fig


@_styled
def reconstructions(x: Tensor, x_hat: Tensor, n: int = 10, *, title: str | None = None, shape=None) -> Figure:
    """Inputs (top row) above their reconstructions (bottom row): the first ``n`` of each, (N, P) or (N, H, W)."""
    n = _checks.count("n", n)
    x, x_hat = _checks.tensor("x", x), _checks.tensor("x_hat", x_hat)
    for name, images in (("x", x), ("x_hat", x_hat)):
        if images.dim() < 2 or len(images) == 0:
            raise VaelibError(f"{name} must be a batch of images (N, P) with N >= 1, got shape {tuple(images.shape)}")
    n = min(n, len(x), len(x_hat))
    x, x_hat = x[:n].reshape(n, -1).cpu(), x_hat[:n].reshape(n, -1).cpu()
    if x.shape[1] != x_hat.shape[1]:
        raise VaelibError(
            f"x and x_hat must hold images of one size, got {x.shape[1]} and {x_hat.shape[1]} values per image; "
            "pass each input's reconstruction"
        )
    pair = torch.cat([x, x_hat])
    fig = Figure(figsize=(0.7 * n, 1.6 + (0.3 if title else 0)), layout="constrained")
    _show(fig.add_subplot(), tile(pair, n, shape=shape), title or "input (top) and reconstruction (bottom)")
    return fig


@_styled
def latent_scatter(
    z: Tensor, labels: Tensor | None = None, *, title: str | None = None, max_points: int = 5000
) -> Figure:
    """Codes z (N, 2) as points, coloured by label when given (first two dims if D > 2).

    ``labels``: one number per code; ``max_points``: how many of the first codes to draw (None: all).
    """
    z = _checks.tensor("z", z)
    if z.dim() != 2 or z.shape[1] < 2 or z.shape[0] == 0:
        raise VaelibError(
            f"z must be codes of shape (N, D) with N >= 1 and D >= 2 (the first two are drawn), got {tuple(z.shape)}"
        )
    if max_points is not None:
        max_points = _checks.count("max_points", max_points)
    if labels is not None:
        try:
            labels = torch.as_tensor(labels)
        except (TypeError, ValueError, RuntimeError):
            raise VaelibError(f"labels must be numbers (class indices), one per code, got {labels!r}") from None
        if labels.shape != z.shape[:1]:
            raise VaelibError(
                f"labels must hold one number per code: got shape {tuple(labels.shape)} for {len(z)} codes"
            )
    z = z[:max_points].detach().cpu().numpy()
    fig = Figure(figsize=(5.2, 4.4), layout="constrained")
    ax = fig.add_subplot()
    if labels is None:
        ax.scatter(z[:, 0], z[:, 1], s=2, alpha=0.5)
    else:
        labels = labels[:max_points].cpu().numpy()
        points = ax.scatter(z[:, 0], z[:, 1], c=labels, s=2, alpha=0.6, cmap="tab10", vmin=-0.5, vmax=9.5)
        fig.colorbar(points, ax=ax, ticks=range(10), label="label")
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_title(title or "latent codes")
    return fig


@_styled
def manifold(grid: Tensor, *, title: str | None = None, shape=None) -> Figure:
    """The decoded 2-D latent grid from :func:`vaelib.latent_grid`, (n, n, P)."""
    grid = _checks.tensor("grid", grid)
    if grid.dim() < 3 or grid.shape[0] != grid.shape[1] or grid.shape[0] == 0:
        raise VaelibError(
            f"grid must be the (n, n, P) output of vl.latent_grid (n rows of n images), got shape {tuple(grid.shape)}"
        )
    n = grid.shape[0]
    fig = Figure(figsize=(6, 6), layout="constrained")
    _show(fig.add_subplot(), tile(grid.reshape(n * n, -1), n, shape=shape, pad=0), title or "decoded latent grid")
    return fig


@_styled
def training_curves(
    history: Sequence[dict], keys: Sequence[str] = ("elbo", "reconstruction", "kl"), *, title: str | None = None
) -> Figure:
    """One panel per quantity in ``keys`` (a name or a sequence of them): its train and test values per epoch
    (nats).  ``history``: the list of per-epoch dicts that :func:`vaelib.fit` returns."""
    if isinstance(history, Sequence) and not isinstance(history, (str, bytes)) and not history:
        raise VaelibError("the history is empty: train for at least one epoch")
    _history("history", history)
    keys = (keys,) if isinstance(keys, str) else tuple(keys)  # one name is one panel, not one per letter
    if not keys:
        raise VaelibError("keys must name at least one quantity to draw, e.g. keys=('elbo',)")
    # a key that the history lacks draws an empty panel (an autoencoder records no kl); none at all, a blank figure
    if not any(f"{split}_{key}" in h for h in history for split in ("train", "test") for key in keys):
        raise VaelibError(
            f"the history has none of the quantities {list(keys)} (as train_<key> or test_<key>); its keys are "
            f"{sorted(history[0])}: name quantities that it records"
        )
    fig = Figure(figsize=(4 * len(keys), 3.2), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys):
        for split, style in (("train", "-"), ("test", "--")):
            name = f"{split}_{key}"
            points = [(h["epoch"], h[name]) for h in history if name in h]  # test keys: only evaluated epochs
            if points:
                ax.plot(*zip(*points), style, marker="o", ms=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{key} (nats)")
        ax.set_title(key)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig


@_styled
def compare_runs(
    histories: Mapping[str, Sequence[dict]],
    key: str = "test_nll",
    *,
    references: Mapping[str, float] | None = None,
    show_lr: bool = True,
    log_epochs: bool = True,
    ylabel: str | None = None,
    title: str | None = None,
) -> Figure:
    """Several runs' ``key`` against the epoch, one line per named history.

    Only the epochs whose entry holds ``key`` are drawn (a test quantity is
    recorded every ``eval_every`` epochs).  ``references`` draws a dashed
    horizontal line per label and value, such as a published result, in the
    colour of the run in the same place, so that the first reference matches
    the first run.  ``show_lr`` adds a lower panel with each run's learning
    rate (log scale), so the steps of a schedule line up with the curve above.
    """
    if not isinstance(histories, Mapping) or not histories:
        raise VaelibError("no histories to compare: pass a dict of run name -> history")
    _references(references)
    for label, history in histories.items():
        if isinstance(history, Sequence) and not isinstance(history, (str, bytes)) and not history:
            raise VaelibError(f"the history of {label!r} is empty: train for at least one epoch")
        _history(f"the history of {label!r}", history)
        if show_lr and any("lr" not in h for h in history):
            raise VaelibError(
                f"the history of {label!r} has entries without 'lr'; pass show_lr=False to leave out the "
                "learning-rate panel"
            )
    fig = Figure(figsize=(6.4, 5.0 if show_lr else 3.4), layout="constrained")
    if show_lr:
        ax, ax_lr = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    else:
        ax, ax_lr = fig.subplots(1, 1), None
    for i, (label, history) in enumerate(histories.items()):
        colour = f"C{i}"
        if not history:
            raise VaelibError(f"the history of {label!r} is empty: train for at least one epoch")
        points = [(h["epoch"], h[key]) for h in history if key in h]  # test keys: only evaluated epochs
        if not points:
            raise VaelibError(f"the history of {label!r} has no {key!r}; its keys are {sorted(history[0])}")
        ax.plot(*zip(*points), marker="o", ms=2.5, color=colour, label=label)
        if ax_lr is not None:
            ax_lr.step([h["epoch"] for h in history], [h["lr"] for h in history], where="post", color=colour)
    for j, (label, value) in enumerate((references or {}).items()):
        ax.axhline(value, ls="--", lw=1.0, color=f"C{j}", label=label)
    ax.set_ylabel(ylabel or f"{key.replace('_', ' ')} (nats)")
    ax.legend()
    if title:
        ax.set_title(title)
    if ax_lr is not None:
        ax_lr.set_yscale("log")
        ax_lr.set_ylabel("learning rate")
    bottom = ax if ax_lr is None else ax_lr  # the shared epoch axis is labelled once, at the bottom
    if log_epochs:
        bottom.set_xscale("log")
    bottom.set_xlabel("epoch")
    return fig


@_styled
def seed_spread(
    values: Mapping[str, Sequence[float]],
    *,
    references: Mapping[str, float] | None = None,
    xlabel: str = "test NLL (nats)",
    title: str | None = None,
) -> Figure:
    """One row per setting, top to bottom in the order given: each seed's value as a dot and the mean as a
    bar, so that the spread over seeds sits beside the differences between settings.

    ``values`` maps a setting's name to its per-seed values; ``references``
    draws a dashed vertical line per label and value (a published number).
    """
    if not isinstance(values, Mapping) or not values:
        raise VaelibError("seed_spread needs at least one setting, each with at least one value")
    _references(references)
    arrays = {}
    for name, v in values.items():
        try:
            arrays[name] = np.asarray(v, dtype=float)
        except (TypeError, ValueError):
            raise VaelibError(f"the values of {name!r} must be numbers, one per seed, got {v!r}") from None
        if arrays[name].ndim != 1 or arrays[name].size == 0:
            raise VaelibError(
                f"seed_spread needs at least one setting, each with at least one value; {name!r} has {v!r}"
            )
    names = list(values)
    fig = Figure(figsize=(6.4, 0.45 * len(names) + 1.3), layout="constrained")
    ax = fig.subplots()
    for row, name in enumerate(names):
        v = arrays[name]
        ax.plot(v, np.full(len(v), row), "o", ms=5, alpha=0.7, color="C0", label="one seed" if row == 0 else None)
        ax.plot([v.mean()] * 2, [row - 0.3, row + 0.3], "-", lw=2.5, color="k", label="mean" if row == 0 else None)
    for j, (label, value) in enumerate((references or {}).items()):
        ax.axvline(value, ls="--", lw=1.0, color=f"C{j + 1}", label=label)
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(len(names) - 0.5, -0.5)  # the first setting on top
    ax.set_xlabel(xlabel)
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    return fig


def _graph_row(ax, reparameterized: bool) -> None:
    """One computation graph phi -> (mu, sigma) -> z -> f(z), with the backward pass drawn in red."""
    box = {"boxstyle": "round,pad=0.4", "fc": "#eaf0f8", "ec": "#2c3e50"}
    noise = {"boxstyle": "round,pad=0.4", "fc": "#fdebd0", "ec": "#d35400", "ls": "--"}
    red = "#c0392b"
    title = "reparameterized: noise as an input" if reparameterized else "sampling: a random node"
    ax.set(xlim=(-0.4, 3.4), ylim=(-1.1, 1.5 if reparameterized else 0.4), title=title)
    ax.axis("off")
    # MathJax draws the book's \epsilon as the lunate one; mathtext draws both of its
    # epsilons as the other, so the figure writes the character itself.
    eps = "\N{GREEK LUNATE EPSILON SYMBOL}"
    z_text = rf"$\mu + \sigma \odot {eps}$" if reparameterized else r"$z \sim q_\phi$"
    for j, text in enumerate([r"$\phi$", r"$\mu, \sigma$", z_text, r"$f(z)$"]):
        ax.text(j, 0, text, ha="center", va="center", bbox=noise if j == 2 and not reparameterized else box)
    for j in range(3):  # the forward pass
        ax.annotate("", (j + 0.62, 0), (j + 0.38, 0), arrowprops={"arrowstyle": "-|>"})
    if reparameterized:  # the noise enters as an input
        ax.text(2, 1.1, rf"${eps} \sim \mathcal{{N}}(0, I)$", ha="center", bbox=noise)
        ax.annotate("", (2, 0.3), (2, 0.85), arrowprops={"arrowstyle": "-|>", "ls": "--"})
    arrow = {"arrowstyle": "-|>" if reparameterized else "-[", "color": red, "lw": 2}
    ax.annotate("", (0 if reparameterized else 2, -0.6), (3, -0.6), arrowprops=arrow)
    why = r"reaches $\phi$" if reparameterized else "stops at the sample"
    ax.text(1.5, -0.95, r"$\nabla_\phi$ " + why, color=red, ha="center")


@_styled
def reparameterization_graph() -> Figure:
    """The computation graph of a sampled z (top) and of a reparameterized one (bottom), chapter 4.

    Sampling ``z ~ q_phi`` is a random node that the gradient cannot pass;
    ``z = mu + sigma * eps`` makes the noise an input, so the gradient of
    ``f(z)`` reaches the encoder's parameters ``phi``.
    """
    with matplotlib.rc_context({"font.size": 13, "axes.titlesize": 13}):  # a diagram: larger type
        fig = Figure(figsize=(7.5, 4.6), layout="constrained")
        for ax, reparameterized in zip(fig.subplots(2, 1, height_ratios=[1.5, 2.6]), (False, True)):
            _graph_row(ax, reparameterized)
    return fig
