"""A NOVA-like benchmark built from a real brain: the MNI152 template nilearn ships in its wheel.

Slices are cut in three planes, given T1-, T2-, FLAIR- or DWI-like contrast from the template's
tissue maps, and one rare "pathology" from :mod:`stages.nova.catalogue` is painted in (shape,
signal per sequence, typical location, optional oedema) before a random field of view,
rotation, resolution loss, bias field and Rician noise are applied. Gold boxes are the
bounding boxes of the painted lesion's connected components; two raters jitter around them.
Captions, clinical histories and final diagnoses (sometimes given by a synonym) come from the
catalogue. Everything is drawn from one seeded generator, so a seed fixes every byte.

The files are written as NOVA distributes them (see :mod:`stages.nova.dataset`); a separate
folder of lesion-free slices, never part of the benchmark, is what the normative detector
trains on.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from stages.nova.boxes import mask_to_boxes
from stages.nova.catalogue import (
    CATALOGUE,
    PLANES,
    SEQUENCE_PHRASES,
    SEQUENCES,
    SHAPE_PHRASES,
    SIGNAL_PHRASES,
    Pathology,
    frequency_weights,
)

CANVAS = 240  # mm; every slice of the 197 x 233 x 189 template fits, centred
TISSUE_LEVELS = {"T2": (0.36, 0.56, 1.0), "FLAIR": (0.48, 0.66, 0.06), "DWI": (0.52, 0.60, 0.14)}  # (wm, gm, csf)
SLICE_RANGES = {"axial": (0.40, 0.72), "coronal": (0.32, 0.68), "sagittal": (0.28, 0.72)}


@dataclass(frozen=True)
class BrainAtlas:
    """The MNI152 2009 template (1 mm) and its tissue probability maps, (x, y, z) RAS voxel order."""

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain: np.ndarray


@lru_cache(maxsize=1)
def load_brain_atlas() -> BrainAtlas:
    """Load the template and masks bundled with nilearn (no download)."""
    from nilearn import datasets

    def volume(image) -> np.ndarray:
        return np.asarray(image.dataobj, dtype=np.float32)

    t1 = volume(datasets.load_mni152_template(resolution=1))
    gm = volume(datasets.load_mni152_gm_template(resolution=1))
    wm = volume(datasets.load_mni152_wm_template(resolution=1))
    brain = volume(datasets.load_mni152_brain_mask(resolution=1))
    csf = np.clip(brain - gm - wm, 0.0, 1.0) * brain
    return BrainAtlas(t1 / max(float(t1.max()), 1e-6), gm, wm, csf, brain)


@dataclass
class SliceMaps:
    """One slice on a ``CANVAS x CANVAS`` 1 mm grid: superior/anterior up, radiological left-right
    (patient right on image left); sagittal slices have anterior on the left."""

    plane: str
    fraction: float
    side_of_slice: str  # sagittal only: which hemisphere the slice cuts
    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain: np.ndarray


def _orient(section: np.ndarray) -> np.ndarray:
    """A 2-D section (first axis horizontal in RAS order, second vertical) as a displayed image."""
    return section.T[::-1, ::-1]


def _pad(image: np.ndarray) -> np.ndarray:
    out = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    rows, cols = image.shape
    top, left = (CANVAS - rows) // 2, (CANVAS - cols) // 2
    out[top:top + rows, left:left + cols] = image
    return out


def cut_slice(atlas: BrainAtlas, plane: str, fraction: float) -> SliceMaps:
    """The slice at ``fraction`` of the plane's axis, every map oriented and padded alike."""
    axis = {"sagittal": 0, "coronal": 1, "axial": 2}[plane]
    index = int(round(fraction * (atlas.t1.shape[axis] - 1)))
    maps = {}
    for name in ("t1", "gm", "wm", "csf", "brain"):
        volume = getattr(atlas, name)
        section = volume[index] if axis == 0 else volume[:, index] if axis == 1 else volume[:, :, index]
        maps[name] = _pad(_orient(section))
    side = ""
    if plane == "sagittal":
        side = "left" if index < (atlas.t1.shape[0] - 1) / 2 else "right"
    return SliceMaps(plane, fraction, side, **maps)


