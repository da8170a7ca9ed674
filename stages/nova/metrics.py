"""Localisation metrics of the NOVA benchmark (bootstrap intervals: :mod:`stages.common.stats`, re-exported).

``localisation_metrics(gt, pred)`` gives

- ``map30``, ``map50``, ``map50_95``: COCO-style average precision for one class, 101-point
  interpolated, every image's detections pooled (maxDets unlimited, area range "all"). The
  matching and accumulation follow pycocotools' ``COCOeval`` step by step, so the values equal
  pycocotools' on the same inputs (tests check it to 1e-9): detections are sorted by score
  with a stable sort, each is matched in turn to the still-unmatched gold box of highest IoU
  at or above the threshold (ties: the later gold box), and detections of all images are then
  pooled and stably sorted by score again, images in sorted-id order. The matching and
  accumulation are the shared :mod:`stages.common.metrics.detection` (one query per image).
- ``acc50`` = TP / (TP + FP + FN), ``fnr50`` = FN / (TP + FN) at IoU 0.5, and ``tp30``, ``fp30``
  (counts) at IoU 0.3, from a greedy one-to-one matching per image: pairs are taken in order of
  decreasing IoU (ties: earlier detection, then earlier gold box), each box used at most once.

- ``hit30``, ``hit50``: the share of slices with a gold box whose best IoU (any predicted box
  against any gold box) is at least 0.3 / 0.5, and ``mean_best_iou``, that best IoU averaged over
  the same slices (0 for a slice without a prediction). This is the per-image "mAP@30" the
  public re-implementation by NOVA's authors computes; the official scorer was not reachable, so
  which of the two definitions the published numbers use is unknown. Slices without a gold box
  do not enter these three (ours: the re-implementation's handling of them is not known).

Models without confidence scores (``scores`` is None for every slice with a box: every VLM)
get one constant score (ours, issue 17 item 8): their detections form a single operating point,
TP at each IoU threshold from the same greedy one-to-one matching as the counts (by decreasing
IoU, so independent of the order the boxes were listed in), precision P = TP / detections and
recall R = TP / gold boxes; the 101-point interpolated AP is then P times the share of recall
points at or below R. This equals pycocotools' AP for the least favourable order of the tied
boxes (false positives first), so it is a lower bound of what any tie order would give, and the
same boxes in any order give the same value. Models with scores are scored exactly as
pycocotools. A model mixing slices with and without scores is refused. An image with no gold
box is part of the benchmark: every box predicted on it is a false positive. AP is ``nan`` when
there is no gold box at all (pycocotools reports -1).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from stages.common.metrics import detection
from stages.common.metrics.detection import COCO_IOU_THRESHOLDS, RECALL_POINTS, implied_scores  # noqa: F401 (re-exported)
from stages.common.stats import bootstrap_interval, bootstrap_intervals, grouped_indices, mean_statistic
from stages.nova.boxes import as_boxes

__all__ = ["COCO_THRESHOLDS", "RECALL_POINTS", "AP_THRESHOLDS", "MatchTable", "bootstrap_interval", "bootstrap_intervals",
           "grouped_indices", "implied_scores", "localisation_metrics", "match_table", "mean_statistic",
           "precision_recall_curve", "summarise"]

COCO_THRESHOLDS = COCO_IOU_THRESHOLDS
# Row 0 is IoU 0.3, rows 1.. are COCO's 0.5:0.95 (the same floating-point values pycocotools uses).
AP_THRESHOLDS = np.concatenate([[0.3], COCO_THRESHOLDS])
CATEGORY = "anomaly"  # NOVA scores one class

GroundTruth = Mapping[str, np.ndarray]
Predictions = Mapping[str, tuple[np.ndarray, np.ndarray | None]]


@dataclass(frozen=True)
class MatchTable:
    """Everything the localisation metrics need, per image and per detection, computed once.

    ``matches`` is the shared COCO match table (:mod:`stages.common.metrics.detection`) with one
    query per image, images in sorted-id order, at ``AP_THRESHOLDS``. Greedy one-to-one counts
    are per image. Resampling images (bootstrap) only recombines these arrays; nothing is matched again.
    """

    matches: detection.MatchTable
    tp30: np.ndarray            # (N,)
    tp50: np.ndarray            # (N,)
    best_iou: np.ndarray        # (N,) best IoU of any (prediction, gold) pair of the image, 0 without a pair
    scoreless: bool = False     # no scores: AP from one operating point (see the module docstring)
    tp_at: np.ndarray | None = None  # (N, T) greedy TP per image at each of AP_THRESHOLDS (score-less only)

    @property
    def image_ids(self) -> list[str]:
        return self.matches.images

    @property
    def n_gt(self) -> np.ndarray:
        return self.matches.n_gt

    @property
    def dt_count(self) -> np.ndarray:
        return self.matches.dt_count


def greedy_true_positives(ious: np.ndarray, threshold: float) -> int:
    """Size of the greedy one-to-one matching by decreasing IoU with IoU >= threshold."""
    if ious.size == 0:
        return 0
    det, gt = np.nonzero(ious >= threshold)
    if len(det) == 0:
        return 0
    if len(det) == 1:
        return 1
    order = np.lexsort((gt, det, -ious[det, gt]))
    used_det, used_gt, count = set(), set(), 0
    for index in order:
        d, g = int(det[index]), int(gt[index])
        if d in used_det or g in used_gt:
            continue
        used_det.add(d)
        used_gt.add(g)
        count += 1
    return count


def one_class_boxes(image_ids: list[str], boxes: list[np.ndarray], scores: list[np.ndarray] | None = None) -> detection.BoxSet:
    """Per-image box arrays (and scores) of one class as the shared column form."""
    counts = [len(b) for b in boxes]
    total = sum(counts)
    return detection.BoxSet(np.repeat(np.asarray(image_ids, dtype=str), counts), np.full(total, CATEGORY),
                            np.concatenate(boxes) if total else np.zeros((0, 4)),
                            None if scores is None else np.concatenate(scores) if total else np.zeros(0))


def match_table(gt: GroundTruth, pred: Predictions) -> MatchTable:
    """Match every gold image's predictions (missing predictions = none); see :class:`MatchTable`."""
    unknown = sorted(set(pred) - set(gt))
    if unknown:
        raise ValueError(f"predictions for {len(unknown)} image(s) not in the gold set, e.g. {unknown[0]!r}")
    image_ids = sorted(gt)
    with_scores = {image_id for image_id, (boxes, scores) in pred.items() if scores is not None and len(as_boxes(boxes))}
    without = {image_id for image_id, (boxes, scores) in pred.items() if scores is None and len(as_boxes(boxes))}
    if with_scores and without:
        raise ValueError(f"predictions mix slices with scores and without (e.g. {min(without)!r} has none, "
                         f"{min(with_scores)!r} has scores): score every slice or none")
    scoreless = not with_scores
    gold_list, box_list, score_list = [], [], []
    for image_id in image_ids:
        boxes, scores = pred.get(image_id, (None, None))
        boxes = as_boxes([] if boxes is None else boxes)
        scores = np.ones(len(boxes)) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(scores) != len(boxes):
            raise ValueError(f"image {image_id!r}: {len(boxes)} boxes but {len(scores)} scores")
        gold_list.append(as_boxes(gt[image_id]))
        box_list.append(boxes)
        score_list.append(scores)
    gold, predicted = (one_class_boxes(image_ids, gold_list), one_class_boxes(image_ids, box_list, score_list))
    matches = detection.match_detections(gold, predicted, AP_THRESHOLDS, images=image_ids, categories=[CATEGORY])
    tp30 = np.zeros(len(image_ids), dtype=np.int64)
    tp50 = np.zeros(len(image_ids), dtype=np.int64)
    tp_at = np.zeros((len(image_ids), len(AP_THRESHOLDS)), dtype=np.int64) if scoreless else None
    best_iou = np.zeros(len(image_ids))
    for i in matches.queries_reaching(min(0.3, float(AP_THRESHOLDS.min()))):
        block = matches.iou_block(i)
        tp30[i] = greedy_true_positives(block, 0.3)
        tp50[i] = greedy_true_positives(block, 0.5)
        if tp_at is not None:
            tp_at[i] = [greedy_true_positives(block, float(t)) for t in np.minimum(AP_THRESHOLDS, 1 - 1e-10)]
    paired = np.nonzero(matches.dt_count * matches.n_gt)[0]
    if len(paired):  # each query's IoUs are contiguous, so one reduceat gives every image's maximum
        best_iou[paired] = np.maximum.reduceat(matches.ious, matches.pair_start[paired])
    return MatchTable(matches, tp30, tp50, best_iou, scoreless, tp_at)


