"""Cases from the ingest manifest as model-ready arrays: 3-channel images at the model's side, labels, prompts."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from skimage.transform import resize

from stages.common.io import read_table
from stages.common.paths import from_portable, resolve_inside
from stages.sam_tta.formats import ListRow, read_slice
from stages.sam_tta.prompts import boxes_from_mask, instance_masks, points_from_mask

MANIFEST_COLUMNS = ("domain", "role", "case", "image", "mask", "height", "width", "channels", "instances")


@dataclass(frozen=True)
class Case:
    domain: str
    case: str
    image: np.ndarray        # (3, S, S) float32 in [0, 1]; gray replicated to 3 channels, as the repo feeds SAM
    channels: int            # 1 (gray) or 3 (RGB) in the file
    labels: np.ndarray       # (S, S) instance labels at the model's side
    original_labels: np.ndarray  # (H, W) as read; scores are computed at this size

    @property
    def instances(self) -> np.ndarray:
        return instance_masks(self.labels)


def load_manifest(folder: Path, repo: Path) -> tuple[pd.DataFrame, Path]:
    manifest = read_table(folder / "manifest.csv", MANIFEST_COLUMNS, keep_default_na=False)
    return manifest, from_portable(json.loads((folder / "dataset.json").read_text())["root"], repo)


def to_model_frame(image: np.ndarray, labels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize to ``size`` x ``size`` (bilinear image, nearest labels; ours where the repo pads to 1024) and replicate gray."""
    if image.shape[1:] != (size, size):
        image = resize(image, (image.shape[0], size, size), order=1, anti_aliasing=True, preserve_range=True)
        labels = resize(labels, (size, size), order=0, anti_aliasing=False, preserve_range=True).astype(labels.dtype)
    if image.shape[0] == 1:
        image = np.repeat(image, 3, axis=0)
    return image.astype(np.float32), labels


def load_cases(manifest: pd.DataFrame, dataset_root: Path, size: int) -> list[Case]:
    cases = []
    for row in manifest.itertuples(index=False):
        image_path = resolve_inside(dataset_root, row.image, what="manifest image path")
        mask_path = resolve_inside(dataset_root, row.mask, what="manifest mask path")
        slice_ = read_slice(ListRow(0, image_path, mask_path), dataset_root / "manifest", require_foreground=True)
        image, labels = to_model_frame(slice_.image, slice_.labels, size)
        cases.append(Case(row.domain, row.case, image, slice_.image.shape[0], labels, slice_.labels))
    return cases


@dataclass(frozen=True)
class Prompts:
    boxes: np.ndarray | None    # (N, 4)
    points: np.ndarray | None   # (N, P, 2)
    labels: np.ndarray | None   # (N, P)


def case_prompts(case: Case, kind: str, rng: np.random.Generator) -> Prompts:
    """The official prompts of one case: a tight box per instance, or 5 + 5 uniform points per instance."""
    if kind == "box":
        return Prompts(boxes_from_mask(case.labels), None, None)
    drawn = [points_from_mask(instance, rng) for instance in case.instances]
    return Prompts(None, np.stack([p for p, _ in drawn]), np.stack([lab for _, lab in drawn]))
