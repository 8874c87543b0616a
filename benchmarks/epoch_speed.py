"""One training epoch of the default MLP VAE (784-400-20, Bernoulli, Adam 1e-3,
batch 128), four ways, interleaved in one process over several rounds:

* the classic loop of the PyTorch example (torchvision MNIST + ToTensor + DataLoader);
* ``vl.fit`` (its epoch time, and its wall time with moving and checking the data);
* ``vl.train_epoch``, the loop that fit runs, alone;
* the layers' forward and backward passes alone (no loss, no optimizer): a lower
  bound for any loop, which says what ratio the machine allows.

    python benchmarks/epoch_speed.py --root DIR [--device cpu|cuda] [--rounds 5] [--out FILE.json]

``--root`` must hold ``MNIST/raw/`` with the *uncompressed* IDX files that
torchvision's MNIST class reads (vaelib reads those too).  Each round runs
every loop once, in an order rotated from round to round, so a shared
machine's slow spells hit all loops alike; the script prints and saves the
median, minimum and maximum of each loop and the ratios of the medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from machine import describe  # benchmarks/machine.py
from torch import nn

import vaelib as vl


class ReferenceVAE(nn.Module):
    """The model of pytorch/examples vae/main.py, kept as the benchmark's yardstick."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def forward(self, x):
        h = F.relu(self.fc1(x.view(-1, 784)))
        mu, logvar = self.fc21(h), self.fc22(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar


def reference_loss(x_hat, x, mu, logvar):
    bce = F.binary_cross_entropy(x_hat, x.view(-1, 784), reduction="sum")
    return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def reference_epoch(root: str, device: torch.device, seed: int, n_train: int | None = None) -> dict:
    from torchvision import datasets, transforms

    torch.manual_seed(seed)
    data = datasets.MNIST(root, train=True, download=False, transform=transforms.ToTensor())
    if n_train is not None:
        data = torch.utils.data.Subset(data, range(n_train))
    loader = torch.utils.data.DataLoader(data, batch_size=128, shuffle=True, pin_memory=device.type == "cuda")
    model = ReferenceVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    total = 0.0
    start = time.perf_counter()
    for x, _ in loader:
        x = x.to(device)
        optimizer.zero_grad()
        x_hat, mu, logvar = model(x)
        loss = reference_loss(x_hat, x, mu, logvar)
        loss.backward()
        total += loss.item()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - start, "train_loss": total / len(data)}


def fit_epoch(x: torch.Tensor, device: torch.device, seed: int) -> dict:
    """One epoch of ``vl.fit``: wall time (with moving the data and checking it once) and the epoch's own time."""
    model = vl.build_model(vl.VAEConfig(), seed=seed)
    config = vl.TrainConfig(epochs=1, batch_size=128, lr=1e-3, seed=seed, device=str(device))
    start = time.perf_counter()
    history = vl.fit(model, x, None, config, progress=False)
    return {
        "seconds": history[0]["seconds"],
        "wall_seconds": time.perf_counter() - start,
        "train_loss": history[0]["train_loss"],
    }


def train_epoch_only(x: torch.Tensor, device: torch.device, seed: int) -> dict:
    """One call of ``vl.train_epoch``, the loop that fit runs, on data already on the device."""
    model = vl.build_model(vl.VAEConfig(), seed=seed).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    x = x.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    start = time.perf_counter()
    means = vl.train_epoch(model, x, optimizer, batch_size=128, generator=generator)
    return {"seconds": time.perf_counter() - start, "train_loss": -means["objective"]}


def floor_epoch(x: torch.Tensor, device: torch.device, seed: int) -> dict:
    """A lower bound for any training loop of this model: the layers' forward and backward passes alone.

    The same five linear layers, batches and batch size, but no sampling, no loss and no optimizer
    step: what is left is the matrix products (and activations) that every implementation must do.
    """
    model = vl.build_model(vl.VAEConfig(), seed=seed).to(device)
    x = x.to(device)
    order = torch.randperm(x.shape[0], device=device)
    start = time.perf_counter()
    for i in range(0, x.shape[0], 128):
        mu, logvar = model.encode(x.index_select(0, order[i : i + 128]))  # (B, D) each
        (model.decode(mu).sum() + logvar.sum()).backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - start}


LOOPS = {  # name: (label, function, needs the torchvision root)
    "reference": ("PyTorch example (DataLoader)", reference_epoch, True),
    "fit": ("vaelib.fit", fit_epoch, False),
    "train_epoch": ("vaelib.train_epoch", train_epoch_only, False),
    "layers_only": ("layers only (lower bound)", floor_epoch, False),
}


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="vaelib vs the PyTorch example's loop, interleaved over rounds")
    parser.add_argument("--root", required=True, help="directory holding MNIST/raw with uncompressed IDX files")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=5, help="rounds; each runs every loop once, in a rotated order")
    parser.add_argument("--out", default=None, help="write the results here as JSON")
    parser.add_argument(
        "--n-train", type=int, default=None, help="use only the first N training images (a quick check)"
    )
    args = parser.parse_args(argv)
    device = vl.resolve_device(args.device)
    n = args.n_train
    if n is not None and not 1 <= n <= 60000:
        parser.error(f"--n-train must be between 1 and 60000 (MNIST has 60,000 training images), got {n}")
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    x = vl.load("mnist", "train", root=args.root, download=False)[0][:n]  # (N, 784), read once for every vaelib row
    fit_epoch(x, device, args.seed + 1)  # warm-up: first-call costs (allocator, kernels) hit no timed run
    names = list(LOOPS)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(args.rounds):
        # Rotate the order every round: a shared machine's slow spells then hit every loop alike.
        for name in names[r % len(names) :] + names[: r % len(names)]:
            _, function, needs_root = LOOPS[name]
            runs[name].append(
                function(args.root, device, args.seed, n) if needs_root else function(x, device, args.seed)
            )
    seconds = {name: _spread([run["seconds"] for run in runs[name]]) for name in names}
    median = {name: seconds[name]["median"] for name in names}
    result = {
        "machine": describe(device),
        "device": str(device),
        "n_train": x.shape[0],
        "rounds": args.rounds,
        "seconds": seconds,
        "train_loss": {name: runs[name][0]["train_loss"] for name in names if "train_loss" in runs[name][0]},
        "fit_wall_seconds": _spread([run["wall_seconds"] for run in runs["fit"]]),
        "speedup": median["reference"] / median["fit"],
        "speedup_bound": median["reference"] / median["layers_only"],
        "fit_over_train_epoch": median["fit"] / median["train_epoch"],
        "fit_over_layers_only": median["fit"] / median["layers_only"],
        "torch": torch.__version__,
    }
    result["loss_difference_nats"] = result["train_loss"]["fit"] - result["train_loss"]["reference"]
    print(f"machine: {result['machine']}; {args.rounds} interleaved rounds, {x.shape[0]} images per epoch")
    print(f"{'loop':<30}{'median s/epoch':>15}{'min':>8}{'max':>8}{'train loss (nats)':>19}")
    for name in names:
        loss = result["train_loss"].get(name)
        print(
            f"{LOOPS[name][0]:<30}{median[name]:>15.2f}{seconds[name]['min']:>8.2f}{seconds[name]['max']:>8.2f}"
            f"{'-' if loss is None else f'{loss:.2f}':>19}"
        )
    print(
        f"speedup of fit over the example {result['speedup']:.2f}x (bound {result['speedup_bound']:.2f}x); "
        f"fit / train_epoch {result['fit_over_train_epoch']:.2f}; "
        f"fit / layers only {result['fit_over_layers_only']:.2f}"
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
