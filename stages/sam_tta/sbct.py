"""SBCT: the learnable Bezier-curve input transform of SAM-TTA (three cubic curves, 12 scalars).

Curve k maps channel k: f(t) = (1-t)^3 P0 + 3t(1-t)^2 P1 + 3t^2(1-t) P2 + t^3 P3 on the
intensity t in [0, 1], P = sigmoid(u) of the raw points u, clamped to [0, 1]. A gray slice is
replicated to three channels first; the result goes to the image encoder with no mean/std
normalisation (the torch modules that learn the points: :mod:`stages.sam_tta.curves`). :data:`INITIAL_RAW_POINTS` is the official initialisation (its sigmoid is not
the identity: the first curve starts near [0.5, 0.58, 0.66, 0.73]).
"""
from __future__ import annotations

import numpy as np

INITIAL_RAW_POINTS = np.array([[0.0, 0.33, 0.66, 1.0],
                               [0.0, 0.20, 0.80, 1.0],
                               [0.0, 0.25, 0.75, 1.0]], dtype=np.float32)


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-values))


def bernstein_basis(t: np.ndarray) -> np.ndarray:
    """The four cubic Bernstein polynomials of ``t``, stacked on a new last axis."""
    s = 1 - t
    return np.stack([s ** 3, 3 * t * s ** 2, 3 * t ** 2 * s, t ** 3], axis=-1)


def bezier_transform(image: np.ndarray, raw_control_points: np.ndarray) -> np.ndarray:
    """A ``(H, W)`` image in [0, 1] and raw ``(3, 4)`` points -> ``(3, H, W)``, one curve per channel."""
    image = np.asarray(image, dtype=np.float64)
    raw = np.asarray(raw_control_points, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"bezier_transform takes a (H, W) image, got shape {image.shape}")
    if raw.shape != (3, 4):
        raise ValueError(f"raw_control_points must have shape (3, 4), got {raw.shape}")
    basis = bernstein_basis(image)                       # (H, W, 4)
    curves = np.einsum("hwk,ck->chw", basis, _sigmoid(raw))
    return np.clip(curves, 0.0, 1.0)
