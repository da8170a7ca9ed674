"""Synthetic dynamic cardiac phantom, coil sensitivities and k-space simulation.

The synthetic default of the cmr_recon study: a static body (muscle with a subcutaneous fat
ring, two lungs) and a beating heart (left ventricle with myocardium and papillary muscles,
right ventricle, descending aorta) drawn with soft-edged ellipses, a smooth random texture,
and per-modality contrast: bSSFP-like bright blood for cine, inversion-recovery weightings
for T1 mapping, T2-decay weightings for T2 mapping, an aortic cross-section with pulsatile
inflow for 2-D flow, dark blood for BlackBlood, tag lines for tagging, and long-axis, LVOT and
aortic views. Geometry is in units of half the smaller matrix side, so any matrix size works.
Nothing here follows official code: the challenge ships real data, this only stands in for it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from stages.cmr_recon.transforms import fft2c

MODALITIES = (
    "cine_sax",
    "cine_lax",
    "cine_lvot",
    "T1map",
    "T2map",
    "aorta_sag",
    "aorta_tra",
    "tagging",
    "flow2d",
    "blackblood",
)
SYNTHETIC_MODALITIES = ("cine_sax", "cine_lax", "T1map", "T2map", "flow2d", "blackblood")
HELD_OUT_MODALITIES = ("flow2d", "blackblood")

_EDGE_PX = 0.6  # soft-edge width of every shape, pixels
_T1_INVERSION_TIMES_S = (0.1, 3.5)  # range of inversion times for the T1 weightings
_T2_ECHO_TIMES_S = (0.0, 0.06)  # range of echo times for the T2 weightings


class PhantomError(ValueError):
    """A phantom was requested with an unknown modality or invalid size."""


@dataclass(frozen=True)
class _Anatomy:
    """Per-case random anatomy (units: half the smaller matrix side)."""

    heart_x: float
    heart_y: float
    lv_radius: float
    wall: float
    heart_angle: float
    contrast_jitter: dict[str, float]


# Tissue intensities (cine, tagging, aorta, flow, blackblood) or (proton density, T1 s, T2 s).
_CINE = {"fat": 0.85, "muscle": 0.42, "lung": 0.05, "myocardium": 0.32, "blood": 1.0}
_BLACKBLOOD = {"fat": 0.95, "muscle": 0.55, "lung": 0.06, "myocardium": 0.75, "blood": 0.03}
_FLOW = {"fat": 0.55, "muscle": 0.35, "lung": 0.04, "myocardium": 0.3, "blood": 0.6}
_RELAXATION = {  # proton density, T1 (s), T2 (s)
    "fat": (0.9, 0.26, 0.08),
    "muscle": (0.75, 0.9, 0.04),
    "lung": (0.12, 1.2, 0.03),
    "myocardium": (0.7, 1.05, 0.045),
    "blood": (0.95, 1.6, 0.25),
}
_TISSUES = tuple(_CINE)


def _random_anatomy(rng: np.random.Generator) -> _Anatomy:
    return _Anatomy(
        heart_x=float(rng.uniform(-0.06, 0.06)),
        heart_y=float(rng.uniform(-0.05, 0.05)),
        lv_radius=float(rng.uniform(0.15, 0.19)),
        wall=float(rng.uniform(0.07, 0.09)),
        heart_angle=float(rng.uniform(-0.3, 0.3)),
        contrast_jitter={tissue: float(rng.uniform(0.92, 1.08)) for tissue in _TISSUES},
    )


def _ellipse(
    x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float, angle: float, pixel: float
) -> np.ndarray:
    """Soft indicator of a rotated ellipse; the edge ramps over about ``_EDGE_PX`` pixels."""
    cos, sin = math.cos(angle), math.sin(angle)
    u = (x - cx) * cos + (y - cy) * sin
    v = -(x - cx) * sin + (y - cy) * cos
    radius = np.sqrt((u / ax) ** 2 + (v / ay) ** 2)
    distance_px = (radius - 1) * min(ax, ay) / pixel
    return 0.5 * (1 - np.tanh(distance_px / _EDGE_PX))


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    field = gaussian_filter(rng.standard_normal(shape), sigma=sigma, mode="wrap")
    return field / (field.std() + 1e-12)


def _contraction(frame: int, nt: int) -> float:
    """0 at end-diastole (frame 0), 1 at end-systole (mid-cycle)."""
    return 0.5 * (1 - math.cos(2 * math.pi * frame / nt))


Layer = tuple[str, np.ndarray]


def _body_layers(x: np.ndarray, y: np.ndarray, half_x: float, half_y: float, pixel: float) -> list[Layer]:
    body_ax, body_ay = 0.85 * min(half_x, 1.6 * half_y), 0.78 * half_y
    return [
        ("fat", _ellipse(x, y, 0, 0, body_ax, body_ay, 0, pixel)),
        ("muscle", _ellipse(x, y, 0, 0, body_ax - 0.07, body_ay - 0.07, 0, pixel)),
        ("lung", _ellipse(x, y, -0.55 * body_ax, -0.05, 0.3 * body_ax, 0.6 * body_ay, 0.15, pixel)),
        ("lung", _ellipse(x, y, 0.55 * body_ax, -0.05, 0.3 * body_ax, 0.6 * body_ay, -0.15, pixel)),
    ]


def _short_axis_layers(
    x: np.ndarray, y: np.ndarray, anatomy: _Anatomy, slice_fraction: float, contraction: float, pixel: float
) -> list[Layer]:
    """Short-axis heart: base (slice_fraction 0) is large with an RV, apex (1) small without."""
    size = 1 - 0.45 * slice_fraction
    cx = anatomy.heart_x + 0.015 * contraction
    cy = anatomy.heart_y
    endo0 = anatomy.lv_radius * size
    epi0 = endo0 + anatomy.wall * (0.8 + 0.2 * size)
    endo = endo0 * (1 - 0.3 * contraction)
    epi = math.sqrt(endo**2 + epi0**2 - endo0**2)  # myocardial area is conserved
    rv_scale = max(0.0, 1 - 1.2 * slice_fraction) * (1 - 0.25 * contraction)
    angle = anatomy.heart_angle
    rv_x, rv_y = cx - 1.05 * epi0 * math.cos(angle), cy - 1.05 * epi0 * math.sin(angle)
    layers: list[Layer] = [("blood", _ellipse(x, y, cx + 0.3, cy + 0.38, 0.075, 0.075, 0, pixel))]
    if rv_scale > 0.05:
        layers += [
            ("myocardium", _ellipse(x, y, rv_x, rv_y, 0.2 * rv_scale + 0.02, 0.3 * rv_scale + 0.02, angle, pixel)),
            ("blood", _ellipse(x, y, rv_x, rv_y, 0.2 * rv_scale, 0.3 * rv_scale, angle, pixel)),
        ]
    layers += [
        ("myocardium", _ellipse(x, y, cx, cy, epi, epi * 0.95, angle, pixel)),
        ("blood", _ellipse(x, y, cx, cy, endo, endo * 0.95, angle, pixel)),
    ]
    papillary = 0.18 * endo0 * (1 + 0.3 * contraction)
    for offset in (0.9, 2.3):
        px = cx + 0.55 * endo * math.cos(angle + offset)
        py = cy + 0.55 * endo * math.sin(angle + offset)
        layers.append(("myocardium", _ellipse(x, y, px, py, papillary, papillary, 0, pixel)))
    return layers


def _long_axis_layers(
    x: np.ndarray, y: np.ndarray, anatomy: _Anatomy, view: float, contraction: float, outflow: bool, pixel: float
) -> list[Layer]:
    """Long-axis heart (LV, LA, RV in the four-chamber-like views, aortic root for LVOT)."""
    angle = anatomy.heart_angle + 0.6 + 0.5 * view
    cos, sin = math.cos(angle), math.sin(angle)
    cx, cy = anatomy.heart_x, anatomy.heart_y
    long_endo = 2.0 * anatomy.lv_radius * (1 - 0.15 * contraction)
    short_endo = anatomy.lv_radius * (1 - 0.3 * contraction)
    wall = anatomy.wall * (1 + 0.3 * contraction)
    base_x, base_y = cx - long_endo * cos, cy - long_endo * sin
    la_radius = anatomy.lv_radius * (0.8 + 0.25 * contraction)
    la_x, la_y = base_x - la_radius * cos, base_y - la_radius * sin
    layers: list[Layer] = [("blood", _ellipse(x, y, la_x, la_y, la_radius, 0.9 * la_radius, angle, pixel))]
    if view > 0.3 and not outflow:
        rv_x, rv_y = cx + 1.6 * short_endo * sin, cy - 1.6 * short_endo * cos
        layers += [
            ("myocardium", _ellipse(x, y, rv_x, rv_y, 0.8 * long_endo + 0.02, 0.6 * short_endo + 0.02, angle, pixel)),
            ("blood", _ellipse(x, y, rv_x, rv_y, 0.8 * long_endo, 0.6 * short_endo, angle, pixel)),
        ]
    layers += [
        ("myocardium", _ellipse(x, y, cx, cy, long_endo + wall, short_endo + wall, angle, pixel)),
        ("blood", _ellipse(x, y, cx, cy, long_endo, short_endo, angle, pixel)),
    ]
    if outflow:
        root = 0.45 * anatomy.lv_radius * (1 + 0.1 * contraction)
        ao_x, ao_y = base_x - 1.5 * root * sin - 0.8 * root * cos, base_y + 1.5 * root * cos - 0.8 * root * sin
        layers.append(("blood", _ellipse(x, y, ao_x, ao_y, 2.5 * root, root, angle - 0.9, pixel)))
    return layers


def _aorta_cross_section_layers(
    x: np.ndarray, y: np.ndarray, anatomy: _Anatomy, slice_fraction: float, pulse: float, pixel: float
) -> list[Layer]:
    """Transverse slice through ascending and descending aorta and pulmonary trunk."""
    cx, cy = anatomy.heart_x, anatomy.heart_y - 0.05 * slice_fraction
    scale = 1 + 0.12 * pulse
    return [
        ("muscle", _ellipse(x, y, cx, cy, 0.32, 0.26, anatomy.heart_angle, pixel)),  # mediastinum
        ("blood", _ellipse(x, y, cx - 0.08, cy - 0.05, 0.11 * scale, 0.11 * scale, 0, pixel)),
        ("blood", _ellipse(x, y, cx + 0.12, cy - 0.12, 0.09 * scale, 0.085 * scale, 0, pixel)),
        ("blood", _ellipse(x, y, cx + 0.28, cy + 0.3, 0.075 * scale, 0.075 * scale, 0, pixel)),
    ]


def _aorta_arch_layers(
    x: np.ndarray, y: np.ndarray, anatomy: _Anatomy, slice_fraction: float, pulse: float, pixel: float
) -> list[Layer]:
    """Sagittal candy-cane aorta: an arch (annulus half) with ascending and descending limbs."""
    radius = 0.28 + 0.04 * slice_fraction
    width = 0.07 * (1 + 0.12 * pulse) * (1 - 0.3 * abs(slice_fraction - 0.5))
    cx, cy = anatomy.heart_x, anatomy.heart_y - 0.15
    distance = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
    ring = 0.5 * (1 - np.tanh((np.abs(distance - radius) - width) / (pixel * _EDGE_PX)))
    arch = ring * 0.5 * (1 - np.tanh((y - cy) / (pixel * _EDGE_PX)))  # upper half (y < cy)
    limbs = [
        _ellipse(x, y, cx + side * radius, cy + 0.3, width, 0.3, 0, pixel) for side in (-1.0, 1.0)
    ]
    vessel = np.maximum(arch, np.maximum(*limbs))
    return [("muscle", _ellipse(x, y, cx, cy + 0.1, 0.5, 0.42, 0, pixel)), ("blood", vessel)]


def _render(layers: list[Layer], intensity: dict[str, float], texture: dict[str, np.ndarray]) -> np.ndarray:
    """Paint layers in order; each tissue's value is modulated by its texture."""
    image = np.zeros_like(layers[0][1])
    for tissue, coverage in layers:
        image = image * (1 - coverage) + intensity[tissue] * texture[tissue] * coverage
    return image


