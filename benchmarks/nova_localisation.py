"""NOVA localisation metrics against pycocotools on 10,000 images with random boxes and scores.

Checks that mAP@30, mAP@50 and mAP@50:95 are the same and measures the time of
``stages.nova.metrics.localisation_metrics`` (which also computes ACC50, TP30, FP30 and FNR50)
against pycocotools' ``COCOeval.evaluate() + accumulate()`` at IoU 0.3 and at 0.5:0.95
(index building included on both sides). Rerun: ``.venv/bin/python benchmarks/nova_localisation.py``.
The pycocotools reference is the tests' (``tests/nova/coco_reference.py``, independent of the
code it checks). The metrics are numpy code: there is no GPU path to time.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.nova.coco_reference

from stages.nova.metrics import COCO_THRESHOLDS, localisation_metrics  # noqa: E402
from tests.nova.coco_reference import pycocotools_ap  # noqa: E402

N_IMAGES = 10_000
REPEATS = 3


def random_benchmark(seed: int, n_images: int):
    """0-3 gold boxes and 0-5 scored predictions per image, some predictions near a gold box."""
    rng = np.random.default_rng(seed)
    gt, pred = {}, {}
    for i in range(n_images):
        k, m = int(rng.integers(0, 4)), int(rng.integers(0, 6))
        gold = np.column_stack([rng.uniform(0, 400, k), rng.uniform(0, 400, k), rng.uniform(8, 80, k), rng.uniform(8, 80, k)])
        boxes = np.column_stack([rng.uniform(0, 400, m), rng.uniform(0, 400, m), rng.uniform(8, 80, m), rng.uniform(8, 80, m)])
        for j in range(min(k, m)):
            if rng.random() < 0.5:
                boxes[j] = gold[j] + rng.normal(0, 6, 4)
                boxes[j, 2:] = np.abs(boxes[j, 2:]) + 1
        gt[f"case{i:05d}_001"], pred[f"case{i:05d}_001"] = gold, (boxes, rng.random(m))
    return gt, pred


def best_of(function, repeats: int = REPEATS) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    gt, pred = random_benchmark(0, N_IMAGES)
    n_gt, n_pred = sum(len(v) for v in gt.values()), sum(len(v[0]) for v in pred.values())
    ours_seconds, ours = best_of(lambda: localisation_metrics(gt, pred))
    coco30_seconds, coco30 = best_of(lambda: pycocotools_ap(gt, pred, [0.3]))
    coco_seconds, coco = best_of(lambda: pycocotools_ap(gt, pred, COCO_THRESHOLDS))
    print(f"{N_IMAGES} images, {n_gt} gold boxes, {n_pred} scored predictions (best of {REPEATS})")
    print(f"map30     ours {ours['map30']:.10f}  pycocotools {coco30[0]:.10f}  |diff| {abs(ours['map30'] - coco30[0]):.1e}")
    print(f"map50     ours {ours['map50']:.10f}  pycocotools {coco[0]:.10f}  |diff| {abs(ours['map50'] - coco[0]):.1e}")
    print(f"map50_95  ours {ours['map50_95']:.10f}  pycocotools {coco.mean():.10f}  |diff| {abs(ours['map50_95'] - coco.mean()):.1e}")
    pycoco_total = coco30_seconds + coco_seconds
    print(f"time: localisation_metrics (all 7 metrics, 11 IoU thresholds) {ours_seconds:.3f} s; "
          f"pycocotools IoU 0.3 {coco30_seconds:.3f} s + IoU 0.5:0.95 {coco_seconds:.3f} s = {pycoco_total:.3f} s; "
          f"speed-up {pycoco_total / ours_seconds:.1f}x (against 0.5:0.95 alone {coco_seconds / ours_seconds:.1f}x)")
    assert abs(ours["map30"] - coco30[0]) < 1e-9 and abs(ours["map50"] - coco[0]) < 1e-9
    assert abs(ours["map50_95"] - coco.mean()) < 1e-9


if __name__ == "__main__":
    main()
