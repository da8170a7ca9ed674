"""From generated answers to scored boxes: parsing, AG-KD's fuzzy class matching, mAP with intervals."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from difflib import get_close_matches

import numpy as np
import pandas as pd

from stages.common.metrics.detection import (
    COCO_IOU_THRESHOLDS,
    BoxSet,
    DetectionResult,
    accumulate,
    match_detections,
)
from stages.common.stats import bootstrap_intervals
from stages.grounding.tokens import decode

THRESHOLDS = COCO_IOU_THRESHOLDS  # 0.5, 0.55, ..., 0.95: mAP50, mAP75 and mAP50:95 from one matching


def match_class(phrase: str, class_names: Sequence[str], cutoff: float) -> str | None:
    """AG-KD's post-processing: the closest class name by difflib (``cutoff`` 0.5), or None."""
    found = get_close_matches(phrase.lower(), list(class_names), n=1, cutoff=cutoff)
    return found[0] if found else None


def xywh(box: Sequence[float]) -> list[float]:
    x1, y1, x2, y2 = box
    return [x1, y1, x2 - x1, y2 - y1]


@dataclass(frozen=True)
class ParsedAnswers:
    """Every predicted box as (sample, class, COCO box) and, per sample, what did not parse or match."""

    boxes: pd.DataFrame      # sample, category, x, y, w, h
    per_sample: pd.DataFrame  # sample, predicted, unparsed, unmatched, no_box


def parse_answers(answers: pd.DataFrame, class_names: Sequence[str], cutoff: float, assign_queried_class: bool) -> ParsedAnswers:
    """``answers`` has sample, class_name, answer, width, height.

    ``assign_queried_class`` False is AG-KD's protocol (each phrase matched to a class name); True
    (ours) labels every box with the queried class, for a model that cannot spell a name it never
    produced in training (a from-scratch decoder has no way to copy an unseen class's name).
    """
    boxes, samples = [], []
    for row in answers.itertuples(index=False):
        decoded = decode(row.answer, row.width, row.height)
        unmatched = 0
        for phrase, box in decoded:
            category = row.class_name if assign_queried_class else match_class(phrase, class_names, cutoff)
            if category is None:
                unmatched += 1
                continue
            boxes.append({"sample": row.sample, "category": category, **dict(zip("xywh", xywh(box), strict=True))})
        samples.append({"sample": row.sample, "predicted": len(decoded) - unmatched, "unparsed": decoded.unparsed,
                        "unmatched": unmatched, "no_box": len(decoded) == 0})
    return ParsedAnswers(pd.DataFrame(boxes, columns=["sample", "category", "x", "y", "w", "h"]), pd.DataFrame(samples))


def gold_boxes(queries: pd.DataFrame) -> BoxSet:
    import json

    rows = [(q.sample, q.class_name, xywh(box)) for q in queries.itertuples(index=False) for box in json.loads(q.boxes)]
    return BoxSet(np.array([r[0] for r in rows], dtype=object), np.array([r[1] for r in rows], dtype=object),
                  np.array([r[2] for r in rows], dtype=np.float64).reshape(-1, 4))


@dataclass(frozen=True)
class Scores:
    result: DetectionResult
    off_scope: int                          # predicted boxes of a class outside the scored ones (false positives there)
    intervals: dict[str, tuple[float, float]]

    def summary(self) -> dict[str, float]:
        return {"map50": self.result.mean_ap(0.5), "map75": self.result.mean_ap(0.75),
                "map50_95": self.result.mean_ap(THRESHOLDS)}


def score(queries: pd.DataFrame, boxes: pd.DataFrame, resamples: int, seed: int) -> Scores:
    """AP over (sample, class) pairs: every sample of ``queries`` with every class holding gold among them,
    as supervision's MeanAveragePrecision over AG-KD's samples. Confidence 1.0 for every box; boxes of
    other classes on these samples are counted (``off_scope``) and left out. Intervals: bootstrap over samples."""
    categories = sorted(queries.class_name.unique())
    samples = sorted(queries["sample"].unique())
    in_scope = boxes[boxes["sample"].isin(samples)]
    kept = in_scope[in_scope.category.isin(categories)]
    detections = BoxSet(kept["sample"].to_numpy(dtype=object), kept.category.to_numpy(dtype=object),
                        kept[["x", "y", "w", "h"]].to_numpy(dtype=np.float64).reshape(-1, 4), np.ones(len(kept)))
    table = match_detections(gold_boxes(queries), detections, THRESHOLDS, images=samples, categories=categories)
    per_sample = [np.nonzero(table.query_image == i)[0] for i in range(len(table.images))]

    def statistic(drawn: np.ndarray) -> dict[str, float]:
        result = accumulate(table, np.concatenate([per_sample[i] for i in drawn]))
        return {"map50": result.mean_ap(0.5), "map75": result.mean_ap(0.75), "map50_95": result.mean_ap(THRESHOLDS)}

    intervals = bootstrap_intervals(statistic, len(samples), resamples, seed=seed) if resamples else {}
    return Scores(accumulate(table), len(in_scope) - len(kept), intervals)


def chance_boxes(queries: pd.DataFrame, reference: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Chance: per query one box of a random training box's size at a uniformly random place, of the queried class."""
    import json

    sizes = np.array([[b[2] - b[0], b[3] - b[1]] for boxes in reference.boxes for b in json.loads(boxes)])
    rows = []
    for q in queries.itertuples(index=False):
        w, h = sizes[rng.integers(len(sizes))]
        x, y = rng.uniform(0, q.width - w), rng.uniform(0, q.height - h)
        rows.append({"sample": q.sample, "category": q.class_name, "x": x, "y": y, "w": w, "h": h})
    return pd.DataFrame(rows, columns=["sample", "category", "x", "y", "w", "h"])
