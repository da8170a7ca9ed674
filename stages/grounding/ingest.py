"""grounding-ingest: read VinDr-CXR boxes, the knowledge YAML and the PNGs (after writing the synthetic set).

With ``source: synthetic`` a chest-X-ray-like set is first written in AG-KD's layout under
``data/grounding/raw``; either way it is then read by :mod:`stages.grounding.formats`, the
readers used for real data. The manifest has one row per gold box (validated by Great
Expectations); ``queries.csv`` has one row per (image, class present): a training sample or an
evaluation query.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from pydantic import Field, model_validator

from stages.common.badinput import BadInputError
from stages.common.ingest import materialise_source, save_ingest
from stages.common.params import StrictModel
from stages.common.paths import portable_path
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.grounding import synthetic
from stages.grounding.formats import SPLITS, BoxRow, check_box, read_annotations, read_image, read_knowledge


class SyntheticClass(StrictModel):
    density: str
    shape: str
    location: str
    size: str

    @model_validator(mode="after")
    def known_attributes(self) -> SyntheticClass:
        for key, allowed in synthetic.ATTRIBUTES.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} {getattr(self, key)!r} is not one of {list(allowed)}")
        return self


class SyntheticParams(StrictModel):
    classes: dict[str, SyntheticClass] = Field(min_length=2)
    images_per_split: dict[str, int]
    classes_per_image: int = Field(ge=1, le=2)
    image_size: int = Field(ge=64)


class IngestParams(StrictModel):
    source: str                      # "synthetic" or the folder holding annotations, knowledge YAML and images
    annotations: str                 # file names inside the source folder
    knowledge: str
    images: str
    seen_classes: list[str] = Field(min_length=1)
    unseen_classes: list[str]
    synthetic: SyntheticParams

    @model_validator(mode="after")
    def consistent(self) -> IngestParams:
        both = sorted(set(self.seen_classes) & set(self.unseen_classes))
        if both:
            raise ValueError(f"seen_classes and unseen_classes share {both}")
        splits = sorted(set(self.synthetic.images_per_split) - set(SPLITS))
        if splits or any(n < 1 for n in self.synthetic.images_per_split.values()):
            raise ValueError(f"synthetic.images_per_split: keys must be among {list(SPLITS)} with counts >= 1")
        if self.source == "synthetic":
            classes = self.synthetic.classes
            missing = sorted(set(self.seen_classes + self.unseen_classes) - set(classes))
            if missing:
                raise ValueError(f"synthetic.classes: no attributes for {missing}")
            for name in self.unseen_classes:
                for key in synthetic.ATTRIBUTES:
                    value = getattr(classes[name], key)
                    if all(getattr(classes[s], key) != value for s in self.seen_classes):
                        raise ValueError(f"unseen class {name!r}: its {key} {value!r} appears in no seen class")
                if any(classes[name] == classes[s] for s in self.seen_classes):
                    raise ValueError(f"unseen class {name!r} repeats a seen class's attributes")
        return self


def read_dataset(root: Path, p: IngestParams, ctx: StageContext[IngestParams]) -> tuple[pd.DataFrame, dict[str, str]]:
    """Box table of every gold box whose image reads and whose box and class are valid; the rest quarantined."""
    knowledge = read_knowledge(root / p.knowledge)
    boxes = read_annotations(root / p.annotations)
    images: dict[str, tuple[int, int] | None] = {}
    for image_id in progress(sorted({b.image_id for b in boxes}), "reading images"):
        with ctx.quarantine.guard(f"image {image_id}") as outcome:
            pixels = read_image(root / p.images / f"{image_id}.png")
        images[image_id] = pixels.shape[::-1] if outcome.ok else None
    known = set(p.seen_classes) | set(p.unseen_classes)
    records = []
    for box in boxes:
        size = images[box.image_id]
        if size is None:
            continue  # its image is already in the quarantine list
        where = f"{root / p.annotations} row {box.row}"
        with ctx.quarantine.guard(f"row {box.row}") as outcome:
            validate_row(box, size, knowledge, known, where)
        if outcome.ok:
            records.append({"image_id": box.image_id, "class_name": box.class_name, "split": box.split,
                            "x_min": box.x_min, "y_min": box.y_min, "x_max": box.x_max, "y_max": box.y_max,
                            "width": size[0], "height": size[1], "image_present": True,
                            "seen": box.class_name in p.seen_classes})
    return pd.DataFrame(records), knowledge


def validate_row(box: BoxRow, size: tuple[int, int], knowledge: dict[str, str], known: set[str], where: str) -> None:
    if box.class_name not in knowledge:
        raise BadInputError(f"{where}: class {box.class_name!r} is missing from the knowledge YAML")
    if box.class_name not in known:
        raise BadInputError(f"{where}: class {box.class_name!r} is in neither seen_classes nor unseen_classes")
    check_box(box, size[0], size[1], where)


def query_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per (image, class present): its boxes as a JSON list of pixel corners."""
    rows = []
    for (image_id, class_name), group in manifest.groupby(["image_id", "class_name"], sort=True):
        first = group.iloc[0]
        rows.append({"image_id": image_id, "class_name": class_name, "split": first.split, "seen": bool(first.seen),
                     "width": int(first.width), "height": int(first.height), "n_boxes": len(group),
                     "boxes": json.dumps(group[["x_min", "y_min", "x_max", "y_max"]].to_numpy().tolist())})
    return pd.DataFrame(rows)