def _intensities(modality: str, anatomy: _Anatomy, weighting: int, n_weightings: int) -> dict[str, float]:
    jitter = anatomy.contrast_jitter
    if modality == "T1map":
        lo, hi = _T1_INVERSION_TIMES_S
        ti = lo * (hi / lo) ** (weighting / max(n_weightings - 1, 1))
        return {
            t: pd * jitter[t] * abs(1 - 2 * math.exp(-ti / (t1 * jitter[t])))
            for t, (pd, t1, _) in _RELAXATION.items()
        }
    if modality == "T2map":
        lo, hi = _T2_ECHO_TIMES_S
        te = lo + (hi - lo) * weighting / max(n_weightings - 1, 1)
        return {t: pd * jitter[t] * math.exp(-te / (t2 * jitter[t])) for t, (pd, _, t2) in _RELAXATION.items()}
    table = {"blackblood": _BLACKBLOOD, "flow2d": _FLOW}.get(modality, _CINE)
    return {t: value * jitter[t] for t, value in table.items()}


def _tag_pattern(x: np.ndarray, y: np.ndarray, frame: int, nt: int, pixel: float) -> np.ndarray:
    """Grid of saturation tags (period 8 px) that fades over the cycle."""
    period = 8 * pixel
    depth = 0.85 * math.exp(-1.5 * frame / nt)
    lines_x = np.cos(math.pi * x / period) ** 8
    lines_y = np.cos(math.pi * y / period) ** 8
    return 1 - depth * np.maximum(lines_x, lines_y)


