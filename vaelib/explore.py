"""Using a trained model: sampling, reconstruction, interpolation, the 2-D
manifold, latent codes, and the posterior-collapse diagnostics (chapter 5).

All functions run without gradients on the model's own device and return
CPU tensors, ready to plot.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import _checks
from .errors import VaelibError
from .gaussian import kl_standard_normal

__all__ = [
    "sample_prior",
    "reconstruct",
    "interpolate",
    "latent_grid",
    "encode_dataset",
    "kl_per_dimension",
    "active_units",
]


def _weight(model: nn.Module) -> Tensor:
    """A parameter of the model (not on the meta device): codes made here are moved to its device and dtype."""
    ref = _checks.weights(model)
    if ref is None:
        raise VaelibError(f"{type(model).__name__} has no parameters or buffers to place codes next to")
    return ref


def _device(model: nn.Module) -> torch.device:
    return _weight(model).device


def _labelled(y) -> dict:
    """The keyword arguments that pass labels to a conditional model's encode/decode (none otherwise)."""
    return {} if y is None else {"y": y}


def _codes(model: nn.Module, x: Tensor, y: Tensor | None = None) -> Tensor:
    """The encoder's point code: ``mu`` for a VAE, ``e(x)`` for an autoencoder."""
    out = model.encode(x, **_labelled(y))
    return out[0] if isinstance(out, tuple) else out


def _label_batch(model: nn.Module, y, n: int) -> Tensor | None:
    """Labels for n inputs or samples, checked once for the model: None, one label for all, or one for each,
    on the model's device."""
    y = None if y is None else _checks.as_labels(y)
    if y is not None and y.dim() == 0:
        y = y.expand(n)
    y = _checks.model_labels(model, y, n)
    return None if y is None else y.to(_device(model))


def _images(model: nn.Module, x: Tensor) -> Tensor:
    """Inputs checked once for the model (size, finite values, [0, 1] for a Bernoulli decoder), on its device."""
    return _checks.inputs(model, x).to(_device(model))


def _check_output(n: int, model: nn.Module, what: str) -> None:
    """Refuse n decoded images (returned on the CPU) that the machine's memory cannot hold."""
    advice = "ask for fewer, or in several calls"
    _checks.allocation(n * model.input_dim * _weight(model).element_size(), "cpu", f"{n:,} decoded {what}", advice)


@torch.no_grad()
def sample_prior(
    model: nn.Module, n: int = 64, *, y: Tensor | int | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Decode ``n`` draws ``z ~ N(0, I)``; returns the means ``x_hat``, (n, P), on the CPU.

    For a conditional VAE, ``y`` is the label to draw (one int for all, or
    (n,) labels).  The draws are decoded 10,000 at a time, so memory stays
    bounded; the result itself takes n * P floats.
    """
    n = _checks.count("n", n)
    _check_output(n, model, "samples")
    _checks.generator(generator, None)  # any device: the draws are made on the generator's own
    y = _label_batch(model, y, n)
    # Draw on the generator's own device (a CPU generator gives the same z for a CPU or GPU model), then move.
    noise_device = generator.device if generator is not None else _device(model)
    z = torch.randn(n, model.latent_dim, generator=generator, device=noise_device).to(_weight(model))  # (n, D)
    chunk = 10_000
    return torch.cat(
        [
            model.mean(model.decode(z[i : i + chunk], **_labelled(None if y is None else y[i : i + chunk]))).cpu()
            for i in range(0, n, chunk)
        ]
    )


@torch.no_grad()
def reconstruct(model: nn.Module, x: Tensor, *, y: Tensor | None = None) -> Tensor:
    """``x_hat = E[x | z = mu(x)]``: decode each input's code (the posterior mean for a VAE). (B, P)."""
    x = _images(model, x)
    y = _label_batch(model, y, x.shape[0])
    return model.mean(model.decode(_codes(model, x, y), **_labelled(y))).cpu()


@torch.no_grad()
def interpolate(model: nn.Module, x_a: Tensor, x_b: Tensor, steps: int = 10) -> Tensor:
    """Decode ``steps`` points on the straight line from the code of ``x_a`` to that of ``x_b``.

    ``x_a``, ``x_b``: one input each, (P,) or (1, P).  Returns (steps, P).
    """
    steps = _checks.count("steps", steps, minimum=2)
    if not (isinstance(x_a, Tensor) and isinstance(x_b, Tensor)):
        raise VaelibError(f"x_a and x_b must be torch.Tensors, got {type(x_a).__name__} and {type(x_b).__name__}")
    _checks.weights(model)
    for name, x in (("x_a", x_a), ("x_b", x_b)):
        if x.numel() != model.input_dim:  # one input, whatever its shape: (P,), (1, P) or (1, C, H, W)
            raise VaelibError(
                f"{name} must be one input of {model.input_dim} values, (P,) or (1, P); got shape {tuple(x.shape)}"
            )
    pair = torch.stack([x_a.reshape(-1), x_b.reshape(-1)])  # (2, P)
    z = _codes(model, _images(model, pair))  # (2, D)
    t = torch.linspace(0, 1, steps, device=z.device)[:, None]  # (steps, 1)
    return model.mean(model.decode((1 - t) * z[0] + t * z[1])).cpu()


@torch.no_grad()
def latent_grid(model: nn.Module, n: int = 20, *, span: float = 0.95, y: int | None = None) -> Tensor:
    """The decoded 2-D manifold: an n-by-n grid of latent points, mapped through
    the inverse normal CDF of evenly spaced probabilities in
    ``[(1 - span) / 2, (1 + span) / 2]`` so each cell holds equal prior mass.

    Needs ``latent_dim == 2``; ``y`` is the label for a conditional VAE.
    Returns (n, n, P); row 0 is the largest z_2.
    """
    n = _checks.count("n", n)
    _check_output(n * n, model, "grid points")
    if model.latent_dim != 2:
        raise VaelibError(f"latent_grid needs a model with latent_dim=2, this one has {model.latent_dim}")
    if not 0 < _checks.number("span", span) < 1:
        raise VaelibError(f"span must lie strictly between 0 and 1, got {span}")
    lo = (1 - span) / 2
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(lo, 1 - lo, n))  # (n,)
    z2, z1 = torch.meshgrid(q.flip(0), q, indexing="ij")
    z = torch.stack([z1, z2], -1).reshape(-1, 2).to(_weight(model))  # (n*n, 2)
    labels = _labelled(_label_batch(model, y, n * n))
    return model.mean(model.decode(z, **labels)).cpu().reshape(n, n, -1)


