"""Dice and HD95 per organ (MONAI's metrics, HD95 in mm with the voxel spacing)."""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from stages.ct_fairness.organs import NUM_CLASSES


def one_hot(labels: np.ndarray | torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """``(X, Y, Z)`` integer labels -> ``(1, C, X, Y, Z)`` float one-hot."""
    tensor = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).long()
    encoded = torch.nn.functional.one_hot(tensor, num_classes)  # (X, Y, Z, C)
    return encoded.movedim(-1, 0)[None].float()


def dice_and_hd95(prediction: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor,
                  spacing: Sequence[float], num_classes: int = NUM_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """Per organ (classes 1..C-1): Dice, and the 95th-percentile symmetric Hausdorff distance in mm.

    Dice is NaN where the truth has no voxels of the organ; HD95 is NaN where either the
    prediction or the truth is empty (MONAI reports infinity there).
    """
    from monai.metrics import DiceMetric, HausdorffDistanceMetric

    predicted, target = one_hot(prediction, num_classes), one_hot(truth, num_classes)
    dice = DiceMetric(include_background=False, reduction="none", ignore_empty=True)(predicted, target)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is all 0.*")
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*")  # MONAI calling its own deprecated argument
        hd95 = HausdorffDistanceMetric(include_background=False, percentile=95, reduction="none")(
            predicted, target, spacing=[float(s) for s in spacing])
    hd95 = hd95[0].cpu().numpy().astype(np.float64)
    hd95[~np.isfinite(hd95)] = np.nan
    return dice[0].cpu().numpy().astype(np.float64), hd95
