"""How fast vaelib scores a likelihood on a CPU: -L_k of Burda et al.'s model, decoded in chunks of each size.

    python benchmarks/nll_speed.py [--n-test 100] [--k 5000] [--repeats 3] [--threads 1 2]
                                   [--out benchmarks/results/nll_speed_cpu.json]

The test protocol of chapter 5 and of the shipped records: -L_5000 of
``burda-vae-k1`` (784-200-200-50 tanh) on binarized MNIST test images, in
batches of 100, as ``vl.log_marginal_likelihood`` runs it.  ``vl.iwae_bound``
decodes the k samples of a batch in chunks, so that memory stays bounded for
any k; a chunk of c samples makes c * 100 * 784 decoder outputs, which the
Bernoulli log-likelihood then reads in several elementwise passes.  The
default chunk holds about 2**24 outputs (64 MB) on a GPU and 2**19 (2 MB) on a
CPU.  This script times, side by side in one process and in turn, chunks that
hold 2**17 to 2**24 outputs, the GPU's size being the reference, with torch
limited to each ``--threads``; and it prints each chunk's NLL, which differs
only by the Monte Carlo noise of the draws (the same seed, cut differently).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from machine import describe  # benchmarks/machine.py

import vaelib as vl

HERE = Path(__file__).resolve().parent
BATCH = 100  # inputs per call of iwae_bound: log_marginal_likelihood's default
REFERENCE = 2**24  # decoder outputs per chunk: the GPU's default, and the CPU's before this benchmark
SIZES = (2**24, 2**22, 2**21, 2**20, 2**19, 2**18, 2**17)


def score(model, x: torch.Tensor, k: int, chunk: int) -> tuple[float, float]:
    """(seconds, NLL in nats) of -L_k on ``x`` with ``chunk`` samples decoded at a time."""
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    bound = vl.log_marginal_likelihood(model, x, k, batch_size=BATCH, chunk_size=chunk, generator=generator)
    return time.perf_counter() - started, -bound.mean().item()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-test", type=int, default=100, help="test images scored in each timing")
    parser.add_argument("--k", type=int, default=5000, help="importance samples per image")
    parser.add_argument("--repeats", type=int, default=3, help="timings of each chunk size, taken in turn")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch's intra-op threads")
    parser.add_argument("--out", type=Path, default=None, help="write the results here as JSON")
    args = parser.parse_args(argv)

    model = vl.load_pretrained("burda-vae-k1", device="cpu")
    x_test, _ = vl.load("mnist", "test", download=False)
    x = vl.binarize(x_test[: args.n_test], torch.Generator().manual_seed(0))  # (N, P), once
    width = BATCH * x.shape[1]  # decoder outputs per sample of a batch
    chunks = {size: max(1, size // width) for size in SIZES}  # samples per chunk
    default = vl.elbo._default_chunk(args.k, BATCH, x.shape[1], torch.device("cpu"))
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        times = {size: [] for size in SIZES}
        nll = {}
        score(model, x[:BATCH], min(args.k, 50), 1)  # warm-up: the first call pays for allocations
        for _ in range(args.repeats):  # in turn, so a slow spell of the machine hits every size alike
            for size in SIZES:
                seconds, nll[size] = score(model, x, args.k, chunks[size])
                times[size].append(seconds)
        reference = statistics.median(times[REFERENCE])
        print(f"torch threads: {threads}; -L_{args.k} of {x.shape[0]} test images, batches of {BATCH}")
        print(f"{'outputs per chunk':>18} {'samples':>8} {'median s':>9} {'speedup':>8} {'NLL (nats)':>11}")
        for size in SIZES:
            median, chunk = statistics.median(times[size]), chunks[size]
            mark = "  <- the CPU default" if chunk == default else ("  <- reference" if size == REFERENCE else "")
            print(f"{'2**' + str(size.bit_length() - 1):>18} {chunk:>8} {median:>9.2f} "
                  f"{reference / median:>7.2f}x {nll[size]:>11.3f}{mark}")  # fmt: skip
            rows.append({
                "threads": threads, "outputs": size, "chunk": chunk, "seconds": times[size],
                "median_seconds": median, "speedup": reference / median, "nll": nll[size],
                "default": chunk == default,
            })  # fmt: skip
    result = {
        "benchmark": "nll_speed",
        "date": datetime.date.today().isoformat(),
        "machine": describe(threads=False),
        "model": "burda-vae-k1",
        "n_test": x.shape[0],
        "k": args.k,
        "batch_size": BATCH,
        "reference_outputs": REFERENCE,
        "default_chunk": default,
        "rows": rows,
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
