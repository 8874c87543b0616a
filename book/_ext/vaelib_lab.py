"""The lab page's assets, made when the book is built (a local Sphinx extension, named in _config.yml).

The lab (``book/lab.md``, ``book/_static/vae_lab_page.js``) runs three of the
models shipped with vaelib in the reader's browser.  Nothing of it is
committed twice: when an HTML build finishes, :func:`write_lab_assets` writes
into ``_static/lab/`` of the output

* each model as ``vaelib.export_web`` exports it (manifest and float16 weights);
* ``heldout.json``: which model each panel runs; the encoder means of
  held-out MNIST test images under the map's model with their labels (the
  map's scatter), and a few binarized held-out digits to start from;
* the static figures that the page shows without JavaScript (``lab-map.png``,
  ``lab-draw.png``, ``lab-cvae.png``), drawn from the same models.

``tests/test_lab_browser.py`` and ``benchmarks/lab_speed.py`` call
:func:`write_lab_assets` themselves, so they need no built book.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

import vaelib as vl

# panel: (shipped model, export options).  float16 halves the bytes (the bounds move by < 0.05 nats,
# tests/test_lab_browser.py); the two small models (a quarter of mnist-2d's and mnist-cvae's weights, the same
# recipe) keep the page's assets under 3 MB.
LAB_MODELS = {
    "map": ("mnist-2d-small", {"half": True}),  # the map, and the posterior of a drawn digit
    "cvae": ("mnist-cvae-small", {"half": True, "decoder_only": True}),  # digits on demand only decode
    "bounds": ("burda-vae-k1", {"half": True}),  # the bounds of a drawn digit
}
MAP, CVAE, BOUNDS = (name for name, _ in LAB_MODELS.values())
N_CODES = 2000  # held-out test images on the map
DIGITS_PER_CLASS = 2  # held-out digits to start the drawing pad from
KS = (1, 5, 50, 500)  # the bounds the page shows
START_Z = (0.0, 0.0)  # where the map's point and the CVAE's style start
SEED = 0


def _binary_hex(x: torch.Tensor) -> str:
    """784 binary pixels as 196 hex digits, four pixels per digit, first pixel in the highest bit."""
    bits = x.to(torch.uint8).reshape(-1, 4)  # (196, 4)
    return "".join(f"{int(v):x}" for v in (bits * torch.tensor([8, 4, 2, 1], dtype=torch.uint8)).sum(1))


def heldout(root: str | None = None) -> dict:
    """Each panel's model, the map's scatter and the starting digits, from the MNIST test set (binarized with a
    seeded draw)."""
    model = vl.load_pretrained(MAP)
    x, y = vl.load("mnist", "test", root=root)
    mu, _ = vl.encode_dataset(model, x[:N_CODES])  # (N, 2)
    extent = max(3.0, math.ceil(2 * float(mu.abs().quantile(0.995))) / 2)  # half-units, the codes' 99.5th percentile
    x_bin = vl.binarize(x, torch.Generator().manual_seed(SEED))
    picks = [i for label in range(10) for i in torch.nonzero(y == label)[:DIGITS_PER_CLASS, 0].tolist()]
    return {
        "models": {panel: name for panel, (name, _) in LAB_MODELS.items()},
        "codes": {
            "model": MAP,
            "extent": extent,
            "z": [[round(a, 3), round(b, 3)] for a, b in mu.tolist()],
            "labels": y[:N_CODES].tolist(),
        },
        "digits": [{"index": i, "label": int(y[i]), "hex": _binary_hex(x_bin[i])} for i in picks],
    }


@torch.no_grad()
def bounds(model, x: torch.Tensor, seed: int = SEED) -> dict:
    """The ELBO and L_k (k in KS) of one binary input as the page computes them from 500 draws: L_k is the mean
    of L_k over the 500 / k disjoint groups of k draws (vae_lab.js, LkFromGroups)."""
    x = x.reshape(1, -1)
    mu, logvar = model.encode(x)  # (1, D)
    eps = torch.randn(KS[-1], 1, model.latent_dim, generator=torch.Generator().manual_seed(seed))
    log_w, log_px_z = vl.elbo.log_weights(model, x, mu, logvar, KS[-1], eps=eps)  # (k, 1) each
    elbo = float(log_px_z.mean() - vl.gaussian.kl_standard_normal(mu, logvar).sum())
    n = KS[-1]
    return {"elbo": elbo, "Lk": {k: float(vl.elbo.log_mean_exp(log_w[:, 0].reshape(n // k, k), 1).mean()) for k in KS}}


def figures(data: dict, out: Path) -> None:
    """The three static figures the page shows without JavaScript."""
    import matplotlib

    matplotlib.use("Agg")
    codes = np.array(data["codes"]["z"])
    labels = np.array(data["codes"]["labels"])
    extent = data["codes"]["extent"]
    map_model, cvae, burda = (vl.load_pretrained(name) for name in (MAP, CVAE, BOUNDS))
    z0 = torch.tensor([START_Z])
    with torch.no_grad(), matplotlib.rc_context(vl.plot.STYLE):

        def scatter(ax, title):
            ax.scatter(codes[:, 0], codes[:, 1], c=labels, s=3, alpha=0.6, cmap="tab10", vmin=-0.5, vmax=9.5)
            ax.set(xlim=(-extent, extent), ylim=(-extent, extent), xlabel="$z_1$", ylabel="$z_2$", title=title)
            ax.set_aspect("equal")

        def digit(ax, pixels, title):
            ax.imshow(pixels.reshape(28, 28).numpy(), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
            ax.set_axis_off()
            ax.set_title(title)

        fig = vl.plot.Figure(figsize=(7.5, 3.6), layout="constrained")
        left, right = fig.subplots(1, 2, width_ratios=[1.6, 1])
        scatter(left, f"held-out codes of {MAP}, coloured by label")
        left.plot(*START_Z, "o", ms=10, mfc="white", mec="black", mew=2)
        digit(right, map_model.mean(map_model.decode(z0))[0], f"decoded at z = ({START_Z[0]:.0f}, {START_Z[1]:.0f})")
        fig.savefig(out / "lab-map.png", dpi=80)

        first = data["digits"][0]
        x = torch.tensor([int(h, 16) >> (3 - j) & 1 for h in first["hex"] for j in range(4)], dtype=torch.float32)
        mu, logvar = map_model.encode(x[None])
        result = bounds(burda, x)
        fig = vl.plot.Figure(figsize=(11, 3.0), layout="constrained")
        axes = fig.subplots(1, 4, width_ratios=[1, 1, 1.2, 1.8])
        digit(axes[0], x, f"a held-out {first['label']} (binarized)")
        digit(axes[1], burda.mean(burda.decode(burda.encode(x[None])[0]))[0], f"x̂ at z = μ ({BOUNDS})")
        scatter(axes[2], f"q(z|x) of {MAP}: μ ± 2σ")
        sigma = (0.5 * logvar).exp()[0]
        axes[2].add_patch(
            matplotlib.patches.Ellipse(mu[0].tolist(), 4 * float(sigma[0]), 4 * float(sigma[1]), fc="none", ec="k")
        )
        axes[2].plot(*mu[0].tolist(), "ks", ms=3)
        ks = list(result["Lk"])
        axes[3].semilogx(ks, list(result["Lk"].values()), "o-", label="$L_k$")
        axes[3].axhline(result["elbo"], ls=":", c="grey", label="ELBO")
        axes[3].axhline(result["Lk"][KS[-1]], ls="--", c="C3", label=f"log p(x) ≈ $L_{{{KS[-1]}}}$")
        axes[3].set(xlabel="k, samples (log scale)", ylabel="bound (nats)", title="$L_k$ climbs towards log p(x)")
        axes[3].set_xticks(ks, [str(k) for k in ks])
        axes[3].legend()
        fig.savefig(out / "lab-draw.png", dpi=80)

        styles = torch.tensor([[0.0, 0.0], [-1.5, 0.5], [1.5, -0.5]])  # (3, 2)
        rows = [cvae.mean(cvae.decode(s.expand(10, 2), torch.arange(10))) for s in styles]
        names = [f"z = ({a:.1f}, {b:.1f})" for a, b in styles.tolist()]
        vl.plot.image_rows(rows, names).savefig(out / "lab-cvae.png", dpi=80)


def write_lab_assets(out_dir: str | Path, *, root: str | None = None, with_figures: bool = True) -> dict[str, int]:
    """Write every asset of the lab into ``out_dir``; returns each file's size in bytes."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, options in LAB_MODELS.values():
        vl.export_web(name, out, **options)
    data = heldout(root)
    (out / "heldout.json").write_text(json.dumps(data, separators=(",", ":")) + "\n", encoding="utf-8")
    if with_figures:
        figures(data, out)
    return {p.name: p.stat().st_size for p in sorted(out.iterdir())}


def _build_finished(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        from sphinx.util import logging

        sizes = write_lab_assets(Path(app.outdir) / "_static" / "lab")
        logging.getLogger(__name__).info(f"vaelib_lab: {len(sizes)} lab assets, {sum(sizes.values()) / 1e6:.2f} MB")


def setup(app):
    app.connect("build-finished", _build_finished)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
