"""The official input format: CSV lists of (image, mask) over 2-D NIfTI slices, or PNG slices and masks.

As the official ``NIIDataset`` reads them (JianghaoWu/SAM-TTA ``datasets/NII_test.py`` and
``data/BraTS_PED_t2f_2D/test.csv``): a CSV with a header row (``image,label`` in the repo;
``image_path,mask_path`` also accepted), read by position, each path relative to the list's
folder; a NIfTI image that is 2-D, or 3-D with the slice first (the repo keeps ``image[0]``);
intensities min-max normalised to [0, 1]; the mask's distinct non-zero values are the instances.
PNG masks (polyp sets) are binary at half the dtype's range: one instance. Arrays are used in the
file's axis order (no transpose), as the repo does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.common.badinput import BadInputError
from stages.common.io import FormatError, read_nifti, read_png, read_table

MAX_CHANNELS = 3
NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass(frozen=True)
class ListRow:
    row: int               # 1-based data row of the CSV (the header is row 0)
    image: Path
    mask: Path


@dataclass(frozen=True)
class Slice:
    image: np.ndarray      # (C, H, W) float32 in [0, 1], C = 1 or 3
    labels: np.ndarray     # (H, W) int32 instance labels (0 = background)


def read_list(csv_path: Path) -> list[ListRow]:
    """The rows of one list CSV; paths resolved against the CSV's folder."""
    table = read_table(csv_path, dtype=str, keep_default_na=False, encoding_errors="replace")
    if table.shape[1] < 2:
        raise FormatError(csv_path, f"needs two columns (image, mask); has {list(table.columns)}")
    rows = []
    for index, (image, mask) in enumerate(zip(table.iloc[:, 0], table.iloc[:, 1]), start=1):
        if not image.strip() or not mask.strip():
            raise BadInputError(f"{csv_path}: row {index}: empty image or mask path")
        rows.append(ListRow(index, csv_path.parent / image.strip(), csv_path.parent / mask.strip()))
    if not rows:
        raise FormatError(csv_path, "the list has no rows")
    return rows


def _is_nifti(path: Path) -> bool:
    return path.name.endswith(NIFTI_SUFFIXES)


def _channels_first(array: np.ndarray, path: Path, nifti: bool) -> np.ndarray:
    """``(C, H, W)``: PNG stores channels last; a 3-D NIfTI is channels-last when its last axis is short
    (at most 4), else slice-first, of which the repo keeps plane 0."""
    if array.ndim == 2:
        return array[None]
    if array.ndim != 3:
        raise BadInputError(f"{path}: expected a 2-D slice (optionally with channels), got shape {array.shape}")
    if nifti and not (array.shape[-1] <= 4 < array.shape[0]):
        return array[:1]
    array = np.moveaxis(array, -1, 0)
    if array.shape[0] > MAX_CHANNELS:
        raise BadInputError(f"{path}: {array.shape[0]} channels; at most {MAX_CHANNELS} (gray or RGB)")
    if array.shape[0] == 2:
        raise BadInputError(f"{path}: 2 channels; expected 1 (gray) or 3 (RGB)")
    return array


def read_image(path: Path) -> np.ndarray:
    """``(C, H, W)`` float32 in [0, 1] (min-max over the slice, as the repo does), C = 1 or 3."""
    if _is_nifti(path):
        raw = read_nifti(path, dtype=np.float64, finite=False)[0]  # checked below with the study's message
        raw = np.squeeze(raw, axis=tuple(a for a in range(2, raw.ndim) if raw.shape[a] == 1)) if raw.ndim > 2 else raw
    elif path.suffix.lower() == ".png":
        raw = read_png(path).astype(np.float64)
        if raw.ndim == 3 and raw.shape[-1] == 4:
            if not np.all(raw[..., 3] == raw[..., 3].flat[0]):
                raise BadInputError(f"{path}: 4 channels with a varying alpha; at most {MAX_CHANNELS} (gray or RGB)")
            raw = raw[..., :3]
    else:
        raise FormatError(path, "not a NIfTI (.nii, .nii.gz) or PNG slice")
    if not np.isfinite(raw).all():
        raise BadInputError(f"{path}: {int((~np.isfinite(raw)).sum())} NaN/Inf intensities")
    image = _channels_first(raw, path, _is_nifti(path))
    low, high = float(image.min()), float(image.max())
    if high <= low:
        raise BadInputError(f"{path}: constant image (every pixel {low}); min-max normalisation is undefined")
    return ((image - low) / (high - low)).astype(np.float32)


def read_labels(path: Path) -> np.ndarray:
    """``(H, W)`` int32 instance labels: distinct non-zero values (NIfTI) or one binary instance (PNG)."""
    if _is_nifti(path):
        raw = read_nifti(path, dtype=np.float64, finite=False)[0]
        raw = np.squeeze(raw)
        if not np.isfinite(raw).all():
            raise BadInputError(f"{path}: NaN/Inf values in the mask")
        if raw.ndim != 2:
            raise BadInputError(f"{path}: a mask must be a 2-D slice, got shape {raw.shape}")
        values = np.unique(raw)
        relabelled = np.searchsorted(values, raw)  # ranks; background 0 stays 0 when present
        if values[0] != 0:
            relabelled = relabelled + 1
        return relabelled.astype(np.int32)
    if path.suffix.lower() == ".png":
        raw = read_png(path)
        if raw.ndim == 3:
            raw = raw[..., :3].max(axis=-1)
        half = (np.iinfo(raw.dtype).max + 1) // 2 if np.issubdtype(raw.dtype, np.integer) else 0.5
        return (raw >= half).astype(np.int32)
    raise FormatError(path, "not a NIfTI (.nii, .nii.gz) or PNG mask")


def read_slice(row: ListRow, csv_path: Path, require_foreground: bool) -> Slice:
    """One list row read and checked; errors name the list, the row and the file."""
    where = f"{csv_path}: row {row.row}"
    for path in (row.image, row.mask):
        if not path.is_file():
            raise BadInputError(f"{where}: {path} does not exist")
    try:
        image = read_image(row.image)
        labels = read_labels(row.mask)
    except (BadInputError, FormatError) as error:
        raise BadInputError(f"{where}: {error}") from error
    if image.shape[1:] != labels.shape:
        raise BadInputError(f"{where}: image {row.image} is {image.shape[1:]} but mask {row.mask} is {labels.shape}")
    if require_foreground and not labels.any():
        raise BadInputError(f"{where}: mask {row.mask} has no foreground (prompts need at least one instance)")
    return Slice(image, labels)
