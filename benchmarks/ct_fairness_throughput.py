"""Benchmark: ct_fairness data-loading and training throughput (CPU, and CUDA where present).

Run: ``.venv/bin/python benchmarks/ct_fairness_throughput.py [--cases 12] [--epochs 4] [--steps 30]``

1. Data loading: cases per second through the training chain (npz load, organ/background
   indices, RandCropByPosNegLabeld, intensity jitter) with MONAI's ``Dataset`` (everything
   every time) against ``CacheDataset`` (load and indices cached), ``num_workers`` 0 and 1.
2. Training: patches per second of the U-Net step (Dice + CE, AdamW) at the smoke setting
   and at a medium setting; on CUDA also at a paper-like setting (128^3 patches, 5 levels).
The data loader is not the bottleneck when its patches per second exceed the training step's.
Cases are synthetic phantoms pushed through the real preprocessing chain.
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from stages.common.io import write_npz
from stages.common.runtime import configure_torch
from stages.ct_fairness.model import NetworkConfig
from stages.ct_fairness.organs import amos_to_organ_table, map_labels
from stages.ct_fairness.phantom import Effects, Scanner, render_phantom, subject_anatomy
from stages.ct_fairness.transforms import preprocess_case, preprocessing_chain, training_chain


def write_cases(folder: Path, count: int, spacing_mm: float, shape: tuple[int, int, int]) -> list[dict]:
    chain = preprocessing_chain((-175.0, 250.0), (spacing_mm,) * 3, shape)
    scanner = Scanner(spacing=(spacing_mm * 0.875,) * 3, fov_mm=(336.0, 252.0, 224.0))
    rng = np.random.default_rng(0)
    items = []
    for index in range(count):
        image, label = render_phantom(subject_anatomy("FM"[index % 2], 30 + 4 * index, Effects(), rng), scanner)
        image, label = preprocess_case(image.astype(np.float32), map_labels(label, amos_to_organ_table()), scanner.spacing, chain)
        path = folder / f"case{index}.npz"
        write_npz(path, {"image": image, "label": label})
        items.append({"case": f"case{index}", "path": str(path)})
    return items


def loading_rate(items: list[dict], patch, cached: bool, workers: int, epochs: int) -> tuple[float, float]:
    """(cases per second over the epochs, seconds to fill the cache)."""
    from monai.data import CacheDataset, DataLoader, Dataset

    chain = training_chain(patch, 1, 0.67, [2], 0.2, 0.05, 0.05)
    started = time.perf_counter()
    dataset = CacheDataset(items, transform=chain, progress=False) if cached else Dataset(items, transform=chain)
    fill = time.perf_counter() - started
    loader = DataLoader(dataset, batch_size=2, shuffle=True, num_workers=workers, persistent_workers=workers > 0)
    count = 0
    started = time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            count += len(batch["case"])
    return count / (time.perf_counter() - started), fill


def training_rate(config: NetworkConfig, batch: int, steps: int, device: torch.device) -> float:
    """Patches per second of the training step on random data (warm-up excluded)."""
    from monai.losses import DiceCELoss

    network = config.build().to(device)
    optimiser = torch.optim.AdamW(network.parameters(), lr=1e-3)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    image = torch.rand(batch, 1, *config.patch, device=device)
    label = torch.randint(0, config.num_classes, (batch, 1, *config.patch), device=device).float()

    def step() -> None:
        loss = loss_function(network(image), label)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    configure_torch(args.threads)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}, "
          f"CUDA {'yes: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}")

    with tempfile.TemporaryDirectory() as folder:
        items = write_cases(Path(folder), args.cases, 8.0, (44, 36, 28))
        print("\nData loading (smoke cases 44x36x28, patch 32x32x28), cases/s:")
        for cached in (False, True):
            for workers in (0, 1):
                rate, fill = loading_rate(items, (32, 32, 28), cached, workers, args.epochs)
                name = "CacheDataset" if cached else "Dataset     "
                print(f"  {name} workers={workers}: {rate:8.1f} cases/s" + (f"  (cache filled in {fill:.2f} s)" if cached else ""))

    settings = [("smoke", NetworkConfig((8, 16, 32), (2, 2), 0, (32, 32, 28)), 2),
                ("medium", NetworkConfig((16, 32, 64, 128), (2, 2, 2), 1, (64, 64, 64)), 2)]
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    if torch.cuda.is_available():
        settings.append(("full", NetworkConfig((32, 64, 128, 256, 320), (2, 2, 2, 2), 2, (128, 128, 128)), 2))
    print("\nTraining step, patches/s:")
    for name, config, batch in settings:
        for device in devices:
            if name == "full" and device.type == "cpu":
                continue
            steps = args.steps if device.type == "cuda" or name == "smoke" else max(3, args.steps // 10)
            print(f"  {name:6s} {str(config.channels):22s} patch {config.patch} on {device.type}: "
                  f"{training_rate(config, batch, steps, device):8.2f} patches/s")


if __name__ == "__main__":
    main()
