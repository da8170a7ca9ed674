"""Reconstructions in the official CMRxRecon2024 validation submission layout.

Checked against CmrxRecon/CMRxRecon2024 ``CMRxReconDemo/run4Ranking.m`` and
``mainRun4Ranking.m`` (commit 21e67c7 / 25c985c): for each undersampled file the
reconstruction's coil-combined magnitude, the central 2 slices (all when fewer than 3), the
first 3 frames (all weightings for T1/T2 mapping; no time axis for BlackBlood), centre-cropped
to ``[round(sx/3), round(sy/2)]``, saved as single-precision variable ``img4ranking`` to
``MultiCoil/<DataType>/<set>/<Task>/<Pxxx>/<undersampled file name>`` (e.g.
``MultiCoil/Cine/ValidationSet/Task1/P001/cine_sax_kus_Uniform4.mat``).

MATLAB's ``img4ranking`` is ``(sx/3, sy/2, slices, frames)`` (``(sx/3, sy/2, slices)`` for
BlackBlood); written as MATLAB v7.3 it reads in h5py's reversed order ``(frames, slices, h, w)``.
One tree per method, plus a ``ground_truth`` tree in the same layout (ours: the organisers hold
the real ground truth; with synthetic data this lets a user run the official scorer).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.cmr_recon.io import MODALITY_FOLDERS
from stages.cmr_recon.metrics import is_blackblood, validation_crop
from stages.common.io import write_mat

RANKING_KEY = "img4ranking"
GROUND_TRUTH = "ground_truth"


def img4ranking(images: np.ndarray, n_frames: int, n_slices: int, modality: str) -> np.ndarray:
    """run4Ranking's array from the scored images ``(n_frames * n_slices, ny, nx)``, frame-major.

    Returns float32 ``(n_frames, n_slices, h, w)`` (``(n_slices, h, w)`` for BlackBlood),
    cropped to ``(round(ny/2), round(nx/3))``.
    """
    images = np.abs(np.asarray(images))
    if images.ndim != 3 or images.shape[0] != n_frames * n_slices:
        raise ValueError(f"{modality}: expected {n_frames} x {n_slices} images (N, ny, nx), got {images.shape}")
    volume = images.reshape(n_frames, n_slices, *images.shape[-2:])
    if is_blackblood(modality):
        volume = volume[0]
    return validation_crop(volume).astype(np.float32)


def submission_path(root: Path, modality: str, subject_key: str, kus_name: str) -> Path:
    """``root/MultiCoil/<DataType>/<set>/<Task>/<subject>/<kus_name>`` as mainRun4Ranking.m writes it."""
    dataset_set, _, subject = subject_key.rpartition("/")
    task = "Task2" if Path(kus_name).stem.split("_kus_")[-1].startswith("kt") else "Task1"
    return root / "MultiCoil" / MODALITY_FOLDERS[modality] / (dataset_set or "ValidationSet") / task / subject / kus_name


def export_setting(root: Path, modality: str, subject_key: str, kus_name: str, n_frames: int, n_slices: int,
                   target: np.ndarray, images: dict[str, np.ndarray]) -> None:
    """Write the ground truth's and every method's ``img4ranking`` of one undersampled file."""
    for method, values in {GROUND_TRUTH: target, **images}.items():
        path = submission_path(root / method, modality, subject_key, kus_name)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_mat(path, {RANKING_KEY: img4ranking(values, n_frames, n_slices, modality)}, created_epoch=0.0)
