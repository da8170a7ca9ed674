"""Pure volume operations of preprocessing: brain masks, resampling, cropping, normalisation, a WM map."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu


def otsu_brain_mask(image: np.ndarray) -> np.ndarray:
    """A brain mask where a layout has none (ours): Otsu on the smoothed scan, largest component, holes filled."""
    smooth = ndimage.gaussian_filter(image.astype(np.float32), 1.0)
    foreground = smooth > threshold_otsu(smooth) * 0.5
    labelled, count = ndimage.label(foreground)
    if count == 0:
        return foreground
    largest = np.argmax(np.bincount(labelled.ravel())[1:]) + 1
    return ndimage.binary_fill_holes(labelled == largest)


def resample(volume: np.ndarray, spacing: Sequence[float], target_mm: float, order: int) -> np.ndarray:
    """Resample to isotropic ``target_mm`` (order 1 for scans, 0 for masks); a no-op when already there."""
    factors = [s / target_mm for s in spacing]
    if np.allclose(factors, 1.0):
        return volume
    return ndimage.zoom(volume, factors, order=order, mode="nearest", grid_mode=True)


def centre_crop_or_pad(volume: np.ndarray, centre: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """The ``shape`` window of ``volume`` centred at ``centre``; zeros where it leaves the volume."""
    out = np.zeros(tuple(shape), dtype=volume.dtype)
    source, target = [], []
    for c, size, n in zip(centre, shape, volume.shape):
        start = int(c) - size // 2
        lo, hi = max(start, 0), min(start + size, n)
        source.append(slice(lo, hi))
        target.append(slice(lo - start, hi - start))
    out[tuple(target)] = volume[tuple(source)]
    return out


def brain_centre(brain: np.ndarray) -> tuple[int, ...]:
    """Centre of the brain mask's bounding box."""
    where = np.nonzero(brain)
    return tuple(int((w.min() + w.max() + 1) // 2) for w in where)


def normalise(image: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Z-score inside the brain, zero outside (CoactSeg z-scores the BET-masked crop)."""
    values = image[brain]
    std = float(values.std()) or 1.0
    return np.where(brain, (image - float(values.mean())) / std, 0.0).astype(np.float32)


def white_matter_prior(template_wm: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """The template's WM probability scaled onto the case's brain bounding box (ours; no registration).

    ``template_wm`` is cropped to the template brain's bounding box; it is zoomed to the size of
    this case's brain box and placed there, masked by the brain.
    """
    where = np.nonzero(brain)
    lo = [int(w.min()) for w in where]
    size = [int(w.max()) + 1 - low for w, low in zip(where, lo)]
    zoomed = ndimage.zoom(template_wm, [s / t for s, t in zip(size, template_wm.shape)], order=1)
    prior = np.zeros(brain.shape, dtype=np.float32)
    window = tuple(slice(low, low + z) for low, z in zip(lo, zoomed.shape))
    prior[window] = zoomed[tuple(slice(0, s.stop - s.start) for s in window)]
    return np.clip(prior, 0, 1) * brain
