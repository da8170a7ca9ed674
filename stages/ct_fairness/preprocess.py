"""ct_fairness-preprocess: window, resample and crop every case; write the paper's group splits and folds.

Each case goes through :func:`stages.ct_fairness.transforms.preprocessing_chain` (CT window to
[0, 1], common spacing, body crop, fixed shape) and is saved as ``<dataset>/<case>.npz``. The
splits (sex and age within each of ``group_datasets``, and dataset against dataset) follow
:mod:`stages.ct_fairness.folds`; a group too small for the folds stops the stage naming the sizes.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from stages.ct_fairness.datasets import CaseRecord, read_case
from stages.ct_fairness.folds import age_group, build_experiments, split_table
from stages.ct_fairness.organs import ORGANS
from stages.ct_fairness.transforms import preprocess_case, preprocessing_chain
from stages.common.atomic import atomic_directory, write_json
from stages.common.badinput import BadInputError
from stages.common.io import read_table, write_table
from stages.common.params import StrictModel
from stages.common.paths import from_portable
from stages.common.runtime import progress
from stages.common.stage import run_stage

STUDY = "ct_fairness"
MANIFEST_COLUMNS = ("case", "dataset", "age", "sex", "image_path", "label_path", "label_style",
                    *(f"volume_ml_{o}" for o in ORGANS))


class AgeBins(StrictModel):
    young_max: float = 40.0
    old_min: float = 65.0


class PreprocessParams(StrictModel):
    window_hu: tuple[float, float] = (-175.0, 250.0)
    spacing_mm: tuple[float, float, float] = (8.0, 8.0, 8.0)
    shape: tuple[int, int, int] = (44, 36, 28)
    age_bins: AgeBins = AgeBins()
    folds: int = 5
    group_datasets: list[str] = ["totalsegmentator"]
    cross_dataset: bool = True


def load_ingest(study_data: Path, repo: Path) -> tuple[pd.DataFrame, dict]:
    """(manifest, datasets.json) written by ct_fairness-ingest; dataset roots resolved against the repo."""
    folder = study_data / "interim" / "ingest"
    manifest = read_table(folder / "manifest.csv", MANIFEST_COLUMNS, dtype={"case": str})
    info = json.loads((folder / "datasets.json").read_text())
    info["roots"] = {name: from_portable(root, repo) for name, root in info["roots"].items()}
    return manifest, info


def record_from_row(row: pd.Series) -> CaseRecord:
    return CaseRecord(str(row.case), str(row.dataset), str(row.image_path), str(row.label_path), str(row.label_style),
                      row.age, row.sex)


def main() -> None:
    with run_stage(STUDY, "preprocess", PreprocessParams) as ctx:
        p = ctx.params
        if p.age_bins.young_max >= p.age_bins.old_min:
            raise BadInputError(f"ct_fairness.preprocess.age_bins: young_max {p.age_bins.young_max} must be below old_min {p.age_bins.old_min}")
        manifest, info = load_ingest(ctx.data, ctx.root)
        unknown = sorted(set(p.group_datasets) - set(manifest["dataset"]))
        if unknown:
            raise BadInputError(f"ct_fairness.preprocess.group_datasets: {unknown} not in the manifest "
                                f"(datasets present: {sorted(set(manifest['dataset']))})")
        manifest["age_group"] = [age_group(a, p.age_bins.young_max, p.age_bins.old_min) or "" for a in manifest["age"]]
        experiments = build_experiments(manifest, p.group_datasets, p.cross_dataset, p.folds,
                                        p.age_bins.young_max, p.age_bins.old_min, ctx.common.seed)
        for experiment in experiments:
            sizes = ", ".join(f"{g}={n}" for g, n in experiment.group_sizes.items())
            print(f"{experiment.name}: groups {sizes}, block {experiment.block_size}, "
                  f"{experiment.block_size * (p.folds - 1)} training cases per model")

        chain = preprocessing_chain(p.window_hu, p.spacing_mm, p.shape)
        rows = []
        out = ctx.data / "interim" / "preprocessed"
        with atomic_directory(out) as staging:
            for row in progress(list(manifest.itertuples()), "preprocessing cases", len(manifest)):
                volumes = read_case(info["roots"][row.dataset], record_from_row(row), info.get("totalseg_merged_labels") or {})
                image, label = preprocess_case(volumes.image, volumes.label, volumes.spacing, chain)
                relative = f"{row.dataset}/{row.case}.npz"
                (staging / row.dataset).mkdir(exist_ok=True)
                with open(staging / relative, "wb") as handle:
                    np.savez_compressed(handle, image=image.astype(np.float32), label=label)
                rows.append({"case": row.case, "dataset": row.dataset, "sex": row.sex, "age": row.age,
                             "age_group": row.age_group, "path": relative,
                             **{f"volume_ml_{o}": getattr(row, f"volume_ml_{o}") for o in ORGANS},
                             **{f"preprocessed_voxels_{o}": int((label == i + 1).sum()) for i, o in enumerate(ORGANS)}})
            write_table(staging / "cases.csv", pd.DataFrame(rows))
            write_json(staging / "preprocess.json", {"window_hu": p.window_hu, "spacing_mm": p.spacing_mm, "shape": p.shape})
        with atomic_directory(ctx.data / "interim" / "splits") as staging:
            write_json(staging / "splits.json", {"folds": p.folds, "age_bins": p.age_bins.model_dump(),
                                                 "experiments": [asdict(e) for e in experiments]})
            write_table(staging / "folds.csv", split_table(experiments))
        ctx.log_artifact(ctx.data / "interim" / "splits" / "splits.json")
        ctx.log_metrics({"cases": len(rows), "experiments": len(experiments),
                         **{f"block_size.{e.name}": e.block_size for e in experiments}})


if __name__ == "__main__":
    main()
