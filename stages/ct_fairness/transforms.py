"""MONAI transform chains: nnU-Net-like preprocessing, and patch sampling with augmentation for training."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from stages.common.runtime import import_monai

KEYS = ("image", "label")
BODY_THRESHOLD = 0.05  # windowed intensity above which a voxel is body, not air


def is_body(image: torch.Tensor) -> torch.Tensor:
    """Foreground selector for the body crop (module level so the chain pickles)."""
    return image > BODY_THRESHOLD


def preprocessing_chain(window_hu: tuple[float, float], spacing_mm: Sequence[float], shape: Sequence[int]):
    """CT window to [0, 1], resample to ``spacing_mm`` (linear image, nearest label), crop to the body, pad/crop to ``shape``."""
    import_monai()
    from monai.transforms import Compose, CropForegroundd, EnsureTyped, ResizeWithPadOrCropd, ScaleIntensityRanged, Spacingd

    return Compose([
        ScaleIntensityRanged(keys="image", a_min=window_hu[0], a_max=window_hu[1], b_min=0.0, b_max=1.0, clip=True),
        Spacingd(keys=KEYS, pixdim=tuple(spacing_mm), mode=("bilinear", "nearest")),
        CropForegroundd(keys=KEYS, source_key="image", select_fn=is_body, allow_smaller=True),
        ResizeWithPadOrCropd(keys=KEYS, spatial_size=tuple(shape), mode="constant"),
        EnsureTyped(keys=KEYS, track_meta=False),
    ])


def preprocess_case(image_hu: np.ndarray, label: np.ndarray, spacing: Sequence[float], chain) -> tuple[np.ndarray, np.ndarray]:
    """Run the preprocessing chain on one RAS case -> ``(1, *shape)`` float32 image and uint8 label."""
    import_monai()
    from monai.data import MetaTensor

    affine = torch.diag(torch.tensor([*map(float, spacing), 1.0], dtype=torch.float64))
    sample = {
        "image": MetaTensor(torch.from_numpy(np.ascontiguousarray(image_hu, dtype=np.float32))[None], affine=affine),
        "label": MetaTensor(torch.from_numpy(np.ascontiguousarray(label).astype(np.float32))[None], affine=affine),
    }
    out = chain(sample)
    return (np.asarray(out["image"], dtype=np.float32),
            np.rint(np.asarray(out["label"])).astype(np.uint8))


def load_preprocessed(item: dict) -> dict:
    """Deterministic first step of the training chain (so a CacheDataset caches it): read one case's npz."""
    with np.load(Path(item["path"])) as arrays:
        return {**item, "image": arrays["image"].astype(np.float32), "label": arrays["label"].astype(np.float32)}


def training_chain(patch: Sequence[int], samples_per_volume: int, positive_fraction: float,
                   flip_axes: Sequence[int], flip_probability: float, intensity_shift: float, intensity_scale: float):
    """Load (cached), then random patches around organs and background, flips and intensity jitter.

    Left-right flips are the caller's choice to avoid: they swap the right and left kidney.
    """
    import_monai()
    from monai.transforms import (
        Compose,
        DeleteItemsd,
        EnsureTyped,
        FgBgToIndicesd,
        Lambda,
        RandCropByPosNegLabeld,
        RandFlipd,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )

    steps = [
        Lambda(load_preprocessed),
        FgBgToIndicesd(keys="label"),  # organ/background voxel indices, computed once and cached
        RandCropByPosNegLabeld(keys=KEYS, label_key="label", spatial_size=tuple(patch), pos=positive_fraction,
                               neg=1.0 - positive_fraction, num_samples=samples_per_volume, allow_smaller=True,
                               fg_indices_key="label_fg_indices", bg_indices_key="label_bg_indices"),
    ]
    steps += [RandFlipd(keys=KEYS, prob=flip_probability, spatial_axis=axis) for axis in flip_axes]
    if intensity_scale > 0:
        steps.append(RandScaleIntensityd(keys="image", factors=intensity_scale, prob=0.5))
    if intensity_shift > 0:
        steps.append(RandShiftIntensityd(keys="image", offsets=intensity_shift, prob=0.5))
    steps += [DeleteItemsd(keys=("label_fg_indices", "label_bg_indices")), EnsureTyped(keys=KEYS, track_meta=False)]
    return Compose(steps)
