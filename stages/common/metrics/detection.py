"""COCO-exact average precision for box detections: matching, accumulation, precision-recall curves.

``evaluate_detections(ground_truth, detections, iou_thresholds)`` scores boxes of any number of
images and categories and equals pycocotools' ``COCOeval`` (``iouType="bbox"``, area range
"all", ``maxDets`` = ``max_detections`` or unlimited, no crowd boxes) on the same inputs: the
tests compare to 1e-12 on random multi-image, multi-class cases. It runs in two steps, as
pycocotools does, so that a caller may resample (bootstrap) without matching again:

- :func:`match_detections` (COCO's ``evaluate``): per query, i.e. per (image, category) pair,
  detections are sorted by decreasing score with a stable sort (equal scores keep input order)
  and, after the first ``max_detections``, dropped. At each IoU threshold ``t`` every detection
  in turn takes the still-unmatched gold box of highest IoU with IoU >= min(t, 1 - 1e-10);
  among gold boxes of equal IoU the later one in input order wins (pycocotools' ``<`` test).
- :func:`accumulate` (COCO's ``accumulate``): per category, the detections of its queries are
  pooled in query order (images in sorted order) and stably sorted by decreasing score again,
  so equal scores across images keep sorted-image order, then within-image order. Precision is
  made monotone from the right and read at the 101 recall points 0, 0.01, ..., 1 with
  ``searchsorted(side="left")``; a recall point beyond the last recall reached reads 0.

Deterministic ties, stated once: equal scores are ordered by image (sorted ids), then by the
order detections were given; equal IoUs go to the later gold box.

Without scores (``BoxSet.scores is None``) each query's detections are taken to be listed most
confident first: the detection at list position ``i`` of its query gets score ``1 / (1 + i)``
(:func:`implied_scores`), so equal positions in different images tie and keep image order.

Which (image, category) pairs are scored: by default every image of ``images`` (default: the
images holding a gold box) with every category of ``categories`` (default: those of the gold
boxes), as pycocotools scores every image id with every category id. A detection on such an
image without a gold box of its category is a false positive. ``queries`` scores only the given
pairs instead (phrase grounding asks for some classes per image). A gold box or detection outside
the scored pairs is refused (ValueError), never dropped. A category without gold boxes has AP
``nan`` (pycocotools: -1); means over categories leave it out, as pycocotools' summary does.

Boxes are COCO ``[x, y, w, h]``; IoU is pycocotools' (areas ``w * h``, no "+1" pixel, boxes
that only touch have IoU 0).
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_POINTS = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1, endpoint=True)
Label = Hashable  # an image id or a category: str or int, sortable among its kind


@dataclass(frozen=True)
class GroundTruth:
    """One gold box: COCO ``[x, y, w, h]`` on image ``image_id``, of ``category``."""

    image_id: Label
    category: Label
    box: Sequence[float]


@dataclass(frozen=True)
class Detection:
    """One predicted box; ``score`` None means "ranked by list position" (see module docstring)."""

    image_id: Label
    category: Label
    box: Sequence[float]
    score: float | None = None


@dataclass(frozen=True)
class BoxSet:
    """Boxes as columns: ``image_ids`` (n,), ``categories`` (n,), ``boxes`` (n, 4), ``scores`` (n,) or None."""

    image_ids: np.ndarray
    categories: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float64)
        boxes = boxes.reshape(0, 4) if boxes.size == 0 else boxes
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes must have shape (n, 4), got {boxes.shape}")
        bad = ~np.isfinite(boxes).all(axis=1) | (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
        if bad.any():
            row = int(np.nonzero(bad)[0][0])
            raise ValueError(f"box {row} {boxes[row].tolist()}: [x, y, w, h] must be finite with w, h >= 0")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "image_ids", _labels(self.image_ids, len(boxes), "image_ids"))
        object.__setattr__(self, "categories", _labels(self.categories, len(boxes), "categories"))
        if self.scores is not None:
            scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
            if len(scores) != len(boxes):
                raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
            if not np.isfinite(scores).all():
                raise ValueError(f"score {scores[~np.isfinite(scores)][0]} of box {int(np.nonzero(~np.isfinite(scores))[0][0])} is not finite")
            object.__setattr__(self, "scores", scores)

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def from_records(cls, records: Iterable[GroundTruth | Detection]) -> BoxSet:
        """Columns of :class:`GroundTruth` or :class:`Detection` records (scores all given or all None)."""
        records = list(records)
        scores = [getattr(r, "score", None) for r in records]
        given = [s is not None for s in scores]
        if any(given) and not all(given):
            first = given.index(False)
            raise ValueError(f"detection {first} ({records[first].image_id!r}, {records[first].category!r}) has no score "
                             "while others have: give every score or none")
        return cls(np.array([r.image_id for r in records], dtype=object), np.array([r.category for r in records], dtype=object),
                   np.array([list(r.box) for r in records], dtype=np.float64).reshape(-1, 4),
                   np.array(scores, dtype=np.float64) if records and all(given) else None)

    @classmethod
    def from_images(cls, boxes_per_image: dict, category: Label = 0, scores_per_image: dict | None = None) -> BoxSet:
        """One category's boxes from ``{image_id: (k, 4) boxes}`` (and ``{image_id: (k,) scores}``)."""
        ids = list(boxes_per_image)
        arrays = [np.asarray(boxes_per_image[i], dtype=np.float64).reshape(-1, 4) for i in ids]
        counts = [len(a) for a in arrays]
        image_ids = np.repeat(_labels(ids, len(ids), "image_ids"), counts)
        scores = None
        if scores_per_image is not None:
            scores = np.concatenate([np.asarray(scores_per_image[i], dtype=np.float64).reshape(-1) for i in ids] or [np.zeros(0)])
        return cls(image_ids, _labels([category], 1, "category").repeat(len(image_ids)),
                   np.concatenate(arrays) if arrays else np.zeros((0, 4)), scores)


