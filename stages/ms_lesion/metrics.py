"""Lesion-wise detection (the MSSEG rule with CoactSeg's thresholds) and temporal consistency.

:func:`lesion_f1` follows CoactSeg's ``calculate_metric_percase``: connected components
(26-connectivity, skimage's default for 3-D ``label``) under ``min_voxels`` are dropped from both
maps; a truth lesion is detected when more than ``alpha`` of it is covered by predicted lesions
and the predicted lesions that make up ``cumulative`` of that cover (largest first) are each
less than ``false_positive_guard`` outside all truth; a predicted lesion counts as correct by the
same test with the roles swapped. F1 = harmonic mean of sensitivity TP_truth / M and precision
TP_prediction / N. Unlike CoactSeg's code, components are relabelled after the small ones are
dropped (its loop then skips the highest labels), and an empty truth or prediction gives a
defined result instead of a division by zero (ours).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.measure import label as connected_components


@dataclass(frozen=True)
class LesionDetection:
    f1: float
    true_positive_truth: int      # truth lesions detected
    true_positive_prediction: int  # predicted lesions that are real
    false_positive: int
    false_negative: int
    truth_lesions: int
    predicted_lesions: int


def lesion_components(mask: np.ndarray, min_voxels: int) -> tuple[np.ndarray, int]:
    """Connected components of ``mask`` with at least ``min_voxels`` voxels, relabelled 1..n."""
    labelled = connected_components(np.asarray(mask, dtype=bool))
    sizes = np.bincount(labelled.ravel())
    keep = np.flatnonzero(sizes >= min_voxels)
    keep = keep[keep > 0]
    relabel = np.zeros(len(sizes), dtype=np.int64)
    relabel[keep] = np.arange(1, len(keep) + 1)
    return relabel[labelled], len(keep)


def _detected(overlap: np.ndarray, alpha: float, cumulative: float, guard: float) -> int:
    """Rows of ``overlap`` (``(1 + M, 1 + N)``, row/column 0 = background) that pass the MSSEG test."""
    count = 0
    for i in range(1, overlap.shape[0]):
        covered = overlap[i, 1:].sum()
        if covered / (overlap[i].sum() + 1e-18) <= alpha:
            continue
        accepted, share = True, 0.0
        for partner in np.argsort(-overlap[i, 1:], kind="stable") + 1:
            if share >= cumulative:
                break
            if overlap[0, partner] / overlap[:, partner].sum() > guard:
                accepted = False
                break
            share += overlap[i, partner] / covered
        count += accepted
    return count


def lesion_f1(truth: np.ndarray, prediction: np.ndarray, min_voxels: int = 11, alpha: float = 0.1,
              cumulative: float = 0.65, false_positive_guard: float = 0.7) -> LesionDetection:
    truth_labels, m = lesion_components(truth, min_voxels)
    prediction_labels, n = lesion_components(prediction, min_voxels)
    overlap = np.zeros((m + 1, n + 1))
    np.add.at(overlap, (truth_labels.ravel(), prediction_labels.ravel()), 1)
    tp_truth = _detected(overlap, alpha, cumulative, false_positive_guard)
    tp_prediction = _detected(overlap.T, alpha, cumulative, false_positive_guard)
    if m == 0 and n == 0:
        f1 = 1.0  # ours: nothing to find and nothing found
    elif m == 0 or n == 0:
        f1 = 0.0
    else:
        sensitivity, precision = tp_truth / m, tp_prediction / n
        f1 = 0.0 if sensitivity == 0 or precision == 0 else 2 * sensitivity * precision / (sensitivity + precision)
    return LesionDetection(float(f1), tp_truth, tp_prediction, n - tp_prediction, m - tp_truth, m, n)


def temporal_consistency(all_t1: np.ndarray, all_t2: np.ndarray, new: np.ndarray, vanishing: np.ndarray) -> float:
    """Dice of the predicted all-t2 map against (all-t1 union new) minus vanishing (ours); 1 when both are empty."""
    implied = (np.asarray(all_t1, bool) | np.asarray(new, bool)) & ~np.asarray(vanishing, bool)
    predicted = np.asarray(all_t2, bool)
    total = implied.sum() + predicted.sum()
    return 1.0 if total == 0 else float(2 * (implied & predicted).sum() / total)