def single_point_ap(tp: np.ndarray, n_detections: int, n_gt: int) -> np.ndarray:
    """101-point interpolated AP of one operating point per threshold (``tp`` (T,)): precision times recall coverage.

    pycocotools takes precision at recall point r from the first cumulative position whose
    recall reaches r; with one point, that is P for every r <= R and 0 above.
    """
    if n_gt == 0:
        return np.full(len(tp), np.nan)
    precision = tp / n_detections if n_detections else np.zeros(len(tp))
    recall = tp / n_gt
    covered = (RECALL_POINTS[None, :] <= recall[:, None]).sum(axis=1) if n_detections else np.zeros(len(tp))
    return precision * covered / len(RECALL_POINTS)


def average_precision(table: MatchTable, image_indices: np.ndarray | None = None) -> np.ndarray:
    """101-point interpolated AP at each of ``AP_THRESHOLDS`` over the chosen images (nan without gold)."""
    if table.scoreless:
        indices = np.arange(len(table.image_ids)) if image_indices is None else np.asarray(image_indices, dtype=np.int64)
        return single_point_ap(table.tp_at[indices].sum(axis=0).astype(np.float64), int(table.dt_count[indices].sum()),
                               int(table.n_gt[indices].sum()))
    return detection.accumulate(table.matches, image_indices).ap[:, 0]


