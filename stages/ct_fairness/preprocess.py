"""ct_fairness-preprocess: window, resample and crop every case; write the paper's group splits and folds.

Each case goes through :func:`stages.ct_fairness.transforms.preprocessing_chain` (CT window to
[0, 1], common spacing, a fixed-shape crop centred on the labelled organs); a case whose crop cuts
away more than ``max_crop_loss`` of an organ is refused, and each organ's loss against its native
volume (resampling and crop) is recorded in ``cases.csv`` (``organ_loss_<organ>``) and is saved as ``<dataset>/<case>.npz``. The
splits (sex and age within each of ``group_datasets``, and dataset against dataset) follow
:mod:`stages.ct_fairness.folds`; a group too small for the folds stops the stage naming the sizes.
Cases are read from where ``interim/ingest/dataset.json`` says each dataset lies (``raw/`` or the
real source folders), so the stage lists the sources among its deps.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from stages.common.atomic import atomic_directory, write_json
from stages.common.badinput import BadInputError
from stages.common.io import read_table, write_npz, write_table
from stages.common.params import StrictModel
from stages.common.paths import from_portable
from stages.common.runtime import configure_torch, progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.ct_fairness.datasets import CaseRecord, DatasetName, read_case
from stages.ct_fairness.folds import SPLITS_FILE, age_group, build_experiments, split_table
from stages.ct_fairness.organs import ORGANS
from stages.ct_fairness.transforms import (
    crop_around_organs,
    crop_losses,
    organ_losses,
    preprocessing_chain,
    resample_case,
    voxel_counts,
)

MANIFEST_COLUMNS = ("case", "dataset", "age", "sex", "image_path", "label_path", "label_style",
                    *(f"volume_ml_{o}" for o in ORGANS))


class AgeBins(StrictModel):
    young_max: float
    old_min: float

    @model_validator(mode="after")
    def ordered(self) -> AgeBins:
        if self.young_max >= self.old_min:
            raise ValueError(f"young_max {self.young_max} must be below old_min {self.old_min}")
        return self


class PreprocessParams(StrictModel):
    window_hu: tuple[float, float]
    spacing_mm: tuple[PositiveFloat, PositiveFloat, PositiveFloat]
    shape: tuple[PositiveInt, PositiveInt, PositiveInt]
    age_bins: AgeBins
    folds: int = Field(ge=2)
    group_datasets: list[DatasetName]
    cross_dataset: bool
    common_training_size: bool   # ours: every experiment at the smallest experiment's block size
    placebo: bool                # ours: a shuffled-label placebo experiment per group dataset
    stratify_groups: bool        # ours: sex groups matched for age band, age groups for sex
    max_crop_loss: float = Field(ge=0, le=1)   # ours: refuse a case whose crop cuts away more of an organ
    num_threads: int = Field(ge=1)   # torch threads of the MONAI transforms (CPU)

    @model_validator(mode="after")
    def ordered_window(self) -> PreprocessParams:
        if self.window_hu[0] >= self.window_hu[1]:
            raise ValueError(f"window_hu: the lower bound must be below the upper one (got {list(self.window_hu)})")
        return self


def load_ingest(folder: Path, repo: Path) -> tuple[pd.DataFrame, dict]:
    """(manifest, dataset.json) written by ct_fairness-ingest; dataset roots resolved against the repo."""
    manifest = read_table(folder / "manifest.csv", MANIFEST_COLUMNS, dtype={"case": str})
    info = json.loads((folder / "dataset.json").read_text())
    info["roots"] = {name: from_portable(root, repo) for name, root in info["roots"].items()}
    return manifest, info


def record_from_row(row) -> CaseRecord:
    return CaseRecord(str(row.case), str(row.dataset), str(row.image_path), str(row.label_path), str(row.label_style),
                      row.age, row.sex)


def check_crop(case: str, resampled_voxels: list[int], cropped_voxels: list[int], max_loss: float) -> None:
    """Refuse a case whose fixed-shape crop cut away more than ``max_loss`` of an organ (issue 18 item 1)."""
    for organ, before, after, loss in zip(ORGANS, resampled_voxels, cropped_voxels,
                                          crop_losses(resampled_voxels, cropped_voxels), strict=True):
        if loss > max_loss:
            raise BadInputError(f"{case}: the crop to preprocess.shape kept {after} of the {organ}'s {before} voxels "
                                f"({100 * loss:.0f}% cut away, over ct_fairness.preprocess.max_crop_loss {max_loss:g}); "
                                "enlarge preprocess.shape")


def preprocess(ctx: StageContext[PreprocessParams]) -> Metrics:
    p = ctx.params
    configure_torch(p.num_threads)  # the transforms run on the CPU, whatever device training uses
    manifest, info = load_ingest(ctx.dep("interim/ingest"), ctx.root)
    unknown = sorted(set(p.group_datasets) - set(manifest["dataset"]))
    if unknown:
        raise BadInputError(f"ct_fairness.preprocess.group_datasets: {unknown} not in the manifest "
                            f"(datasets present: {sorted(set(manifest['dataset']))})")
    manifest["age_group"] = [age_group(a, p.age_bins.young_max, p.age_bins.old_min) or "" for a in manifest["age"]]
    experiments = build_experiments(manifest, list(p.group_datasets), p.cross_dataset, p.folds,
                                    p.age_bins.young_max, p.age_bins.old_min, ctx.common.seed, p.common_training_size,
                                    p.placebo, p.stratify_groups)
    for experiment in experiments:
        sizes = ", ".join(f"{g}={n}" for g, n in experiment.group_sizes.items())
        print(f"{experiment.name}: groups {sizes}, block {experiment.block_size}, "
              f"{experiment.block_size * (p.folds - 1)} training cases per model")

    chain = preprocessing_chain(p.window_hu, p.spacing_mm, p.shape)
    merged_ids = info.get("totalseg_merged_labels") or {}
    rows = []
    with atomic_directory(ctx.out("interim/preprocessed")) as staging:
        for row in progress(list(manifest.itertuples()), "preprocessing cases", len(manifest)):
            volumes = read_case(info["roots"][row.dataset], record_from_row(row), merged_ids)
            resampled_image, resampled_label = resample_case(volumes.image, volumes.label, volumes.spacing, chain)
            image, label = crop_around_organs(resampled_image, resampled_label, chain.shape)
            voxels = voxel_counts(label, len(ORGANS))
            check_crop(f"{row.dataset}/{row.case}", voxel_counts(resampled_label, len(ORGANS)), voxels, p.max_crop_loss)
            losses = organ_losses([float(getattr(row, f"volume_ml_{o}")) for o in ORGANS], voxels, p.spacing_mm)
            relative = f"{row.dataset}/{row.case}.npz"
            write_npz(staging / relative, {"image": image.astype("float32"), "label": label})
            rows.append({"case": row.case, "dataset": row.dataset, "sex": row.sex, "age": row.age,
                         "age_group": row.age_group, "path": relative,
                         **{f"volume_ml_{o}": getattr(row, f"volume_ml_{o}") for o in ORGANS},
                         **{f"preprocessed_voxels_{o}": v for o, v in zip(ORGANS, voxels, strict=True)},
                         **{f"organ_loss_{o}": round(float(v), 6) for o, v in zip(ORGANS, losses, strict=True)}})
        write_table(staging / "cases.csv", pd.DataFrame(rows))
        write_json(staging / "preprocess.json", {"window_hu": p.window_hu, "spacing_mm": p.spacing_mm, "shape": p.shape})
    splits = ctx.out("interim/splits")
    with atomic_directory(splits) as staging:
        write_json(staging / SPLITS_FILE, {"folds": p.folds, "age_bins": p.age_bins.model_dump(),
                                           "experiments": [asdict(e) for e in experiments]})
        write_table(staging / "folds.csv", split_table(experiments))
    ctx.log_artifact(splits / SPLITS_FILE)
    table = pd.DataFrame(rows)
    return {"cases": len(rows), "experiments": len(experiments), **{f"block_size.{e.name}": e.block_size for e in experiments},
            **{f"max_organ_loss.{o}": float(table[f"organ_loss_{o}"].max()) for o in ORGANS}}


if __name__ == "__main__":
    run_stage(preprocess)