def _labels(values, n: int, name: str) -> np.ndarray:
    """Labels as a numpy str or int array where they all are one of those (fast lookups), else objects."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "Uiu":
        array = values.reshape(-1)
    else:
        values = list(values)
        kinds = {type(v) for v in values}
        if kinds and (kinds <= {str, np.str_} or all(issubclass(k, (int, np.integer)) and not issubclass(k, bool) for k in kinds)):
            array = np.asarray(values)
        else:
            array = np.empty(len(values), dtype=object)
            array[:] = values
    if len(array) != n:
        raise ValueError(f"{name}: {len(array)} values for {n} boxes")
    return array


def implied_scores(count: int) -> np.ndarray:
    """Scores for detections given without any: list position ``i`` -> ``1 / (1 + i)``."""
    return 1.0 / (1.0 + np.arange(count, dtype=np.float64))


def pair_ious(gt_boxes: np.ndarray, dt_boxes: np.ndarray) -> np.ndarray:
    """IoU of row-aligned (gold, detection) pairs of ``[x, y, w, h]`` boxes, pycocotools' definition."""
    g, d = gt_boxes, dt_boxes
    width = np.clip(np.minimum(g[:, 0] + g[:, 2], d[:, 0] + d[:, 2]) - np.maximum(g[:, 0], d[:, 0]), 0, None)
    height = np.clip(np.minimum(g[:, 1] + g[:, 3], d[:, 1] + d[:, 3]) - np.maximum(g[:, 1], d[:, 1]), 0, None)
    intersection = width * height
    union = g[:, 2] * g[:, 3] + d[:, 2] * d[:, 3] - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, intersection / union, 0.0)


def coco_match(ious: np.ndarray, iou_thresholds: np.ndarray) -> np.ndarray:
    """pycocotools' matching of one query: ``(T, m)`` bool; the ``m`` rows of ``ious`` (m, k) are in score order."""
    m, k = ious.shape
    thresholds = np.asarray(iou_thresholds, dtype=np.float64)
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
        values = np.where(candidate, row, -1.0)[:, ::-1]  # reversed: argmax's first maximum is the last gold box
        chosen = k - 1 - values.argmax(axis=1)
        rows = np.nonzero(found)[0]
        taken[rows, chosen[rows]] = True
        matched[rows, d] = True
    return matched


