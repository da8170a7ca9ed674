"""Mesh distances (KD-tree nearest neighbours, never an all-pairs matrix) and the LV cavity volume."""
from __future__ import annotations

import numpy as np


def _directed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from each point of ``a`` to its nearest point of ``b``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != 3 or b.shape[1] != 3 or not len(a) or not len(b):
        raise ValueError(f"point sets must be non-empty (N, 3) and (M, 3), got {a.shape} and {b.shape}")
    from scipy.spatial import cKDTree  # here: ingest and report use only the volumes below

    return cKDTree(b).query(a, k=1)[0]


def chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Chamfer distance: the mean of the two directed mean squared nearest-neighbour distances,
    ``0.5 * (mean_a min_b |a-b|^2 + mean_b min_a |a-b|^2)`` (squared units of the input)."""
    return float(0.5 * (np.mean(_directed(a, b) ** 2) + np.mean(_directed(b, a) ** 2)))


def hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Hausdorff distance: the larger of the two directed maxima of nearest-neighbour distances."""
    return float(max(_directed(a, b).max(), _directed(b, a).max()))


def assd(a: np.ndarray, b: np.ndarray) -> float:
    """Average symmetric surface distance over vertex sets: all nearest-neighbour distances of both
    directions pooled and averaged, ``(sum_a d(a, B) + sum_b d(b, A)) / (|A| + |B|)``."""
    forward, backward = _directed(a, b), _directed(b, a)
    return float((forward.sum() + backward.sum()) / (len(forward) + len(backward)))


def lv_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Volume enclosed by a closed, consistently oriented triangle surface (divergence theorem).

    The absolute value is returned, so inward- or outward-facing orientation give the same volume.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    signed = np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6.0
    return float(abs(signed))


def ejection_fraction(volumes: np.ndarray) -> float:
    """(EDV - ESV) / EDV with EDV and ESV the largest and smallest volume over the cycle."""
    volumes = np.asarray(volumes, dtype=np.float64)
    edv, esv = volumes.max(), volumes.min()
    return float((edv - esv) / edv) if edv > 0 else float("nan")


def frame_distances(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(Hausdorff, ASSD, Chamfer) from one KD-tree query per direction."""
    forward, backward = _directed(a, b), _directed(b, a)
    return (float(max(forward.max(), backward.max())),
            float((forward.sum() + backward.sum()) / (len(forward) + len(backward))),
            float(0.5 * (np.mean(forward**2) + np.mean(backward**2))))


def sequence_distances(truth: np.ndarray, prediction: np.ndarray) -> dict[str, float]:
    """Hausdorff, ASSD and Chamfer per frame of ``(T, N, 3)`` sequences, averaged over frames."""
    frames = [frame_distances(t, p) for t, p in zip(truth, prediction)]
    hd, sd, cd = np.mean(frames, axis=0)
    return {"hausdorff": float(hd), "assd": float(sd), "chamfer": float(cd)}
