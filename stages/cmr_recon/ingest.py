"""cmr_recon-ingest: find (or first synthesise) CMRxRecon files, read each, write a validated manifest.

With ``source: synthetic`` a multi-coil cardiac dataset is first written in the challenge's
exact format under ``data/cmr_recon/raw``; either way the files are then read through
:func:`stages.cmr_recon.io.scan_kspace`, which checks each file one frame at a time (shape and
peak without loading it whole); the stages downstream read them with ``io.read_kspace``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from stages.cmr_recon import phantom
from stages.cmr_recon.io import (
    MODALITY_FOLDERS,
    FullSampleFile,
    KspaceSummary,
    find_full_sample_files,
    full_sample_path,
    scan_kspace,
    write_kspace,
)
from stages.common.badinput import BadInputError
from stages.common.ingest import materialise_source, save_ingest
from stages.common.params import StrictModel
from stages.common.paths import portable_path, resolve_inside
from stages.common.pipeline import SYNTHETIC
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage

log = logging.getLogger(__name__)
MIN_MATRIX = 16  # ours: the 16 ACS lines must fit, and the SSIM window with room to spare


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
    complex_phase: bool  # ours: a smooth image phase, as real k-space has

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
            image = phantom.cardiac_phantom(modality, ny, nx, params.frames, params.slices, rng,
                                            complex_phase=params.complex_phase)
            kspace = phantom.simulate_kspace(image, maps, params.noise_std, rng)
            write_kspace(full_sample_path(root, subject, modality), kspace)


def manifest_row(found: FullSampleFile, root: Path, summary: KspaceSummary) -> dict:
    dynamic = len(summary.shape) == 5
    nt, nz, nc, ny, nx = summary.shape if dynamic else (1, *summary.shape)
    return {
        "subject_key": found.subject_key, "set": found.dataset_set or "-", "subject": found.subject,
        "modality": found.modality, "path": found.path.relative_to(root).as_posix(),
        "nt": nt, "nz": nz, "nc": nc, "ny": ny, "nx": nx, "has_time_axis": dynamic,
        "finite": True, "max_abs": summary.max_abs,
        "shape_consistent": dynamic == (found.modality != "blackblood"),
    }


def check_file(found: FullSampleFile, root: Path, seen: dict[tuple[str, str], str]) -> KspaceSummary:
    """Every per-file check, so that ``on_bad_input: skip`` quarantines just this file.

    The path must resolve (symlinks followed) inside the data root; (set, subject, modality)
    must be new; the k-space must scan cleanly (:func:`scan_kspace`); the matrix must be at
    least 16 x 16; BlackBlood has no time axis and every other modality has one.
    """
    relative = found.path.relative_to(root).as_posix()
    resolve_inside(root, relative, what="FullSample file")
    key = (found.subject_key, found.modality)
    if key in seen:
        raise BadInputError(f"{relative}: duplicate of {seen[key]}: subject {found.subject_key!r} "
                            f"(keyed by set and subject) already has {found.modality}")
    seen[key] = relative
    summary = scan_kspace(found.path)
    ny, nx = summary.shape[-2:]
    if min(ny, nx) < MIN_MATRIX:
        raise BadInputError(f"{relative}: matrix {nx} x {ny} (nx x ny) is below the minimum {MIN_MATRIX} x {MIN_MATRIX}")
    dynamic = len(summary.shape) == 5
    if found.modality == "blackblood" and dynamic:
        raise BadInputError(f"{relative}: BlackBlood has no time axis, but the k-space is 5-D {summary.shape}")
    if found.modality != "blackblood" and not dynamic:
        raise BadInputError(f"{relative}: {found.modality} needs a time axis (nt, nz, nc, ny, nx), got {summary.shape}")
    return summary


def assign_splits(manifest: pd.DataFrame, validation_subjects: int, held_out: list[str]) -> pd.DataFrame:
    """Last ``validation_subjects`` subjects (sorted) are validation; held-out modalities never train."""
    subjects = sorted(manifest["subject_key"].unique())
    if validation_subjects >= len(subjects):
        raise BadInputError(f"only {len(subjects)} subjects found; need more than validation_subjects={validation_subjects}")
    validation = set(subjects[len(subjects) - validation_subjects:])
    manifest = manifest.copy()
    manifest["held_out"] = manifest["modality"].isin(held_out)
    manifest["split"] = np.where(manifest["subject_key"].isin(validation), "val", np.where(manifest["held_out"], "unused", "train"))
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
        ("expect_compound_columns_to_be_unique", {"column_list": ["subject_key", "modality"]}),
        ("expect_column_values_to_be_in_set", {"column": "split", "value_set": ["train", "val", "unused"]}),
        ("expect_column_values_to_be_in_set", {"column": "shape_consistent", "value_set": [True]}),
    ]


def ingest(ctx: StageContext[IngestParams]) -> Metrics:
    p = ctx.params
    dataset_root = materialise_source(ctx, p.source, lambda staging: write_synthetic_dataset(staging, p, ctx.common.seed))
    listing = find_full_sample_files(dataset_root)
    for entry in listing.skipped:
        log.warning("skipped %s: %s", entry["path"], entry["reason"])
    if not listing.files:
        raise BadInputError(f"{dataset_root}: no FullSample <modality>.mat files found"
                            + (f" ({len(listing.skipped)} .mat files with unknown modality names skipped)" if listing.skipped else ""))
    rows, seen = [], {}
    for found in progress(listing.files, "reading k-space", len(listing.files)):
        with ctx.quarantine.guard(found.path.relative_to(dataset_root).as_posix()) as outcome:
            summary = check_file(found, dataset_root, seen)
        if outcome.ok:
            rows.append(manifest_row(found, dataset_root, summary))
    ctx.require_survivors(len(rows), "FullSample k-space file")
    manifest = assign_splits(pd.DataFrame(rows), p.validation_subjects, p.held_out_modalities)
    save_ingest(ctx, manifest, "cmr_recon_manifest", manifest_expectations(p.coils if p.source == SYNTHETIC else None),
                {"root": portable_path(dataset_root, ctx.root), "source": p.source, "skipped_files": listing.skipped,
                 "undersampled_files": len(listing.undersampled)})
    counts = manifest["split"].value_counts().to_dict()
    return {"files": len(manifest), "skipped_files": len(listing.skipped), **{f"files_{k}": v for k, v in counts.items()}}


if __name__ == "__main__":
    run_stage(ingest)
