"""The synthetic default: MS-like FLAIR pairs built on nilearn's MNI152 template (in its wheel).

All of this module is our design (SegHeD's data are not public): a FLAIR-like contrast mapped
from the template's tissue probabilities, ellipsoidal hyperintense lesions centred in white
matter that persist, appear (new) or vanish between two time points, and a per-dataset style
(contrast gamma, intensity scale, bias field, noise). Every lesion's fate is recorded so that
evaluation can score labels a dataset's layout lacks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

FATES = ("persistent", "new", "vanishing")
TEMPLATE_SPACING_MM = 2.0  # nilearn's MNI152 at resolution=2


@dataclass(frozen=True)
class Template:
    """MNI152 tissue maps resampled to one isotropic spacing, cropped to the brain's bounding box."""

    t1: np.ndarray
    white_matter: np.ndarray   # probability in [0, 1]
    grey_matter: np.ndarray
    brain: np.ndarray          # bool
    spacing_mm: float


@dataclass(frozen=True)
class Style:
    """How one synthetic dataset looks (ours): its contrast, scale, bias field and noise."""

    gamma: float
    scale: float
    bias: float          # peak-to-peak amplitude of the smooth multiplicative field, as a fraction
    noise: float         # Gaussian noise std, as a fraction of the white-matter level
    lesion_contrast: float


@dataclass(frozen=True)
class Lesion:
    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    fate: str


def load_template(spacing_mm: float, margin: int = 2) -> Template:
    """nilearn's MNI152 T1, grey- and white-matter maps at ``spacing_mm`` (no download: the files are in the wheel)."""
    from nilearn import datasets

    maps = [np.asarray(image.get_fdata(), dtype=np.float32) for image in (
        datasets.load_mni152_template(resolution=2), datasets.load_mni152_wm_template(resolution=2),
        datasets.load_mni152_gm_template(resolution=2), datasets.load_mni152_brain_mask(resolution=2))]
    factor = TEMPLATE_SPACING_MM / spacing_mm
    t1, wm, gm, brain = (ndimage.zoom(m, factor, order=1) for m in maps)
    brain = brain > 0.5
    box = bounding_box(brain, margin)
    return Template(t1[box], np.clip(wm[box], 0, 1), np.clip(gm[box], 0, 1), brain[box], spacing_mm)


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...]:
    """The slices of ``mask``'s non-zero bounding box, widened by ``margin`` voxels (clipped to the array)."""
    where = np.nonzero(mask)
    if not where[0].size:
        raise ValueError("bounding_box: the mask is empty")
    return tuple(slice(max(int(w.min()) - margin, 0), min(int(w.max()) + 1 + margin, size))
                 for w, size in zip(where, mask.shape))


def flair_like(template: Template, style: Style) -> np.ndarray:
    """FLAIR-like contrast (ours): GM a little brighter than WM, CSF dark, zero outside the brain."""
    csf = np.clip(1.0 - template.white_matter - template.grey_matter, 0, 1)
    image = 0.55 * template.white_matter + 0.7 * template.grey_matter + 0.08 * csf
    image = np.where(template.brain, image, 0.0)
    return (style.scale * np.power(np.clip(image, 0, None), style.gamma)).astype(np.float32)


def bias_field(shape: tuple[int, ...], amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth multiplicative field: a random linear-plus-quadratic polynomial, 1 +- amplitude / 2."""
    axes = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    field = sum(rng.normal() * a + 0.5 * rng.normal() * a * a for a in axes)
    spread = float(field.max() - field.min()) or 1.0
    return (1.0 + amplitude * ((field - field.min()) / spread - 0.5)).astype(np.float32)


def draw_lesions(template: Template, counts: dict[str, int], radius_range: tuple[float, float],
                 rng: np.random.Generator) -> list[Lesion]:
    """Ellipsoids centred in deep white matter (probability > 0.9), ``counts[fate]`` of each fate."""
    candidates = np.argwhere(ndimage.binary_erosion(template.white_matter > 0.9, iterations=1))
    if len(candidates) == 0:
        raise ValueError("draw_lesions: the template has no deep white matter at this spacing")
    lesions = []
    for fate in FATES:
        for _ in range(counts.get(fate, 0)):
            centre = candidates[int(rng.integers(len(candidates)))].astype(float)
            radii = tuple(float(r) for r in rng.uniform(*radius_range, size=3))
            lesions.append(Lesion(tuple(centre), radii, fate))
    return lesions


def lesion_mask(shape: tuple[int, ...], lesion: Lesion) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    distance = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, lesion.centre, lesion.radii))
    return distance <= 1.0


@dataclass(frozen=True)
class Truth:
    """Every label of one synthetic subject, whichever of them its layout will carry."""

    all_t1: np.ndarray
    all_t2: np.ndarray
    new: np.ndarray
    vanishing: np.ndarray


def lesion_truth(shape: tuple[int, ...], lesions: list[Lesion], brain: np.ndarray) -> Truth:
    """All-lesion maps at both time points, and new (in t2 only) and vanishing (in t1 only) lesion maps."""
    empty = np.zeros(shape, dtype=bool)
    masks = {fate: empty.copy() for fate in FATES}
    for lesion in lesions:
        masks[lesion.fate] |= lesion_mask(shape, lesion) & brain
    all_t1 = masks["persistent"] | masks["vanishing"]
    all_t2 = masks["persistent"] | masks["new"]
    return Truth(all_t1, all_t2, all_t2 & ~all_t1, all_t1 & ~all_t2)


def scan(template: Template, lesions_present: np.ndarray, style: Style, rng: np.random.Generator) -> np.ndarray:
    """One FLAIR-like scan: tissue contrast, smoothed hyperintense lesions, bias field and noise."""
    image = flair_like(template, style)
    soft = ndimage.gaussian_filter(lesions_present.astype(np.float32), 0.7)
    image = image + style.scale * style.lesion_contrast * soft * template.brain
    image = image * bias_field(image.shape, style.bias, rng)
    image = image + rng.normal(0, style.noise * style.scale * 0.55, image.shape).astype(np.float32) * template.brain
    return np.clip(image, 0, None).astype(np.float32)
