"""pycocotools as the independent reference for NOVA's localisation AP (tests and benchmarks).

NOVA's inputs (one class; ``gt``: image id -> gold boxes, ``pred``: image id -> (boxes, scores
or None)) handed to the shared pycocotools reference, ``tests/common/coco_reference.py``, which
owns the COCO dictionaries and the no-score rule. Nothing here comes from the code under test.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tests.common.coco_reference import coco_ap, coco_evaluator

GroundTruth = Mapping[str, np.ndarray]                         # image id -> (k, 4) COCO [x, y, w, h]
Predictions = Mapping[str, tuple[np.ndarray, np.ndarray | None]]  # image id -> (boxes (m, 4), scores (m,) or None)


def pycocotools_ap(gt: GroundTruth, pred: Predictions, thresholds: Sequence[float]) -> np.ndarray:
    """AP per IoU threshold as pycocotools' COCOeval computes it for the same inputs.

    One category, ``maxDets`` large enough for every box, area range "all". NaN where no gold box
    exists (COCOeval reports -1).
    """
    gold = [(image_id, "anomaly", box) for image_id in sorted(gt) for box in np.asarray(gt[image_id], dtype=float).reshape(-1, 4)]
    detections = []
    for image_id in sorted(gt):
        boxes, scores = pred.get(image_id, (np.zeros((0, 4)), None))
        boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
        given = [None] * len(boxes) if scores is None else [float(s) for s in scores]
        detections += [(image_id, "anomaly", box, score) for box, score in zip(boxes, given, strict=True)]
    return coco_ap(coco_evaluator(gold, detections, list(gt), ["anomaly"], thresholds))[:, 0]
