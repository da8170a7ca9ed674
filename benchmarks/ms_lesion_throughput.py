"""Benchmark: ms_lesion data loading and training throughput (CPU, and CUDA where present).

Run: ``.venv/bin/python benchmarks/ms_lesion_throughput.py [--cases 6] [--steps 20]``

1. Data loading: cases per second from ``.npz`` into training cases (``batches.training_case``),
   and patches per second of the sampler (``batches.draw_patches``) on cases held in memory.
2. Training: patches per second of one step (forward, supervised loss + the three constraints,
   backward, Adam) at the smoke setting (UNet 8/16/32, 24^3, batch 2) and, on CUDA, at the full
   setting (MONAI VNet, 80^3, batch 8).
Loading is not the bottleneck when the sampler's patches per second exceed the training step's.
Cases are synthetic subjects built from the MNI152 template at the smoke spacing (4 mm).
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
from stages.ms_lesion.batches import draw_patches, training_case
from stages.ms_lesion.model import NetworkConfig, supervised_loss
from stages.ms_lesion.synthetic import Style, draw_lesions, lesion_truth, load_template, scan
from stages.ms_lesion.train import ConstraintWeights, constraint_loss
from stages.ms_lesion.volumes import normalise


def write_cases(folder: Path, count: int, spacing_mm: float) -> list[Path]:
    template = load_template(spacing_mm)
    style = Style(gamma=1.0, scale=1000.0, bias=0.2, noise=0.05, lesion_contrast=0.55)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        lesions = draw_lesions(template, {"persistent": 4, "new": 3, "vanishing": 3}, (1.5, 2.75), rng)
        truth = lesion_truth(template.t1.shape, lesions, template.brain)
        scans = np.stack([normalise(scan(template, t, style, rng), template.brain) for t in (truth.all_t1, truth.all_t2)])
        path = folder / f"case{index}.npz"
        write_npz(path, {"scans": scans, "white_matter": template.white_matter, "brain": template.brain.astype(np.uint8),
                         "labels": np.stack([truth.all_t1, truth.all_t2, truth.new, truth.vanishing]).astype(np.uint8),
                         "label_known": np.ones(4, bool)})
        paths.append(path)
    return paths


def training_rate(config: NetworkConfig, patch, batch_size: int, steps: int, device: torch.device, cases) -> float:
    model = config.build().to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    weights = ConstraintWeights(longitudinal=1.0, spatial=0.5, volumetric=0.2)
    batches = [{k: torch.from_numpy(v) for k, v in draw_patches(cases, batch_size, patch, 0.67, rng).items()} for _ in range(steps + 2)]
    for index, batch in enumerate(batches):
        if index == 2:  # two warm-up steps
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(batch["inputs"])
        loss = supervised_loss(logits, batch["labels"], batch["known"]) + sum(constraint_loss(logits, batch["white_matter"], weights).values())
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    configure_torch(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}")
    with tempfile.TemporaryDirectory() as folder:
        paths = write_cases(Path(folder), args.cases, 4.0)
        started = time.perf_counter()
        cases = [training_case("synthetic", np.load(path)) for path in paths]
        print(f"loading .npz -> training cases: {len(paths) / (time.perf_counter() - started):.1f} cases/s")
    rng = np.random.default_rng(1)
    started = time.perf_counter()
    for _ in range(100):
        draw_patches(cases, 2, (24, 24, 24), 0.67, rng)
    print(f"patch sampler, 24^3: {200 / (time.perf_counter() - started):.0f} patches/s")
    smoke = NetworkConfig("unet", (8, 16, 32), (2, 2))
    print(f"training step, CPU, smoke UNet 24^3 batch 2: {training_rate(smoke, (24, 24, 24), 2, args.steps, torch.device('cpu'), cases):.1f} patches/s")
    if torch.cuda.is_available():
        cuda = torch.device("cuda")
        print(f"training step, CUDA, smoke UNet 24^3 batch 2: {training_rate(smoke, (24, 24, 24), 2, args.steps, cuda, cases):.1f} patches/s")
        full = NetworkConfig("vnet", (8, 16, 32), (2, 2))
        print(f"training step, CUDA, full VNet 80^3 batch 8: {training_rate(full, (80, 80, 80), 8, args.steps, cuda, cases):.1f} patches/s")


if __name__ == "__main__":
    main()
