"""Synthetic abdominal CT phantoms whose anatomy depends on age and sex by known amounts.

A subject's anatomy (:func:`subject_anatomy`) is drawn from its sex and age: organ volumes,
organ attenuation, organ position, body size and fat content follow the :class:`Effects`
(systematic, recorded as the synthetic truth) plus individual variation. A :class:`Scanner`
turns the anatomy into an image (:func:`render_phantom`): its own voxel spacing, field of view,
contrast enhancement, intensity offset, blur and noise. Coordinates are millimetres on RAS axes
(x to the patient's right, y anterior, z superior) with the origin at the field-of-view centre;
arrays are indexed ``[x, y, z]``. Labels use the AMOS ids (:data:`stages.ct_fairness.organs.AMOS_CLASSES`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import ConfigDict
from scipy import ndimage

from stages.ct_fairness.organs import AMOS_CLASSES, ORGANS

AMOS_ID = {name: amos_id for amos_id, name in AMOS_CLASSES.items()}

# Reference (male, age <= onset) organ geometry: centre (mm) and semi-axes (mm) of ellipsoids.
_ELLIPSOIDS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "stomach": ((-45.0, 38.0, 55.0), (40.0, 30.0, 42.0)),
    "spleen": ((-86.0, -20.0, 48.0), (27.0, 40.0, 44.0)),
    "liver": ((62.0, 2.0, 45.0), (62.0, 75.0, 60.0)),
    "kidney_right": ((62.0, -46.0, -10.0), (26.0, 23.0, 50.0)),
    "kidney_left": ((-62.0, -46.0, 2.0), (26.0, 23.0, 50.0)),
}
# Pancreas: a tube from head to tail, (x, y, z) points and radii in mm.
_PANCREAS_POINTS = np.array([(30.0, -5.0, -5.0), (6.0, 0.0, 2.0), (-30.0, -10.0, 8.0), (-66.0, -28.0, 18.0)])
_PANCREAS_RADII = np.array([16.0, 13.0, 12.0, 10.0])
_VESSELS: dict[str, tuple[tuple[float, float], float]] = {"aorta": ((-12.0, -35.0), 11.0), "postcava": ((22.0, -32.0), 12.0)}

# Portal-venous attenuation (HU) before the scanner's enhancement and offset.
BASE_HU: dict[str, float] = {
    "liver": 115.0, "kidney_right": 170.0, "kidney_left": 170.0, "pancreas": 80.0, "spleen": 115.0,
    "stomach": 25.0, "aorta": 160.0, "postcava": 130.0, "muscle": 50.0, "fat": -100.0, "bowel": 35.0,
    "bone": 450.0, "air": -1000.0,
}
_ENHANCED = ("liver", "kidney_right", "kidney_left", "pancreas", "spleen", "aorta", "postcava")
_UNENHANCED_HU = 40.0


@dataclass(frozen=True)
class Effects:
    """Systematic dependence of the anatomy on sex and age (the synthetic ground truth).

    Volume scales and attenuation shifts of the organ table's organs; ageing is linear from
    ``ageing_onset`` (no effect at or below it) and reaches the ``old_*`` values at
    ``old_reference_age``. Also the type of ``ct_fairness.ingest.effects`` in params.yaml.
    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    female_volume_scale: Mapping[str, float] = field(default_factory=lambda: {
        "liver": 0.8, "kidney_right": 0.82, "kidney_left": 0.82, "pancreas": 0.85})
    female_hu_shift: Mapping[str, float] = field(default_factory=lambda: {o: 0.0 for o in ORGANS})
    old_volume_scale: Mapping[str, float] = field(default_factory=lambda: {
        "liver": 1.0, "kidney_right": 0.75, "kidney_left": 0.75, "pancreas": 0.65})
    old_hu_shift: Mapping[str, float] = field(default_factory=lambda: {
        "liver": 0.0, "kidney_right": -15.0, "kidney_left": -15.0, "pancreas": -60.0})
    old_kidney_descent_mm: float = 12.0
    ageing_onset: float = 40.0
    old_reference_age: float = 80.0
    female_body_scale: float = 0.93
    visceral_fat_fraction: Mapping[Literal["F", "M"], float] = field(default_factory=lambda: {"F": 0.3, "M": 0.5})
    visceral_fat_per_decade: float = 0.04
    subcutaneous_fat_mm: Mapping[Literal["F", "M"], float] = field(default_factory=lambda: {"F": 30.0, "M": 16.0})
    individual_volume_sd: float = 0.08
    shape_jitter: float = 0.07
    position_sd_mm: float = 5.0