def summarise(table: MatchTable, image_indices: np.ndarray | None = None) -> dict[str, float]:
    """The localisation metrics over the chosen images (all by default; repeats allowed)."""
    indices = np.arange(len(table.image_ids)) if image_indices is None else np.asarray(image_indices)
    ap = average_precision(table, indices)
    n_gt = int(table.n_gt[indices].sum())
    n_pred = int(table.dt_count[indices].sum())
    tp30, tp50 = int(table.tp30[indices].sum()), int(table.tp50[indices].sum())
    fp30, fp50, fn50 = n_pred - tp30, n_pred - tp50, n_gt - tp50
    with_gold = indices[table.n_gt[indices] > 0]
    best = table.best_iou[with_gold]
    return {
        "map30": float(ap[0]),
        "map50": float(ap[1]),
        "map50_95": float(ap[1:].mean()),
        "acc50": tp50 / (tp50 + fp50 + fn50) if tp50 + fp50 + fn50 else float("nan"),
        "tp30": tp30,
        "fp30": fp30,
        "fnr50": fn50 / n_gt if n_gt else float("nan"),
        "hit30": float((best >= 0.3).mean()) if len(best) else float("nan"),
        "hit50": float((best >= 0.5).mean()) if len(best) else float("nan"),
        "mean_best_iou": float(best.mean()) if len(best) else float("nan"),
        "n_images": int(len(indices)),
        "n_gt": n_gt,
        "n_pred": n_pred,
    }


def localisation_metrics(gt: GroundTruth, pred: Predictions) -> dict[str, float]:
    """NOVA localisation metrics.

    ``gt``: image id -> ``(k, 4)`` gold ``[x, y, w, h]`` boxes (``k`` may be 0). ``pred``: image id
    -> ``(boxes (m, 4), scores (m,) or None)``; images absent from ``pred`` have no prediction.
    Returns ``map30``, ``map50``, ``map50_95``, ``acc50``, ``tp30``, ``fp30``, ``fnr50``, ``hit30``,
    ``hit50``, ``mean_best_iou`` (and the counts ``n_images``, ``n_gt``, ``n_pred``). With scores,
    AP values equal pycocotools'; without, see the module docstring.
    """
    return summarise(match_table(gt, pred))


def precision_recall_curve(table: MatchTable, threshold_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated precision at the 101 recall points for one AP threshold (default IoU 0.3)."""
    if table.scoreless:
        tp, n_det, n_gt = float(table.tp_at[:, threshold_index].sum()), int(table.dt_count.sum()), int(table.n_gt.sum())
        if n_gt == 0 or n_det == 0:
            return RECALL_POINTS.copy(), np.zeros(len(RECALL_POINTS))
        return RECALL_POINTS.copy(), np.where(RECALL_POINTS <= tp / n_gt, tp / n_det, 0.0)
    result = detection.accumulate(table.matches)
    if result.n_gt[0] == 0:
        return RECALL_POINTS.copy(), np.zeros(len(RECALL_POINTS))
    return RECALL_POINTS.copy(), result.precision[threshold_index, :, 0].copy()
