"""Chest-X-ray-like 512 px PNGs with abnormalities built from visual attributes (ours).

Each class is a combination of density (bright, dark, hazy), shape (round, linear, irregular),
location (apex, base, pleural, cardiac) and size (small, large), named with a meaningless
token, so only the knowledge sentence ties a name to what it looks like. Files are written in
AG-KD's layout: ``images/{image_id}.png``, ``annotations.csv`` (image_id, class_name, bboxes,
split) and ``knowledge.yaml``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import ndimage

from stages.common.io import write_png, write_table

DENSITIES = ("bright", "dark", "hazy")
SHAPES = ("round", "linear", "irregular")
LOCATIONS = ("apex", "base", "pleural", "cardiac")
SIZES = ("small", "large")
ATTRIBUTES = {"density": DENSITIES, "shape": SHAPES, "location": LOCATIONS, "size": SIZES}

# Box-centre ranges as fractions of the image (x range, y range); x is mirrored for the right lung.
LOCATION_CENTRES = {"apex": ((0.27, 0.36), (0.22, 0.32)), "base": ((0.25, 0.36), (0.62, 0.72)),
                    "pleural": ((0.16, 0.2), (0.38, 0.55)), "cardiac": ((0.43, 0.5), (0.6, 0.7))}
SIZE_FRACTION = {"small": 0.055, "large": 0.1}
SHAPE_ASPECT = {"round": (1.0, 1.0), "linear": (2.4, 0.45), "irregular": (1.4, 1.0)}
DENSITY_CONTRAST = {"bright": 0.35, "dark": -0.3, "hazy": 0.18}
LOCATION_WORDS = {"apex": "lung apex", "base": "lung base", "pleural": "pleural margin", "cardiac": "heart border"}
SHAPE_WORDS = {"round": "round", "linear": "linear", "irregular": "irregular"}


def describe(attributes: dict[str, str]) -> str:
    """The knowledge sentence of one class: its four attributes in plain words."""
    return (f"a {attributes['size']} {attributes['density']} {SHAPE_WORDS[attributes['shape']]} opacity "
            f"at the {LOCATION_WORDS[attributes['location']]}")


def chest_background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A frontal chest radiograph caricature: body, two dark lung fields, heart, ribs, noise.

    The smooth anatomy is drawn on a 128 px grid and interpolated up (cheap); the noise is full size.
    """
    coarse = 128
    y, x = np.mgrid[0:coarse, 0:coarse] / coarse
    image = 0.25 + 0.35 * np.exp(-(((x - 0.5) / 0.42) ** 6 + ((y - 0.55) / 0.5) ** 6))
    for side in (-1, 1):
        lung = (((x - 0.5 - side * 0.2) / 0.15) ** 2 + ((y - 0.47) / 0.3) ** 2) < 1
        image = np.where(lung, image - 0.22, image)
    heart = (((x - 0.53) / 0.13) ** 2 + ((y - 0.64) / 0.11) ** 2) < 1
    image = np.where(heart, image + 0.18, image)
    ribs = 0.04 * (np.sin(2 * np.pi * (y * 9 + 0.6 * np.abs(x - 0.5))) > 0.85)
    image = ndimage.zoom(ndimage.gaussian_filter(image + ribs, 1), size / coarse, order=1)
    return image + rng.normal(0, 0.02, image.shape)


def lesion_box(attributes: dict[str, str], size: int, rng: np.random.Generator, side: int) -> np.ndarray:
    """Pixel ``(x1, y1, x2, y2)`` of one lesion: centre from its location, extent from shape and size."""
    (cx_lo, cx_hi), (cy_lo, cy_hi) = LOCATION_CENTRES[attributes["location"]]
    cx = rng.uniform(cx_lo, cx_hi)
    cx = cx if side < 0 else 1 - cx
    cy = rng.uniform(cy_lo, cy_hi)
    extent = SIZE_FRACTION[attributes["size"]] * rng.uniform(0.85, 1.15)
    aspect_x, aspect_y = SHAPE_ASPECT[attributes["shape"]]
    half_w, half_h = extent * aspect_x / 2, extent * aspect_y / 2
    box = np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h]) * size
    return np.clip(np.round(box), 0, size)


def draw_lesion(image: np.ndarray, attributes: dict[str, str], box: np.ndarray, rng: np.random.Generator) -> None:
    """Add one lesion inside ``box`` (drawn on a window around it only)."""
    x1, y1, x2, y2 = box
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, max((x2 - x1) / 2, 1), max((y2 - y1) / 2, 1)
    margin = int(max(rx, ry))
    top, left = max(int(y1) - margin, 0), max(int(x1) - margin, 0)
    bottom, right = min(int(y2) + margin + 1, image.shape[0]), min(int(x2) + margin + 1, image.shape[1])
    y, x = np.mgrid[top:bottom, left:right].astype(np.float64) + 0.5
    if attributes["shape"] == "irregular":
        mask = np.zeros(y.shape, dtype=bool)
        for _ in range(3):
            bx, by = cx + rng.uniform(-0.45, 0.45) * rx, cy + rng.uniform(-0.4, 0.4) * ry
            mask |= ((x - bx) / (0.55 * rx)) ** 2 + ((y - by) / (0.6 * ry)) ** 2 < 1
        mask &= (x >= x1) & (x < x2) & (y >= y1) & (y < y2)
    else:
        mask = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1
    layer = mask.astype(np.float64)
    if attributes["density"] == "hazy":
        layer = ndimage.gaussian_filter(layer, max(rx, ry) / 4)
    image[top:bottom, left:right] += DENSITY_CONTRAST[attributes["density"]] * layer


def render_image(classes: dict[str, dict[str, str]], present: list[str], size: int, rng: np.random.Generator):
    """One image holding one lesion of each class in ``present``; returns (uint8 image, {class: box})."""
    image = chest_background(size, rng)
    boxes = {}
    for index, name in enumerate(present):
        box = lesion_box(classes[name], size, rng, side=-1 if index % 2 == 0 else 1)
        draw_lesion(image, classes[name], box, rng)
        boxes[name] = box
    return np.clip(np.round(np.clip(image, 0, 1) * 255), 0, 255).astype(np.uint8), boxes


def write_synthetic_dataset(root: Path, classes: dict[str, dict[str, str]], seen: list[str], unseen: list[str],
                            images_per_split: dict[str, int], classes_per_image: int, size: int, seed: int) -> None:
    """Images, ``annotations.csv`` and ``knowledge.yaml`` in AG-KD's layout; unseen classes appear only in test."""
    rng = np.random.default_rng(seed)
    rows = []
    for split, count in images_per_split.items():
        pool = seen + unseen if split == "test" else seen
        for index in range(count):
            image_id = f"{split}_{index:04d}"
            present = [str(c) for c in rng.choice(pool, size=min(classes_per_image, len(pool)), replace=False)]
            present = sorted(present, key=lambda c: LOCATIONS.index(classes[c]["location"]))
            pixels, boxes = render_image(classes, present, size, rng)
            write_png(root / "images" / f"{image_id}.png", pixels)
            for name in present:
                rows.append({"image_id": image_id, "class_name": name,
                             "bboxes": json.dumps([[float(v) for v in boxes[name]]]), "split": split})
    write_table(root / "annotations.csv", pd.DataFrame(rows, columns=["image_id", "class_name", "bboxes", "split"]))
    knowledge = {name: describe(classes[name]) + "." for name in classes}
    (root / "knowledge.yaml").write_text(yaml.safe_dump(knowledge, sort_keys=True))
