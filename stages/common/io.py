"""Readers and writers for the file formats the studies meet.

Every reader raises :class:`FormatError` naming the file and the problem; every writer is
atomic (see :mod:`stages.common.atomic`).
"""
from __future__ import annotations

import gzip
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from stages.common.atomic import atomic_path

PathLike = str | os.PathLike[str]


class FormatError(ValueError):
    """A file is missing, unreadable, or not in the format expected."""

    def __init__(self, path: PathLike, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


# --------------------------------------------------------------------------- input limits
DEFAULT_MAX_INPUT_BYTES = 4 * 1024**3
_max_input_bytes = DEFAULT_MAX_INPUT_BYTES


def set_max_input_bytes(limit: int) -> None:
    """The largest array any reader may allocate (``common.max_input_bytes``; the stage runner sets it).

    A process-wide setting rather than a reader argument: it guards memory, never changes what a valid
    file reads as, so it is not a DVC dependency of any stage.
    """
    global _max_input_bytes
    if limit <= 0:
        raise ValueError(f"common.max_input_bytes must be positive, got {limit}")
    _max_input_bytes = int(limit)


def max_input_bytes() -> int:
    return _max_input_bytes


def _format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def check_declared_size(path: PathLike, shape: tuple[int, ...], itemsize: int, what: str = "array") -> None:
    """Refuse, before reading, an array whose header declares more bytes than the limit, or a zero-length axis."""
    shape = tuple(int(n) for n in shape)
    if any(n < 0 for n in shape):
        raise FormatError(path, f"{what} declares a negative axis length, shape {shape}")
    if any(n == 0 for n in shape):
        raise FormatError(path, f"{what} has a zero-length axis, shape {shape}")
    declared = float(np.prod([float(n) for n in shape])) * itemsize
    if declared > _max_input_bytes:
        raise FormatError(path, f"{what} declares shape {shape} ({_format_bytes(declared)}), over the limit "
                                f"common.max_input_bytes = {_format_bytes(_max_input_bytes)}; raise the limit if the file is genuine")


def require_finite(path: PathLike, array: np.ndarray, what: str = "array") -> np.ndarray:
    """Refuse NaN or Inf values, naming how many and the first position."""
    values = np.asarray(array)
    if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.complexfloating)):
        return array
    finite = np.isfinite(values)
    if not finite.all():
        bad = int(values.size - np.count_nonzero(finite))
        first = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise FormatError(path, f"{what} holds {bad} non-finite (NaN or Inf) value(s), the first at index {first}")
    return array


# --------------------------------------------------------------------------- MATLAB v7.3
_MAT_CLASS = {
    np.dtype(np.float32): "single",
    np.dtype(np.float64): "double",
    np.dtype(np.complex64): "single",
    np.dtype(np.complex128): "double",
    np.dtype(np.int16): "int16",
    np.dtype(np.int32): "int32",
    np.dtype(np.uint8): "uint8",
    np.dtype(np.bool_): "logical",
}


def _mat_header(created_epoch: float | None) -> bytes:
    created = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(created_epoch))
    text = f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {created} HDF5 schema 1.00 .".encode("ascii")
    return text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM"


