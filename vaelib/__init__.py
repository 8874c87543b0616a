"""vaelib: variational autoencoders with exact, tested math.

The companion package of the book *Variational Autoencoders, from PCA to the
ELBO*.  Import it as ``import vaelib as vl``; nothing runs on import.

The public surface follows one rule: the names below are what a user of the
VAE needs (the README and chapter 5 use them), and each chapter's toolbox is
a namespace (``vl.gaussian``, ``vl.information``, ``vl.pca``,
``vl.autoencoder``, ``vl.elbo``, ``vl.estimators``, ``vl.linear_gaussian``,
``vl.plot``) whose ``__all__`` lists its own names.  Every public name has
exactly one of these homes.
"""

__version__ = "0.3.0"

from . import autoencoder, elbo, estimators, gaussian, information, linear_gaussian, pca, plot
from .autoencoder import Autoencoder, AutoencoderConfig
from .checkpoint import build_model, load_model
from .data import binarize, load
from .devices import resolve_device
from .elbo import ELBOTerms, iwae_bound, kl_warmup, log_marginal_likelihood, objective
from .errors import CheckpointError, DataError, DeviceError, VaelibError
from .explore import active_units, encode_dataset, interpolate, kl_per_dimension, latent_grid, reconstruct, sample_prior
from .models import VAE, VAEConfig
from .pretrained import load_pretrained, pretrained_models
from .train import TrainConfig, evaluate, fit, train_epoch

# fmt: off
__all__ = [
    "__version__",
    # models
    "VAE", "VAEConfig", "Autoencoder", "AutoencoderConfig", "build_model",
    # the objective
    "objective", "ELBOTerms", "iwae_bound", "log_marginal_likelihood", "kl_warmup",
    # training
    "TrainConfig", "train_epoch", "fit", "evaluate",
    # data
    "load", "binarize",
    # using a model
    "sample_prior", "reconstruct", "interpolate", "latent_grid", "encode_dataset", "kl_per_dimension", "active_units",
    # models on disk and devices
    "load_model", "load_pretrained", "pretrained_models", "resolve_device",
    # errors
    "VaelibError", "DataError", "CheckpointError", "DeviceError",
    # the chapters' toolboxes, used as vl.pca.*, vl.information.*, ...
    "gaussian", "information", "pca", "autoencoder", "elbo", "estimators", "linear_gaussian", "plot",
]
# fmt: on
