"""The named random streams of a training run, in one place.

Each stream is seeded from ``TrainConfig.seed`` plus its own fixed offset, so
that the same seed always gives the same initial weights, batches, pixels and
noise, and drawing more from one stream (say, a longer evaluation) never
shifts another.  ``fit``, ``evaluate``, the CLI and the benchmark scripts
all take their generators from here.
"""

from __future__ import annotations

import torch

__all__ = ["STREAMS", "generator"]

STREAMS = {
    "init": 0,  # the model's initial weights: torch's global generator, seeded inside a fork (build_model)
    "train": 0,  # shuffling, dynamic binarization and the reparameterization noise; checkpointed with the run
    "train_pixels": 1,  # the one binarization of the training set kept for good (pixels="fixed")
    "test_pixels": 2,  # the one binarization of the test set (pixels "fixed" or "dynamic"): fit, evaluate and CLI
    "eval": 3,  # the noise of each evaluation of the test set during training
    "nll": 4,  # the noise of a final importance-sampled likelihood estimate (L_5000)
}


def generator(seed: int, stream: str, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed + STREAMS[stream]``."""
    if stream not in STREAMS:
        raise KeyError(f"unknown random stream {stream!r}; the streams are {sorted(STREAMS)}")
    return torch.Generator(device=device).manual_seed(int(seed) + STREAMS[stream])
