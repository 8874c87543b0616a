"""vaelib: variational autoencoders with exact, tested math.

The companion package of the book *Variational Autoencoders, from PCA to the
ELBO*.  Import it as ``import vaelib as vl``; nothing runs on import.

The public surface follows one rule: the names below are what a user of the
VAE needs (the README and chapter 5 use them), and each chapter's toolbox is
a namespace (``vl.gaussian``, ``vl.information``, ``vl.pca``,
``vl.autoencoder``, ``vl.elbo``, ``vl.estimators``, ``vl.linear_gaussian``,
``vl.burda``, ``vl.plot``) whose ``__all__`` lists its own names.  Every public name is
listed in exactly one ``__all__``, the top level's or one namespace's, and is
documented there, under that one name.  A module may also hold, as plain
attributes, names whose home is elsewhere: ``vl.elbo.objective`` is
``vl.objective``, defined in the module of the ELBO and public at the top.

The names are imported on first use (PEP 562): ``import vaelib`` itself
loads no torch, so the ``vaelib`` command starts at once, and a Ctrl-C while
torch loads ends it with one line instead of a traceback.
"""

import importlib
import importlib.util

from ._version import __version__

_HOMES = {  # module: the public names it defines
    "autoencoder": ("Autoencoder", "AutoencoderConfig"),
    "checkpoint": ("load_model",),
    "data": ("binarize", "load"),
    "devices": ("resolve_device",),
    "elbo": ("iwae_bound", "log_marginal_likelihood", "objective"),
    "errors": ("CheckpointError", "DataError", "DeviceError", "VaelibError"),
    "explore": (
        "active_units", "encode_dataset", "interpolate", "kl_per_dimension", "latent_grid", "reconstruct",
        "sample_prior",
    ),
    "models": ("VAE", "VAEConfig", "build_model"),
    "pretrained": ("load_pretrained", "pretrained_models"),
    "train": ("TrainConfig", "evaluate", "fit", "train_epoch"),
    "web": ("export_web",),
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

# fmt: off
__all__ = [
    "__version__",
    # models
    "VAE", "VAEConfig", "Autoencoder", "AutoencoderConfig", "build_model",
    # the objective
    "objective", "iwae_bound", "log_marginal_likelihood",
    # training
    "TrainConfig", "train_epoch", "fit", "evaluate",
    # data
    "load", "binarize",
    # using a model
    "sample_prior", "reconstruct", "interpolate", "latent_grid", "encode_dataset", "kl_per_dimension", "active_units",
    # models on disk and devices
    "load_model", "load_pretrained", "pretrained_models", "resolve_device", "export_web",
    # errors
    "VaelibError", "DataError", "CheckpointError", "DeviceError",
    # the chapters' toolboxes, used as vl.pca.*, vl.information.*, ...
    "gaussian", "information", "pca", "autoencoder", "elbo", "estimators", "linear_gaussian", "burda", "plot",
]
# fmt: on


def __getattr__(name: str):
    """Import a public name, or a submodule (``vl.pca``, ``vl.plot``, ...), the first time it is used."""
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
