"""Dice and HD95 per organ, HD95 in mm with the voxel spacing, MONAI's semantics (stages.common.metrics.segmentation).

HD95 follows MONAI's ``compute_hausdorff_distance(percentile=95)``, which ct_fairness has always
reported: the larger of the two directed 95th-percentile surface distances (prediction to truth,
truth to prediction), not medpy's 95th percentile of both sets pooled.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from stages.common.metrics.segmentation import per_class_scores
from stages.ct_fairness.organs import NUM_CLASSES


def dice_and_hd95(prediction: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor,
                  spacing: Sequence[float], num_classes: int = NUM_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """Per organ (classes 1..C-1): Dice, and the 95th-percentile symmetric Hausdorff distance in mm.

    Dice is NaN where the truth has no voxels of the organ (MONAI's ``ignore_empty=True``); HD95 is
    NaN where either the prediction or the truth is empty.
    """
    predicted, target = (np.asarray(v.cpu() if isinstance(v, torch.Tensor) else v) for v in (prediction, truth))
    scores = per_class_scores(predicted, target, range(1, num_classes), spacing, convention="monai", empty="nan")
    in_truth = np.array([np.any(target == organ) for organ in scores])
    dice = np.where(in_truth, [s.dice for s in scores.values()], np.nan)
    return dice.astype(np.float64), np.array([s.hd95 for s in scores.values()], dtype=np.float64)
