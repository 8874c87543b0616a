"""Burda, Grosse and Salakhutdinov (2016): their model, their training split and their published numbers.

``vl.burda`` is what a reproduction of their Table 1 needs: the
784-200-200-50 tanh architecture (:func:`config`), the training images they
used (:data:`vaelib.burda.N_TRAIN`) and the test NLLs they report
(:data:`vaelib.burda.PUBLISHED_NLL`).
The shipped ``burda-*`` models (:func:`vaelib.load_pretrained`), chapter 5
and ``benchmarks/burda_*.py`` all read them from here, and :func:`ablation`
returns what the ablation of their training details measured.
"""

import json
from importlib import resources

from .errors import VaelibError
from .models import VAEConfig

__all__ = ["PUBLISHED_NLL", "N_TRAIN", "config", "ablation"]

# Their Table 1, one stochastic layer: test NLL (nats, L_5000) by the k the model was trained with.
PUBLISHED_NLL = {1: 86.76, 5: 85.54, 50: 84.78}
# They train on the first 59,600 MNIST training images and keep the last 400 for validation.
N_TRAIN = 59_600


def config() -> VAEConfig:
    """Burda et al.'s 784-200-200-50 tanh architecture with a Bernoulli decoder (their section 5)."""
    return VAEConfig(latent_dim=50, hidden_dims=(200, 200), activation="tanh", likelihood="bernoulli")


def ablation() -> dict:
    """The summary of ``benchmarks/burda_ablation.py``, shipped with the package (``vaelib/results/``).

    Burda et al.'s model trained at k = 1 for ``epochs`` epochs of their
    learning-rate schedule, with each detail of their code switched on alone
    and together (``settings``: ``baseline``, ``bias``, ``eps``, ``beta1``,
    ``all``, ``all-b20``), three seeds each.  Per setting: ``changes`` (what
    differs from vaelib's defaults), ``seeds``, and ``test_nll``,
    ``valid_nll`` and ``test_elbo`` in nats, each as ``{"mean", "sd", "n",
    "values"}`` over the seeds; ``test_nll`` is -L_k with k = ``nll_k`` on
    all ``n_test`` test images, binarized once for every run; ``curve``: the
    held-out ELBO against the epoch, averaged over the seeds.  ``effects``:
    per knob, the paired difference in test NLL from its reference setting at
    the same seed (``"bias vs baseline"``, ..., ``"all-b20 vs all"``), with
    its ``mean``, standard error ``se``, ``seeds`` and ``diffs``.  Also
    ``runs_done`` of ``runs_planned`` and the ``machines`` they ran on.
    ``check_k``, where measured: on a few models (``models``), the score
    -L_1000 beside -L_5000 and their ``difference``, whether the two rank the
    models alike (``same_order``) and the largest difference.
    """
    path = resources.files("vaelib") / "results" / "burda_ablation.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise VaelibError(
            f"the ablation's summary {path} is missing or damaged ({err}); reinstall vaelib, or rerun "
            "python benchmarks/burda_ablation.py report in a clone of its repository"
        ) from None
