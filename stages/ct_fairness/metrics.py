"""Dice and HD95 per organ, HD95 in mm with the voxel spacing, MONAI's semantics (stages.common.metrics.segmentation).

HD95 follows MONAI's ``compute_hausdorff_distance(percentile=95)``, which ct_fairness has always
reported: the larger of the two directed 95th-percentile surface distances (prediction to truth,
truth to prediction), not medpy's 95th percentile of both sets pooled.

An organ the model missed (present in the truth, absent from the prediction) gets the worst-case
HD95: the image diagonal in mm (MetricsReloaded's recommendation), so a model that misses organs
is not made to look better by dropping them (a NaN would be left out of the gaps).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from stages.common.metrics.segmentation import per_class_scores
from stages.ct_fairness.organs import NUM_CLASSES


def image_diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Length in mm of the diagonal of an image of ``shape`` voxels of ``spacing`` mm (the worst-case distance)."""
    return float(np.linalg.norm(np.asarray(shape, dtype=np.float64) * np.asarray(spacing, dtype=np.float64)))


def missed_organs(prediction: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor,
                  num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Per organ (classes 1..C-1): True where the truth has the organ and the prediction has none of it."""
    predicted, target = (np.asarray(v.cpu() if isinstance(v, torch.Tensor) else v) for v in (prediction, truth))
    return np.array([bool(np.any(target == organ) and not np.any(predicted == organ)) for organ in range(1, num_classes)])


def dice_and_hd95(prediction: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor,
                  spacing: Sequence[float], num_classes: int = NUM_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """Per organ (classes 1..C-1): Dice, and the 95th-percentile symmetric Hausdorff distance in mm.

    Dice is NaN where the truth has no voxels of the organ (MONAI's ``ignore_empty=True``). HD95 is
    the image diagonal in mm (:func:`image_diagonal_mm`) where the organ was missed (truth present,
    prediction empty), and NaN where the truth lacks it.
    """
    predicted, target = (np.asarray(v.cpu() if isinstance(v, torch.Tensor) else v) for v in (prediction, truth))
    scores = per_class_scores(predicted, target, range(1, num_classes), spacing, convention="monai", empty="nan")
    in_truth = np.array([np.any(target == organ) for organ in scores])
    dice = np.where(in_truth, [s.dice for s in scores.values()], np.nan)
    hd95 = np.array([s.hd95 for s in scores.values()], dtype=np.float64)
    hd95 = np.where(missed_organs(predicted, target, num_classes), image_diagonal_mm(target.shape, spacing), hd95)
    return dice.astype(np.float64), hd95
