"""Using a model (sampling, reconstruction, interpolation, the latent grid,
encodings, collapse diagnostics) and the figures, which must never touch pyplot."""

from __future__ import annotations

import io

import matplotlib
import matplotlib.figure
import numpy as np
import pytest
import torch
from scipy.stats import norm

import vaelib
import vaelib as vl
import vaelib.checkpoint
import vaelib.data
import vaelib.train

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def vae2(tiny_config) -> vl.VAE:
    return vl.VAE(tiny_config).eval()  # latent_dim = 2


@pytest.fixture
def vae4() -> vl.VAE:
    return vl.VAE(vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=4, hidden_dims=(32,))).eval()


# ---------------------------------------------------------------- explore


def test_sample_prior_shapes_range_and_reproducibility(vae2):
    x = vl.sample_prior(vae2, 10, generator=torch.Generator().manual_seed(0))
    assert x.shape == (10, 16) and x.device.type == "cpu"
    assert (x >= 0).all() and (x <= 1).all()
    again = vl.sample_prior(vae2, 10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, again)
    # they are decoded standard-normal draws
    z = torch.randn(10, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(x, torch.sigmoid(vae2.decoder(z)))
    assert not x.requires_grad
    with pytest.raises(vl.VaelibError, match="n must be an integer >= 1"):
        vl.sample_prior(vae2, 0)


def test_sample_prior_and_latent_grid_follow_the_model_dtype(vae2):
    model = vae2.double()
    x = vl.sample_prior(model, 5, generator=torch.Generator().manual_seed(0))
    assert x.dtype == torch.float64
    # the noise comes from the (CPU) generator and is cast to the model's dtype
    z = torch.randn(5, 2, generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        torch.testing.assert_close(x, torch.sigmoid(model.decoder(z)))
    assert vl.latent_grid(model, 3).dtype == torch.float64


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_sample_prior_on_a_gpu_model_with_a_cpu_generator_gives_the_cpu_samples(vae2):
    cpu = vl.sample_prior(vae2, 6, generator=torch.Generator().manual_seed(1))
    gpu = vl.sample_prior(vae2.to("cuda"), 6, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-5)


def test_sample_prior_of_a_gaussian_model_gives_means():
    model = vl.VAE(vl.VAEConfig(image_shape=(1, 4, 4), latent_dim=3, hidden_dims=(8,), likelihood="gaussian"))
    x = vl.sample_prior(model, 5, generator=torch.Generator().manual_seed(1))
    z = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(x, model.decoder(z))


def test_reconstruct_decodes_the_posterior_mean(vae2, binary_data):
    x = binary_data[0][:6]
    rec = vl.reconstruct(vae2, x)
    with torch.no_grad():
        h = vae2.encoder(x)
        expected = torch.sigmoid(vae2.decoder(vae2.to_mu(h)))
    assert rec.shape == (6, 16)
    torch.testing.assert_close(rec, expected)
    torch.testing.assert_close(vl.reconstruct(vae2, x.reshape(6, 1, 4, 4)), expected)
    ae = vl.Autoencoder(vl.AutoencoderConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,)))
    with torch.no_grad():
        torch.testing.assert_close(vl.reconstruct(ae, x), ae(x))


def test_interpolate_runs_between_the_two_reconstructions(vae2, binary_data):
    x_a, x_b = binary_data[0][0], binary_data[0][1]
    path = vl.interpolate(vae2, x_a, x_b, steps=7)
    assert path.shape == (7, 16)
    ends = vl.reconstruct(vae2, torch.stack([x_a, x_b]))
    torch.testing.assert_close(path[0], ends[0])
    torch.testing.assert_close(path[-1], ends[1])
    # the middle point decodes the average code
    with torch.no_grad():
        mu, _ = vae2.encode(torch.stack([x_a, x_b]))
        middle = torch.sigmoid(vae2.decoder(mu.mean(0, keepdim=True)))[0]
    torch.testing.assert_close(path[3], middle)
    torch.testing.assert_close(vl.interpolate(vae2, x_a[None], x_b[None], steps=7), path)
    with pytest.raises(vl.VaelibError, match="steps must be an integer >= 2"):
        vl.interpolate(vae2, x_a, x_b, steps=1)


