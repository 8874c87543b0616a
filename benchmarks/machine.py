"""Where a benchmark ran, in one line, saved with every result (benchmarks/README.md)."""

from __future__ import annotations

import os
import platform

import torch


def describe(device: str | torch.device = "cpu", *, threads: bool = True) -> str:
    """The GPU, or the CPU's model name and cores; with ``threads``, torch's intra-op threads; and torch's version.

    ``threads=False`` is for timings that torch does not run (the browser's).
    """
    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:  # the model name, where Linux says it
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if not threads:
        return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
    n = torch.get_num_threads()
    return f"{cpu}, {os.cpu_count()} cores, {n} thread{'s' * (n != 1)}, torch {torch.__version__}"
