"""The ingested arrays of one task (``interim/ingest/<task>.npz``) and the split arrays downstream steps use."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.common.io import FormatError
from stages.tab_image.io import SPLITS


@dataclass(frozen=True)
class TaskData:
    images: np.ndarray          # (N, C, H, W) float32 in [0, 1]
    table: np.ndarray           # (N, columns) float64, categorical codes first
    labels: np.ndarray          # (N,) int
    split: np.ndarray           # (N,) str in SPLITS
    row: np.ndarray             # (N,) the row in its split's original files
    field_lengths: np.ndarray   # (columns,) int

    @property
    def num_categorical(self) -> int:
        return int((self.field_lengths > 1).sum())

    def part(self, split: str) -> TaskData:
        keep = self.split == split
        return TaskData(self.images[keep], self.table[keep], self.labels[keep], self.split[keep], self.row[keep],
                        self.field_lengths)


def task_arrays(data: TaskData) -> dict[str, np.ndarray]:
    return {"images": data.images, "table": data.table, "labels": data.labels,
            "split": data.split.astype("U5"), "row": data.row, "field_lengths": data.field_lengths}


def load_task(folder: Path, task: str) -> TaskData:
    path = Path(folder) / f"{task}.npz"
    if not path.is_file():
        raise FormatError(path, "ingested task arrays not found (run tab_image-ingest)")
    with np.load(path, allow_pickle=False) as arrays:
        data = TaskData(arrays["images"], arrays["table"], arrays["labels"], arrays["split"].astype(str),
                        arrays["row"], arrays["field_lengths"])
    unknown = sorted(set(data.split) - set(SPLITS))
    if unknown:
        raise FormatError(path, f"unknown split names {unknown}")
    return data