def contrast_image(maps: SliceMaps, sequence: str) -> np.ndarray:
    """Sequence-like contrast: the template itself for T1, tissue-level mixtures (with the
    template's fine texture, inverted where the contrast inverts) for the others."""
    if sequence == "T1":
        return maps.t1.copy()
    wm_level, gm_level, csf_level = TISSUE_LEVELS[sequence]
    mixture = maps.wm * wm_level + maps.gm * gm_level + maps.csf * csf_level
    texture = maps.t1 - ndimage.gaussian_filter(maps.t1, 1.5)
    return np.clip(mixture - 0.4 * texture * maps.brain, 0.0, None).astype(np.float32)


# --------------------------------------------------------------------------- lesions
def location_candidates(maps: SliceMaps, location: str, radius: float) -> np.ndarray:
    """Boolean map of plausible lesion centres for a catalogue location on this slice."""
    brain = maps.brain > 0.5
    depth = ndimage.distance_transform_edt(brain)
    if location == "white_matter":
        return (maps.wm > 0.6) & (depth > radius + 3)
    if location == "periventricular":
        ventricles = (maps.csf > 0.5) & (depth > 15)
        if not ventricles.any():
            return np.zeros_like(brain)
        near = ndimage.distance_transform_edt(~ventricles)
        return (maps.wm > 0.4) & (near > 1) & (near < 8)
    if location == "cortical":
        return (maps.gm > 0.45) & (depth > 2) & (depth < 10)
    if location == "deep_grey":
        return (maps.gm > 0.45) & (depth > 22)
    if location == "extra_axial":
        return brain & (depth <= 2) & (depth > 0)
    if location == "intraventricular":
        return (maps.csf > 0.6) & (depth > 18)
    raise ValueError(f"unknown location {location!r}")


def _ellipse(shape, centre, a: float, b: float, angle: float) -> np.ndarray:
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    dy, dx = rows - centre[0], cols - centre[1]
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    return (u / max(a, 0.5)) ** 2 + (v / max(b, 0.5)) ** 2 <= 1.0


def lesion_masks(shape, kind: str, centre, radius: float, brain: np.ndarray, rng: np.random.Generator):
    """(lesion mask, rim mask or None) for a catalogue shape at ``centre`` on a 1 mm grid."""
    angle = rng.uniform(0, np.pi)
    if kind == "round":
        return _ellipse(shape, centre, radius, radius * rng.uniform(0.7, 1.0), angle), None
    if kind == "elongated":
        return _ellipse(shape, centre, radius * 1.6, radius * 0.45, angle), None
    if kind == "ring":
        outer = _ellipse(shape, centre, radius, radius * rng.uniform(0.75, 1.0), angle)
        inner = _ellipse(shape, centre, radius * 0.62, radius * 0.55, angle)
        return outer, outer & ~inner
    if kind == "lobulated":
        mask = np.zeros(shape, dtype=bool)
        for _ in range(int(rng.integers(3, 6))):
            offset = rng.normal(0, radius * 0.35, 2)
            r = radius * rng.uniform(0.45, 0.7)
            mask |= _ellipse(shape, (centre[0] + offset[0], centre[1] + offset[1]), r, r, 0.0)
        return mask, None
    if kind == "irregular":
        noise = ndimage.gaussian_filter(rng.normal(size=shape).astype(np.float32), max(radius / 3, 1.0))
        bound = _ellipse(shape, centre, radius * 1.15, radius * rng.uniform(0.7, 1.0), angle)
        mask = bound & (noise > np.percentile(noise[bound], 35))
        labels, count = ndimage.label(mask)
        if count > 1:
            sizes = ndimage.sum(mask, labels, range(1, count + 1))
            mask = labels == (int(np.argmax(sizes)) + 1)
        return (mask if mask.any() else bound), None
    if kind == "multifocal":
        mask = np.zeros(shape, dtype=bool)
        inside = np.argwhere((brain > 0.5) & (ndimage.distance_transform_edt(brain > 0.5) > radius + 2))
        near = inside[np.hypot(inside[:, 0] - centre[0], inside[:, 1] - centre[1]) < 28]
        foci = [centre] + [tuple(near[rng.integers(len(near))]) for _ in range(int(rng.integers(1, 4)))] if len(near) else [centre]
        for focus in foci:
            r = radius * rng.uniform(0.8, 1.25)
            mask |= _ellipse(shape, focus, r, r, 0.0)
        return mask, None
    raise ValueError(f"unknown shape {kind!r}")