@dataclass(frozen=True)
class MatchTable:
    """COCO's ``evaluate`` output, computed once; resampling queries only recombines it.

    Queries (image, category) are ordered by category, then image (both sorted). Each query's
    kept detections are contiguous (``dt_start``, ``dt_count``) in score order; ``matched[t, d]``:
    detection ``d`` matched a gold box at ``iou_thresholds[t]``. ``dt_source[d]`` is the
    detection's row in the input :class:`BoxSet`. ``ious`` holds every (detection, gold) pair's
    IoU, query by query, detection-major (see :meth:`iou_block`).
    """

    iou_thresholds: np.ndarray   # (T,)
    images: list                 # sorted
    categories: list             # sorted
    query_image: np.ndarray      # (Q,) index into images
    query_category: np.ndarray   # (Q,) index into categories
    n_gt: np.ndarray             # (Q,)
    dt_start: np.ndarray         # (Q,)
    dt_count: np.ndarray         # (Q,)
    scores: np.ndarray           # (D,)
    matched: np.ndarray          # (T, D) bool
    dt_source: np.ndarray        # (D,)
    ious: np.ndarray             # (P,)
    pair_start: np.ndarray       # (Q,)
    n_dropped: int               # detections beyond max_detections of their query

    def detections(self, query_indices: np.ndarray) -> np.ndarray:
        """Detection indices of the given queries, in the given order (repeats allowed)."""
        query_indices = np.asarray(query_indices, dtype=np.int64)
        counts = self.dt_count[query_indices]
        total = int(counts.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64)
        starts = np.repeat(self.dt_start[query_indices], counts)
        offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        return starts + offsets

    def iou_block(self, query: int) -> np.ndarray:
        """``(dt_count, n_gt)`` IoUs of one query: rows detections in score order, columns gold boxes in input order."""
        start, m, k = int(self.pair_start[query]), int(self.dt_count[query]), int(self.n_gt[query])
        return self.ious[start:start + m * k].reshape(m, k)

    def queries_reaching(self, iou: float) -> np.ndarray:
        """Queries with at least one (detection, gold) pair of IoU >= ``iou``."""
        hits = np.concatenate([[0], np.cumsum(self.ious >= iou)])
        count = self.dt_count * self.n_gt
        return np.nonzero(hits[self.pair_start + count] - hits[self.pair_start] > 0)[0]

    def query_index(self, image_id: Label, category: Label) -> int:
        """Position of the (image, category) query; KeyError if it is not scored."""
        image, category_index = self.images.index(image_id), self.categories.index(category)
        found = np.nonzero((self.query_image == image) & (self.query_category == category_index))[0]
        if len(found) == 0:
            raise KeyError(f"({image_id!r}, {category!r}) is not a scored query")
        return int(found[0])


