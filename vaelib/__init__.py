"""vaelib: variational autoencoders with exact, tested math.

The companion package of the book *Variational Autoencoders, from PCA to the
ELBO*.  Import it as ``import vaelib as vl``; nothing runs on import.
"""

__version__ = "0.1.0"

from .checkpoint import load_checkpoint, load_model, save_checkpoint
from .data import binarize, data_root, find_dataset, load
from .errors import CheckpointError, DataError, DeviceError, VaelibError
from .exact import LinearGaussian
from .explore import active_units, encode_dataset, interpolate, kl_per_dimension, latent_grid, reconstruct, sample_prior
from .information import (
    GaussianFit,
    cross_entropy,
    entropy,
    fit_gaussian,
    gaussian_cross_entropy,
    gaussian_entropy,
    gaussian_kl,
    gaussian_kl_monte_carlo,
    kl_divergence,
    kl_on_grid,
    kl_standard_normal,
    mixture_log_prob,
    mixture_moments,
    self_information,
)
from .losses import (
    ELBOTerms,
    bernoulli_log_likelihood,
    check_images,
    effective_sample_size,
    elbo,
    gaussian_log_likelihood,
    iwae_bound,
    kl_warmup,
    log_marginal_likelihood,
    log_normal,
    log_weights,
    reparameterize,
)
from .models import VAE, Autoencoder, AutoencoderConfig, VAEConfig, build_model
from .train import TrainConfig, evaluate, fit, learning_rate, resolve_device
from . import burda, estimators, exact, information, pca, plot  # chapter modules: vl.pca.*, ...

__all__ = [
    "__version__",
    # models
    "VAE", "VAEConfig", "Autoencoder", "AutoencoderConfig", "build_model",
    # information
    "self_information", "entropy", "cross_entropy", "kl_divergence", "gaussian_entropy",
    "gaussian_cross_entropy", "gaussian_kl", "kl_standard_normal", "gaussian_kl_monte_carlo",
    "mixture_log_prob", "mixture_moments", "kl_on_grid", "fit_gaussian", "GaussianFit",
    # the objective
    "bernoulli_log_likelihood", "gaussian_log_likelihood", "log_normal", "reparameterize",
    "ELBOTerms", "elbo", "log_weights", "iwae_bound", "log_marginal_likelihood",
    "effective_sample_size", "kl_warmup", "check_images",
    # exact model
    "LinearGaussian",
    # data
    "load", "binarize", "data_root", "find_dataset",
    # training and checkpoints
    "TrainConfig", "fit", "evaluate", "learning_rate", "resolve_device", "save_checkpoint", "load_checkpoint", "load_model",
    # using a model
    "sample_prior", "reconstruct", "interpolate", "latent_grid", "encode_dataset", "kl_per_dimension", "active_units",
    # chapter modules, used as vl.pca.*, vl.estimators.*, ...
    "plot", "pca", "estimators", "exact", "information", "burda",
    # errors
    "VaelibError", "DataError", "CheckpointError", "DeviceError",
]