def test_latent_grid_covers_equal_prior_mass(vae2):
    n = 5
    grid = vl.latent_grid(vae2, n)
    assert grid.shape == (n, n, 16)
    q = norm.ppf(np.linspace(0.025, 0.975, n))  # independent inverse normal CDF, span 0.95
    with torch.no_grad():
        for i in range(n):
            for j in range(n):
                z = torch.tensor([[q[j], q[n - 1 - i]]], dtype=torch.float32)  # row 0 holds the largest z_2
                torch.testing.assert_close(grid[i, j], torch.sigmoid(vae2.decoder(z))[0], rtol=1e-4, atol=1e-5)


def test_latent_grid_needs_two_latent_dimensions(vae4):
    with pytest.raises(vl.VaelibError, match="latent_dim=2.*has 4"):
        vl.latent_grid(vae4, 4)


def test_encode_dataset_in_batches(vae4, binary_data):
    x = binary_data[0][:50]
    mu, logvar = vl.encode_dataset(vae4, x, batch_size=7)
    with torch.no_grad():
        expected_mu, expected_logvar = vae4.encode(x)
    assert mu.shape == logvar.shape == (50, 4)
    torch.testing.assert_close(mu, expected_mu)
    torch.testing.assert_close(logvar, expected_logvar)
    ae = vl.Autoencoder(vl.AutoencoderConfig(image_shape=(1, 4, 4), latent_dim=3, hidden_dims=(8,)))
    z, none = vl.encode_dataset(ae, x, batch_size=16)
    assert none is None
    with torch.no_grad():
        torch.testing.assert_close(z, ae.encode(x))


def test_kl_per_dimension_sums_to_the_mean_kl(vae4, binary_data):
    x = binary_data[0][:100]
    per_dim = vl.kl_per_dimension(vae4, x, batch_size=30)
    assert per_dim.shape == (4,)
    assert (per_dim >= 0).all()
    kl = vl.objective(vae4, x, generator=torch.Generator().manual_seed(0)).kl.mean()
    torch.testing.assert_close(per_dim.sum(), kl.detach(), rtol=1e-5, atol=1e-6)
    ae = vl.Autoencoder(vl.AutoencoderConfig(image_shape=(1, 4, 4), latent_dim=2, hidden_dims=(8,)))
    with pytest.raises(vl.VaelibError, match="needs a VAE"):
        vl.kl_per_dimension(ae, x)


def test_active_units_counts_the_dimensions_the_encoder_uses(vae4, binary_data):
    x = binary_data[0][:200]
    with torch.no_grad():
        vae4.to_mu.weight[1].zero_()  # mu_1 and mu_3 no longer depend on x
        vae4.to_mu.weight[3].zero_()
        vae4.to_mu.weight[0].mul_(20.0)  # mu_0 and mu_2 vary clearly with x
        vae4.to_mu.weight[2].mul_(20.0)
    count, variance = vl.active_units(vae4, x, batch_size=64)
    assert count == 2
    with torch.no_grad():
        mu, _ = vae4.encode(x)
    torch.testing.assert_close(variance, mu.var(0))
    assert variance[1] == 0 and variance[3] == 0
    assert variance[0] > 0.01 and variance[2] > 0.01
    # the threshold decides: above every variance, nothing is active
    assert vl.active_units(vae4, x, threshold=float(variance.max()) + 1)[0] == 0


# ---------------------------------------------------------------- plots


@pytest.fixture
def no_pyplot(monkeypatch):
    """Fail if anything goes through pyplot; afterwards check no pyplot figure exists."""
    import matplotlib.pyplot as plt

    plt.close("all")
    for name in ("figure", "subplots", "gcf", "gca", "show", "subplot"):
        monkeypatch.setattr(plt, name, lambda *a, _name=name, **k: pytest.fail(f"vaelib.plot called pyplot.{_name}"))
    yield
    monkeypatch.undo()
    assert plt.get_fignums() == []


def _check_figure(fig, n_axes):
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == n_axes
    png = fig._repr_png_()
    assert isinstance(png, bytes) and png.startswith(PNG_MAGIC) and len(png) > 100


def test_plot_figures(no_pyplot, vae2, binary_data):
    x = binary_data[0][:12]
    _check_figure(vl.plot.image_grid(x, ncol=4, title="data"), 1)
    _check_figure(vl.plot.reconstructions(x, vl.reconstruct(vae2, x), n=6), 1)
    mu, _ = vl.encode_dataset(vae2, binary_data[0])
    _check_figure(vl.plot.latent_scatter(mu), 1)
    _check_figure(vl.plot.latent_scatter(mu, torch.arange(len(mu)) % 10), 2)  # with a colour bar
    _check_figure(vl.plot.manifold(vl.latent_grid(vae2, 4)), 1)
    history = [
        {
            "epoch": e,
            "train_elbo": -10.0 + e,
            "test_elbo": -11.0 + e,
            "train_kl": 1.0,
            "test_kl": 1.2,
            "train_reconstruction": -9.0 + e,
            "test_reconstruction": -9.8 + e,
        }
        for e in (1, 2, 3)
    ]
    fig = vl.plot.training_curves(history, title="run")
    _check_figure(fig, 3)
    assert [ax.get_title() for ax in fig.axes] == ["elbo", "reconstruction", "kl"]
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 2, 2]  # train and test
    _check_figure(vl.plot.training_curves(history[:2], keys=("elbo",)), 1)


