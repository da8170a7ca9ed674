"""The synthetic default (ours): a natural-like source domain and medical-like target domains.

- ``scenes``: RGB scenes of sharp, colour-contrasted shapes (ellipses, rectangles, triangles) on a
  smooth coloured background; instance masks (PNG, the polyp sets' format).
- ``brain_mri``: axial slices of nilearn's MNI152 template (shipped in its wheel) with an inserted
  hyperintense tumour-like lesion (BraTS-like); gray NIfTI.
- ``pancreas_ct``: CT-like abdominal slices (body, liver, kidneys, spine, aorta) with a lobulated
  pancreas-like organ; gray NIfTI.
- ``polyp_rgb``: RGB endoscopy-like frames (folded mucosa, vignetting, highlights) with a polyp; PNG.
- ``ultrasound``: speckled ultrasound-like slices with dark lesions; gray NIfTI. The MedSAM-like
  baseline is fine-tuned on it with labels; it is never a target stream.

Target and medical domains are degraded as the issue asks: low object contrast, blurred edges, a
nonlinear (gamma) intensity change and noise, so that a model trained on ``scenes`` drops clearly.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
from scipy import ndimage
from skimage import draw
from skimage.transform import resize

DOMAINS = ("scenes", "brain_mri", "pancreas_ct", "polyp_rgb", "ultrasound")
RGB_DOMAINS = frozenset({"scenes", "polyp_rgb"})


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise scaled to unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / (field.std() + 1e-12)


def blob_mask(rng: np.random.Generator, shape: tuple[int, int], centre: tuple[float, float],
              radii: tuple[float, float], irregularity: float) -> np.ndarray:
    """A lobulated blob: an ellipse whose radius is modulated by smooth angular noise."""
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    dy, dx = (rows - centre[0]) / radii[0], (cols - centre[1]) / radii[1]
    angle = np.arctan2(dy, dx)
    harmonics = sum(rng.normal(0, irregularity / k) * np.cos(k * angle + rng.uniform(0, 2 * np.pi)) for k in range(2, 6))
    return np.hypot(dy, dx) <= 1.0 + harmonics


def degrade(image: np.ndarray, rng: np.random.Generator, blur: float, gamma: float, noise: float) -> np.ndarray:
    """Blurred edges, a nonlinear (gamma) intensity change and Gaussian noise; stays in [0, 1]."""
    spatial = (blur, blur) if image.ndim == 2 else (0, blur, blur)
    out = ndimage.gaussian_filter(image, spatial)
    out = np.clip(out, 0, 1) ** gamma
    out = out + rng.normal(0, noise, out.shape)
    return np.clip(out, 0, 1)


# --------------------------------------------------------------------------- source: natural-like scenes
def scene(rng: np.random.Generator, size: int, max_shapes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(3, H, W)`` RGB scene in [0, 1] and ``(H, W)`` instance labels; later shapes occlude earlier ones."""
    base = rng.uniform(0.1, 0.9, 3)
    gradient = np.linspace(-0.15, 0.15, size)
    image = np.clip(base[:, None, None] + rng.uniform(-1, 1, 3)[:, None, None] * gradient[None, :, None]
                    + 0.04 * smooth_noise(rng, (size, size), 3.0)[None], 0, 1)
    labels = np.zeros((size, size), dtype=np.int32)
    for label in range(1, int(rng.integers(1, max_shapes + 1)) + 1):
        colour = rng.uniform(0, 1, 3)
        while np.abs(colour - base).max() < 0.35:  # colour-contrasted against the background
            colour = rng.uniform(0, 1, 3)
        kind = rng.integers(3)
        r0, c0 = rng.uniform(0.2, 0.8, 2) * size
        extent = rng.uniform(0.08, 0.22, 2) * size
        if kind == 0:
            rr, cc = draw.ellipse(r0, c0, extent[0], extent[1], shape=labels.shape, rotation=rng.uniform(0, np.pi))
        elif kind == 1:
            rr, cc = draw.rectangle((r0 - extent[0], c0 - extent[1]), (r0 + extent[0], c0 + extent[1]), shape=labels.shape)
            rr, cc = np.asarray(rr, int).ravel(), np.asarray(cc, int).ravel()
        else:
            angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2.1, 4.2]) + rng.uniform(-0.3, 0.3, 3)
            rr, cc = draw.polygon(r0 + 1.4 * extent[0] * np.sin(angles), c0 + 1.4 * extent[1] * np.cos(angles), shape=labels.shape)
        shading = 1 + 0.08 * (rr - r0) / max(extent[0], 1)
        image[:, rr, cc] = np.clip(colour[:, None] * shading[None], 0, 1)
        labels[rr, cc] = label
    labels = drop_small_instances(labels, min_pixels=max(12, size * size // 400))
    return image.astype(np.float32), labels


def drop_small_instances(labels: np.ndarray, min_pixels: int) -> np.ndarray:
    """Instances occluded below ``min_pixels`` become background in the mask, then labels are renumbered 1..N."""
    out = np.zeros_like(labels)
    next_label = 1
    for value in np.unique(labels[labels > 0]):
        region = labels == value
        if region.sum() >= min_pixels:
            out[region] = next_label
            next_label += 1
    return out


# --------------------------------------------------------------------------- brain MRI (MNI152 + lesion)
@lru_cache(maxsize=1)
def mni152() -> np.ndarray:
    """nilearn's MNI152 T1 template (2 mm, in its wheel; no download), in [0, 1]."""
    from nilearn.datasets import load_mni152_template

    volume = np.asarray(load_mni152_template(resolution=2).get_fdata(), dtype=np.float64)
    return volume / volume.max()


def brain_slice(rng: np.random.Generator, size: int, contrast: float) -> tuple[np.ndarray, np.ndarray]:
    volume = mni152()
    z = int(rng.integers(int(0.35 * volume.shape[2]), int(0.6 * volume.shape[2])))
    anatomy = resize(np.rot90(volume[:, :, z]), (size, size), order=1, anti_aliasing=True)
    brain = anatomy > 0.15
    # T2/FLAIR-like look (ours): grey matter brighter than white matter
    image = np.where(brain, 0.75 - 0.4 * np.clip((anatomy - 0.3) / 0.7, 0, 1), anatomy)
    inside = np.argwhere(ndimage.binary_erosion(brain, iterations=max(2, size // 10)))
    centre = inside[rng.integers(len(inside))]
    radii = tuple(rng.uniform(0.06, 0.13, 2) * size)
    lesion = blob_mask(rng, (size, size), tuple(centre), radii, 0.2) & brain
    image = image + contrast * lesion * (0.8 + 0.2 * smooth_noise(rng, (size, size), 2.0))
    return np.clip(image, 0, 1), lesion.astype(np.int32)


# --------------------------------------------------------------------------- abdominal CT + pancreas
def _ellipse(size: int, centre, radii, rotation: float = 0.0) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    rr, cc = draw.ellipse(centre[0] * size, centre[1] * size, radii[0] * size, radii[1] * size, shape=mask.shape, rotation=rotation)
    mask[rr, cc] = True
    return mask


def abdomen_slice(rng: np.random.Generator, size: int, contrast: float) -> tuple[np.ndarray, np.ndarray]:
    """Soft-tissue-window CT-like slice (values in [0, 1] of the window) and the pancreas-like mask."""
    j = lambda v, s=0.02: v + rng.uniform(-s, s)  # noqa: E731 - per-case anatomical jitter
    body = _ellipse(size, (0.5, 0.5), (j(0.36), j(0.45)))
    image = np.where(body, 0.28, 0.0) + body * 0.03 * smooth_noise(rng, (size, size), 4.0)   # fat and muscle
    organs = [((j(0.45), j(0.3)), (j(0.17), j(0.14)), 0.55),      # liver
              ((j(0.6), j(0.28)), (0.07, 0.045), 0.6), ((j(0.6), j(0.72)), (0.07, 0.045), 0.6),  # kidneys
              ((j(0.42), j(0.7)), (0.1, 0.08), 0.5),              # spleen / bowel
              ((0.72, 0.5), (0.06, 0.06), 0.95),                   # vertebra
              ((j(0.58), 0.53), (0.025, 0.025), 0.7)]              # aorta
    for centre, radii, value in organs:
        image = np.where(_ellipse(size, centre, radii) & body, value, image)
    # pancreas: an elongated, lobulated band running across the midline (ours)
    pancreas = blob_mask(rng, (size, size), (j(0.52, 0.03) * size, j(0.52, 0.04) * size),
                         (rng.uniform(0.035, 0.05) * size, rng.uniform(0.13, 0.17) * size), 0.15)
    image = np.where(pancreas, 0.5 + contrast * rng.choice([-1.0, 1.0]), image)
    return np.clip(image, 0, 1), pancreas.astype(np.int32)


# --------------------------------------------------------------------------- endoscopy + polyp (RGB)
def polyp_frame(rng: np.random.Generator, size: int, contrast: float) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[:size, :size] / size
    vignette = np.clip(1.1 - 1.6 * ((rows - 0.5) ** 2 + (cols - 0.5) ** 2), 0, 1)
    folds = 0.5 + 0.5 * np.sin(10 * rows + 4 * smooth_noise(rng, (size, size), 6.0))
    mucosa = np.array([0.75, 0.35, 0.3])[:, None, None] * (0.8 + 0.2 * folds)[None]
    centre = rng.uniform(0.3, 0.7, 2) * size
    radius = rng.uniform(0.1, 0.2) * size
    polyp = blob_mask(rng, (size, size), tuple(centre), (radius, radius * rng.uniform(0.7, 1.3)), 0.12)
    dome = np.clip(1 - ((rows * size - centre[0]) ** 2 + (cols * size - centre[1]) ** 2) / (radius ** 2), 0, 1)
    tint = np.array([1.0, 0.85, 0.8])[:, None, None]
    image = mucosa + polyp[None] * contrast * tint * (0.6 + 0.4 * dome[None])
    image = image * vignette[None]
    highlights = smooth_noise(rng, (size, size), 1.5) > 2.6
    image[:, highlights] = 1.0
    return np.clip(image, 0, 1), polyp.astype(np.int32)


# --------------------------------------------------------------------------- ultrasound (MedSAM-like fine-tuning domain)
def ultrasound_slice(rng: np.random.Generator, size: int, contrast: float) -> tuple[np.ndarray, np.ndarray]:
    rows = np.mgrid[:size, :size][0] / size
    tissue = 0.45 + 0.1 * smooth_noise(rng, (size, size), 5.0) - 0.15 * rows
    labels = np.zeros((size, size), dtype=np.int32)
    for label in range(1, int(rng.integers(1, 3)) + 1):
        centre = rng.uniform(0.25, 0.75, 2) * size
        lesion = blob_mask(rng, (size, size), tuple(centre), tuple(rng.uniform(0.07, 0.15, 2) * size), 0.15) & (labels == 0)
        tissue = np.where(lesion, tissue * (0.3 - contrast), tissue)  # hypoechoic
        labels[lesion] = label
    speckle = ndimage.gaussian_filter(rng.rayleigh(0.5, (size, size)) / 0.63, 0.7)
    return np.clip(tissue * speckle, 0, 1), labels


TargetGenerator = Callable[[np.random.Generator, int, float], tuple[np.ndarray, np.ndarray]]
MEDICAL_GENERATORS: dict[str, TargetGenerator] = {
    "brain_mri": brain_slice, "pancreas_ct": abdomen_slice, "polyp_rgb": polyp_frame, "ultrasound": ultrasound_slice,
}


def medical_case(domain: str, rng: np.random.Generator, size: int, contrast: float, blur: float, gamma: float,
                 noise: float) -> tuple[np.ndarray, np.ndarray]:
    """One degraded medical-like case: ``(C, H, W)`` in [0, 1] (C = 3 for polyp_rgb, else 1) and labels."""
    image, labels = MEDICAL_GENERATORS[domain](rng, size, contrast)
    image = image if image.ndim == 3 else image[None]
    return degrade(image, rng, blur, gamma, noise).astype(np.float32), labels
