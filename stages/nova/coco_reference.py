"""pycocotools as the reference for NOVA's localisation AP (tests and benchmarks)."""
from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from stages.nova.metrics import GroundTruth, Predictions, implied_scores


def pycocotools_ap(gt: GroundTruth, pred: Predictions, thresholds: Sequence[float]) -> np.ndarray:
    """AP per IoU threshold as pycocotools' COCOeval computes it for the same inputs.

    One category, ``maxDets`` large enough for every box, area range "all"; predictions without
    scores get :func:`implied_scores`. NaN where no gold box exists (COCOeval reports -1).
    The independent reference for :func:`localisation_metrics` in the tests and the benchmark.
    """
    ids = sorted(gt)
    number = {image_id: i + 1 for i, image_id in enumerate(ids)}
    annotations, detections, next_id = [], [], 1
    for image_id in ids:
        for box in gt[image_id]:
            annotations.append({"id": next_id, "image_id": number[image_id], "category_id": 1, "iscrowd": 0,
                                "bbox": [float(v) for v in box], "area": float(box[2] * box[3])})
            next_id += 1
        boxes, scores = pred.get(image_id, (np.zeros((0, 4)), None))
        scores = implied_scores(len(boxes)) if scores is None else scores
        detections += [{"image_id": number[image_id], "category_id": 1, "bbox": [float(v) for v in b], "score": float(s)}
                       for b, s in zip(boxes, scores)]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": [{"id": number[i]} for i in ids], "annotations": annotations,
                        "categories": [{"id": 1, "name": "anomaly"}]}
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(detections), "bbox")
        evaluator.params.iouThrs = np.asarray(thresholds, dtype=float)
        evaluator.params.maxDets = [10_000]
        evaluator.params.areaRng = [[0, 1e10]]
        evaluator.params.areaRngLbl = ["all"]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][:, :, 0, 0, 0]
    return np.array([row[row > -1].mean() if (row > -1).any() else np.nan for row in precision])
