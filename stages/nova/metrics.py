"""Localisation metrics of the NOVA benchmark, and bootstrap confidence intervals.

``localisation_metrics(gt, pred)`` gives

- ``map30``, ``map50``, ``map50_95``: COCO-style average precision for one class, 101-point
  interpolated, every image's detections pooled (maxDets unlimited, area range "all"). The
  matching and accumulation follow pycocotools' ``COCOeval`` step by step, so the values equal
  pycocotools' on the same inputs (tests check it to 1e-9): detections are sorted by score
  with a stable sort, each is matched in turn to the still-unmatched gold box of highest IoU
  at or above the threshold (ties: the later gold box), and detections of all images are then
  pooled and stably sorted by score again, images in sorted-id order.
- ``acc50`` = TP / (TP + FP + FN), ``fnr50`` = FN / (TP + FN) at IoU 0.5, and ``tp30``, ``fp30``
  (counts) at IoU 0.3, from a greedy one-to-one matching per image: pairs are taken in order of
  decreasing IoU (ties: earlier detection, then earlier gold box), each box used at most once.

Models without confidence scores (``scores`` is None) are taken to list their boxes most
confident first: the box at position ``i`` gets score ``1 / (1 + i)``. Equal scores across
images keep sorted image-id order, exactly as pycocotools does with equal scores. An image
with no gold box is part of the benchmark: every box predicted on it is a false positive.
AP is ``nan`` when there is no gold box at all (pycocotools reports -1).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from stages.nova.boxes import as_boxes

COCO_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_POINTS = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1, endpoint=True)
# Row 0 is IoU 0.3, rows 1.. are COCO's 0.5:0.95 (the same floating-point values pycocotools uses).
AP_THRESHOLDS = np.concatenate([[0.3], COCO_THRESHOLDS])

GroundTruth = Mapping[str, np.ndarray]
Predictions = Mapping[str, tuple[np.ndarray, np.ndarray | None]]


@dataclass(frozen=True)
class MatchTable:
    """Everything the localisation metrics need, per image and per detection, computed once.

    Images are in sorted-id order; each image's detections are contiguous (``dt_start``,
    ``dt_count``) and sorted by score (stable). ``matched[t, d]``: detection ``d`` matched a gold
    box at ``AP_THRESHOLDS[t]`` under pycocotools' rule. Greedy one-to-one counts are per image.
    Resampling images (bootstrap) only recombines these arrays; nothing is matched again.
    """

    image_ids: list[str]
    n_gt: np.ndarray            # (N,)
    dt_start: np.ndarray        # (N,)
    dt_count: np.ndarray        # (N,)
    scores: np.ndarray          # (D,)
    matched: np.ndarray         # (T, D) bool
    tp30: np.ndarray            # (N,)
    tp50: np.ndarray            # (N,)

    def detections(self, image_indices: np.ndarray) -> np.ndarray:
        """Detection indices of the given images, in the given image order (repeats allowed)."""
        counts = self.dt_count[image_indices]
        total = int(counts.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64)
        starts = np.repeat(self.dt_start[image_indices], counts)
        offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        return starts + offsets


def implied_scores(count: int) -> np.ndarray:
    """Scores for a model that gives none: list position ``i`` -> ``1 / (1 + i)``."""
    return 1.0 / (1.0 + np.arange(count, dtype=np.float64))


def coco_match(ious: np.ndarray, thresholds: np.ndarray = AP_THRESHOLDS) -> np.ndarray:
    """pycocotools' per-image matching: ``(T, m)`` bool, detection rows of ``ious`` already in score order."""
    m, k = ious.shape
    matched = np.zeros((len(thresholds), m), dtype=bool)
    if m == 0 or k == 0:
        return matched
    effective = np.minimum(thresholds, 1 - 1e-10)[:, None]
    if k == 1:
        # One gold box: at each threshold the first detection (in score order) reaching it takes it.
        reaches = ious[:, 0][None, :] >= effective
        first = reaches.argmax(axis=1)
        rows = np.nonzero(reaches.any(axis=1))[0]
        matched[rows, first[rows]] = True
        return matched
    lowest = float(effective.min())
    best = ious.max(axis=1)
    taken = np.zeros((len(thresholds), k), dtype=bool)
    for d in range(m):
        if best[d] < lowest:
            continue
        row = ious[d][None, :]
        candidate = ~taken & (row >= effective)
        found = candidate.any(axis=1)
        if not found.any():
            continue
        values = np.where(candidate, row, -1.0)[:, ::-1]
        chosen = k - 1 - values.argmax(axis=1)
        rows = np.nonzero(found)[0]
        taken[rows, chosen[rows]] = True
        matched[rows, d] = True
    return matched


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