def test_training_curves_needs_a_history(no_pyplot):
    with pytest.raises(vl.VaelibError, match="history is empty"):
        vl.plot.training_curves([])


def test_compare_runs_draws_each_run_its_schedule_and_the_references(no_pyplot):
    lrs = [1e-3] * 3 + [1e-4] * 3
    run = [{"epoch": e, "lr": lr, **({"test_nll": 100.0 - e} if e % 2 == 0 else {})} for e, lr in enumerate(lrs, 1)]
    fig = vl.plot.compare_runs({"a": run, "b": run[:4]}, references={"published": 90.0})
    _check_figure(fig, 2)
    top, bottom = fig.axes
    lines = top.get_lines()
    assert [line.get_label() for line in lines] == ["a", "b", "published"]
    assert list(lines[0].get_xdata()) == [2, 4, 6] and list(lines[0].get_ydata()) == [98.0, 96.0, 94.0]
    assert list(lines[1].get_xdata()) == [2, 4]  # only the evaluated epochs of the shorter run
    assert list(lines[2].get_ydata()) == [90.0, 90.0]  # a horizontal line ...
    assert lines[2].get_color() == lines[0].get_color()  # ... in the colour of the first run
    assert top.get_ylabel() == "test nll (nats)"
    assert bottom.get_yscale() == "log" and bottom.get_xscale() == "log"
    assert sorted(set(bottom.get_lines()[0].get_ydata())) == [1e-4, 1e-3]  # the schedule's two rates
    plain = vl.plot.compare_runs({"a": run}, show_lr=False, log_epochs=False, ylabel="NLL")
    _check_figure(plain, 1)
    assert plain.axes[0].get_xscale() == "linear" and plain.axes[0].get_ylabel() == "NLL"


def test_compare_runs_names_a_missing_quantity(no_pyplot):
    with pytest.raises(vl.VaelibError, match="no histories"):
        vl.plot.compare_runs({})
    with pytest.raises(vl.VaelibError, match="'a' has no 'test_nll'"):
        vl.plot.compare_runs({"a": [{"epoch": 1, "lr": 1e-3}]})
    with pytest.raises(vl.VaelibError, match="'b' is empty"):
        vl.plot.compare_runs({"a": [{"epoch": 1, "lr": 1e-3, "test_nll": 90.0}], "b": []})


def test_the_notebook_png_is_the_figure_in_256_colours(no_pyplot, vae2):
    """_repr_png_ (what a notebook stores) draws what savefig draws, with a palette: grey levels exactly,
    colours within a few levels, in fewer bytes."""
    from PIL import Image

    grid = vl.latent_grid(vae2, 6)
    for fig in (vl.plot.manifold(grid), vl.plot.seed_spread({"a": [1.0, 2.0], "b": [1.5]}, references={"r": 1.2})):
        full = io.BytesIO()
        fig.savefig(full, format="png", dpi=vl.plot.STYLE["savefig.dpi"], bbox_inches="tight")
        small = fig._repr_png_()
        reference = np.asarray(Image.open(io.BytesIO(full.getvalue())).convert("RGB"), dtype=int)
        palette = Image.open(io.BytesIO(small))
        assert palette.mode == "P" and len(small) < len(full.getvalue())
        pixels = np.asarray(palette.convert("RGB"), dtype=int)
        assert pixels.shape == reference.shape
        assert np.abs(pixels - reference).mean() < 1.0 and np.abs(pixels - reference).max() <= 48


def test_a_notebook_shows_the_256_colour_png(no_pyplot, monkeypatch):
    """IPython calls _ipython_display_ before any matplotlib hook: the notebook gets _repr_png_'s bytes."""
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda data, raw=False: shown.append((data, raw)))
    fig = vl.plot.seed_spread({"a": [1.0, 2.0]})
    fig._ipython_display_()
    ((data, raw),) = shown
    assert raw and data["image/png"] == fig._repr_png_() and data["text/plain"] == repr(fig)


