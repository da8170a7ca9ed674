"""cmr_recon-ingest: find (or first synthesise) CMRxRecon files, read each, write a validated manifest.

With ``source: synthetic`` a multi-coil cardiac dataset is first written in the challenge's
exact format under ``data/cmr_recon/raw``; either way the files are then read through
:func:`stages.cmr_recon.io.read_kspace`, the reader used for real data.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from stages.cmr_recon import phantom
from stages.cmr_recon.io import MODALITY_FOLDERS, find_full_sample_files, full_sample_path, read_kspace, write_kspace
from stages.common.badinput import BadInputError
from stages.common.ingest import materialise_source, save_ingest
from stages.common.params import StrictModel
from stages.common.paths import portable_path
from stages.common.pipeline import SYNTHETIC
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage


class IngestParams(StrictModel):
    source: str                      # "synthetic" or the folder holding CMRxRecon2024's MultiCoil/
    subjects: int = Field(ge=2)
    validation_subjects: int = Field(ge=1)
    modalities: list[str] = Field(min_length=1)
    held_out_modalities: list[str]
    coils: int = Field(ge=1)
    frames: int = Field(ge=1)
    slices: int = Field(ge=1)
    matrix_sizes: list[tuple[int, int]] = Field(min_length=1)
    noise_std: float = Field(ge=0)
    coil_ring_radius: float = Field(gt=0)

    @model_validator(mode="after")
    def consistent(self) -> IngestParams:
        unknown = sorted(set(self.modalities) - set(MODALITY_FOLDERS))
        if unknown:
            raise ValueError(f"modalities: unknown {unknown}; known: {sorted(MODALITY_FOLDERS)}")
        stray = sorted(set(self.held_out_modalities) - set(self.modalities))
        if stray:
            raise ValueError(f"held_out_modalities: {stray} are not among the modalities")
        if self.validation_subjects >= self.subjects:
            raise ValueError(f"validation_subjects ({self.validation_subjects}) must be below subjects ({self.subjects})")
        if any(min(size) < 16 for size in self.matrix_sizes):
            raise ValueError(f"matrix_sizes: every size must be at least 16 x 16 (got {self.matrix_sizes})")
        return self


def write_synthetic_dataset(root: Path, params: IngestParams, seed: int) -> None:
    """Write ``params.subjects`` synthetic subjects as challenge FullSample files under ``root``."""
    rng = np.random.default_rng(seed)
    for index in progress(range(params.subjects), "synthesising subjects", params.subjects):
        subject = f"P{index + 1:03d}"
        nx, ny = params.matrix_sizes[index % len(params.matrix_sizes)]
        maps = phantom.coil_maps(params.coils, ny, nx, params.coil_ring_radius)
        for modality in params.modalities:
            image = phantom.cardiac_phantom(modality, ny, nx, params.frames, params.slices, rng)
            kspace = phantom.simulate_kspace(image, maps, params.noise_std, rng)
            write_kspace(full_sample_path(root, subject, modality), kspace)


def manifest_row(subject: str, modality: str, path: Path, root: Path, kspace: np.ndarray) -> dict:
    dynamic = kspace.ndim == 5
    nt, nz, nc, ny, nx = kspace.shape if dynamic else (1, *kspace.shape)
    return {
        "subject": subject, "modality": modality, "path": path.relative_to(root).as_posix(),
        "nt": nt, "nz": nz, "nc": nc, "ny": ny, "nx": nx, "has_time_axis": dynamic,
        "finite": bool(np.isfinite(kspace).all()), "max_abs": float(np.abs(kspace).max()),
    }


def assign_splits(manifest: pd.DataFrame, validation_subjects: int, held_out: list[str]) -> pd.DataFrame:
    """Last ``validation_subjects`` subjects (sorted) are validation; held-out modalities never train."""
    subjects = sorted(manifest["subject"].unique())
    if validation_subjects >= len(subjects):
        raise BadInputError(f"only {len(subjects)} subjects found; need more than validation_subjects={validation_subjects}")
    validation = set(subjects[len(subjects) - validation_subjects:])
    manifest = manifest.copy()
    manifest["held_out"] = manifest["modality"].isin(held_out)
    manifest["split"] = np.where(manifest["subject"].isin(validation), "val", np.where(manifest["held_out"], "unused", "train"))
    return manifest


def manifest_expectations(coils: int | None) -> list[tuple[str, dict]]:
    coil_range = {"min_value": coils, "max_value": coils} if coils else {"min_value": 1, "max_value": 64}
    return [
        ("expect_column_values_to_be_in_set", {"column": "finite", "value_set": [True]}),
        ("expect_column_values_to_be_between", {"column": "nc", **coil_range}),
        ("expect_column_values_to_be_in_set", {"column": "modality", "value_set": sorted(MODALITY_FOLDERS)}),
        ("expect_column_values_to_be_between", {"column": "nx", "min_value": 16}),
        ("expect_column_values_to_be_between", {"column": "ny", "min_value": 16}),
        ("expect_column_values_to_be_between", {"column": "nt", "min_value": 1}),
        ("expect_column_values_to_be_between", {"column": "nz", "min_value": 1}),
        ("expect_compound_columns_to_be_unique", {"column_list": ["subject", "modality"]}),
        ("expect_column_values_to_be_in_set", {"column": "split", "value_set": ["train", "val", "unused"]}),
        ("expect_column_values_to_be_in_set", {"column": "shape_consistent", "value_set": [True]}),
    ]


def ingest(ctx: StageContext[IngestParams]) -> Metrics:
    p = ctx.params
    dataset_root = materialise_source(ctx, p.source, lambda staging: write_synthetic_dataset(staging, p, ctx.common.seed))
    files = find_full_sample_files(dataset_root)
    if not files:
        raise BadInputError(f"{dataset_root}: no FullSample <modality>.mat files found")
    rows = []
    for subject, modality, path in progress(files, "reading k-space", len(files)):
        with ctx.quarantine.guard(str(path.relative_to(dataset_root))) as outcome:
            kspace = read_kspace(path)
        if outcome.ok:
            row = manifest_row(subject, modality, path, dataset_root, kspace)
            row["shape_consistent"] = (kspace.ndim == 5) == (modality != "blackblood")
            rows.append(row)
    ctx.require_survivors(len(rows), "k-space file")
    manifest = assign_splits(pd.DataFrame(rows), p.validation_subjects, p.held_out_modalities)
    save_ingest(ctx, manifest, "cmr_recon_manifest", manifest_expectations(p.coils if p.source == SYNTHETIC else None),
                {"root": portable_path(dataset_root, ctx.root), "source": p.source})
    counts = manifest["split"].value_counts().to_dict()
    return {"files": len(manifest), **{f"files_{k}": v for k, v in counts.items()}}


if __name__ == "__main__":
    run_stage(ingest)