def _pair_ious(gt_boxes: np.ndarray, dt_boxes: np.ndarray, pair_gt: np.ndarray, pair_dt: np.ndarray) -> np.ndarray:
    """IoU of each (detection, gold) pair, pycocotools' definition, all pairs at once."""
    g, d = gt_boxes[pair_gt], dt_boxes[pair_dt]
    width = np.clip(np.minimum(g[:, 0] + g[:, 2], d[:, 0] + d[:, 2]) - np.maximum(g[:, 0], d[:, 0]), 0, None)
    height = np.clip(np.minimum(g[:, 1] + g[:, 3], d[:, 1] + d[:, 3]) - np.maximum(g[:, 1], d[:, 1]), 0, None)
    intersection = width * height
    union = g[:, 2] * g[:, 3] + d[:, 2] * d[:, 3] - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, intersection / union, 0.0)


def match_table(gt: GroundTruth, pred: Predictions) -> MatchTable:
    """Match every gold image's predictions (missing predictions = none); see :class:`MatchTable`."""
    unknown = sorted(set(pred) - set(gt))
    if unknown:
        raise ValueError(f"predictions for {len(unknown)} image(s) not in the gold set, e.g. {unknown[0]!r}")
    image_ids = sorted(gt)
    gt_list = [as_boxes(gt[image_id]) for image_id in image_ids]
    dt_list, score_list = [], []
    for image_id in image_ids:
        boxes, scores = pred.get(image_id, (None, None))
        boxes = as_boxes([] if boxes is None else boxes)
        scores = implied_scores(len(boxes)) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(scores) != len(boxes):
            raise ValueError(f"image {image_id!r}: {len(boxes)} boxes but {len(scores)} scores")
        dt_list.append(boxes)
        score_list.append(scores)
    n = len(image_ids)
    n_gt = np.array([len(b) for b in gt_list], dtype=np.int64)
    dt_count = np.array([len(b) for b in dt_list], dtype=np.int64)
    dt_start = np.cumsum(dt_count) - dt_count
    gt_start = np.cumsum(n_gt) - n_gt
    gt_boxes = np.concatenate(gt_list) if n_gt.sum() else np.zeros((0, 4))
    dt_boxes = np.concatenate(dt_list) if dt_count.sum() else np.zeros((0, 4))
    scores = np.concatenate(score_list) if dt_count.sum() else np.zeros(0)
    dt_image = np.repeat(np.arange(n), dt_count)
    # Stable sort by score inside each image (np.lexsort is stable), images stay in order.
    order = np.lexsort((-scores, dt_image))
    dt_boxes, scores = dt_boxes[order], scores[order]
    # All (detection, gold) pairs of each image, detection-major, so an image's pairs reshape to (m, k).
    per_dt_gt = n_gt[dt_image]
    pair_dt = np.repeat(np.arange(len(scores)), per_dt_gt)
    pair_offset = np.arange(len(pair_dt)) - np.repeat(np.cumsum(per_dt_gt) - per_dt_gt, per_dt_gt)
    pair_gt = np.repeat(gt_start[dt_image], per_dt_gt) + pair_offset
    ious = _pair_ious(gt_boxes, dt_boxes, pair_gt, pair_dt)
    pair_count = dt_count * n_gt
    pair_start = np.cumsum(pair_count) - pair_count
    hits = np.concatenate([[0], np.cumsum(ious >= AP_THRESHOLDS.min())])
    reaching = hits[pair_start + pair_count] - hits[pair_start] > 0
    matched = np.zeros((len(AP_THRESHOLDS), len(scores)), dtype=bool)
    tp30 = np.zeros(n, dtype=np.int64)
    tp50 = np.zeros(n, dtype=np.int64)
    for i in np.nonzero(reaching)[0]:
        block = ious[pair_start[i]:pair_start[i] + pair_count[i]].reshape(dt_count[i], n_gt[i])
        matched[:, dt_start[i]:dt_start[i] + dt_count[i]] = coco_match(block)
        tp30[i] = greedy_true_positives(block, 0.3)
        tp50[i] = greedy_true_positives(block, 0.5)
    return MatchTable(image_ids, n_gt, dt_start, dt_count, scores, matched, tp30, tp50)


def _pooled(table: MatchTable, image_indices: np.ndarray | None) -> tuple[int, np.ndarray, np.ndarray]:
    indices = np.arange(len(table.image_ids)) if image_indices is None else np.asarray(image_indices)
    detections = table.detections(indices)
    return int(table.n_gt[indices].sum()), table.scores[detections], table.matched[:, detections]


def _interpolated_precision(matched: np.ndarray, scores: np.ndarray, n_gt: int) -> np.ndarray:
    """``(T, 101)`` interpolated precision at the recall points, pycocotools' accumulate()."""
    out = np.zeros((matched.shape[0], len(RECALL_POINTS)))
    if len(scores) == 0:
        return out
    matched = matched[:, np.argsort(-scores, kind="mergesort")]
    tp = np.cumsum(matched, axis=1, dtype=np.float64)
    fp = np.cumsum(~matched, axis=1, dtype=np.float64)
    recall = tp / n_gt
    precision = tp / (tp + fp + np.spacing(1))
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    for t in range(matched.shape[0]):
        positions = np.searchsorted(recall[t], RECALL_POINTS, side="left")
        valid = positions < recall.shape[1]
        out[t, valid] = precision[t, positions[valid]]
    return out


