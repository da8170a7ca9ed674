"""tab_image-missing_masks: the official missing-data masks, one file per task, split, strategy and rate.

Written as ``interim/missing_mask/<table>_<target>_<strategy>_<rate>.npy`` (the official names:
value, feature, MI, LI) with the official seeds; every method is evaluated on these same files.
"""
from __future__ import annotations

import io as bytes_io
import json

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from stages.common.atomic import atomic_directory
from stages.common.io import write_table
from stages.common.params import StrictModel
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.tab_image.dataset import load_task
from stages.tab_image.io import SPLITS
from stages.tab_image.missing import STRATEGIES, make_missing_mask, mask_file_name, random_forest_importances


class MissingMasksParams(StrictModel):
    rates: list[float] = Field(min_length=1)
    value_seeds: dict[str, int]          # random values: per split (official 2021/2022/2023)
    feature_seed: int                    # random features: one seed, the same columns in every split (official 2022)
    forest_random_state: int             # RandomForest for MI/LI importances (official 2022)

    @field_validator("rates")
    @classmethod
    def rates_in_range(cls, value: list[float]) -> list[float]:
        if any(not 0 <= r < 1 for r in value) or 0.0 not in value:
            raise ValueError(f"rates must lie in [0, 1) and include 0.0, got {value}")
        return value

    @field_validator("value_seeds")
    @classmethod
    def seed_per_split(cls, value: dict[str, int]) -> dict[str, int]:
        if set(value) != set(SPLITS):
            raise ValueError(f"give one seed for each of {list(SPLITS)}, got {sorted(value)}")
        return value


def save_mask(path, mask: np.ndarray) -> None:
    buffer = bytes_io.BytesIO()
    np.save(buffer, mask)
    path.write_bytes(buffer.getvalue())


def missing_masks(ctx: StageContext[MissingMasksParams]) -> Metrics:
    p = ctx.params
    ingest_folder = ctx.dep("interim/ingest")
    info = json.loads((ingest_folder / "dataset.json").read_text())
    importance_rows, written = [], 0
    with atomic_directory(ctx.out("interim/missing_mask")) as staging:
        for task, task_info in info["tasks"].items():
            data = load_task(ingest_folder, task)
            train = data.part("train")
            importances = random_forest_importances(train.table, train.labels, p.forest_random_state)
            importance_rows += [{"task": task, "column": c, "importance": float(v)} for c, v in enumerate(importances)]
            settings = [(s, r) for s in STRATEGIES for r in p.rates]
            for strategy, rate in progress(settings, f"masks {task}", len(settings)):
                for split in SPLITS:
                    n_rows = int((data.split == split).sum())
                    seed = p.value_seeds[split] if strategy == "random_values" else p.feature_seed
                    mask = make_missing_mask(n_rows, len(data.field_lengths), rate, strategy, importances, seed)
                    table_file = task_info["tabular"].format(split=split)
                    save_mask(staging / mask_file_name(table_file, task_info["target"], strategy, rate), mask)
                    written += 1
        write_table(staging / "importances.csv", pd.DataFrame(importance_rows))
    return {"mask_files": written}


if __name__ == "__main__":
    run_stage(missing_masks)
