"""The named random streams of a training run, in one place.

Each stream is seeded from ``TrainConfig.seed`` plus its own fixed offset, so
that the same seed always gives the same initial weights, batches, pixels and
noise, and drawing more from one stream (say, a longer evaluation) never
shifts another.  ``fit``, ``evaluate``, the CLI and the benchmark scripts
all take their generators from here, and :func:`restore` puts a
checkpointed training stream back, on the same kind of device or another.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

__all__ = ["STREAMS", "generator", "restore"]

STATE_DEVICE_BY_SIZE = {5056: "cpu", 16: "cuda"}  # bytes of a generator's state: Mersenne Twister; seed and offset

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


def restore(generator: torch.Generator, state: Tensor, device_type: str | None = None) -> None:
    """Put a checkpointed ``state`` back into ``generator``, on the same kind of device or another.

    A generator's state is specific to its kind of device: a CPU generator's
    is 5,056 bytes of Mersenne Twister, a CUDA generator's 16 bytes of seed
    and offset, and neither can be set on the other.  On the same kind of
    device the state is restored exactly, so a resumed run continues bit for
    bit as an uninterrupted one would.  On another kind the generator is
    reseeded from a hash of the saved state: deterministic (a checkpoint
    always continues the same way), but not the numbers the run would have
    drawn on its own device.  ``device_type`` is where the state was saved
    ("cpu", "cuda", ...); None (checkpoints without it) infers it from the
    state's size.
    """
    state = state.detach().to("cpu", torch.uint8).contiguous()
    if device_type is None:
        device_type = STATE_DEVICE_BY_SIZE.get(state.numel())
    if device_type == generator.device.type and state.numel() == generator.get_state().numel():
        generator.set_state(state)
    else:
        digest = hashlib.sha256(state.numpy().tobytes()).digest()
        generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)  # a 63-bit seed
