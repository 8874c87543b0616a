"""One training epoch of the default MLP VAE (784-400-20, Bernoulli, Adam 1e-3,
batch 128): vaelib against the classic loop of the PyTorch example
(torchvision MNIST + ToTensor + DataLoader), side by side in one process.

    python benchmarks/epoch_speed.py --root DIR [--device cpu|cuda] [--out FILE.json]

``--root`` must hold ``MNIST/raw/`` with the *uncompressed* IDX files that
torchvision's MNIST class reads (vaelib reads those too).  Prints both times,
both losses (nats per example) and the speed ratio, and writes them as JSON.
A third row times the layers' forward and backward passes alone (no loss, no
optimizer): a lower bound for any loop, which says what ratio the machine allows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
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


def vaelib_epoch(x: torch.Tensor, device: torch.device, seed: int) -> dict:
    torch.manual_seed(seed)
    model = vl.VAE()
    config = vl.TrainConfig(epochs=1, batch_size=128, lr=1e-3, seed=seed, device=str(device))
    start = time.perf_counter()
    history = vl.fit(model, x, None, config, progress=False)
    # Wall time includes moving the data to the device and the one-off input check.
    return {"seconds": time.perf_counter() - start, "epoch_seconds": history[0]["seconds"], "train_loss": history[0]["train_loss"]}


def floor_epoch(x: torch.Tensor, device: torch.device, seed: int) -> dict:
    """A lower bound for any training loop of this model: the layers' forward and backward passes alone.

    The same five linear layers, batches and batch size, but no sampling, no loss and no optimizer
    step: what is left is the matrix products (and activations) that every implementation must do.
    """
    torch.manual_seed(seed)
    model = vl.VAE().to(device)
    x = x.to(device)
    order = torch.randperm(x.shape[0], device=device)
    start = time.perf_counter()
    for i in range(0, x.shape[0], 128):
        mu, logvar = model.encode(x.index_select(0, order[i : i + 128]))  # (B, D) each
        (model.decode(mu).sum() + logvar.sum()).backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="vaelib vs the PyTorch example's loop, one epoch each")
    parser.add_argument("--root", required=True, help="directory holding MNIST/raw with uncompressed IDX files")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the results here as JSON")
    parser.add_argument("--n-train", type=int, default=None, help="use only the first N training images (a quick check)")
    args = parser.parse_args(argv)
    device = vl.resolve_device(args.device)
    n = args.n_train
    if n is not None and not 1 <= n <= 60000:
        parser.error(f"--n-train must be between 1 and 60000 (MNIST has 60,000 training images), got {n}")
    x = vl.load("mnist", "train", root=args.root, download=False)[0][:n]  # (N, 784), read once for both vaelib rows
    vaelib_epoch(x, device, args.seed + 1)  # warm-up: first-call costs (allocator, kernels) hit neither timed run
    ref = reference_epoch(args.root, device, args.seed, n)
    ours = vaelib_epoch(x, device, args.seed)
    floor = floor_epoch(x, device, args.seed)
    ratio = ref["seconds"] / ours["seconds"]
    result = {
        "machine": vl.burda.machine_description(device),
        "device": str(device),
        "n_train": x.shape[0],
        "reference": ref,
        "vaelib": ours,
        "speedup": ratio,
        "layers_only": floor,
        "speedup_bound": ref["seconds"] / floor["seconds"],
        "loss_difference_nats": ours["train_loss"] - ref["train_loss"],
        "torch": torch.__version__,
    }
    print(f"machine: {result['machine']}")
    print(f"{'loop':<28}{'seconds/epoch':>14}{'train loss (nats)':>20}")
    print(f"{'PyTorch example (DataLoader)':<28}{ref['seconds']:>14.2f}{ref['train_loss']:>20.2f}")
    print(f"{'vaelib.fit':<28}{ours['seconds']:>14.2f}{ours['train_loss']:>20.2f}")
    print(f"{'layers only (lower bound)':<28}{floor['seconds']:>14.2f}{'-':>20}")
    print(f"no loop of this model can beat {result['speedup_bound']:.2f}x here (forward and backward passes alone)")
    print(f"speedup {ratio:.2f}x, loss difference {result['loss_difference_nats']:+.2f} nats")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