def _smooth_phase(x: np.ndarray, y: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """A low-order polynomial phase map: offset, linear ramps and two quadratic terms.

    Coefficients in [-1, 1] scale each term to at most pi/4 per unit of ``x``/``y``, which
    gives phase variations of a few tenths of a radian across the body.
    """
    terms = np.stack([np.ones_like(x), x, y, x * y / 2, (x**2 - y**2) / 2])
    return np.tensordot(coefficients * (math.pi / 4), terms, axes=1)


def cardiac_phantom(
    modality: str,
    ny: int,
    nx: int,
    nt: int,
    nz: int,
    rng: np.random.Generator,
    complex_phase: bool = False,
) -> np.ndarray:
    """Dynamic cardiac-like phantom ``(nt, nz, ny, nx)`` float32 (BlackBlood: ``(nz, ny, nx)``).

    ``modality``: one of ``MODALITIES``. Cine, tagging, aorta and flow frames follow one
    cardiac cycle (frame 0 end-diastole); T1map/T2map "frames" are weightings (inversion
    recovery ``PD |1 - 2 exp(-TI/T1)|`` over TI 0.1..3.5 s; ``PD exp(-TE/T2)`` over TE
    0..60 ms) of a still heart; BlackBlood has no time axis (``nt`` ignored). Slices vary
    (short-axis base to apex, long-axis views, aortic levels). Anatomy, contrast jitter and
    texture come from ``rng``. With ``complex_phase=True`` the result is complex64 with the
    same magnitude and a smooth phase (plus a velocity phase in the vessels for flow2d).
    """
    if modality not in MODALITIES:
        raise PhantomError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    for name, value in (("ny", ny), ("nx", nx), ("nt", nt), ("nz", nz)):
        if int(value) != value or value < 1:
            raise PhantomError(f"{name} must be a positive integer, got {value!r}")
    if min(ny, nx) < 16:
        raise PhantomError(f"matrix {ny} x {nx} is too small for the phantom (need >= 16)")
    blackblood = modality == "blackblood"
    n_frames = 1 if blackblood else nt
    pixel = 2.0 / min(ny, nx)  # phantom units per pixel
    y, x = np.meshgrid(
        (np.arange(ny) - ny / 2) * pixel, (np.arange(nx) - nx / 2) * pixel, indexing="ij"
    )
    half_x, half_y = nx / 2 * pixel, ny / 2 * pixel
    anatomy = _random_anatomy(rng)
    body = _body_layers(x, y, half_x, half_y, pixel)
    images = np.empty((n_frames, nz, ny, nx), dtype=np.float32)
    phases = np.empty((n_frames, nz, ny, nx), dtype=np.float32) if complex_phase else None
    still_heart = modality in ("T1map", "T2map", "blackblood")
    for z in range(nz):
        fraction = (z + 0.5) / nz
        coarse = _smooth_field(rng, (ny, nx), sigma=min(ny, nx) / 10)
        fine = _smooth_field(rng, (ny, nx), sigma=1.5)
        texture = {
            "fat": 1 + 0.06 * coarse + 0.03 * fine,
            "muscle": 1 + 0.12 * coarse + 0.05 * fine,
            "lung": 1 + 0.3 * coarse + 0.1 * fine,
            "myocardium": 1 + 0.05 * coarse + 0.04 * fine,
            "blood": 1 + 0.03 * coarse + 0.02 * fine,
        }
        texture = {tissue: np.clip(t, 0.2, None) for tissue, t in texture.items()}
        # Drawn either way, so that complex_phase does not change the magnitude images.
        phase_coefficients = rng.uniform(-1, 1, size=5)
        base_phase = _smooth_phase(x, y, phase_coefficients) if complex_phase else None
        for t in range(n_frames):
            motion = 0.0 if still_heart else _contraction(t, nt)
            if modality in ("cine_sax", "tagging", "T1map", "T2map", "blackblood"):
                heart = _short_axis_layers(x, y, anatomy, fraction, motion, pixel)
            elif modality in ("cine_lax", "cine_lvot"):
                heart = _long_axis_layers(x, y, anatomy, fraction, motion, modality == "cine_lvot", pixel)
            elif modality == "aorta_sag":
                heart = _aorta_arch_layers(x, y, anatomy, fraction, motion, pixel)
            else:  # aorta_tra, flow2d
                heart = _aorta_cross_section_layers(x, y, anatomy, fraction, motion, pixel)
            layers = body + heart
            intensity = _intensities(modality, anatomy, t, n_frames)
            if modality == "flow2d":  # inflow: vessels brighten with the systolic pulse
                intensity["blood"] *= 0.6 + 0.8 * motion
            image = _render(layers, intensity, texture)
            if modality == "tagging":
                image = image * _tag_pattern(x, y, t, nt, pixel)
            images[t, z] = image
            if phases is not None:
                phase = base_phase + 0.1 * math.sin(2 * math.pi * t / max(nt, 1))
                if modality == "flow2d":
                    vessels = sum(c for tissue, c in heart if tissue == "blood")
                    phase = phase + 0.6 * math.pi * motion * np.clip(vessels, 0, 1)
                phases[t, z] = phase
    result = images if phases is None else (images * np.exp(1j * phases)).astype(np.complex64)
    return result[0] if blackblood else result


def coil_maps(nc: int, ny: int, nx: int, relative_radius: float = 1.5) -> np.ndarray:
    """Smooth birdcage coil sensitivities ``(nc, ny, nx)`` complex64 (sigpy ``birdcage_maps``).

    ``nc`` coils on a ring of ``relative_radius`` times the half field of view; sigpy divides
    by the root-sum-of-squares, so ``sum_c |S_c|^2 = 1`` at every pixel and the RSS of fully
    sampled, noise-free coil images equals the object's magnitude.
    """
    if nc < 1 or ny < 1 or nx < 1:
        raise PhantomError(f"coil_maps needs positive nc, ny, nx, got {(nc, ny, nx)}")
    if relative_radius <= 1:
        raise PhantomError(f"relative_radius={relative_radius} must exceed 1 (coils outside the field of view)")
    import sigpy.mri as mr  # about 3 s (numba, torch): only the synthetic default needs it

    return mr.birdcage_maps((nc, ny, nx), r=relative_radius, nzz=nc).astype(np.complex64)


def simulate_kspace(
    image: np.ndarray, maps: np.ndarray, noise_std: float, rng: np.random.Generator
) -> np.ndarray:
    """Multi-coil k-space ``(..., nc, ny, nx)`` complex64 of ``image (..., ny, nx)``.

    ``kspace = fft2c(maps * image) + noise``, the centred orthonormal FFT of
    ``transforms.fft2c``; the noise is circular complex Gaussian, i.i.d. over samples and
    coils, with ``E|n|^2 = noise_std^2`` (real and imaginary parts ``noise_std/sqrt(2)``).
    Because the FFT is orthonormal, the noise has the same level in image space.
    """
    image = np.asarray(image)
    maps = np.asarray(maps)
    if maps.ndim != 3 or image.shape[-2:] != maps.shape[-2:]:
        raise PhantomError(f"image {image.shape} (..., ny, nx) and maps {maps.shape} (nc, ny, nx) do not match")
    if noise_std < 0:
        raise PhantomError(f"noise_std must be >= 0, got {noise_std}")
    lead = image.shape[:-2]
    flat = image.reshape(-1, *image.shape[-2:])
    out = np.empty((flat.shape[0], *maps.shape), dtype=np.complex64)
    for index, frame in enumerate(flat):  # one 2-D image at a time keeps temporaries small
        kspace = fft2c((maps * frame[None]).astype(np.complex64))
        if noise_std > 0:
            noise = rng.standard_normal((2, *maps.shape), dtype=np.float32) * (noise_std / math.sqrt(2))
            kspace = kspace + (noise[0] + 1j * noise[1])
        out[index] = kspace
    return out.reshape(*lead, *maps.shape)
