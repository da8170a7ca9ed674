"""Shared detection AP (``stages.common.metrics.detection``) against pycocotools' COCOeval.

Two cases, best of 3, index building included on both sides, IoU 0.5:0.95, area "all",
maxDets large enough for every box:

- nova-sized: 10,000 images, one class, 0-3 gold and 0-5 scored boxes per image (nova's
  benchmark inputs, ``benchmarks/nova_localisation.py``);
- larger, COCO-like: 5,000 images, 20 classes, 0-12 gold boxes per image over random classes
  and 0-30 detections per image (half jittered copies of a gold box, class kept).

Checks that every per-class AP equals pycocotools' (|diff| < 1e-12) and prints both times.
Rerun: ``/work/main/.venv/bin/python benchmarks/detection_ap.py`` (numpy code: no GPU column).
"""
from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.common.coco_reference

from benchmarks.nova_localisation import random_benchmark  # noqa: E402
from stages.common.metrics.detection import COCO_IOU_THRESHOLDS, BoxSet, evaluate_detections  # noqa: E402
from tests.common.coco_reference import coco_ap, coco_evaluator  # noqa: E402

REPEATS = 3


def nova_sized():
    gt, pred = random_benchmark(0, 10_000)
    gold = [(i, "anomaly", box) for i in sorted(gt) for box in gt[i]]
    detections = [(i, "anomaly", box, float(s)) for i in sorted(gt) for box, s in zip(*pred[i], strict=True)]
    return gold, detections, sorted(gt), ["anomaly"]


def coco_like(seed: int = 0, n_images: int = 5_000, n_classes: int = 20):
    rng = np.random.default_rng(seed)
    classes = [f"class{c:02d}" for c in range(n_classes)]
    gold, detections = [], []
    for i in range(n_images):
        image_id = f"img{i:05d}"
        k, m = int(rng.integers(0, 13)), int(rng.integers(0, 31))
        boxes = np.column_stack([rng.uniform(0, 560, k), rng.uniform(0, 560, k), rng.uniform(8, 120, k), rng.uniform(8, 120, k)])
        labels = rng.integers(0, n_classes, k)
        gold += [(image_id, classes[c], box) for box, c in zip(boxes, labels, strict=True)]
        guesses = np.column_stack([rng.uniform(0, 560, m), rng.uniform(0, 560, m), rng.uniform(8, 120, m), rng.uniform(8, 120, m)])
        guess_labels = rng.integers(0, n_classes, m)
        for j in range(m):
            if k and rng.random() < 0.5:
                g = int(rng.integers(0, k))
                guesses[j] = boxes[g] + rng.normal(0, 8, 4)
                guesses[j, 2:] = np.abs(guesses[j, 2:]) + 1
                guess_labels[j] = labels[g]
        detections += [(image_id, classes[c], box, float(s)) for box, c, s in zip(guesses, guess_labels, rng.random(m), strict=True)]
    return gold, detections, [f"img{i:05d}" for i in range(n_images)], classes


def best_of(function, repeats: int = REPEATS) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return min(times), result


def as_box_sets(gold, detections) -> tuple[BoxSet, BoxSet]:
    gt = BoxSet([g[0] for g in gold], [g[1] for g in gold], np.array([g[2] for g in gold]))
    dt = BoxSet([d[0] for d in detections], [d[1] for d in detections], np.array([d[2] for d in detections]),
                np.array([d[3] for d in detections]))
    return gt, dt


def ours(gold, detections, images, classes):
    return evaluate_detections(*as_box_sets(gold, detections), COCO_IOU_THRESHOLDS, images=images)


def pycocotools(gold, detections, images, classes):
    return coco_evaluator(gold, detections, images, classes, COCO_IOU_THRESHOLDS)


def main() -> None:
    for name, case in (("nova-sized", nova_sized()), ("coco-like", coco_like())):
        gold, detections, images, classes = case
        ours_seconds, result = best_of(partial(ours, *case))
        coco_seconds, coco = best_of(partial(pycocotools, *case))
        difference = np.nanmax(np.abs(result.ap - coco_ap(coco)))
        print(f"{name}: {len(images)} images, {len(classes)} classes, {len(gold)} gold, {len(detections)} detections; "
              f"mAP50:95 ours {result.mean_ap():.10f}, max |AP diff| {difference:.1e}; "
              f"time ours {ours_seconds:.3f} s, pycocotools {coco_seconds:.3f} s, speed-up {coco_seconds / ours_seconds:.1f}x")
        assert difference < 1e-12


if __name__ == "__main__":
    main()
