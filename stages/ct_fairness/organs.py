"""The one organ table every dataset is mapped to, and the label maps of both dataset styles."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

ORGANS: tuple[str, ...] = ("liver", "kidney_right", "kidney_left", "pancreas")
"""Organ table: label id ``i + 1`` is ``ORGANS[i]``; 0 is background."""
ORGAN_IDS: dict[str, int] = {name: index + 1 for index, name in enumerate(ORGANS)}
NUM_CLASSES = len(ORGANS) + 1

AMOS_CLASSES: dict[int, str] = {
    0: "background", 1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "gallbladder", 5: "esophagus",
    6: "liver", 7: "stomach", 8: "aorta", 9: "postcava", 10: "pancreas", 11: "adrenal_right",
    12: "adrenal_left", 13: "duodenum", 14: "bladder", 15: "prostate_uterus",
}
"""AMOS 2022 label ids (the challenge's dataset.json)."""

# The authors' nnU-Net conversion of TotalSegmentator relabels the four organs 1-4 in this order.
TOTALSEG_MERGED_DEFAULT: dict[str, int] = {"kidney_right": 1, "kidney_left": 2, "liver": 3, "pancreas": 4}


def amos_to_organ_table() -> dict[int, int]:
    """Every AMOS id -> organ-table id (organs outside the table go to background)."""
    by_name = {name: amos_id for amos_id, name in AMOS_CLASSES.items()}
    table = {amos_id: 0 for amos_id in AMOS_CLASSES}
    for organ in ORGANS:
        table[by_name[organ]] = ORGAN_IDS[organ]
    return table


def merged_to_organ_table(merged_ids: Mapping[str, int]) -> dict[int, int]:
    """A merged label file's ``{organ: id}`` -> ``{file id: organ-table id}`` (0 stays background)."""
    unknown = sorted(set(merged_ids) - set(ORGANS))
    if unknown:
        raise ValueError(f"merged label map names unknown organ(s) {unknown}; known: {list(ORGANS)}")
    if len(set(merged_ids.values())) != len(merged_ids) or 0 in merged_ids.values():
        raise ValueError(f"merged label ids must be distinct and non-zero, got {dict(merged_ids)}")
    return {0: 0, **{int(file_id): ORGAN_IDS[organ] for organ, file_id in merged_ids.items()}}


def label_values(label: np.ndarray) -> np.ndarray:
    """Distinct values of a label array; non-integer values are an error."""
    values = np.unique(label)
    if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
        raise ValueError(f"label holds non-integer values {values[values != np.round(values)][:5].tolist()}")
    return values.astype(np.int64)


def map_labels(label: np.ndarray, mapping: Mapping[int, int]) -> np.ndarray:
    """Map label ids through ``mapping``; a value the mapping does not know is a ValueError naming it."""
    values = label_values(label)
    unknown = sorted(int(v) for v in values if int(v) not in mapping)
    if unknown:
        raise ValueError(f"unknown label value(s) {unknown}; known values: {sorted(mapping)}")
    lookup = np.zeros(int(max(max(mapping), values.max(initial=0))) + 1, dtype=np.uint8)
    for source, target in mapping.items():
        lookup[int(source)] = target
    return lookup[np.asarray(label).astype(np.int64)]


def merge_binary_masks(masks: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per-organ 0/1 masks (TotalSegmentator's ``segmentations/<organ>.nii.gz``) -> one organ-table map.

    Masks must share one shape and hold only 0 and 1. Where masks overlap, the organ later in
    :data:`ORGANS` wins.
    """
    shapes = {name: np.shape(mask) for name, mask in masks.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"organ masks differ in shape: {shapes}")
    merged = np.zeros(next(iter(shapes.values())), dtype=np.uint8)
    for organ in ORGANS:
        if organ not in masks:
            raise ValueError(f"mask for {organ} missing")
        values = label_values(masks[organ])
        unknown = sorted(int(v) for v in values if v not in (0, 1))
        if unknown:
            raise ValueError(f"unknown label value(s) {unknown} in the {organ} mask; known values: [0, 1]")
        merged[np.asarray(masks[organ]) == 1] = ORGAN_IDS[organ]
    return merged


def organ_volumes_ml(label: np.ndarray, spacing: tuple[float, ...]) -> dict[str, float]:
    """Volume of each organ in millilitres from an organ-table label map and its voxel spacing (mm)."""
    voxel_ml = float(np.prod(spacing)) / 1000.0
    counts = np.bincount(np.asarray(label, dtype=np.int64).ravel(), minlength=NUM_CLASSES)
    return {organ: float(counts[ORGAN_IDS[organ]]) * voxel_ml for organ in ORGANS}
