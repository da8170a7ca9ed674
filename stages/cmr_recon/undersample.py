"""cmr_recon-undersample: challenge masks and undersampled k-space for the validation subjects.

Task 1 pattern (Uniform) and Task 2 patterns (ktUniform, ktGaussian, ktRadial) are written as
``<modality>_kus_<Pattern><R>.mat`` / ``<modality>_mask_<Pattern><R>.mat`` in the 2024 folder
layout; ``undersampled.csv`` records nominal and effective acceleration per file and whether
its mask was shipped with the data (``Mask_Task1|2/<subject>/<modality>_mask_<P><R>.mat`` beside
the FullSample folder, used as is: the official ktGaussian seeds cannot be regenerated) or
generated here. Task 1 (Uniform) masks are written 2-D ``(ny, nx)``, as the challenge ships them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from stages.cmr_recon.dataset import apply_mask, file_seed, load_manifest, manifest_file
from stages.cmr_recon.io import SET_NAMES, read_kspace, read_mask, undersampled_paths, write_kspace, write_mask
from stages.cmr_recon.masks import AccelerationsByPattern, effective_acceleration, make_mask
from stages.common.atomic import atomic_directory
from stages.common.io import write_table
from stages.common.params import StrictModel
from stages.common.paths import resolve_inside
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage


class UndersampleParams(StrictModel):
    patterns: AccelerationsByPattern
    acs: int = Field(ge=0)


def shipped_mask_path(dataset_root: Path, full_path: str, pattern: str, acceleration: int) -> Path | None:
    """The challenge's own mask for a FullSample file, when the data ships one (2024 layout only)."""
    parts = Path(full_path).parts  # MultiCoil/<Folder>/<set>/FullSample/<subject>/<modality>.mat
    if len(parts) < 4 or parts[-3] != "FullSample" or parts[-4] not in SET_NAMES:
        return None
    task = "Task1" if pattern == "Uniform" else "Task2"
    modality = Path(full_path).stem
    candidate = Path(*parts[:-3]) / f"Mask_{task}" / parts[-2] / f"{modality}_mask_{pattern}{acceleration}.mat"
    return resolve_inside(dataset_root, candidate, what="shipped mask") if (dataset_root / candidate).exists() else None


def choose_mask(dataset_root: Path, full_path: str, kspace_shape: tuple[int, ...], pattern: str, acceleration: int,
                acs: int, seed: int) -> tuple[np.ndarray, str]:
    """(mask ``(nt|1, ny, nx)``, "shipped" or "generated"): the shipped mask wins."""
    shipped = shipped_mask_path(dataset_root, full_path, pattern, acceleration)
    if shipped is not None:
        return read_mask(shipped, kspace_shape), "shipped"
    nt = kspace_shape[0] if len(kspace_shape) == 5 else 1
    ny, nx = kspace_shape[-2:]
    mask = make_mask(pattern, nx, ny, nt, acceleration, acs=acs, seed=seed)
    return (mask[:1] if pattern == "Uniform" else mask), "generated"


def output_set(subject_key: str) -> str:
    """The set folder of a subject's outputs: its own set in the 2024 layout, else ValidationSet."""
    head = subject_key.split("/")[0]
    return head if head in SET_NAMES else "ValidationSet"


def undersample(ctx: StageContext[UndersampleParams]) -> Metrics:
    manifest, dataset_root = load_manifest(ctx.dep("interim/ingest"), ctx.root)
    evaluation = manifest[manifest["split"] == "val"]
    out = ctx.out("interim/undersampled")
    rows = []
    with atomic_directory(out) as staging:
        for case in progress(evaluation.itertuples(), "undersampling", len(evaluation)):
            kspace = read_kspace(manifest_file(dataset_root, case.path))
            for pattern, accelerations in ctx.params.patterns.items():
                for acceleration in accelerations:
                    seed = file_seed(ctx.common.seed, case.subject_key, case.modality, pattern, acceleration)
                    mask, origin = choose_mask(dataset_root, case.path, kspace.shape, pattern, acceleration, ctx.params.acs, seed)
                    kus_path, mask_path = undersampled_paths(staging, case.subject, case.modality, pattern, acceleration,
                                                             dataset_set=output_set(case.subject_key))
                    write_kspace(kus_path, apply_mask(kspace, mask), key="kus")
                    write_mask(mask_path, mask[0] if pattern == "Uniform" and mask.shape[0] == 1 else mask)
                    rows.append({
                        "subject_key": case.subject_key, "subject": case.subject, "modality": case.modality,
                        "held_out": case.held_out, "mask_source": origin,
                        "pattern": pattern, "acceleration": acceleration,
                        "effective_acceleration": effective_acceleration(mask),
                        "kus_path": kus_path.relative_to(staging).as_posix(),
                        "mask_path": mask_path.relative_to(staging).as_posix(),
                        "full_path": case.path, "acs": ctx.params.acs,
                    })
        table = pd.DataFrame(rows)
        write_table(staging / "undersampled.csv", table)
    ctx.log_artifact(out / "undersampled.csv")
    summary = table.groupby(["pattern", "acceleration"])["effective_acceleration"].mean()
    return {f"effective_R.{pattern}{r}": value for (pattern, r), value in summary.items()}


if __name__ == "__main__":
    run_stage(undersample)
