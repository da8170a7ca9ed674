"""pycocotools as the independent reference for NOVA's localisation AP (tests and benchmarks).

Nothing here comes from ``stages.nova.metrics``: the inputs are handed to pycocotools' own
``COCO``/``COCOeval`` as plain COCO dictionaries, and the one convention pycocotools cannot know
(a model that gives no scores) is written out again below from the documented rule.
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

GroundTruth = Mapping[str, np.ndarray]                         # image id -> (k, 4) COCO [x, y, w, h]
Predictions = Mapping[str, tuple[np.ndarray, np.ndarray | None]]  # image id -> (boxes (m, 4), scores (m,) or None)


def list_position_scores(count: int) -> list[float]:
    """Scores for a model that lists boxes most confident first, without scores (stages/nova/README.md).

    COCOeval needs a score per detection: it sorts each image's detections by decreasing score
    with a stable sort, then all images' pooled detections the same way (equal scores keep the
    order of ``imgIds``, which it sorts). Position ``i`` gets ``1 / (1 + i)``: decreasing within a
    list, and equal for equal positions in different lists, as the convention says.
    """
    return [1.0 / (1.0 + position) for position in range(count)]


def coco_dictionaries(gt: GroundTruth, pred: Predictions) -> tuple[dict, list[dict]]:
    """The ground truth as a COCO dataset and the predictions as a COCO result list (one category)."""
    ids = sorted(gt)
    number = {image_id: i + 1 for i, image_id in enumerate(ids)}
    annotations, detections = [], []
    for image_id in ids:
        for box in np.asarray(gt[image_id], dtype=float).reshape(-1, 4):
            annotations.append({"id": len(annotations) + 1, "image_id": number[image_id], "category_id": 1, "iscrowd": 0,
                                "bbox": [float(v) for v in box], "area": float(box[2] * box[3])})
        boxes, scores = pred.get(image_id, (np.zeros((0, 4)), None))
        boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
        given = list_position_scores(len(boxes)) if scores is None else [float(s) for s in scores]
        detections += [{"image_id": number[image_id], "category_id": 1, "bbox": [float(v) for v in b], "score": s}
                       for b, s in zip(boxes, given, strict=True)]
    dataset = {"images": [{"id": number[i]} for i in ids], "annotations": annotations,
               "categories": [{"id": 1, "name": "anomaly"}]}
    return dataset, detections


def pycocotools_ap(gt: GroundTruth, pred: Predictions, thresholds: Sequence[float]) -> np.ndarray:
    """AP per IoU threshold as pycocotools' COCOeval computes it for the same inputs.

    One category, ``maxDets`` large enough for every box, area range "all". NaN where no gold box
    exists (COCOeval reports -1).
    """
    dataset, detections = coco_dictionaries(gt, pred)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(detections) if detections else COCO(), "bbox")
        evaluator.params.iouThrs = np.asarray(thresholds, dtype=float)
        evaluator.params.maxDets = [10_000]
        evaluator.params.areaRng = [[0, 1e10]]
        evaluator.params.areaRngLbl = ["all"]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][:, :, 0, 0, 0]
    return np.array([row[row > -1].mean() if (row > -1).any() else np.nan for row in precision])
