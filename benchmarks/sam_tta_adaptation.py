"""Benchmark: sam_tta adaptation throughput per method (images per second, seconds per image), CPU and CUDA where present.

Run: ``.venv/bin/python benchmarks/sam_tta_adaptation.py [--images 12] [--threads 1] [--sam-b]``

Each method runs the online protocol (one step, EMA, predict) over a stream of synthetic
brain-MRI-like slices with box prompts, with a randomly initialised model of the smoke size
(64 px, 2 x 32 encoder) or, with ``--sam-b``, of SAM ViT-B's size (1024 px, 12 x 768; GPU only in
practice). The official README reports 0.364 s per image for SAM ViT-B.
"""
from __future__ import annotations

import argparse
import platform

import numpy as np
import torch

from stages.common.runtime import choose_device, configure_torch
from stages.sam_tta import synthetic
from stages.sam_tta.data import Case, case_prompts, to_model_frame
from stages.sam_tta.model import SamConfig
from stages.sam_tta.tta import Settings, adapt_stream

SMOKE = SamConfig(64, 32, 2, 4, 32, 2, 4, 4.0)
SAM_B = SamConfig(1024, 768, 12, 12, 256, 2, 8, 4.0)
SETTINGS = Settings(4, 0.95, 0.9999, 1e-4, 1e-4, 0.999, 0.1, 0.5)
METHODS = ("source_only", "sbct_only", "sam_tta", "mean_teacher", "tent")


def stream(size: int, count: int) -> list[Case]:
    rng = np.random.default_rng(0)
    cases = []
    for index in range(count):
        image, labels = synthetic.medical_case("brain_mri", rng, size, 0.15, 1.0, 1.6, 0.03)
        model_image, model_labels = to_model_frame(image, labels, size)
        cases.append(Case("brain_mri", str(index), model_image, 1, model_labels, labels))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sam-b", action="store_true")
    args = parser.parse_args()
    configure_torch(args.threads)
    device = choose_device("auto")
    config = SAM_B if args.sam_b else SMOKE
    model = config.build().to(device).eval()
    cases = stream(config.image_size, args.images)
    prompts = [case_prompts(c, "box", np.random.default_rng(1)) for c in cases]
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, device {device}, "
          f"threads {args.threads}, image {config.image_size}, encoder {config.encoder_dim} x {config.encoder_depth}")
    for method in METHODS:
        records, _ = adapt_stream(method, model, cases, prompts, SETTINGS, 1337, device)
        seconds = float(np.mean([r.seconds for r in records[1:]]))  # the first image pays the warm-up
        print(f"{method:>14}: {seconds:.4f} s per image, {1 / seconds:.1f} images per second")


if __name__ == "__main__":
    main()