def test_seed_spread_draws_every_seed_and_the_mean(no_pyplot):
    fig = vl.plot.seed_spread({"a": [3.0, 5.0], "b": [1.0]}, references={"paper": 2.0}, title="t")
    _check_figure(fig, 1)
    (ax,) = fig.axes
    dots_a, mean_a, dots_b, mean_b, paper = ax.get_lines()
    assert list(dots_a.get_xdata()) == [3.0, 5.0] and list(dots_a.get_ydata()) == [0, 0]  # row 0: the first
    assert list(mean_a.get_xdata()) == [4.0, 4.0]  # the mean of the seeds, as a bar across the row
    assert list(dots_b.get_ydata()) == [1] and list(mean_b.get_xdata()) == [1.0, 1.0]
    assert list(paper.get_xdata()) == [2.0, 2.0] and paper.get_label() == "paper"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"] and ax.get_ylim()[0] > ax.get_ylim()[1]
    with pytest.raises(vl.VaelibError, match="at least one value"):
        vl.plot.seed_spread({"a": []})


def test_tile_places_each_image(no_pyplot):
    images = torch.arange(10 * 16, dtype=torch.float32).reshape(10, 16) / 160
    out = vl.plot.tile(images, ncol=4)
    assert out.shape == (3 * 5 - 1, 4 * 5 - 1)  # 3 rows, 4 columns of 4x4 with 1 pixel of padding
    np.testing.assert_array_equal(out[0:4, 0:4], images[0].reshape(4, 4).numpy())
    np.testing.assert_array_equal(out[5:9, 5:9], images[5].reshape(4, 4).numpy())  # row 1, column 1
    np.testing.assert_array_equal(out[4, :], np.zeros(19, dtype=np.float32))  # no ink in the padding
    np.testing.assert_array_equal(out[10:14, 10:14], np.zeros((4, 4), dtype=np.float32))  # nor in an empty slot
    # ... and the plots draw "no ink" as white, ink as black
    image = vl.plot.image_grid(images, ncol=4).axes[0].images[0]
    np.testing.assert_array_equal(image.to_rgba(0.0), (1.0, 1.0, 1.0, 1.0))
    np.testing.assert_array_equal(image.to_rgba(1.0), (0.0, 0.0, 0.0, 1.0))
    # (N, 1, H, W) and numpy input give the same tiling
    np.testing.assert_array_equal(vl.plot.tile(images.reshape(10, 1, 4, 4).numpy(), ncol=4), out)


def test_non_square_images_need_a_shape(no_pyplot):
    x = torch.rand(3, 12)
    with pytest.raises(vl.VaelibError, match="pass shape"):
        vl.plot.image_grid(x)
    _check_figure(vl.plot.image_grid(x, shape=(3, 4)), 1)


def test_reconstructions_with_fewer_images_than_n(no_pyplot, vae2, binary_data):
    """Showing 5 inputs with the default n=10 shows those 5, it does not mangle their pixels."""
    x = binary_data[0][:5]
    fig = vl.plot.reconstructions(x, vl.reconstruct(vae2, x))
    _check_figure(fig, 1)
    assert fig.axes[0].get_images()[0].get_array().shape == (2 * 5 - 1, 5 * 5 - 1)


def test_image_rows_labels_each_row_and_draws_directions_without_nan():
    rows = [torch.rand(5, 16), torch.zeros(3, 16)]
    fig = vl.plot.image_rows(rows, ["images", "zeros"], signed=True)
    axes = fig.get_axes()
    assert [ax.get_ylabel() for ax in axes] == ["images", "zeros"]
    shown = [ax.get_images()[0].get_array() for ax in axes]
    assert all(np.isfinite(np.asarray(a)).all() for a in shown)
    assert np.asarray(shown[1]).max() == 0  # an all-zero direction is drawn as zero
    assert shown[0].shape == (4, 5 * 5 - 1)  # five 4x4 images, padded by one pixel, in one row
    with pytest.raises(vl.VaelibError, match="one label per row"):
        vl.plot.image_rows(rows, ["only one"])


def test_reparameterization_graph_draws_both_graphs_as_png():
    fig = vl.plot.reparameterization_graph()
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["sampling: a random node", "reparameterized: noise as an input"]
    texts = [t.get_text() for t in axes[1].texts]
    lunate = "\N{GREEK LUNATE EPSILON SYMBOL}"  # the glyph MathJax draws for \epsilon
    assert any(lunate in t for t in texts) and any("reaches" in t for t in texts)
    assert fig._repr_png_().startswith(b"\x89PNG")
