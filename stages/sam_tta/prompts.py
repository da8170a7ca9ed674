"""Prompts from ground truth, as the official code builds them: one tight box per instance, or points.

An instance is one distinct non-zero label value of the mask (the repo's ``decode_mask``); its
box is the tight ``[x0, y0, x1, y1]`` of its pixels with no margin (``cv2.boundingRect`` with
``expand_ratio=0``: x1 = max column + 1). Points: 5 positive inside the instance, 5 negative
outside it, drawn uniformly.
"""
from __future__ import annotations

import numpy as np

MAX_INSTANCES = 40
POSITIVE_POINTS = 5
NEGATIVE_POINTS = 5


def instance_labels(mask: np.ndarray, max_instances: int = MAX_INSTANCES) -> list[int]:
    """The distinct non-zero label values of ``mask`` in ascending order, at most ``max_instances``."""
    values = np.unique(np.asarray(mask))
    return [v.item() for v in values[values != 0]][:max_instances]


def instance_masks(mask: np.ndarray, max_instances: int = MAX_INSTANCES) -> np.ndarray:
    """``(N, H, W)`` boolean masks, one per distinct non-zero label value."""
    mask = np.asarray(mask)
    labels = instance_labels(mask, max_instances)
    if not labels:
        return np.zeros((0, *mask.shape), dtype=bool)
    return np.stack([mask == label for label in labels])


def boxes_from_mask(mask: np.ndarray, max_instances: int = MAX_INSTANCES) -> np.ndarray:
    """``(N, 4)`` float boxes ``[x0, y0, x1, y1]`` (x along columns), one per distinct non-zero label."""
    boxes = []
    for instance in instance_masks(mask, max_instances):
        rows = np.flatnonzero(instance.any(axis=1))
        cols = np.flatnonzero(instance.any(axis=0))
        boxes.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def points_from_mask(instance: np.ndarray, rng: np.random.Generator, positive: int = POSITIVE_POINTS,
                     negative: int = NEGATIVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """``(positive + negative, 2)`` ``(x, y)`` points and their labels (1 inside, 0 outside), drawn uniformly.

    Pixels are drawn with replacement when the instance (or background) has fewer pixels than asked.
    """
    instance = np.asarray(instance, dtype=bool)
    inside = np.argwhere(instance)
    outside = np.argwhere(~instance)
    if len(inside) == 0 or len(outside) == 0:
        raise ValueError("points_from_mask needs both foreground and background pixels")
    chosen_in = inside[rng.choice(len(inside), positive, replace=len(inside) < positive)]
    chosen_out = outside[rng.choice(len(outside), negative, replace=len(outside) < negative)]
    yx = np.concatenate([chosen_in, chosen_out])
    labels = np.concatenate([np.ones(positive), np.zeros(negative)]).astype(np.int64)
    return yx[:, ::-1].astype(np.float32) + 0.5, labels


def jitter_boxes(boxes: np.ndarray, rng: np.random.Generator, fraction: float, size: int) -> np.ndarray:
    """Boxes moved by up to ``fraction`` of their side per coordinate (SAM-style box noise for pretraining; ours)."""
    if fraction == 0 or len(boxes) == 0:
        return boxes
    sides = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, axis=1)
    noisy = boxes + rng.uniform(-fraction, fraction, size=boxes.shape) * sides
    return np.clip(noisy, 0, size).astype(np.float32)