def write_mat(path: PathLike, variables: dict[str, np.ndarray], created_epoch: float | None = None,
              compress: bool = False) -> Path:
    """Write ``variables`` as a MATLAB v7.3 file that MATLAB, h5py and the challenge's tools read.

    Arrays are given in h5py's axis order (MATLAB's reversed), exactly as :func:`read_mat`
    returns them. Complex arrays become a compound of ``real``/``imag`` like MATLAB writes.
    ``created_epoch`` fixes the header's creation time (so equal data give equal bytes);
    ``compress`` deflates the datasets as MATLAB's ``save -v7.3`` does (worth it for sparse data).
    """
    with atomic_path(path) as temporary:
        with h5py.File(temporary, "w", userblock_size=512) as handle:
            for name, value in variables.items():
                array = np.asarray(value)
                if array.dtype not in _MAT_CLASS:
                    raise FormatError(path, f"variable {name!r}: dtype {array.dtype} has no MATLAB class here")
                if np.iscomplexobj(array):
                    part = array.real.dtype
                    compound = np.dtype([("real", part), ("imag", part)])
                    stored = np.empty(array.shape, dtype=compound)
                    stored["real"], stored["imag"] = array.real, array.imag
                elif array.dtype == np.bool_:
                    stored = array.astype(np.uint8)
                else:
                    stored = array
                dataset = handle.create_dataset(name, data=stored, **({"compression": "gzip", "compression_opts": 1} if compress else {}))
                dataset.attrs["MATLAB_class"] = np.bytes_(_MAT_CLASS[array.dtype])
                if array.dtype == np.bool_:
                    dataset.attrs["MATLAB_int_decode"] = np.int32(1)
        with open(temporary, "r+b") as raw:
            raw.write(_mat_header(created_epoch))
    return Path(path)


def mat_variables(path: PathLike) -> list[str]:
    """Names of the variables stored in a MATLAB v7.3 file."""
    with _open_hdf5(path) as handle:
        return [name for name in handle.keys() if not name.startswith("#")]


def _open_hdf5(path: PathLike) -> h5py.File:
    if not Path(path).is_file():
        raise FormatError(path, "file not found")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise FormatError(path, f"not a readable MATLAB v7.3 (HDF5) file ({error})") from error


def read_mat(path: PathLike, key: str, finite: bool = True) -> np.ndarray:
    """Read variable ``key`` of a MATLAB v7.3 file in h5py's (reversed MATLAB) axis order.

    A ``real``/``imag`` compound comes back as a complex array of the matching precision. The
    declared shape is checked against ``common.max_input_bytes`` before anything is read, and
    NaN or Inf values are refused unless ``finite`` is False.
    """
    with _open_hdf5(path) as handle:
        if key not in handle:
            present = ", ".join(sorted(k for k in handle.keys() if not k.startswith("#"))) or "none"
            raise FormatError(path, f"variable {key!r} missing (variables present: {present})")
        dataset = handle[key]
        if not isinstance(dataset, h5py.Dataset):
            raise FormatError(path, f"variable {key!r} is a {type(dataset).__name__}, not an array")
        if dataset.shape is None:
            raise FormatError(path, f"variable {key!r} is an empty (null) dataspace")
        check_declared_size(path, dataset.shape, dataset.dtype.itemsize, f"variable {key!r}")
        try:
            raw = dataset[()]
        except OSError as error:
            raise FormatError(path, f"variable {key!r} could not be read, the file may be truncated ({error})") from error
    names = raw.dtype.names
    if names is not None:
        if set(names) != {"real", "imag"}:
            raise FormatError(path, f"variable {key!r} is a compound with fields {names}, expected real/imag")
        precision = np.complex128 if raw.dtype["real"] == np.float64 else np.complex64
        values = np.empty(raw.shape, precision)
        values.real, values.imag = raw["real"], raw["imag"]
    else:
        values = np.asarray(raw)
    return require_finite(path, values, f"variable {key!r}") if finite else values


