"""Shared reading of the ingest manifest and helpers that turn files into training/eval arrays."""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from stages.common.io import read_table
from stages.common.paths import from_portable, resolve_inside

MANIFEST_COLUMNS = ("subject_key", "subject", "modality", "path", "nt", "nz", "nc", "ny", "nx", "split", "held_out")


def load_manifest(folder: Path, repo: Path) -> tuple[pd.DataFrame, Path]:
    """(manifest, dataset root) from cmr_recon-ingest's output folder."""
    manifest = read_table(folder / "manifest.csv", MANIFEST_COLUMNS)
    return manifest, from_portable(json.loads((folder / "dataset.json").read_text())["root"], repo)


def manifest_file(dataset_root: Path, relative: str) -> Path:
    """A manifest path resolved inside the dataset root (anything escaping it is refused)."""
    return resolve_inside(dataset_root, relative, what="manifest path")


def with_time_axis(kspace: np.ndarray) -> np.ndarray:
    """BlackBlood's ``(nz, nc, ny, nx)`` as ``(1, nz, nc, ny, nx)``; dynamic data unchanged."""
    return kspace[None] if kspace.ndim == 4 else kspace


def apply_mask(kspace: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Zero the unsampled entries of ``(nt, nz, nc, ny, nx)`` (or 4-D) k-space with a ``(nt, ny, nx)`` mask."""
    if kspace.ndim == 4:
        return kspace * mask[0][None, None]
    return kspace * mask[:, None, None]


def file_seed(base_seed: int, *parts: object) -> int:
    """A stable per-file seed (same on every machine and Python run)."""
    return (base_seed * 1_000_003 + zlib.crc32("/".join(map(str, parts)).encode())) % (2**31)