@dataclass(frozen=True)
class DetectionResult:
    """COCO's ``accumulate`` output with per-class and mean AP.

    ``precision[t, r, k]``: interpolated precision at ``recall_points[r]``, IoU ``iou_thresholds[t]``,
    category ``categories[k]``; ``recall[t, k]``: the recall reached; ``ap[t, k]`` = mean over r.
    All three are nan for a category without gold boxes.
    """

    iou_thresholds: np.ndarray  # (T,)
    categories: list            # (K,)
    recall_points: np.ndarray   # (R,)
    precision: np.ndarray       # (T, R, K)
    recall: np.ndarray          # (T, K)
    ap: np.ndarray              # (T, K)
    n_gt: np.ndarray            # (K,)
    n_detections: np.ndarray    # (K,)

    def threshold_index(self, iou: float) -> int:
        found = np.nonzero(np.isclose(self.iou_thresholds, iou, rtol=0, atol=1e-9))[0]
        if len(found) == 0:
            raise KeyError(f"IoU {iou} was not evaluated (thresholds {self.iou_thresholds.tolist()})")
        return int(found[0])

    def _rows(self, iou: float | Sequence[float] | None) -> np.ndarray:
        if iou is None:
            return self.ap
        wanted = np.atleast_1d(np.asarray(iou, dtype=np.float64))
        return self.ap[[self.threshold_index(float(t)) for t in wanted]]

    def mean_ap(self, iou: float | Sequence[float] | None = None) -> float:
        """mAP at one IoU threshold, over several (``COCO_IOU_THRESHOLDS``: mAP50:95), or over all evaluated
        (None): the mean over (threshold, category) cells of categories with gold boxes, as pycocotools'
        summary. nan if there are none."""
        rows = self._rows(iou)
        finite = rows[np.isfinite(rows)]
        return float(finite.mean()) if len(finite) else float("nan")

    def class_ap(self, iou: float | Sequence[float] | None = None) -> dict:
        """``{category: AP}`` at one IoU threshold, or averaged over several / all evaluated (None); nan without gold."""
        rows = self._rows(iou)
        return {c: float(rows[:, k].mean()) for k, c in enumerate(self.categories)}

    def curve(self, iou: float, category: Label | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(recall_points, interpolated precision)`` at one IoU for one category, or (None) the mean
        over categories with gold boxes (zeros when there are none)."""
        t = self.threshold_index(iou)
        if category is not None:
            return self.recall_points.copy(), self.precision[t, :, self.categories.index(category)].copy()
        curves = self.precision[t][:, np.isfinite(self.ap[t])]
        return self.recall_points.copy(), curves.mean(axis=1) if curves.shape[1] else np.zeros(len(self.recall_points))


def _as_box_set(boxes: BoxSet | Sequence[GroundTruth] | Sequence[Detection]) -> BoxSet:
    return boxes if isinstance(boxes, BoxSet) else BoxSet.from_records(boxes)


def _codes(values: np.ndarray, labels: list, what: str, side: str) -> np.ndarray:
    """Each value's position in the sorted ``labels``; ValueError naming the first box whose value is not there."""
    known = np.asarray(labels) if labels else np.zeros(0, dtype=values.dtype)
    if values.dtype.kind in "Uiu" and known.dtype.kind == values.dtype.kind:
        codes = np.minimum(np.searchsorted(known, values), max(len(known) - 1, 0)).astype(np.int64)
        missing = np.nonzero(known[codes] != values)[0] if len(known) else np.arange(len(values))
        if len(missing) == 0:
            return codes
        row = int(missing[0])
        raise ValueError(f"{side} box {row}: {what} {_plain(values[row])!r} is not among the scored {what}s")
    index = {label: i for i, label in enumerate(labels)}
    codes = np.empty(len(values), dtype=np.int64)
    for row, value in enumerate(values):
        code = index.get(value)
        if code is None:
            raise ValueError(f"{side} box {row}: {what} {value!r} is not among the scored {what}s")
        codes[row] = code
    return codes


def _plain(value):
    """A numpy scalar label as the Python value it holds (str, int), for lists and messages."""
    return value.item() if isinstance(value, np.generic) else value


def _sorted_labels(values: Iterable, what: str) -> list:
    if isinstance(values, np.ndarray) and values.dtype.kind in "Uiu":
        return np.unique(values).tolist()
    try:
        return sorted({_plain(v) for v in values})
    except TypeError as error:
        raise ValueError(f"{what}s must be mutually sortable (all str or all int): {error}") from None


def match_detections(
    ground_truth: BoxSet | Sequence[GroundTruth],
    detections: BoxSet | Sequence[Detection],
    iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS,
    *,
    images: Iterable[Label] | None = None,
    categories: Iterable[Label] | None = None,
    queries: Iterable[tuple[Label, Label]] | None = None,
    max_detections: int | None = None,
) -> MatchTable:
    """COCO's ``evaluate`` step for every scored (image, category) query (see the module docstring)."""
    gt, dt = _as_box_set(ground_truth), _as_box_set(detections)
    thresholds = np.asarray(iou_thresholds, dtype=np.float64).reshape(-1)
    if len(thresholds) == 0 or not ((thresholds >= 0) & (thresholds <= 1)).all():
        raise ValueError(f"IoU thresholds must be a non-empty list in [0, 1], got {thresholds.tolist()}")
    if max_detections is not None and max_detections < 1:
        raise ValueError(f"max_detections must be >= 1 or None, got {max_detections}")
    if queries is not None:
        if images is not None or categories is not None:
            raise ValueError("give either queries or images/categories, not both")
        pairs = [(_plain(i), _plain(c)) for i, c in queries]
        image_list = _sorted_labels((i for i, _ in pairs), "image")
        category_list = _sorted_labels((c for _, c in pairs), "category")
    else:
        image_list = _sorted_labels(gt.image_ids if images is None else images, "image")
        category_list = _sorted_labels(gt.categories if categories is None else categories, "category")
    n_images = len(image_list)
    gt_query_code = _codes(gt.categories, category_list, "category", "gold") * n_images + _codes(gt.image_ids, image_list, "image", "gold")
    dt_query_code = _codes(dt.categories, category_list, "category", "detection") * n_images + _codes(dt.image_ids, image_list, "image", "detection")
    if queries is not None:
        image_index = {v: i for i, v in enumerate(image_list)}
        category_index = {v: i for i, v in enumerate(category_list)}
        query_codes = np.unique(np.array([category_index[c] * n_images + image_index[i] for i, c in pairs], dtype=np.int64))
        for side, codes in (("gold", gt_query_code), ("detection", dt_query_code)):
            outside = ~np.isin(codes, query_codes)
            if outside.any():
                row = int(np.nonzero(outside)[0][0])
                source = gt if side == "gold" else dt
                raise ValueError(f"{side} box {row} ({_plain(source.image_ids[row])!r}, {_plain(source.categories[row])!r}) is not a scored query")
    else:
        query_codes = np.arange(len(category_list) * n_images, dtype=np.int64)
    n_queries = len(query_codes)
    gt_query = np.searchsorted(query_codes, gt_query_code)
    dt_query = np.searchsorted(query_codes, dt_query_code)

    # Gold boxes grouped by query, input order kept (stable sort).
    gt_order = np.argsort(gt_query, kind="stable")
    gt_boxes, gt_query = gt.boxes[gt_order], gt_query[gt_order]
    n_gt = np.bincount(gt_query, minlength=n_queries).astype(np.int64)
    gt_start = np.cumsum(n_gt) - n_gt

    # Detections grouped by query, by decreasing score (stable: input order on ties).
    rows = np.arange(len(dt))
    if dt.scores is None:
        by_query = np.argsort(dt_query, kind="stable")
        counts = np.bincount(dt_query, minlength=n_queries)
        position = np.empty(len(dt), dtype=np.int64)
        position[by_query] = rows - np.repeat(np.cumsum(counts) - counts, counts)
        scores = 1.0 / (1.0 + position)
    else:
        scores = dt.scores
    dt_order = np.lexsort((rows, -scores, dt_query))
    dt_query_sorted = dt_query[dt_order]
    counts = np.bincount(dt_query_sorted, minlength=n_queries)
    if max_detections is not None:
        rank = np.arange(len(dt_order)) - np.repeat(np.cumsum(counts) - counts, counts)
        keep = rank < max_detections
        dt_order, dt_query_sorted = dt_order[keep], dt_query_sorted[keep]
    n_dropped = len(dt) - len(dt_order)
    dt_boxes, scores = dt.boxes[dt_order], scores[dt_order]
    dt_count = np.bincount(dt_query_sorted, minlength=n_queries).astype(np.int64)
    dt_start = np.cumsum(dt_count) - dt_count

    # All (detection, gold) pairs of each query, detection-major, so a query's pairs reshape to (m, k).
    per_dt_gt = n_gt[dt_query_sorted]
    pair_dt = np.repeat(np.arange(len(scores)), per_dt_gt)
    pair_offset = np.arange(len(pair_dt)) - np.repeat(np.cumsum(per_dt_gt) - per_dt_gt, per_dt_gt)
    pair_gt = np.repeat(gt_start[dt_query_sorted], per_dt_gt) + pair_offset
    ious = pair_ious(gt_boxes[pair_gt], dt_boxes[pair_dt])
    pair_count = dt_count * n_gt
    pair_start = np.cumsum(pair_count) - pair_count
    matched = np.zeros((len(thresholds), len(scores)), dtype=bool)
    table = MatchTable(thresholds, image_list, category_list, query_codes % max(n_images, 1), query_codes // max(n_images, 1),
                       n_gt, dt_start, dt_count, scores, matched, dt_order, ious, pair_start, n_dropped)
    lowest = float(np.minimum(thresholds, 1 - 1e-10).min())
    for q in table.queries_reaching(lowest):
        matched[:, dt_start[q]:dt_start[q] + dt_count[q]] = coco_match(table.iou_block(q), thresholds)
    return table


def interpolated_precision(matched: np.ndarray, scores: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' accumulate for one category's pooled detections: ``((T, R) precision, (T,) recall)``.

    ``matched`` (T, D) and ``scores`` (D,) in pooling order; sorted here by decreasing score (stable).
    """
    precision_out = np.zeros((matched.shape[0], len(RECALL_POINTS)))
    if len(scores) == 0:
        return precision_out, np.zeros(matched.shape[0])
    matched = matched[:, np.argsort(-scores, kind="mergesort")]
    tp = np.cumsum(matched, axis=1, dtype=np.float64)
    fp = np.cumsum(~matched, axis=1, dtype=np.float64)
    recall = tp / n_gt
    precision = tp / (tp + fp + np.spacing(1))
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    for t in range(matched.shape[0]):
        positions = np.searchsorted(recall[t], RECALL_POINTS, side="left")
        valid = positions < recall.shape[1]
        precision_out[t, valid] = precision[t, positions[valid]]
    return precision_out, recall[:, -1].copy()


def accumulate(table: MatchTable, query_indices: np.ndarray | None = None) -> DetectionResult:
    """COCO's ``accumulate`` over the chosen queries (all by default; any order, repeats allowed).

    Each category pools the detections of its chosen queries in the order given.
    """
    indices = np.arange(len(table.n_gt)) if query_indices is None else np.asarray(query_indices, dtype=np.int64)
    n_thresholds, n_categories = len(table.iou_thresholds), len(table.categories)
    precision = np.full((n_thresholds, len(RECALL_POINTS), n_categories), np.nan)
    recall = np.full((n_thresholds, n_categories), np.nan)
    ap = np.full((n_thresholds, n_categories), np.nan)
    n_gt = np.zeros(n_categories, dtype=np.int64)
    n_detections = np.zeros(n_categories, dtype=np.int64)
    chosen_category = table.query_category[indices]
    for k in range(n_categories):
        queries = indices[chosen_category == k] if n_categories > 1 else indices
        detections = table.detections(queries)
        n_gt[k], n_detections[k] = int(table.n_gt[queries].sum()), len(detections)
        if n_gt[k] == 0:
            continue
        category_precision, recall[:, k] = interpolated_precision(table.matched[:, detections], table.scores[detections], int(n_gt[k]))
        precision[:, :, k] = category_precision
        ap[:, k] = category_precision.mean(axis=1)
    return DetectionResult(table.iou_thresholds.copy(), list(table.categories), RECALL_POINTS.copy(), precision, recall, ap,
                           n_gt, n_detections)


def evaluate_detections(
    ground_truth: BoxSet | Sequence[GroundTruth],
    detections: BoxSet | Sequence[Detection],
    iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS,
    *,
    images: Iterable[Label] | None = None,
    categories: Iterable[Label] | None = None,
    queries: Iterable[tuple[Label, Label]] | None = None,
    max_detections: int | None = None,
) -> DetectionResult:
    """AP, precision-recall curves and recall per IoU threshold and category, equal to pycocotools'.

    ``result.mean_ap(0.5)`` is mAP50, ``result.mean_ap(COCO_IOU_THRESHOLDS)`` mAP50:95 (with the default
    thresholds also ``result.mean_ap()``), ``result.class_ap(0.75)`` the per-class AP75 and
    ``result.class_ap(COCO_IOU_THRESHOLDS)`` the per-class AP50:95. See the module docstring for ties and scope.
    """
    return accumulate(match_detections(ground_truth, detections, iou_thresholds, images=images, categories=categories,
                                       queries=queries, max_detections=max_detections))