@torch.no_grad()
def encode_dataset(
    model: nn.Module, x: Tensor, batch_size: int = 1000, *, y: Tensor | None = None
) -> tuple[Tensor, Tensor | None]:
    """Encode a data set: ``(mu, logvar)`` each (N, D) for a VAE, ``(z, None)`` for an autoencoder (CPU)."""
    x = _checks.inputs(model, x)
    batch_size = _checks.count("batch_size", batch_size)
    y = _label_batch(model, y, x.shape[0])
    mus, logvars = [], []
    for i in range(0, x.shape[0], batch_size):
        labels = _labelled(None if y is None else y[i : i + batch_size])
        out = model.encode(x[i : i + batch_size].to(_device(model)), **labels)
        mu, logvar = out if isinstance(out, tuple) else (out, None)
        mus.append(mu.cpu())
        logvars.append(None if logvar is None else logvar.cpu())
    return torch.cat(mus), (None if logvars[0] is None else torch.cat(logvars))


def kl_per_dimension(model: nn.Module, x: Tensor, batch_size: int = 1000, *, y: Tensor | None = None) -> Tensor:
    """Mean over the data of ``KL(q(z_j|x) || N(0, 1))`` for each latent j, (D,), nats.

    Dimensions whose KL is near zero carry no information about x: they
    have collapsed to the prior.
    """
    mu, logvar = encode_dataset(model, x, batch_size, y=y)
    if logvar is None:
        raise VaelibError("kl_per_dimension needs a VAE (an autoencoder has no posterior)")
    return kl_standard_normal(mu, logvar, reduce=False).mean(0)


def active_units(
    model: nn.Module, x: Tensor, threshold: float = 1e-2, batch_size: int = 1000, *, y: Tensor | None = None
) -> tuple[int, Tensor]:
    """Active units (Burda et al. 2016, section 5.2): latent j is active when
    ``Var_x(E_q[z_j | x]) = Var_x(mu_j(x)) > threshold``.

    Returns the count and the per-dimension variances, (D,).
    """
    threshold = _checks.number("threshold", threshold, minimum=0.0)
    mu, _ = encode_dataset(model, x, batch_size, y=y)
    if mu.shape[0] < 2:
        raise VaelibError(f"active_units needs at least 2 inputs to take a variance over, got {mu.shape[0]}")
    variance = mu.var(0)  # (D,)
    return int((variance > threshold).sum()), variance
