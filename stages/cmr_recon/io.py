"""CMRxRecon k-space and mask files (MATLAB v7.3) and the challenge's folder naming.

Axis order is h5py's, i.e. MATLAB's reversed: ``(nt, nz, nc, ny, nx)`` for dynamic
modalities and ``(nz, nc, ny, nx)`` for BlackBlood, which has no time axis. Masks are stored
as ``(nt, ny, nx)`` (``(1, ny, nx)`` for BlackBlood).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from stages.cmr_recon.masks import PATTERNS
from stages.common.io import FormatError, read_mat, write_mat

KSPACE_KEY = "kspace_full"
UNDERSAMPLED_KEY = "kus"
MASK_KEY = "mask"

# Folder of each modality in the 2024 release (MultiCoil/<folder>/<set>/FullSample/Pxxx/<modality>.mat).
MODALITY_FOLDERS = {
    "cine_sax": "Cine", "cine_lax": "Cine", "cine_lvot": "Cine",
    "T1map": "Mapping", "T2map": "Mapping",
    "aorta_sag": "Aorta", "aorta_tra": "Aorta",
    "tagging": "Tagging", "flow2d": "Flow2d", "blackblood": "BlackBlood",
}
_UNDERSAMPLED_NAME = re.compile(r"^(?P<modality>\w+?)_(?P<kind>kus|mask)_(?P<pattern>" + "|".join(PATTERNS) + r")(?P<r>\d+)\.mat$")


def read_kspace(path: str | os.PathLike[str], key: str = KSPACE_KEY) -> np.ndarray:
    """Read challenge k-space as complex64 ``(nt, nz, nc, ny, nx)`` or ``(nz, nc, ny, nx)``.

    Raises FormatError naming the file for a non-HDF5 or truncated file, a missing variable,
    a real-valued array, a wrong number of axes, or non-finite values.
    """
    array = read_mat(path, key)
    if not np.iscomplexobj(array):
        raise FormatError(path, f"variable {key!r} is real-valued ({array.dtype}); k-space must be complex")
    if array.ndim not in (4, 5):
        raise FormatError(path, f"variable {key!r} has {array.ndim} axes {array.shape}; expected 5 (nt, nz, nc, ny, nx) or 4 without time")
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise FormatError(path, f"variable {key!r} holds {bad} NaN or Inf values")
    return array.astype(np.complex64, copy=False)


def write_kspace(path: str | os.PathLike[str], array: np.ndarray, key: str = KSPACE_KEY,
                 created_epoch: float | None = 0.0, compress: bool | None = None) -> Path:
    """Write complex k-space in the challenge's MATLAB v7.3 layout (compound real/imag, single).

    Undersampled k-space (``key="kus"``) is mostly zeros and is deflated unless ``compress`` says otherwise.
    """
    array = np.asarray(array)
    if not np.iscomplexobj(array) or array.ndim not in (4, 5):
        raise ValueError(f"{path}: write_kspace needs complex (nt, nz, nc, ny, nx) or (nz, nc, ny, nx), got {array.dtype} {array.shape}")
    compress = key == UNDERSAMPLED_KEY if compress is None else compress
    return write_mat(path, {key: array.astype(np.complex64)}, created_epoch, compress)


def read_mask(path: str | os.PathLike[str], kspace_shape: tuple[int, ...] | None = None, key: str = MASK_KEY) -> np.ndarray:
    """Read a sampling mask as bool ``(nt, ny, nx)``; check it fits ``kspace_shape`` when given."""
    mask = read_mat(path, key)
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise FormatError(path, f"mask has shape {mask.shape}; expected (nt, ny, nx) or (ny, nx)")
    if kspace_shape is not None:
        frames = kspace_shape[0] if len(kspace_shape) == 5 else 1
        expected = (frames, *kspace_shape[-2:])
        if mask.shape[1:] != expected[1:] or mask.shape[0] not in (1, frames):
            raise FormatError(path, f"mask shape {mask.shape} does not fit k-space {kspace_shape} (expected {expected})")
    return mask.astype(bool)


def write_mask(path: str | os.PathLike[str], mask: np.ndarray, created_epoch: float | None = 0.0) -> Path:
    return write_mat(path, {MASK_KEY: np.asarray(mask, dtype=np.uint8)}, created_epoch, compress=True)


def full_sample_path(root: Path, subject: str, modality: str, dataset_set: str = "TrainingSet") -> Path:
    """``MultiCoil/<Folder>/<set>/FullSample/<subject>/<modality>.mat`` under ``root``."""
    return root / "MultiCoil" / MODALITY_FOLDERS[modality] / dataset_set / "FullSample" / subject / f"{modality}.mat"


def undersampled_paths(root: Path, subject: str, modality: str, pattern: str, acceleration: int,
                       dataset_set: str = "ValidationSet") -> tuple[Path, Path]:
    """(kus path, mask path) following the 2024 naming: Task 1 for Uniform, Task 2 for kt patterns."""
    task = "Task1" if pattern == "Uniform" else "Task2"
    folder = root / "MultiCoil" / MODALITY_FOLDERS[modality] / dataset_set
    tag = f"{pattern}{acceleration}"
    return (
        folder / f"UnderSample_{task}" / subject / f"{modality}_kus_{tag}.mat",
        folder / f"Mask_{task}" / subject / f"{modality}_mask_{tag}.mat",
    )


def parse_undersampled_name(name: str) -> dict[str, str | int] | None:
    """``cine_sax_kus_ktGaussian8.mat`` -> modality, kind, pattern, acceleration (None if not such a name)."""
    match = _UNDERSAMPLED_NAME.match(name)
    if not match:
        return None
    return {"modality": match["modality"], "kind": match["kind"], "pattern": match["pattern"], "acceleration": int(match["r"])}


def find_full_sample_files(root: Path) -> list[tuple[str, str, Path]]:
    """All ``(subject, modality, path)`` of FullSample files under ``root``, in sorted order.

    Accepts the 2024 layout (``MultiCoil/<Folder>/<set>/FullSample/<subject>/<modality>.mat``)
    and any layout that keeps ``<subject>/<modality>.mat`` with a known modality name.
    """
    found = []
    for path in sorted(Path(root).rglob("*.mat")):
        in_undersampled_folder = any(part.startswith(("UnderSample", "Mask_")) for part in path.parts)
        if path.stem in MODALITY_FOLDERS and not in_undersampled_folder:
            found.append((path.parent.name, path.stem, path))
    return found