@dataclass(frozen=True)
class Scanner:
    """How one dataset's scanners image the anatomy (also the type of ``ct_fairness.ingest.scanners.<dataset>``)."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    spacing: tuple[float, float, float] = (7.0, 7.0, 7.0)
    fov_mm: tuple[float, float, float] = (336.0, 252.0, 224.0)
    noise_hu: float = 12.0
    offset_hu: float = 0.0
    blur_mm: float = 0.0
    enhancement: float = 1.0

    def shape(self) -> tuple[int, int, int]:
        return tuple(max(8, int(round(f / s))) for f, s in zip(self.fov_mm, self.spacing, strict=True))  # type: ignore[return-value]


@dataclass(frozen=True)
class Anatomy:
    """One subject: systematic values (the truth) and the individual draws used to render it."""

    sex: str
    age: float
    systematic_volume_scale: dict[str, float]
    systematic_hu_shift: dict[str, float]
    volume_scale: dict[str, float]
    hu: dict[str, float]
    body_scale: float
    visceral_fat_fraction: float
    subcutaneous_fat_mm: float
    offsets_mm: dict[str, tuple[float, float, float]]
    axis_jitter: dict[str, tuple[float, float, float]]
    rotation_deg: dict[str, float]
    seed: int


def ageing_factor(age: float, effects: Effects) -> float:
    """0 at or below the onset, 1 at the reference old age, linear (and extrapolated) above."""
    return max(age - effects.ageing_onset, 0.0) / (effects.old_reference_age - effects.ageing_onset)


def systematic_effects(sex: str, age: float, effects: Effects) -> tuple[dict[str, float], dict[str, float]]:
    """(volume scale, attenuation shift in HU) per organ of the table, from sex and age alone."""
    ageing = ageing_factor(age, effects)
    female = sex == "F"
    scales, shifts = {}, {}
    for organ in ORGANS:
        sex_scale = effects.female_volume_scale[organ] if female else 1.0
        scales[organ] = sex_scale * (1.0 + (effects.old_volume_scale[organ] - 1.0) * ageing)
        shifts[organ] = (effects.female_hu_shift[organ] if female else 0.0) + effects.old_hu_shift[organ] * ageing
    return scales, shifts


def subject_anatomy(sex: str, age: float, effects: Effects, rng: np.random.Generator) -> Anatomy:
    """Draw one subject's anatomy from its sex and age."""
    scales, shifts = systematic_effects(sex, age, effects)
    ageing = ageing_factor(age, effects)
    structures = (*_ELLIPSOIDS, "pancreas")
    volume_scale = {name: scales.get(name, 1.0) * float(np.exp(rng.normal(0.0, effects.individual_volume_sd)))
                    for name in structures}
    hu = {name: BASE_HU[name] + shifts.get(name, 0.0) for name in BASE_HU}
    offsets = {name: tuple(float(v) for v in rng.normal(0.0, effects.position_sd_mm, 3)) for name in structures}
    for kidney in ("kidney_right", "kidney_left"):
        x, y, z = offsets[kidney]
        offsets[kidney] = (x, y, z - effects.old_kidney_descent_mm * ageing)
    jitter = {}
    for name in structures:
        raw = np.exp(rng.normal(0.0, effects.shape_jitter, 3))
        jitter[name] = tuple(float(v) for v in raw / np.cbrt(raw.prod()))  # volume-preserving
    rotation = {name: float(rng.normal(0.0, 8.0)) for name in structures}
    visceral = effects.visceral_fat_fraction[sex] + effects.visceral_fat_per_decade * max(age - effects.ageing_onset, 0.0) / 10
    return Anatomy(
        sex=sex, age=float(age), systematic_volume_scale=scales, systematic_hu_shift=shifts,
        volume_scale=volume_scale, hu=hu,
        body_scale=(effects.female_body_scale if sex == "F" else 1.0) * float(np.exp(rng.normal(0.0, 0.04))),
        visceral_fat_fraction=float(np.clip(visceral, 0.05, 0.9)),
        subcutaneous_fat_mm=float(max(2.0, effects.subcutaneous_fat_mm[sex] * np.exp(rng.normal(0.0, 0.2)))),
        offsets_mm=offsets, axis_jitter=jitter, rotation_deg=rotation, seed=int(rng.integers(2**31)),
    )


