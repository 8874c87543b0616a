"""The Bernoulli log-likelihood of binary (or grey) pixels under a decoder's logits (chapters 2 to 5).

A leaf module like :mod:`vaelib.gaussian`: it imports nothing from vaelib, so
the models and the objective both take it from here.  Its public name is
``vl.elbo.bernoulli_log_likelihood``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["bernoulli_log_likelihood"]


def bernoulli_log_likelihood(x: Tensor, logits: Tensor) -> Tensor:
    """``log p(x|z) = sum_p [x_p log s(l_p) + (1 - x_p) log(1 - s(l_p))]`` with ``s`` the sigmoid.

    Computed from the decoder's ``logits`` (never from probabilities) as
    minus the binary cross-entropy with logits, which stays finite for any
    logit.  ``x`` in [0, 1] (non-binary values give the continuous
    Bernoulli's unnormalised log-density).  ``x``: (..., P), ``logits``:
    broadcastable; returns (...,), summed over pixels, in nats.
    """
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