def _ring_around(mask: np.ndarray, width: int) -> np.ndarray:
    return ndimage.binary_dilation(mask, iterations=width) & ~mask


def paint_lesion(image: np.ndarray, maps: SliceMaps, pathology: Pathology, sequence: str,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """Paint ``pathology`` into ``image``; returns (image, lesion mask) or None if no place fits."""
    radius = float(rng.uniform(*pathology.radius_mm))
    candidates = location_candidates(maps, pathology.location, radius)
    if not candidates.any():
        return None
    centres = np.argwhere(candidates)
    centre = tuple(float(v) for v in centres[rng.integers(len(centres))])
    mask, rim = lesion_masks(image.shape, pathology.shape, centre, radius, maps.brain, rng)
    if pathology.location != "extra_axial":
        mask &= maps.brain > 0.5
        rim = None if rim is None else rim & mask
    if mask.sum() < 6:
        return None
    brain = maps.brain > 0.5
    surround = _ring_around(mask, 4) & brain
    base = float(np.median(image[surround])) if surround.any() else float(np.median(image[brain]))
    base = max(base, 0.25)
    painted = image.copy()
    if pathology.oedema:
        halo = _ring_around(mask, int(rng.integers(3, 7))) & brain
        halo_level = {"T1": base * 0.85, "T2": max(base * 1.4, 0.75), "FLAIR": max(base * 1.4, 0.85), "DWI": base * 1.1}[sequence]
        alpha = ndimage.gaussian_filter(halo.astype(np.float32), 1.5) * 0.7
        painted = painted * (1 - alpha) + halo_level * alpha
    levels = {"hyper": max(base * 1.8, 0.9), "hypo": base * 0.35, "iso": base * 1.1}
    level = levels[pathology.signal[sequence]]
    texture = 1.0 + 0.06 * ndimage.gaussian_filter(rng.normal(size=image.shape).astype(np.float32), 1.0) * 4
    alpha = np.clip(ndimage.gaussian_filter(mask.astype(np.float32), 0.7), 0, 1)
    painted = painted * (1 - alpha) + level * texture * alpha
    if rim is not None and rim.any():
        rim_level = levels["hyper"] if sequence in ("T1", "FLAIR") else levels["hypo"]
        rim_alpha = np.clip(ndimage.gaussian_filter(rim.astype(np.float32), 0.6), 0, 1)
        painted = painted * (1 - rim_alpha) + rim_level * rim_alpha
    return painted.astype(np.float32), mask


# --------------------------------------------------------------------------- acquisition
def acquisition_transform(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """(matrix, offset, mm per pixel) mapping output pixels to canvas millimetres: field of view,
    rotation and shift of one acquisition."""
    field_of_view = rng.uniform(200.0, 245.0)
    spacing = field_of_view / size
    angle = np.deg2rad(rng.uniform(-10, 10))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = rotation * spacing
    shift = rng.uniform(-8, 8, 2)
    centre_out = np.array([(size - 1) / 2, (size - 1) / 2])
    centre_in = np.array([(CANVAS - 1) / 2, (CANVAS - 1) / 2]) + shift
    return matrix, centre_in - matrix @ centre_out, spacing


def acquire(image: np.ndarray, size: int, matrix: np.ndarray, offset: np.ndarray, sequence: str,
            rng: np.random.Generator) -> np.ndarray:
    """Resample to ``size`` x ``size``, lose resolution, add a bias field and Rician noise; uint8 out."""
    out = ndimage.affine_transform(image, matrix, offset, output_shape=(size, size), order=1)
    factor = rng.uniform(0.5, 1.0) if sequence != "DWI" else rng.uniform(0.35, 0.6)
    low = ndimage.zoom(out, factor, order=1)
    out = ndimage.zoom(low, (size / low.shape[0], size / low.shape[1]), order=1)[:size, :size]
    yy, xx = np.mgrid[-1:1:complex(0, size), -1:1:complex(0, size)]
    coefficients = rng.normal(0, 0.15, 5)
    out = out * np.exp(coefficients[0] * xx + coefficients[1] * yy + coefficients[2] * xx ** 2
                       + coefficients[3] * yy ** 2 + coefficients[4] * xx * yy)
    sigma = rng.uniform(0.01, 0.035) * (2.0 if sequence == "DWI" else 1.0)
    out = np.sqrt((out + rng.normal(0, sigma, out.shape)) ** 2 + rng.normal(0, sigma, out.shape) ** 2)
    scale = np.percentile(out, 99.7) * 1.05
    return (np.clip(out / max(scale, 1e-6), 0, 1) * 255).round().astype(np.uint8)


# --------------------------------------------------------------------------- text
def lobe_of(maps: SliceMaps, row: float, col: float) -> str:
    """A coarse lobe name for a point on the slice (from its position in the brain's extent)."""
    rows, cols = np.nonzero(maps.brain > 0.5)
    r = (row - rows.min()) / max(rows.max() - rows.min(), 1)
    c = (col - cols.min()) / max(cols.max() - cols.min(), 1)
    if maps.plane == "axial":
        return "frontal" if r < 0.38 else "parietal" if r < 0.7 else "occipital"
    if maps.plane == "sagittal":
        if r > 0.62 and c < 0.6:
            return "temporal"
        return "frontal" if c < 0.38 else "parietal" if c < 0.72 else "occipital"
    if maps.fraction > 0.58:
        return "frontal"
    return "temporal" if r > 0.55 else "parietal"


def side_of(maps: SliceMaps, col: float) -> str:
    """Patient side of a point (radiological display: image left is the patient's right)."""
    if maps.plane == "sagittal":
        return maps.side_of_slice
    middle = (CANVAS - 1) / 2
    if abs(col - middle) < 5:
        return ""
    return "right" if col < middle else "left"


def location_phrase(location: str, side: str, lobe: str) -> str:
    side = f"{side} " if side else ""
    return {
        "white_matter": f"{side}{lobe} white matter",
        "periventricular": f"{side}periventricular white matter",
        "cortical": f"{side}{lobe} cortex",
        "deep_grey": f"{side}deep grey matter",
        "extra_axial": f"{side}{lobe} convexity, extra-axial",
        "intraventricular": f"{side}lateral ventricle",
    }[location]


def size_word(diameter_mm: float) -> str:
    return "small" if diameter_mm < 10 else "moderate" if diameter_mm < 25 else "large"


def gold_caption(plane: str, sequence: str, pathology: Pathology | None, location: str = "", size: str = "",
                 rng: np.random.Generator | None = None) -> str:
    """A radiologist-style one-sentence finding for the slice."""
    head = f"{plane.capitalize()} {SEQUENCE_PHRASES[sequence]} image"
    if pathology is None:
        return f"{head} shows no focal abnormality."
    signal = SIGNAL_PHRASES[pathology.signal[sequence]]
    if pathology.shape == "multifocal":
        body = f"multiple small {signal} foci in the {location}"
    else:
        shape = SHAPE_PHRASES[pathology.shape]
        body = f"a {size} {signal} {shape} lesion in the {location}"
    extra = f" {pathology.phrases[int(rng.integers(len(pathology.phrases)))]}" if rng is not None and pathology.phrases else ""
    return f"{head} shows {body}{extra}."


def clinical_history(pathology: Pathology, rng: np.random.Generator) -> str:
    age = int(rng.integers(pathology.age[0], pathology.age[1] + 1))
    sex = "woman" if rng.random() < 0.5 else "man"
    story = pathology.histories[int(rng.integers(len(pathology.histories)))]
    tail = ["", " No relevant past medical history.", " Neurological examination otherwise unremarkable.",
            " Referred for MRI."][int(rng.integers(4))]
    return f"{age}-year-old {sex} presenting with {story}.{tail}"


def final_diagnosis(pathology: Pathology, rng: np.random.Generator) -> str:
    if pathology.synonyms and rng.random() < 0.35:
        return pathology.synonyms[int(rng.integers(len(pathology.synonyms)))]
    return pathology.name


# --------------------------------------------------------------------------- benchmark
@dataclass
class SyntheticSlice:
    filename: str
    case_id: str
    scan_id: int
    image: np.ndarray
    caption: str
    gold: np.ndarray            # (k, 4) [x, y, w, h]
    raters: list[tuple[int, np.ndarray]]  # (rater number, (j, 4))
    plane: str
    sequence: str


@dataclass
class SyntheticCase:
    case_id: str
    pathology: Pathology
    clinical_history: str
    final_diagnosis: str
    slices: list[SyntheticSlice]


def rater_boxes(gold: np.ndarray, size: int, rng: np.random.Generator, miss_probability: float = 0.08) -> np.ndarray:
    """One rater's boxes: each gold box with jittered edges (sometimes missed), kept in the image."""
    boxes = []
    for x, y, w, h in gold:
        if len(gold) > 1 and rng.random() < miss_probability:
            continue
        x0, y0 = x + rng.normal(0, 0.1 * w + 0.5), y + rng.normal(0, 0.1 * h + 0.5)
        x1, y1 = x + w + rng.normal(0, 0.1 * w + 0.5), y + h + rng.normal(0, 0.1 * h + 0.5)
        x0, y0 = np.clip([x0, y0], 0, size - 2)
        x1, y1 = np.clip(x1, x0 + 2, size), np.clip(y1, y0 + 2, size)
        boxes.append([round(float(x0), 1), round(float(y0), 1), round(float(x1 - x0), 1), round(float(y1 - y0), 1)])
    return np.asarray(boxes, dtype=float).reshape(-1, 4)


def render_slice(atlas: BrainAtlas, plane: str, sequence: str, size: int, pathology: Pathology | None,
                 rng: np.random.Generator, attempts: int = 12):
    """(uint8 image, gold boxes, location text, size word) for one slice; retries slice positions
    until the pathology finds a plausible place."""
    for _ in range(attempts):
        fraction = float(rng.uniform(*SLICE_RANGES[plane]))
        maps = cut_slice(atlas, plane, fraction)
        image = contrast_image(maps, sequence)
        location, size_text, mask = "", "", None
        if pathology is not None:
            painted = paint_lesion(image, maps, pathology, sequence, rng)
            if painted is None:
                continue
            image, mask = painted
            rows, cols = np.nonzero(mask)
            location = location_phrase(pathology.location, side_of(maps, cols.mean()), lobe_of(maps, rows.mean(), cols.mean()))
            size_text = size_word(float(max(np.ptp(rows), np.ptp(cols)) + 1))
        matrix, offset, _ = acquisition_transform(size, rng)
        pixels = acquire(image, size, matrix, offset, sequence, rng)
        gold = np.zeros((0, 4))
        if mask is not None:
            warped = ndimage.affine_transform(mask.astype(np.float32), matrix, offset, output_shape=(size, size), order=1)
            gold = mask_to_boxes(warped >= 0.5, min_area=3)
            if len(gold) == 0:
                continue
        return pixels, gold, location, size_text
    return None


def generate_benchmark(n_cases: int, image_size: int, seed: int, max_scans_per_case: int = 3,
                       normal_slice_fraction: float = 0.15, catalogue: tuple[Pathology, ...] = CATALOGUE,
                       frequency_exponent: float = 1.1) -> list[SyntheticCase]:
    """``n_cases`` NOVA-like cases with one to ``max_scans_per_case`` slices each."""
    atlas = load_brain_atlas()
    rng = np.random.default_rng(seed)
    weights = frequency_weights(len(catalogue), frequency_exponent)
    cases = []
    for number in range(1, n_cases + 1):
        pathology = catalogue[int(rng.choice(len(catalogue), p=weights))]
        case_id = f"case{number:04d}"
        slices = []
        for scan in range(1, int(rng.integers(1, max_scans_per_case + 1)) + 1):
            plane = PLANES[int(rng.integers(len(PLANES)))]
            sequence = SEQUENCES[int(rng.integers(len(SEQUENCES)))]
            lesion = pathology if scan == 1 or rng.random() >= normal_slice_fraction else None
            rendered = render_slice(atlas, plane, sequence, image_size, lesion, rng)
            if rendered is None:
                rendered = render_slice(atlas, plane, sequence, image_size, None, rng)
                lesion = None
            pixels, gold, location, size_text = rendered
            caption = gold_caption(plane, sequence, lesion, location, size_text, rng)
            raters = [(r, rater_boxes(gold, image_size, rng)) for r in (1, 2)] if len(gold) else []
            slices.append(SyntheticSlice(f"{case_id}_{scan:03d}.png", case_id, scan, pixels, caption, gold, raters,
                                         plane, sequence))
        cases.append(SyntheticCase(case_id, pathology, clinical_history(pathology, rng), final_diagnosis(pathology, rng), slices))
    return cases


def generate_healthy(n_slices: int, image_size: int, seed: int) -> list[tuple[str, np.ndarray, str, str]]:
    """Lesion-free slices for training the normative detector: (filename, image, plane, sequence)."""
    atlas = load_brain_atlas()
    rng = np.random.default_rng([seed, 7])
    out = []
    for number in range(1, n_slices + 1):
        plane = PLANES[(number - 1) % len(PLANES)]
        sequence = SEQUENCES[int(rng.integers(len(SEQUENCES)))]
        pixels, _, _, _ = render_slice(atlas, plane, sequence, image_size, None, rng)
        out.append((f"healthy_{number:04d}.png", pixels, plane, sequence))
    return out


def write_benchmark(root: Path, cases: list[SyntheticCase]) -> None:
    """Write the cases exactly as NOVA distributes them, under ``root``: the CSV layout and the current
    release's ``data/nova-v1.parquet`` (which points at the same PNGs in ``images/``)."""
    from stages.nova.dataset import write_nova_csv_layout, write_nova_parquet_v1

    write_nova_csv_layout(root, cases)
    write_nova_parquet_v1(root / "data" / "nova-v1.parquet", cases)


def write_healthy(root: Path, slices: list[tuple[str, np.ndarray, str, str]]) -> None:
    """Healthy slices as PNGs plus ``healthy.csv`` (filename, plane, sequence)."""
    import pandas as pd

    from stages.common.io import write_png, write_table

    for filename, pixels, _, _ in slices:
        write_png(root / filename, pixels)
    write_table(root / "healthy.csv", pd.DataFrame([{"filename": f, "plane": p, "sequence": s} for f, _, p, s in slices]))
