"""tab_image-ingest: read (or first synthesise) each task's images, table, field lengths and labels.

With ``source: synthetic`` two tasks are first written under ``data/tab_image/raw/<task>/`` in the
official TIP layout (:mod:`stages.tab_image.io`): a many-class task with PNG images (accuracy, as
DVM) and a binary task with NPY images (AUC, as the cardiac tasks). Either way every file is then
read through the readers used for real data, checked row by row, and the arrays of each task are
written to ``interim/ingest/<task>.npz`` beside a Great-Expectations-validated manifest.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from stages.common.badinput import BadInputError
from stages.common.ingest import finish_ingest, ingest_output, materialise_source
from stages.common.io import write_npz
from stages.common.params import StrictModel
from stages.common.paths import portable_path
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.tab_image import io, synthetic
from stages.tab_image.dataset import TaskData, task_arrays


class TaskFiles(StrictModel):
    """File names inside a task folder, as the official dataset configs give them; ``{split}`` is filled in."""

    tabular: str
    imaging: str
    labels: str
    field_lengths: str


class TaskParams(StrictModel):
    target: str                                   # the official ``target`` (dvm, CAD, Infarction): part of mask file names
    metric: Literal["acc", "auc"]
    num_classes: int = Field(ge=2)
    image_format: Literal["png", "npy"]
    npy_max: float = Field(gt=0)                  # 255 for DVM arrays, 1 for the cardiac arrays (official loaders)
    files: TaskFiles
    synthetic_label: Literal["many_class", "binary"]


class IngestParams(StrictModel):
    source: str                                   # "synthetic" or a folder with one sub-folder per task
    image_size: int = Field(ge=8)                 # images are resized to image_size x image_size (official: 128)
    channels: int = Field(ge=1)
    synthetic_rows: dict[Literal["train", "val", "test"], int]   # rows per split of each synthetic task
    tasks: dict[str, TaskParams] = Field(min_length=1)

    @field_validator("synthetic_rows")
    @classmethod
    def every_split(cls, value: dict[str, int]) -> dict[str, int]:
        if set(value) != set(io.SPLITS) or min(value.values()) < 4:
            raise ValueError(f"give at least 4 rows for each of {list(io.SPLITS)}, got {value}")
        return value


def write_synthetic_task(folder: Path, task: TaskParams, params: IngestParams, rng: np.random.Generator) -> None:
    """One synthetic task in the official layout (headerless CSV, torch.save'd lists, PNG or NPY images)."""
    io.write_pt(folder / task.files.field_lengths, synthetic.FIELD_LENGTHS.tolist())
    for split in io.SPLITS:
        population = synthetic.draw_population(params.synthetic_rows[split], params.image_size, params.channels, rng)
        labels = population.many_class if task.synthetic_label == "many_class" else population.binary
        paths = []
        for index, image in enumerate(population.images):
            # The cardiac loader lists a name and reads path[:-4] + '.npy'; PNG paths are read as they are.
            listed = f"images/{split}/{index:05d}.png"
            io.write_image(io.image_file(folder, listed, task.image_format), image, task.image_format, task.npy_max)
            paths.append(listed)
        io.write_table_csv(folder / task.files.tabular.format(split=split), population.table, synthetic.FIELD_LENGTHS)
        io.write_pt(folder / task.files.imaging.format(split=split), paths)
        io.write_pt(folder / task.files.labels.format(split=split), [int(v) for v in labels])


def resized(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[1:] == (size, size):
        return image
    from skimage.transform import resize

    return resize(image, (image.shape[0], size, size), order=1, anti_aliasing=True, preserve_range=True).astype(np.float32)


def read_task(ctx: StageContext[IngestParams], name: str, folder: Path, task: TaskParams) -> tuple[TaskData, list[dict]]:
    """Every row of every split of one task; bad rows go through the quarantine, structural errors raise."""
    p = ctx.params
    lengths_file = folder / task.files.field_lengths
    field_lengths = io.read_field_lengths(lengths_file)
    images, tables, labels, splits, rows, manifest = [], [], [], [], [], []
    for split in io.SPLITS:
        table_file = folder / task.files.tabular.format(split=split)
        labels_file = folder / task.files.labels.format(split=split)
        paths_file = folder / task.files.imaging.format(split=split)
        cells = io.read_table_rows(table_file)
        split_labels = io.read_labels(labels_file)
        paths = io.read_image_paths(paths_file)
        if not (len(cells) == len(split_labels) == len(paths)):
            raise BadInputError(f"{table_file}: {len(cells)} rows, but {labels_file.name} has {len(split_labels)} labels "
                                f"and {paths_file.name} {len(paths)} image paths")
        widths = {len(row) for row in cells}
        if len(widths) == 1 and widths != {len(field_lengths)}:
            raise BadInputError(f"{lengths_file}: {len(field_lengths)} field lengths, but {table_file.name} has "
                                f"{widths.pop()} columns")
        for index in progress(range(len(cells)), f"reading {name}/{split}", len(cells)):
            with ctx.quarantine.guard(f"{name}/{split}/row {index}") as outcome:
                values = io.parse_row(cells[index], field_lengths, table_file, index)
                label = int(split_labels[index])
                if not 0 <= label < task.num_classes:
                    raise BadInputError(f"{labels_file}: row {index}: label {label} outside 0..{task.num_classes - 1}")
                image_path = io.image_file(folder, paths[index], task.image_format)
                image = io.read_image(image_path, task.image_format, task.npy_max)
                if image.shape[0] != p.channels:
                    raise BadInputError(f"{image_path}: {image.shape[0]} channels, expected {p.channels}")
            if not outcome.ok:
                continue
            images.append(resized(image, p.image_size))
            tables.append(values)
            labels.append(label)
            splits.append(split)
            rows.append(index)
            categorical = field_lengths > 1
            manifest.append({
                "task": name, "split": split, "row": index, "image": portable_path(image_path, ctx.root),
                "label": label, "label_in_range": label < task.num_classes,
                "channels": image.shape[0], "height": image.shape[1], "width": image.shape[2],
                "categorical_in_range": bool(((values[categorical] >= 0) & (values[categorical] < field_lengths[categorical])).all()),
                "continuous_finite": bool(np.isfinite(values[~categorical]).all()),
            })
    if not tables:
        raise BadInputError(f"{folder}: no readable rows")
    data = TaskData(np.stack(images), np.stack(tables), np.array(labels), np.array(splits), np.array(rows), field_lengths)
    return data, manifest


def manifest_expectations(channels: int) -> list[tuple[str, dict]]:
    return [
        ("expect_column_values_to_be_in_set", {"column": "categorical_in_range", "value_set": [True]}),
        ("expect_column_values_to_be_in_set", {"column": "continuous_finite", "value_set": [True]}),
        ("expect_column_values_to_be_in_set", {"column": "label_in_range", "value_set": [True]}),
        ("expect_column_values_to_not_be_null", {"column": "image"}),
        ("expect_column_values_to_be_between", {"column": "channels", "min_value": channels, "max_value": channels}),
        ("expect_column_values_to_be_between", {"column": "height", "min_value": 8}),
        ("expect_column_values_to_be_between", {"column": "width", "min_value": 8}),
        ("expect_column_values_to_be_between", {"column": "label", "min_value": 0}),
        ("expect_column_values_to_be_in_set", {"column": "split", "value_set": list(io.SPLITS)}),
        ("expect_compound_columns_to_be_unique", {"column_list": ["task", "split", "row"]}),
    ]


def ingest(ctx: StageContext[IngestParams]) -> Metrics:
    p = ctx.params

    def write_synthetic(staging: Path) -> None:
        rng = np.random.default_rng(ctx.common.seed)
        for name, task in p.tasks.items():
            write_synthetic_task(staging / name, task, p, rng)

    dataset_root = materialise_source(ctx, p.source, write_synthetic)
    rows, arrays, info = [], {}, {"root": portable_path(dataset_root, ctx.root), "source": p.source, "tasks": {}}
    for name, task in p.tasks.items():
        with ctx.quarantine.guard(name) as outcome:
            data, manifest = read_task(ctx, name, dataset_root / name, task)
        if not outcome.ok:
            continue
        arrays[name] = data
        rows += manifest
        info["tasks"][name] = {"target": task.target, "metric": task.metric, "num_classes": task.num_classes,
                               "field_lengths": data.field_lengths.tolist(), "tabular": task.files.tabular,
                               "rows": {s: int((data.split == s).sum()) for s in io.SPLITS}}
    if not arrays:
        raise BadInputError(f"{dataset_root}: none of the tasks {list(p.tasks)} could be read")
    manifest = pd.DataFrame(rows)
    with ingest_output(ctx) as staging:
        for name, data in arrays.items():
            write_npz(staging / f"{name}.npz", task_arrays(data))
        finish_ingest(ctx, staging, manifest, "tab_image_manifest", manifest_expectations(p.channels), info)
    return {"rows": len(manifest), **{f"rows_{name}": len(data.labels) for name, data in arrays.items()}}


if __name__ == "__main__":
    run_stage(ingest)
