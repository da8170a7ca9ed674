"""Readers of AG-KD's VinDr-CXR inputs: the annotation CSV, the knowledge YAML and the 512 px PNGs.

Annotation CSV, two layouts (one row per (image, class) or per box; both need ``split``):

- AG-KD's ``vindr_dataset.csv`` (the official config's ``annotation_csv``): ``image_id``,
  ``class_name``, ``bboxes``, ``split``; ``bboxes`` is a JSON/Python list of
  ``[x_min, y_min, x_max, y_max]`` pixel boxes on the 512 px PNG. The official loader
  (``dataloader.py``) is not in the repository, so the exact cell syntax is our reading of it.
- VinDr-CXR's own box table (PhysioNet 1.0.0 ``annotations_{train,test}.csv``; Kaggle's
  ``train.csv``): ``image_id``, ``class_name``, ``x_min``, ``y_min``, ``x_max``, ``y_max``
  (``rad_id``, ``class_id`` ignored), one row per box; ``No finding`` rows have empty boxes and
  count as images without findings. A ``split`` column must be added (the release splits by file).

Class names are lower-cased, as the official code's ``CLASSES``. Images are ``{image_id}.png``
under the image folder (the config's ``images_512``).
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from stages.common.badinput import BadInputError
from stages.common.io import FormatError, read_png, read_table

LIST_LAYOUT = ("image_id", "class_name", "bboxes", "split")
BOX_LAYOUT = ("image_id", "class_name", "x_min", "y_min", "x_max", "y_max", "split")
NO_FINDING = "no finding"
SPLITS = ("train", "validate", "test")


@dataclass(frozen=True)
class BoxRow:
    """One gold box of class ``class_name`` on ``image_id``: pixel corners, and the CSV row it came from."""

    image_id: str
    class_name: str
    split: str
    x_min: float
    y_min: float
    x_max: float
    y_max: float
    row: int


def parse_bboxes(cell: str, where: str) -> list[list[float]]:
    """``"[[x1, y1, x2, y2], ...]"`` (JSON or Python literal) as a list of 4-number lists."""
    try:
        value = json.loads(cell)
    except (TypeError, ValueError):
        try:
            value = ast.literal_eval(str(cell))
        except (ValueError, SyntaxError) as error:
            raise BadInputError(f"{where}: bboxes {cell!r} is not a list of boxes ({error})") from error
    value = np.asarray(value, dtype=object)
    if value.ndim == 1 and len(value) == 4 and not isinstance(value[0], (list, tuple)):
        value = value.reshape(1, 4)
    try:
        boxes = np.asarray(value.tolist(), dtype=np.float64).reshape(-1, 4) if value.size else np.zeros((0, 4))
    except (TypeError, ValueError) as error:
        raise BadInputError(f"{where}: bboxes {cell!r} is not a list of [x_min, y_min, x_max, y_max]") from error
    return boxes.tolist()


def read_annotations(path: Path) -> list[BoxRow]:
    """Every gold box of the CSV, in file order (the ``No finding`` rows of VinDr's layout give none)."""
    header = read_table(path, nrows=0)
    if "bboxes" in header.columns:
        layout = LIST_LAYOUT
    elif "x_min" in header.columns:
        layout = BOX_LAYOUT
    else:
        raise FormatError(path, "missing column bboxes (AG-KD layout) or x_min, y_min, x_max, y_max (VinDr layout); "
                                f"present: {', '.join(map(str, header.columns))}")
    table = read_table(path, layout, dtype={"image_id": str, "class_name": str, "split": str, "bboxes": str})
    rows: list[BoxRow] = []
    for index, record in enumerate(table.itertuples(index=False), start=2):  # row 1 is the header
        where = f"{path} row {index}"
        class_name = str(record.class_name).strip().lower()
        split = str(record.split).strip().lower()
        if split not in SPLITS:
            raise BadInputError(f"{where}: split {record.split!r} is not one of {list(SPLITS)}")
        if class_name == NO_FINDING:
            continue
        if layout == LIST_LAYOUT:
            boxes = parse_bboxes(record.bboxes, where)
        else:
            boxes = [[float(record.x_min), float(record.y_min), float(record.x_max), float(record.y_max)]]
        if not boxes:
            raise BadInputError(f"{where}: class {class_name!r} has no boxes")
        for box in boxes:
            rows.append(BoxRow(str(record.image_id), class_name, split, *box, row=index))
    return rows


def check_box(box: BoxRow, width: int, height: int, where: str) -> None:
    """A box must be finite, of positive size and inside the image."""
    corners = np.array([box.x_min, box.y_min, box.x_max, box.y_max])
    if not np.isfinite(corners).all():
        raise BadInputError(f"{where}: box {corners.tolist()} of {box.class_name!r} on {box.image_id} is not finite")
    if box.x_max <= box.x_min or box.y_max <= box.y_min:
        raise BadInputError(f"{where}: box {corners.tolist()} of {box.class_name!r} on {box.image_id} has non-positive size")
    if box.x_min < 0 or box.y_min < 0 or box.x_max > width or box.y_max > height:
        raise BadInputError(f"{where}: box {corners.tolist()} of {box.class_name!r} lies outside the "
                            f"{width} x {height} image {box.image_id}")


def read_knowledge(path: Path) -> dict[str, str]:
    """The knowledge YAML: ``{class name: one-sentence description}``, names lower-cased."""
    if not Path(path).is_file():
        raise FormatError(path, "file not found")
    try:
        document = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as error:
        raise FormatError(path, f"not readable YAML ({error})") from error
    if not isinstance(document, dict) or not document:
        raise FormatError(path, f"must be a non-empty mapping of class name to description, got {type(document).__name__}")
    knowledge = {}
    for name, definition in document.items():
        if not isinstance(name, str) or not isinstance(definition, str) or not definition.strip():
            raise FormatError(path, f"entry {name!r}: {definition!r} is not a class name mapped to a description string")
        knowledge[name.strip().lower()] = definition.strip()
    return knowledge


def read_image(path: Path) -> np.ndarray:
    """A grey-scale PNG as float32 in [0, 1] (8- or 16-bit; RGB averaged)."""
    pixels = read_png(path)
    maximum = 65535.0 if pixels.dtype == np.uint16 else 255.0
    image = pixels.astype(np.float32) / maximum
    if image.ndim == 3:
        image = image[..., :3].mean(axis=2)
    if image.ndim != 2:
        raise FormatError(path, f"expected a 2-D grey-scale image, got shape {pixels.shape}")
    return image


def annotation_frame(rows: list[BoxRow]) -> pd.DataFrame:
    return pd.DataFrame([{k: getattr(r, k) for k in ("image_id", "class_name", "split", "x_min", "y_min", "x_max", "y_max")}
                         for r in rows], columns=["image_id", "class_name", "split", "x_min", "y_min", "x_max", "y_max"])
