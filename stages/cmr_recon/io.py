"""CMRxRecon k-space and mask files (MATLAB v7.3) and the challenge's folder naming.

Axis order is h5py's, i.e. MATLAB's reversed: ``(nt, nz, nc, ny, nx)`` for dynamic
modalities and ``(nz, nc, ny, nx)`` for BlackBlood, which has no time axis. Masks are stored
as ``(nt, ny, nx)`` (``(1, ny, nx)`` for BlackBlood).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from stages.cmr_recon.masks import PATTERNS
from stages.common.io import FormatError, check_declared_size, read_mat, write_mat

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
    if 0 in array.shape:
        raise FormatError(path, f"variable {key!r} has a zero-length axis {array.shape}")
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


SET_NAMES = ("TrainingSet", "ValidationSet", "TestSet")


@dataclass(frozen=True)
class FullSampleFile:
    """One FullSample file found under the data root; a subject is keyed by (set, subject)."""

    dataset_set: str  # TrainingSet / ValidationSet / TestSet in the 2024 layout, "" elsewhere
    subject: str
    modality: str
    path: Path

    @property
    def subject_key(self) -> str:
        """``ValidationSet/P001``: the challenge's TrainingSet/P001 and ValidationSet/P001 are different volunteers."""
        return f"{self.dataset_set}/{self.subject}" if self.dataset_set else self.subject


@dataclass(frozen=True)
class DatasetListing:
    files: list[FullSampleFile]
    skipped: list[dict[str, str]]  # {"path", "reason"}: .mat files with an unknown modality name, not read
    undersampled: list[Path]       # files in the challenge's UnderSample_*/Mask_* folders (shipped masks)


def _walk_mat_files(root: Path) -> list[Path]:
    """Every ``*.mat`` below ``root``, following symlinked folders (each real folder once, so loops end).

    Symlinks are followed so that a link escaping the root is seen and refused by the reader
    (through ``resolve_inside``), never silently left out.
    """
    found, seen = [], set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        folders_named_mat = [name for name in dirs if name.lower().endswith(".mat")]  # read and refused, not passed over
        dirs[:] = [name for name in dirs if name not in folders_named_mat]
        found.extend(Path(folder) / name for name in [*names, *folders_named_mat] if name.lower().endswith(".mat"))
    return sorted(found)


def find_full_sample_files(root: Path) -> DatasetListing:
    """All FullSample files under ``root`` (sorted), and every other ``.mat`` file with why it is skipped.

    Accepts the 2024 layout (``MultiCoil/<Folder>/<set>/FullSample/<subject>/<modality>.mat``)
    and any layout that keeps ``<subject>/<modality>.mat`` with a known modality name. Files in
    ``UnderSample*``/``Mask_*`` folders are the challenge's undersampled inputs; a ``.mat`` with an
    unknown modality name is listed in ``skipped`` (nothing is dropped without a word).
    """
    root = Path(root)
    files, skipped, undersampled = [], [], []
    for path in _walk_mat_files(root):
        relative = path.relative_to(root)
        if any(part.startswith(("UnderSample", "Mask_")) for part in relative.parts):
            undersampled.append(path)
        elif path.stem not in MODALITY_FOLDERS:
            skipped.append({"path": relative.as_posix(),
                            "reason": f"unknown modality name {path.stem!r} (known: {', '.join(MODALITY_FOLDERS)})"})
        else:
            dataset_set = next((part for part in reversed(relative.parts[:-2]) if part in SET_NAMES), "")
            files.append(FullSampleFile(dataset_set, path.parent.name, path.stem, path))
    return DatasetListing(files, skipped, undersampled)


@dataclass(frozen=True)
class KspaceSummary:
    shape: tuple[int, ...]
    max_abs: float


def scan_kspace(path: str | os.PathLike[str], key: str = KSPACE_KEY) -> KspaceSummary:
    """Shape and peak magnitude of challenge k-space, read one outer index at a time (never the whole file).

    Refuses, with a FormatError naming the file: an unreadable file, a missing variable, an
    array declared larger than ``common.max_input_bytes`` (before reading anything), a real-valued array, a
    wrong number of axes, a zero-length axis, NaN/Inf values and all-zero k-space.
    """
    path = Path(path)
    if path.is_dir():
        raise FormatError(path, "is a folder, not a .mat file")
    if not path.is_file():
        raise FormatError(path, "file not found")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise FormatError(path, f"not a readable MATLAB v7.3 (HDF5) file ({error})") from error
    with handle:
        if key not in handle:
            present = ", ".join(sorted(k for k in handle.keys() if not k.startswith("#"))) or "none"
            raise FormatError(path, f"variable {key!r} missing (variables present: {present})")
        dataset = handle[key]
        if not isinstance(dataset, h5py.Dataset):
            raise FormatError(path, f"variable {key!r} is a {type(dataset).__name__}, not an array")
        shape = tuple(int(n) for n in dataset.shape)
        check_declared_size(path, shape, dataset.dtype.itemsize, f"variable {key!r}")
        names = dataset.dtype.names
        if names is None:
            raise FormatError(path, f"variable {key!r} is real-valued ({dataset.dtype}); k-space must be complex")
        if set(names) != {"real", "imag"}:
            raise FormatError(path, f"variable {key!r} is a compound with fields {names}, expected real/imag")
        if len(shape) not in (4, 5):
            raise FormatError(path, f"variable {key!r} has {len(shape)} axes {shape}; expected 5 (nt, nz, nc, ny, nx) or 4 without time")
        if 0 in shape:
            raise FormatError(path, f"variable {key!r} has a zero-length axis {shape}")
        peak, bad = 0.0, 0
        for index in range(shape[0]):
            try:
                part = dataset[index]
            except OSError as error:
                raise FormatError(path, f"variable {key!r} could not be read, the file may be truncated ({error})") from error
            magnitude = np.hypot(part["real"].astype(np.float64), part["imag"].astype(np.float64))
            finite = np.isfinite(magnitude)
            bad += int(magnitude.size - np.count_nonzero(finite))
            if finite.any():
                peak = max(peak, float(magnitude[finite].max()))
    if bad:
        raise FormatError(path, f"variable {key!r} holds {bad} NaN or Inf values")
    if peak == 0.0:
        raise FormatError(path, f"variable {key!r} is all zero: no signal to reconstruct")
    return KspaceSummary(shape, peak)
