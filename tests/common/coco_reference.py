"""pycocotools as the independent reference for detection AP (tests and benchmarks).

Nothing here comes from ``stages.common.metrics.detection``: boxes are handed to pycocotools'
own ``COCO``/``COCOeval`` as plain COCO dictionaries (images numbered in sorted-id order,
categories likewise, boxes and detections in the order given), with ``iouThrs`` set to the
thresholds asked for, ``maxDets`` large enough for every box (or the one given) and area range
"all". The one rule COCO cannot know, detections given without scores, is written out again
from its description: list position ``i`` within its (image, category) gets ``1 / (1 + i)``.
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# One box: (image id, category, [x, y, w, h]) for gold, plus a score (or None) for a detection.
GoldRow = tuple[object, object, Sequence[float]]
DetectionRow = tuple[object, object, Sequence[float], float | None]


def list_position_scores(rows: Sequence[DetectionRow]) -> list[float]:
    """Each row's score, or ``1 / (1 + position)`` by list position within its (image, category)."""
    seen: dict[tuple, int] = {}
    scores = []
    for image_id, category, _, score in rows:
        position = seen.get((image_id, category), 0)
        seen[(image_id, category)] = position + 1
        scores.append(1.0 / (1.0 + position) if score is None else float(score))
    return scores


def coco_evaluator(gold: Sequence[GoldRow], detections: Sequence[DetectionRow], images: Sequence, categories: Sequence,
                   thresholds: Sequence[float], max_detections: int = 1_000_000) -> COCOeval:
    """A COCOeval on these boxes after ``evaluate()`` and ``accumulate()``."""
    image_number = {image_id: n + 1 for n, image_id in enumerate(sorted(images))}
    category_number = {category: n + 1 for n, category in enumerate(sorted(categories))}
    annotations = [{"id": n + 1, "image_id": image_number[i], "category_id": category_number[c], "iscrowd": 0,
                    "bbox": [float(v) for v in box], "area": float(box[2]) * float(box[3])}
                   for n, (i, c, box) in enumerate(gold)]
    results = [{"image_id": image_number[i], "category_id": category_number[c], "bbox": [float(v) for v in box], "score": s}
               for (i, c, box, _), s in zip(detections, list_position_scores(detections), strict=True)]
    dataset = {"images": [{"id": n} for n in image_number.values()], "annotations": annotations,
               "categories": [{"id": n, "name": str(c)} for c, n in category_number.items()]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(results) if results else COCO(), "bbox")
        evaluator.params.iouThrs = np.asarray(thresholds, dtype=float)
        evaluator.params.maxDets = [max_detections]
        evaluator.params.areaRng = [[0, 1e10]]
        evaluator.params.areaRngLbl = ["all"]
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def coco_precision(evaluator: COCOeval) -> np.ndarray:
    """``(T, R, K)`` interpolated precision, nan where COCOeval has -1 (a category without gold boxes)."""
    precision = evaluator.eval["precision"][:, :, :, 0, 0].astype(float)
    return np.where(precision > -1, precision, np.nan)


def coco_ap(evaluator: COCOeval) -> np.ndarray:
    """``(T, K)`` AP per IoU threshold and category (nan without gold boxes)."""
    return coco_precision(evaluator).mean(axis=1)


def coco_recall(evaluator: COCOeval) -> np.ndarray:
    """``(T, K)`` recall reached, nan without gold boxes."""
    recall = evaluator.eval["recall"][:, :, 0, 0].astype(float)
    return np.where(recall > -1, recall, np.nan)


def coco_summary_map(evaluator: COCOeval, threshold_index: int | None = None) -> float:
    """pycocotools' summary mean: all precision cells > -1 (at one threshold, or all)."""
    precision = evaluator.eval["precision"][:, :, :, 0, 0]
    if threshold_index is not None:
        precision = precision[threshold_index]
    cells = precision[precision > -1]
    return float(cells.mean()) if cells.size else float("nan")