def average_precision(table: MatchTable, image_indices: np.ndarray | None = None) -> np.ndarray:
    """101-point interpolated AP at each of ``AP_THRESHOLDS`` over the chosen images (nan without gold)."""
    n_gt, scores, matched = _pooled(table, image_indices)
    if n_gt == 0:
        return np.full(len(AP_THRESHOLDS), np.nan)
    return _interpolated_precision(matched, scores, n_gt).mean(axis=1)


def summarise(table: MatchTable, image_indices: np.ndarray | None = None) -> dict[str, float]:
    """The localisation metrics over the chosen images (all by default; repeats allowed)."""
    indices = np.arange(len(table.image_ids)) if image_indices is None else np.asarray(image_indices)
    ap = average_precision(table, indices)
    n_gt = int(table.n_gt[indices].sum())
    n_pred = int(table.dt_count[indices].sum())
    tp30, tp50 = int(table.tp30[indices].sum()), int(table.tp50[indices].sum())
    fp30, fp50, fn50 = n_pred - tp30, n_pred - tp50, n_gt - tp50
    return {
        "map30": float(ap[0]),
        "map50": float(ap[1]),
        "map50_95": float(ap[1:].mean()),
        "acc50": tp50 / (tp50 + fp50 + fn50) if tp50 + fp50 + fn50 else float("nan"),
        "tp30": tp30,
        "fp30": fp30,
        "fnr50": fn50 / n_gt if n_gt else float("nan"),
        "n_images": int(len(indices)),
        "n_gt": n_gt,
        "n_pred": n_pred,
    }


def localisation_metrics(gt: GroundTruth, pred: Predictions) -> dict[str, float]:
    """NOVA localisation metrics.

    ``gt``: image id -> ``(k, 4)`` gold ``[x, y, w, h]`` boxes (``k`` may be 0). ``pred``: image id
    -> ``(boxes (m, 4), scores (m,) or None)``; images absent from ``pred`` have no prediction.
    Returns ``map30``, ``map50``, ``map50_95``, ``acc50``, ``tp30``, ``fp30``, ``fnr50`` (and the
    counts ``n_images``, ``n_gt``, ``n_pred``). AP values equal pycocotools' (see module docstring).
    """
    return summarise(match_table(gt, pred))


def precision_recall_curve(table: MatchTable, threshold_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated precision at the 101 recall points for one AP threshold (default IoU 0.3)."""
    n_gt, scores, matched = _pooled(table, None)
    if n_gt == 0:
        return RECALL_POINTS.copy(), np.zeros(len(RECALL_POINTS))
    return RECALL_POINTS.copy(), _interpolated_precision(matched[threshold_index:threshold_index + 1], scores, n_gt)[0]


# --------------------------------------------------------------------------- bootstrap
def bootstrap_intervals(
    statistic: Callable[[np.ndarray], Mapping[str, float]],
    n_units: int,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of several statistics computed together.

    Each resample draws ``n_units`` unit indices with replacement; ``statistic`` receives them
    (with repeats) and returns named numbers. Non-finite values of a resample are left out of
    that statistic's interval. Returns ``{name: (low, high)}`` (nan when nothing was finite).
    """
    if n_units == 0 or n_resamples == 0:
        return {}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n_resamples):
        for name, value in statistic(rng.integers(0, n_units, n_units)).items():
            draws.setdefault(name, []).append(float(value))
    tail = (1.0 - confidence) / 2.0 * 100.0
    intervals = {}
    for name, values in draws.items():
        finite = np.asarray(values)[np.isfinite(values)]
        if len(finite) == 0:
            intervals[name] = (float("nan"), float("nan"))
        else:
            low, high = np.percentile(finite, [tail, 100.0 - tail])
            intervals[name] = (float(low), float(high))
    return intervals


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    n_units: int,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of one statistic of ``unit_indices`` (see :func:`bootstrap_intervals`)."""
    intervals = bootstrap_intervals(lambda indices: {"value": statistic(indices)}, n_units, n_resamples, confidence, seed)
    return intervals.get("value", (float("nan"), float("nan")))


def grouped_indices(groups: Sequence[str]) -> tuple[list[str], list[np.ndarray]]:
    """Unique group labels (sorted) and, per group, the item indices that belong to it."""
    labels = np.asarray(groups, dtype=object)
    unique = sorted(set(labels.tolist()))
    return unique, [np.nonzero(labels == label)[0] for label in unique]


def mean_statistic(values: np.ndarray) -> Callable[[np.ndarray], float]:
    """``indices -> mean(values[indices])``, nan-aware."""
    values = np.asarray(values, dtype=float)

    def statistic(indices: np.ndarray) -> float:
        chosen = values[indices]
        chosen = chosen[np.isfinite(chosen)]
        return float(chosen.mean()) if len(chosen) else float("nan")

    return statistic