def manifest_expectations(classes: list[str]) -> list[tuple[str, dict]]:
    positive = {"min_value": 0, "strict_min": True}
    return [
        ("expect_column_values_to_be_between", {"column": "x_min", "min_value": 0}),
        ("expect_column_values_to_be_between", {"column": "y_min", "min_value": 0}),
        ("expect_column_values_to_be_between", {"column": "box_width", **positive}),
        ("expect_column_values_to_be_between", {"column": "box_height", **positive}),
        ("expect_column_values_to_be_between", {"column": "right_margin", "min_value": 0}),
        ("expect_column_values_to_be_between", {"column": "bottom_margin", "min_value": 0}),
        ("expect_column_values_to_be_in_set", {"column": "class_name", "value_set": classes}),
        ("expect_column_values_to_be_in_set", {"column": "image_present", "value_set": [True]}),
        ("expect_column_values_to_be_in_set", {"column": "split", "value_set": list(SPLITS)}),
        ("expect_column_values_to_not_be_null", {"column": "image_id"}),
    ]


def with_box_checks(manifest: pd.DataFrame) -> pd.DataFrame:
    return manifest.assign(box_width=manifest.x_max - manifest.x_min, box_height=manifest.y_max - manifest.y_min,
                           right_margin=manifest.width - manifest.x_max, bottom_margin=manifest.height - manifest.y_max)


def ingest(ctx: StageContext[IngestParams]) -> Metrics:
    p = ctx.params

    def write_synthetic(staging: Path) -> None:
        classes = {name: c.model_dump() for name, c in p.synthetic.classes.items()}
        synthetic.write_synthetic_dataset(staging, classes, p.seen_classes, p.unseen_classes,
                                          p.synthetic.images_per_split, p.synthetic.classes_per_image,
                                          p.synthetic.image_size, ctx.common.seed)

    dataset_root = materialise_source(ctx, p.source, write_synthetic)
    boxes, knowledge = read_dataset(dataset_root, p, ctx)
    if boxes.empty:
        raise BadInputError(f"{dataset_root / p.annotations}: no usable boxes")
    manifest = with_box_checks(boxes)
    queries = query_table(boxes)
    save_ingest(ctx, manifest, "grounding_boxes", manifest_expectations(sorted(knowledge)),
                {"root": portable_path(dataset_root, ctx.root), "source": p.source,
                 "images": portable_path(dataset_root / p.images, ctx.root),
                 "seen_classes": p.seen_classes, "unseen_classes": p.unseen_classes, "knowledge": knowledge},
                tables={"queries.csv": queries})
    counts = queries.groupby("split").size().to_dict()
    return {"boxes": len(manifest), "images": int(boxes.image_id.nunique()),
            **{f"queries_{k}": int(v) for k, v in counts.items()}}


if __name__ == "__main__":
    run_stage(ingest)