def scanner_hu(hu: float, name: str, scanner: Scanner) -> float:
    """Attenuation of a structure as the scanner shows it (enhancement scaling, then offset)."""
    if name in _ENHANCED:
        hu = _UNENHANCED_HU + scanner.enhancement * (hu - _UNENHANCED_HU)
    return hu + scanner.offset_hu


def grid_mm(shape: tuple[int, ...], spacing: tuple[float, ...]) -> np.ndarray:
    """``(3, *shape)`` voxel-centre coordinates in mm, origin at the volume centre."""
    axes = [(np.arange(n, dtype=np.float32) - (n - 1) / 2.0) * s for n, s in zip(shape, spacing, strict=True)]
    return np.stack(np.meshgrid(*axes, indexing="ij"))


def smooth_field(shape: tuple[int, ...], spacing: tuple[float, ...], sigma_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to zero mean and unit standard deviation."""
    noise = rng.standard_normal(shape).astype(np.float32)
    smooth = ndimage.gaussian_filter(noise, [sigma_mm / s for s in spacing], mode="wrap")
    return (smooth - smooth.mean()) / (smooth.std() + 1e-8)


def ellipsoid_radius(coords: np.ndarray, centre, semi_axes, angle_deg: float) -> np.ndarray:
    """Normalised ellipsoid radius (1 on the surface) after rotating the ellipsoid about z."""
    theta = np.deg2rad(angle_deg)
    dx, dy, dz = (coords[i] - centre[i] for i in range(3))
    u = np.cos(theta) * dx + np.sin(theta) * dy
    v = -np.sin(theta) * dx + np.cos(theta) * dy
    return np.sqrt((u / semi_axes[0]) ** 2 + (v / semi_axes[1]) ** 2 + (dz / semi_axes[2]) ** 2)


def tube_radius(coords: np.ndarray, points: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Normalised distance to a polyline tube whose radius varies linearly along each segment."""
    best = np.full(coords.shape[1:], np.inf, dtype=np.float32)
    for start, end, r_start, r_end in zip(points[:-1], points[1:], radii[:-1], radii[1:], strict=True):
        direction = end - start
        relative = coords - start.reshape(3, 1, 1, 1)
        t = np.clip(np.tensordot(direction, relative, axes=1) / float(direction @ direction), 0.0, 1.0)
        nearest = start.reshape(3, 1, 1, 1) + t[None] * direction.reshape(3, 1, 1, 1)
        distance = np.sqrt(((coords - nearest) ** 2).sum(axis=0))
        best = np.minimum(best, distance / (r_start + t * (r_end - r_start)))
    return best


def _ellipse(coords: np.ndarray, centre: tuple[float, float], semi: tuple[float, float]) -> np.ndarray:
    return ((coords[0] - centre[0]) / semi[0]) ** 2 + ((coords[1] - centre[1]) / semi[1]) ** 2 <= 1.0


def render_phantom(anatomy: Anatomy, scanner: Scanner) -> tuple[np.ndarray, np.ndarray]:
    """Image in HU (int16) and AMOS-id label map (uint8), both ``scanner.shape()`` on RAS axes."""
    rng = np.random.default_rng(anatomy.seed)
    shape, spacing = scanner.shape(), scanner.spacing
    coords = grid_mm(shape, spacing)
    irregular = smooth_field(shape, spacing, 14.0, rng)
    texture = smooth_field(shape, spacing, 6.0, rng)
    bowel_field = smooth_field(shape, spacing, 10.0, rng)
    body = anatomy.body_scale
    wall = (135.0 * body, 92.0 * body)
    cavity = _ellipse(coords, (0.0, 0.0), (wall[0] - 12.0, wall[1] - 12.0))
    muscle = _ellipse(coords, (0.0, 0.0), wall)
    outline = _ellipse(coords, (0.0, 0.0), (wall[0] + anatomy.subcutaneous_fat_mm, wall[1] + anatomy.subcutaneous_fat_mm))
    spine = _ellipse(coords, (0.0, -62.0 * body), (20.0, 18.0))
    paraspinal = _ellipse(coords, (35.0 * body, -72.0 * body), (24.0, 16.0)) | _ellipse(coords, (-35.0 * body, -72.0 * body), (24.0, 16.0))

    hu = np.full(shape, BASE_HU["air"], dtype=np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    hu[outline] = BASE_HU["fat"]
    hu[muscle & ~cavity] = BASE_HU["muscle"]
    visceral = cavity.copy()
    threshold = np.quantile(bowel_field[visceral], anatomy.visceral_fat_fraction) if visceral.any() else 0.0
    hu[visceral] = np.where(bowel_field[visceral] < threshold, BASE_HU["fat"], BASE_HU["bowel"])

    def paint(name: str, inside: np.ndarray) -> None:
        inside = inside & cavity
        hu[inside] = scanner_hu(anatomy.hu[name], name, scanner) - scanner.offset_hu + 6.0 * texture[inside]
        if name in AMOS_ID:
            label[inside] = AMOS_ID[name]

    for name, (centre, semi) in _ELLIPSOIDS.items():
        linear = np.cbrt(anatomy.volume_scale[name])
        axes_mm = [a * linear * j for a, j in zip(semi, anatomy.axis_jitter[name], strict=True)]
        position = [c * body + o for c, o in zip(centre, anatomy.offsets_mm[name], strict=True)]
        paint(name, ellipsoid_radius(coords, position, axes_mm, anatomy.rotation_deg[name]) + 0.06 * irregular < 1.0)
    offset = np.asarray(anatomy.offsets_mm["pancreas"])
    points = _PANCREAS_POINTS * np.array([body, body, 1.0]) + offset
    radii = _PANCREAS_RADII * np.sqrt(anatomy.volume_scale["pancreas"])  # atrophy thins, keeps length
    paint("pancreas", tube_radius(coords, points, radii) + 0.06 * irregular < 1.0)
    for name, (centre, radius) in _VESSELS.items():
        paint(name, _ellipse(coords, (centre[0] * body, centre[1] * body), (radius, radius)))
    hu[spine] = BASE_HU["bone"]
    hu[paraspinal & ~spine] = BASE_HU["muscle"]
    label[spine | (paraspinal & ~cavity)] = 0

    if scanner.blur_mm > 0:
        hu = ndimage.gaussian_filter(hu, [scanner.blur_mm / s for s in spacing])
    hu = hu + scanner.offset_hu + rng.normal(0.0, scanner.noise_hu, shape).astype(np.float32)
    return np.clip(np.round(hu), -1024, 3071).astype(np.int16), label


def organ_hu_truth(anatomy: Anatomy, scanner: Scanner) -> dict[str, float]:
    """Mean attenuation of each organ of the table as this scanner shows it (before noise)."""
    return {organ: scanner_hu(anatomy.hu[organ], organ, scanner) for organ in ORGANS}
