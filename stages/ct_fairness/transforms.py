"""MONAI transform chains: nnU-Net-like preprocessing (with a crop around the organs), and patch sampling with augmentation for training."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stages.common.runtime import import_monai

KEYS = ("image", "label")
BODY_THRESHOLD = 0.05  # windowed intensity above which a voxel is body, not air


@dataclass(frozen=True)
class PreprocessingChain:
    """The MONAI window-and-resample chain and the shape :func:`crop_around_organs` crops its output to."""

    transforms: Callable[[dict], dict]
    shape: tuple[int, ...]

    def __call__(self, sample: dict) -> dict:
        return self.transforms(sample)


def preprocessing_chain(window_hu: tuple[float, float], spacing_mm: Sequence[float], shape: Sequence[int]):
    """CT window to [0, 1], resample to ``spacing_mm`` (linear image, nearest label); the crop to ``shape``
    around the labelled organs is :func:`crop_around_organs`, applied by :func:`preprocess_case`."""
    import_monai()
    from monai.transforms import Compose, EnsureTyped, ScaleIntensityRanged, Spacingd

    transforms = Compose([
        ScaleIntensityRanged(keys="image", a_min=window_hu[0], a_max=window_hu[1], b_min=0.0, b_max=1.0, clip=True),
        Spacingd(keys=KEYS, pixdim=tuple(spacing_mm), mode=("bilinear", "nearest")),
        EnsureTyped(keys=KEYS, track_meta=False),
    ])
    return PreprocessingChain(transforms, tuple(int(n) for n in shape))


def crop_window(centre: Sequence[float], size: Sequence[int], shape: int | Sequence[int]) -> list[tuple[int, int]]:
    """Per axis ``(start, stop)`` of a ``size`` window centred on ``centre``, shifted to lie inside an image of
    ``shape`` where the image is larger than the window (smaller images are padded afterwards)."""
    window = []
    for c, n, extent in zip(centre, size, shape, strict=True):
        start = int(np.floor(c - n / 2.0 + 0.5))
        start = min(max(start, 0), max(extent - n, 0))
        window.append((start, min(start + n, extent)))
    return window


def crop_around_organs(image: np.ndarray, label: np.ndarray, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Crop ``(C, *spatial)`` image and label to ``shape`` around the centre of the labelled organs' box (ours, issue 18 item 1).

    A blind centre crop drops organs that lie off-centre (a whole-body scan's abdomen); here the
    window is centred on the bounding box of all organ labels, or of the body (windowed intensity
    above ``BODY_THRESHOLD``) when a case has no organ label, and kept inside the image. Axes
    shorter than ``shape`` are padded with zeros on both sides (as ``ResizeWithPadOrCrop``).
    """
    spatial = label.shape[1:]
    for mask in (label[0] > 0, image[0] > BODY_THRESHOLD):
        if mask.any():
            points = np.nonzero(mask)
            centre = [(p.min() + p.max() + 1) / 2.0 for p in points]
            break
    else:
        centre = [n / 2.0 for n in spatial]
    window = crop_window(centre, shape, spatial)
    region = (slice(None), *(slice(a, b) for a, b in window))
    image, label = image[region], label[region]
    padding = [(0, 0)] + [((n - (b - a)) // 2, n - (b - a) - (n - (b - a)) // 2) for n, (a, b) in zip(shape, window, strict=True)]
    return np.pad(image, padding), np.pad(label, padding)


def resample_case(image_hu: np.ndarray, label: np.ndarray, spacing: Sequence[float],
                  chain: PreprocessingChain) -> tuple[np.ndarray, np.ndarray]:
    """Window and resample one RAS case (no crop yet) -> ``(1, *spatial)`` float32 image and uint8 label."""
    import_monai()
    from monai.data import MetaTensor

    affine = torch.diag(torch.tensor([*map(float, spacing), 1.0], dtype=torch.float64))
    sample = {
        "image": MetaTensor(torch.from_numpy(np.ascontiguousarray(image_hu, dtype=np.float32))[None], affine=affine),
        "label": MetaTensor(torch.from_numpy(np.ascontiguousarray(label).astype(np.float32))[None], affine=affine),
    }
    out = chain(sample)
    return np.asarray(out["image"], dtype=np.float32), np.rint(np.asarray(out["label"])).astype(np.uint8)


def preprocess_case(image_hu: np.ndarray, label: np.ndarray, spacing: Sequence[float],
                    chain: PreprocessingChain) -> tuple[np.ndarray, np.ndarray]:
    """Window, resample, then crop around the organs -> ``(1, *shape)`` float32 image and uint8 label."""
    return crop_around_organs(*resample_case(image_hu, label, spacing, chain), chain.shape)


def voxel_counts(label: np.ndarray, num_organs: int) -> list[int]:
    """Voxels of each organ label 1..num_organs."""
    return [int((label == index).sum()) for index in range(1, num_organs + 1)]


def crop_losses(resampled_voxels: Sequence[int], cropped_voxels: Sequence[int]) -> np.ndarray:
    """Per organ, the fraction of its resampled voxels the crop cut away (nan where the organ had none)."""
    before, after = np.asarray(resampled_voxels, dtype=np.float64), np.asarray(cropped_voxels, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(before > 0, 1.0 - after / before, np.nan)


def organ_losses(native_ml: Sequence[float], preprocessed_voxels: Sequence[int], spacing_mm: Sequence[float]) -> np.ndarray:
    """Per organ, the fraction of its native volume lost by preprocessing: ``1 - preprocessed ml / native ml``
    (nan where the native volume is 0; negative where resampling grew it)."""
    native = np.asarray(native_ml, dtype=np.float64)
    kept = np.asarray(preprocessed_voxels, dtype=np.float64) * float(np.prod(spacing_mm)) / 1000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(native > 0, 1.0 - kept / native, np.nan)


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