# --------------------------------------------------------------------------- NIfTI
def read_nifti(path: PathLike, dtype: Any = np.float32,
               finite: bool = True) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Read a NIfTI image -> (array in file axis order, 4x4 affine, voxel spacing).

    The header's shape is checked against ``common.max_input_bytes`` (at the float64 the data is
    scaled in) before any voxel is read; NaN or Inf voxels are refused unless ``finite`` is False.
    """
    import nibabel as nib

    if not Path(path).is_file():
        raise FormatError(path, "file not found")
    try:
        image = nib.load(str(path))
    except Exception as error:  # nibabel raises many kinds for a damaged file
        raise FormatError(path, f"not a readable NIfTI file ({error})") from error
    declared_itemsize = max(np.dtype(np.float64).itemsize if dtype is not None else 0, image.get_data_dtype().itemsize)
    check_declared_size(path, image.header.get_data_shape(), declared_itemsize, "image")
    try:
        data = np.asarray(image.get_fdata(dtype=np.float64) if dtype is not None else image.dataobj)
    except Exception as error:  # nibabel raises many kinds for a damaged file
        problem = " ".join(str(error).split()) or type(error).__name__
        raise FormatError(path, f"not a readable NIfTI file, the data may be truncated ({problem})") from error
    if finite:
        require_finite(path, data, "image")
    stored = stored_nifti_spacing(path)
    if any(s <= 0 for s in stored):
        raise FormatError(path, f"non-positive voxel spacing {stored}")
    spacing = tuple(float(s) for s in image.header.get_zooms()[: data.ndim])
    return (data.astype(dtype) if dtype is not None else data), np.asarray(image.affine), spacing


def stored_nifti_spacing(path: PathLike) -> tuple[float, ...]:
    """Voxel spacing (up to 3 axes) exactly as the NIfTI header stores it.

    nibabel silently replaces a zero spacing by 1 and a negative one by its absolute value when
    it loads a file, so the raw header is read unchecked to see what the file really says.
    """
    import nibabel as nib

    if not Path(path).is_file():
        raise FormatError(path, "file not found")
    try:
        with nib.openers.ImageOpener(str(path)) as handle:
            header = nib.Nifti1Header.from_fileobj(handle, check=False)
    except Exception as error:  # nibabel raises many kinds for a damaged header
        raise FormatError(path, f"not a readable NIfTI header ({error})") from error
    dims = int(header["dim"][0])
    return tuple(float(v) for v in header["pixdim"][1 : 1 + min(dims, 3)])


def write_nifti(path: PathLike, array: np.ndarray, spacing: tuple[float, ...] | None = None,
                affine: np.ndarray | None = None) -> Path:
    """Write ``array`` as NIfTI with the given affine, or a diagonal one from ``spacing``."""
    import nibabel as nib

    if affine is None:
        affine = np.diag([*(spacing or (1.0,) * 3)[:3], 1.0])
    image = nib.Nifti1Image(np.asarray(array), affine)
    if spacing is not None:
        image.header.set_zooms(tuple(spacing)[: array.ndim])
    payload = image.to_bytes()
    with atomic_path(path) as temporary:
        if str(path).endswith(".gz"):
            # nibabel's own gzip writer stamps the current time into the header; mtime=0 keeps equal data byte-identical
            with open(temporary, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as packed:
                packed.write(payload)
        else:
            temporary.write_bytes(payload)
    return Path(path)


# --------------------------------------------------------------------------- numpy archives
def write_npz(path: PathLike, arrays: dict[str, np.ndarray], compress: bool = True) -> Path:
    """An ``.npz`` that ``np.load`` reads, written atomically with fixed zip timestamps.

    ``np.savez_compressed`` stamps each member with the current time, so equal arrays would give
    different bytes (and DVC hashes) on every run; this writer does not.
    """
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with atomic_path(path) as temporary:
        with zipfile.ZipFile(temporary, "w", compression=method) as archive:
            for name in sorted(arrays):
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = method
                with archive.open(info, "w", force_zip64=True) as handle:
                    np.lib.format.write_array(handle, np.asarray(arrays[name]), allow_pickle=False)
    return Path(path)


# --------------------------------------------------------------------------- DICOM
def read_dicom_series(folder: PathLike) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read one DICOM series into a ``(z, y, x)`` float32 volume in patient units.

    Slices are ordered along the slice normal by ImagePositionPatient; pixel values are
    mapped with RescaleSlope/RescaleIntercept. Returns the volume and its ``(z, y, x)`` spacing.
    """
    import pydicom

    files = sorted(p for p in Path(folder).iterdir() if p.is_file())
    if not files:
        raise FormatError(folder, "no DICOM files in the folder")
    slices = []
    for file in files:
        try:
            slices.append(pydicom.dcmread(str(file)))
        except Exception as error:
            raise FormatError(file, f"not a readable DICOM file ({error})") from error
    uids = {getattr(s, "SeriesInstanceUID", None) for s in slices}
    if len(uids) > 1:
        raise FormatError(folder, f"holds {len(uids)} series; give one series per folder")
    for dataset, file in zip(slices, files):
        for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            if tag not in dataset:
                raise FormatError(file, f"missing DICOM tag {tag}")
    rows, columns = int(getattr(slices[0], "Rows", 0)), int(getattr(slices[0], "Columns", 0))
    check_declared_size(folder, (len(slices), rows, columns), np.dtype(np.float32).itemsize, "series")
    orientation = np.asarray(slices[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    positions = np.array([np.dot(normal, np.asarray(s.ImagePositionPatient, dtype=float)) for s in slices])
    order = np.argsort(positions)
    volume = np.stack(
        [
            slices[i].pixel_array.astype(np.float32) * float(getattr(slices[i], "RescaleSlope", 1.0))
            + float(getattr(slices[i], "RescaleIntercept", 0.0))
            for i in order
        ]
    )
    gaps = np.diff(positions[order])
    if len(gaps) and np.any(gaps <= 0):
        raise FormatError(folder, "two slices share one position")
    z_spacing = float(np.median(gaps)) if len(gaps) else float(getattr(slices[0], "SliceThickness", 1.0))
    row, column = (float(v) for v in slices[0].PixelSpacing)
    return volume, (z_spacing, row, column)


# --------------------------------------------------------------------------- PNG
def read_png(path: PathLike) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():
        raise FormatError(path, "file not found")
    try:
        with Image.open(path) as image:
            bands = len(image.getbands())
            bytes_per_band = 2 if image.mode.startswith("I;16") else 4 if image.mode in ("I", "F") else 1
            check_declared_size(path, (image.height, image.width, bands), bytes_per_band, "image")
            image.load()
            return np.asarray(image)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise FormatError(path, f"not a readable PNG ({error})") from error


def write_png(path: PathLike, array: np.ndarray) -> Path:
    """Write a 2-D uint8/uint16 (or RGB uint8) array as PNG."""
    from PIL import Image

    with atomic_path(path) as temporary:
        Image.fromarray(np.asarray(array)).save(temporary, format="PNG")
    return Path(path)


# --------------------------------------------------------------------------- tables
def read_table(path: PathLike, required_columns: tuple[str, ...] = (), **read_kwargs: Any):
    """Read a CSV or parquet table; missing required columns are a FormatError naming them."""
    import pandas as pd

    file = Path(path)
    if not file.is_file():
        raise FormatError(path, "file not found")
    try:
        table = pd.read_parquet(file) if file.suffix == ".parquet" else pd.read_csv(file, **read_kwargs)
    except Exception as error:
        raise FormatError(path, f"not a readable table ({error})") from error
    missing = [column for column in required_columns if column not in table.columns]
    if missing:
        raise FormatError(path, f"missing column(s) {', '.join(missing)}; present: {', '.join(map(str, table.columns))}")
    return table


def write_tables(folder: PathLike, tables: dict[str, Any]) -> None:
    """Write each ``{file name: DataFrame}`` into ``folder`` (an atomic staging folder); None entries are skipped."""
    for name, table in tables.items():
        if table is not None:
            write_table(Path(folder) / name, table)


def write_table(path: PathLike, table) -> Path:
    """Write a pandas DataFrame as CSV or parquet (by suffix), atomically."""
    with atomic_path(path) as temporary:
        if str(path).endswith(".parquet"):
            table.to_parquet(temporary, index=False)
        else:
            table.to_csv(temporary, index=False)
    return Path(path)
