"""cmr_recon-undersample: challenge masks and undersampled k-space for the validation subjects.

Task 1 pattern (Uniform) and Task 2 patterns (ktUniform, ktGaussian, ktRadial) are written as
``<modality>_kus_<Pattern><R>.mat`` / ``<modality>_mask_<Pattern><R>.mat`` in the 2024 folder
layout; ``undersampled.csv`` records nominal and effective acceleration per file.
"""
from __future__ import annotations

import pandas as pd
from pydantic import Field

from stages.cmr_recon.dataset import apply_mask, file_seed, load_manifest, manifest_file
from stages.cmr_recon.io import read_kspace, undersampled_paths, write_kspace, write_mask
from stages.cmr_recon.masks import AccelerationsByPattern, effective_acceleration, make_mask
from stages.common.atomic import atomic_directory
from stages.common.io import write_table
from stages.common.params import StrictModel
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage


class UndersampleParams(StrictModel):
    patterns: AccelerationsByPattern
    acs: int = Field(ge=0)


def undersample(ctx: StageContext[UndersampleParams]) -> Metrics:
    manifest, dataset_root = load_manifest(ctx.dep("interim/ingest"), ctx.root)
    evaluation = manifest[manifest["split"] == "val"]
    out = ctx.out("interim/undersampled")
    rows = []
    with atomic_directory(out) as staging:
        for case in progress(evaluation.itertuples(), "undersampling", len(evaluation)):
            kspace = read_kspace(manifest_file(dataset_root, case.path))
            nt = kspace.shape[0] if kspace.ndim == 5 else 1
            ny, nx = kspace.shape[-2:]
            for pattern, accelerations in ctx.params.patterns.items():
                for acceleration in accelerations:
                    seed = file_seed(ctx.common.seed, case.subject, case.modality, pattern, acceleration)
                    mask = make_mask(pattern, nx, ny, nt, acceleration, acs=ctx.params.acs, seed=seed)
                    kus_path, mask_path = undersampled_paths(staging, case.subject, case.modality, pattern, acceleration)
                    write_kspace(kus_path, apply_mask(kspace, mask), key="kus")
                    write_mask(mask_path, mask)
                    rows.append({
                        "subject": case.subject, "modality": case.modality, "held_out": case.held_out,
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
