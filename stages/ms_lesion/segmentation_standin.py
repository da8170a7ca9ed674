"""TEMPORARY stand-in for ``stages.common.metrics.segmentation`` (being written by another helper).

Only ``dice`` and ``hd95`` of the agreed API (/work/notes/segmentation_api.md), medpy convention,
empty policy "nan". Delete this file and import the shared module once it lands on main.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def dice(prediction: np.ndarray, reference: np.ndarray, empty: str = "nan") -> float:
    p, r = np.asarray(prediction, bool), np.asarray(reference, bool)
    total = p.sum() + r.sum()
    return float("nan") if total == 0 else float(2 * (p & r).sum() / total)


def _surface_distances(a: np.ndarray, b: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    structure = ndimage.generate_binary_structure(a.ndim, 1)
    border_a = a ^ ndimage.binary_erosion(a, structure, border_value=0)
    border_b = b ^ ndimage.binary_erosion(b, structure, border_value=0)
    return ndimage.distance_transform_edt(~border_b, sampling=spacing)[border_a]


def hd95(prediction, reference, spacing: Sequence[float] | None = None, convention: str = "medpy",
         empty: str = "nan", cap: float | None = None) -> float:
    p, r = np.asarray(prediction, bool), np.asarray(reference, bool)
    if not p.any() or not r.any():
        return float("nan")
    spacing = tuple(spacing) if spacing is not None else (1.0,) * p.ndim
    value = float(np.percentile(np.hstack([_surface_distances(p, r, spacing), _surface_distances(r, p, spacing)]), 95))
    return min(value, cap) if cap is not None else value
