"""The official TIP / MMCL input layout: headerless tables, ``torch.save``d lists, PNG or NPY images.

One folder per task, with the files the official dataset configs name
(``configs/dataset/dvm_all_server_reordered.yaml``, ``cardiac_CAD.yaml`` in siyi-wind/TIP):

- ``data_{split}_tabular``: a headerless CSV, one row per sample, categorical columns first, each
  categorical cell an integer code stored as a float (``2.0``), continuous cells z-scored floats;
- ``field_lengths_tabular``: ``torch.save`` of the category count per column (1 = continuous);
- ``data_{split}_imaging``: ``torch.save`` of a list of image paths (absolute in the official files;
  relative paths are read against the task folder here);
- ``labels_{split}``: ``torch.save`` of the integer labels (a list or a 1-D tensor).

Images are read as the official loaders do: a PNG through ``torchvision.io.read_image`` / 255 (DVM),
or, with ``augmentation_speedup``, ``np.load(path[:-4] + '.npy')``: an ``(H, W, C)`` array, divided by
255 and clipped for DVM, taken as is (already in [0, 1]) for the cardiac data.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from stages.common.atomic import atomic_path
from stages.common.badinput import BadInputError
from stages.common.io import FormatError, read_png, write_png

SPLITS = ("train", "val", "test")


def read_pt(path: Path) -> object:
    """``torch.load`` of a small list or tensor; only plain data is accepted (``weights_only``)."""
    import torch

    if not Path(path).is_file():
        raise FormatError(path, "file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several kinds for a damaged or foreign file
        raise FormatError(path, f"not a readable torch.save file ({error})") from error


def write_pt(path: Path, value: object) -> Path:
    """``torch.save`` through a buffer: a file target names its zip records after the (temporary,
    per-process) file name, a buffer after ``archive``, so the bytes are the same in every process."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(value, buffer)
    with atomic_path(path) as temporary:
        temporary.write_bytes(buffer.getvalue())
    return Path(path)


def as_list(value: object, path: Path) -> list:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise FormatError(path, f"expected a list or 1-D tensor, got {type(value).__name__}")
    return list(value)


def read_field_lengths(path: Path) -> np.ndarray:
    """Category count per column (1 for a continuous column), categorical columns first."""
    lengths = np.asarray(as_list(read_pt(path), path), dtype=float)
    if lengths.ndim != 1 or lengths.size == 0:
        raise FormatError(path, f"field lengths must be a non-empty 1-D list, got shape {lengths.shape}")
    if (lengths < 1).any() or (lengths != np.round(lengths)).any():
        raise FormatError(path, f"field lengths must be positive integers, got {lengths.tolist()}")
    lengths = lengths.astype(int)
    categorical = lengths > 1
    if categorical.any() and not categorical[: categorical.sum()].all():
        raise FormatError(path, "categorical columns (length > 1) must come first, as the TIP loaders expect")
    return lengths


def read_labels(path: Path) -> np.ndarray:
    labels = np.asarray(as_list(read_pt(path), path))
    if labels.ndim != 1 or (labels.size and (labels != np.round(labels.astype(float))).any()):
        raise FormatError(path, "labels must be a 1-D list of integers")
    return labels.astype(int)


def read_image_paths(path: Path) -> list[str]:
    paths = as_list(read_pt(path), path)
    bad = [i for i, p in enumerate(paths) if not isinstance(p, str)]
    if bad:
        raise FormatError(path, f"entry {bad[0]} is not a path string")
    return paths


def read_table_rows(path: Path) -> list[list[str]]:
    """The raw cells of a headerless CSV (no parsing yet: each row is checked on its own)."""
    if not Path(path).is_file():
        raise FormatError(path, "file not found")
    with open(path, newline="") as handle:
        return [row for row in csv.reader(handle)]


def parse_row(cells: list[str], field_lengths: np.ndarray, path: Path, row: int) -> np.ndarray:
    """One table row as floats; a bad cell raises naming the file, row and column (0-based)."""
    if len(cells) != len(field_lengths):
        raise BadInputError(f"{path}: row {row}: {len(cells)} columns, field_lengths has {len(field_lengths)}")
    values = np.empty(len(cells))
    for column, (cell, length) in enumerate(zip(cells, field_lengths)):
        try:
            value = float(cell)
        except ValueError:
            raise BadInputError(f"{path}: row {row}, column {column}: {cell!r} is not a number") from None
        if not np.isfinite(value):
            raise BadInputError(f"{path}: row {row}, column {column}: {cell!r} is not a finite number")
        if length > 1 and (value != round(value) or not 0 <= value < length):
            raise BadInputError(f"{path}: row {row}, column {column}: category code {cell!r} is outside 0..{length - 1}")
        values[column] = value
    return values


def image_file(task_root: Path, listed: str, image_format: str) -> Path:
    """Where a listed image lives: relative paths against the task folder; NPY as ``path[:-4] + '.npy'``."""
    path = Path(listed)
    path = path if path.is_absolute() else task_root / path
    if image_format == "npy" and path.suffix != ".npy":
        path = path.with_name(path.name[:-4] + ".npy")
    return path


def read_image(path: Path, image_format: str, npy_max: float) -> np.ndarray:
    """An image as float32 ``(C, H, W)`` in [0, 1]."""
    if image_format == "png":
        array = read_png(path).astype(np.float32) / 255.0
        array = array[..., None] if array.ndim == 2 else array
    else:
        if not Path(path).is_file():
            raise FormatError(path, "file not found")
        try:
            array = np.load(path, allow_pickle=False).astype(np.float32)
        except (ValueError, OSError) as error:
            raise FormatError(path, f"not a readable .npy array ({error})") from error
        if array.ndim != 3:
            raise FormatError(path, f"expected an (H, W, C) array, got shape {array.shape}")
        array = np.clip(array, 0, npy_max) / npy_max
    if not np.isfinite(array).all():
        raise FormatError(path, "image has non-finite values")
    return np.ascontiguousarray(np.moveaxis(array, -1, 0))


def write_image(path: Path, image_hwc: np.ndarray, image_format: str, npy_max: float) -> Path:
    """Write an ``(H, W, C)`` image in [0, 1] as the official loaders read it back."""
    if image_format == "png":
        return write_png(path, np.round(np.clip(image_hwc, 0, 1) * 255).astype(np.uint8))
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.save(handle, (image_hwc * npy_max).astype(np.float32))
    return Path(path)


def write_table_csv(path: Path, table: np.ndarray, field_lengths: np.ndarray) -> Path:
    """Headerless CSV: categorical codes as ``2.0``, continuous values with 6 significant digits."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", newline="") as handle:
            writer = csv.writer(handle)
            for row in table:
                writer.writerow([f"{v:.1f}" if n > 1 else f"{v:.6g}" for v, n in zip(row, field_lengths)])
    return Path(path)
