"""CMRxRecon2024 undersampling masks, ported from the official MATLAB generators.

Official code: CmrxRecon/CMRxRecon2024, folder ``CMRxReconMaskGeneration``:

- ``Task1/Toolbox_Mask_Generator_Task1/UniformSampling.m`` (Uniform, Task 1),
- ``Task2/Toolbox_Mask_Generator_Task2/ktMaskGenerator_Task2.m`` (dispatch and the pattern
  constants: alpha 0.2 for ktGaussian, 137.5 degrees and R * 0.6 with cropped corners for
  ktRadial), ``ktUniformSampling.m``, ``ktGaussianSampling.m``, ``ktRadialSampling.m``,
  ``ktdup.m`` and ``randp.m``.

The MATLAB code builds masks of shape ``(nx, ny, nt)`` (readout first). Here masks are
``(nt, ny, nx)``, the order h5py reads the challenge's v7.3 files in, so
``mask[t, ky, kx] == matlab_mask[kx, ky, t]``. MATLAB's 1-based indices are translated to
0-based ones; MATLAB's ``round`` (halves away from zero) is reproduced, not Python's.

The 16 autocalibration (ACS) lines are added on top of the nominal pattern and are not counted
in the acceleration R, so the effective acceleration is below R (see ``effective_acceleration``).
"""
from __future__ import annotations

import math
from typing import Annotated, Literal, get_args

import numpy as np
from pydantic import AfterValidator

# The one list of the challenge's undersampling patterns; params, file names and embeddings use it.
Pattern = Literal["Uniform", "ktUniform", "ktGaussian", "ktRadial"]
PATTERNS: tuple[str, ...] = get_args(Pattern)


def _check_accelerations(patterns: dict[str, list[int]]) -> dict[str, list[int]]:
    if not patterns:
        raise ValueError("give at least one pattern")
    for pattern, accelerations in patterns.items():
        if not accelerations or any(r < 2 for r in accelerations):
            raise ValueError(f"{pattern}: give one or more accelerations of at least 2 (got {accelerations})")
    return patterns


# A params value: accelerations per pattern, as `patterns: {Uniform: [4, 8], ktRadial: [8]}`.
AccelerationsByPattern = Annotated[dict[Pattern, list[int]], AfterValidator(_check_accelerations)]
# Accelerations the challenge used: Task 1 Uniform at 4, 8, 10; Task 2 k-t patterns at 4..24.
TASK1_ACCELERATIONS = (4, 8, 10)
TASK2_ACCELERATIONS = (4, 8, 12, 16, 20, 24)
DEFAULT_ACS = 16
KT_GAUSSIAN_ALPHA = 0.2  # ktMaskGenerator_Task2.m
KT_RADIAL_ANGLE_STEP_DEG = 137.5  # ktMaskGenerator_Task2.m: "angle4next"
KT_RADIAL_R_FACTOR = 0.6  # ktMaskGenerator_Task2.m: R = R * 0.6


class MaskError(ValueError):
    """A mask was requested with an unknown pattern or invalid size/acceleration."""


def _matlab_round(x: np.ndarray | float) -> np.ndarray:
    """MATLAB ``round``: halves go away from zero (Python rounds halves to even)."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x >= 0, np.floor(x + 0.5), np.ceil(x - 0.5))


def _centred_start(full: int, part: int) -> int:
    """0-based start of a centred block, as MATLAB ``zpad``/``crop`` place it.

    zpad.m/crop.m index ``floor(full/2)+1+ceil(-part/2) : floor(full/2)+ceil(part/2)``
    (1-based), i.e. the block's centre sits at the FFT centre ``full // 2``.
    """
    return full // 2 + math.ceil(-part / 2)


def _matlab_rand(seed: int, n: int) -> np.ndarray:
    """``rng(seed); rand(n, 1)`` of MATLAB's default Mersenne Twister generator.

    numpy's legacy ``RandomState`` uses the same MT19937 initialisation and 53-bit doubles
    as MATLAB's ``twister`` (``rng(1); rand`` gives 0.417022 in both); MATLAB maps seed 0
    to MT19937's default seed 5489.
    """
    if seed < 0 or seed >= 2**32:
        raise MaskError(f"seed must be in [0, 2**32), got {seed}")
    return np.random.RandomState(5489 if seed == 0 else seed).random_sample(n)


def _validate(pattern: str, nx: int, ny: int, nt: int, acceleration: int, acs: int) -> None:
    if pattern not in PATTERNS:
        raise MaskError(f"unknown undersampling pattern {pattern!r}; expected one of {PATTERNS}")
    if int(acceleration) != acceleration or acceleration < 2:
        raise MaskError(
            f"acceleration for pattern {pattern!r} must be an integer >= 2, got {acceleration!r}"
        )
    for name, value in (("nx", nx), ("ny", ny), ("nt", nt)):
        if int(value) != value or value < 1:
            raise MaskError(f"{name} must be a positive integer, got {value!r}")
    limit = min(ny, nx) if pattern == "ktRadial" else ny
    if acs < 0 or acs > limit:
        raise MaskError(f"acs={acs} for pattern {pattern!r} must lie in [0, {limit}] for ny={ny}, nx={nx}")


def acs_mask(pattern: str, nx: int, ny: int, acs: int = DEFAULT_ACS) -> np.ndarray:
    """Autocalibration region ``(ny, nx)`` that every frame of ``pattern`` samples fully.

    Cartesian patterns (Uniform, ktUniform, ktGaussian): the ``acs`` central ky lines
    ``ny//2 - acs//2 ..`` over the whole readout (``zpad(ones(nx,ncalib),[nx,ny])``).
    ktRadial: the central ``acs x acs`` square (``zpad(ones(ncalib,ncalib,nt),[nx,ny,nt])``).
    """
    _validate(pattern, nx, ny, 1, 2, acs)
    region = np.zeros((ny, nx), dtype=bool)
    y0 = _centred_start(ny, acs)
    if pattern == "ktRadial":
        x0 = _centred_start(nx, acs)
        region[y0 : y0 + acs, x0 : x0 + acs] = True
    else:
        region[y0 : y0 + acs, :] = True
    return region


def _uniform_lines(ny: int, acceleration: int) -> np.ndarray:
    """UniformSampling.m: ``mask(:, 1:R:end) = 1`` -> ky = 0, R, 2R, ... (no offset)."""
    lines = np.zeros(ny, dtype=bool)
    lines[::acceleration] = True
    return lines


def _ind2xy(ind: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """ktdup.m ``ind2xy``: 1-based column-major linear index -> (row, column), 1-based."""
    x = ind - np.floor((ind - 1) / rows) * rows
    y = np.ceil(ind / rows)
    return x, y


def _ktdup(ph: np.ndarray, ti: np.ndarray, ny: int, nt: int) -> tuple[np.ndarray, np.ndarray]:
    """Port of ktdup.m: move duplicate k-t samples to the nearest vacant ky of the same frame.

    Duplicates are visited in ascending order of their (frame-major) grid index, later
    occurrences first displaced; among equally near vacancies the lower ky wins (MATLAB's
    ``min`` returns the first), and a vacancy, once taken, is no longer free.
    """
    ph = ph + math.ceil((ny + 1) / 2)
    ti = ti + math.ceil((nt + 1) / 2)
    pt = (ti - 1) * ny + ph
    values, counts = np.unique(pt, return_counts=True)
    repeated = values[counts != 1]
    if repeated.size:
        duplicate_positions: list[int] = []
        for value in repeated:
            duplicate_positions.extend(np.flatnonzero(pt == value)[1:].tolist())
        vacant = np.setdiff1d(np.arange(1, ny * nt + 1, dtype=np.float64), pt)
        for position in duplicate_positions:
            x0, y0 = _ind2xy(pt[position], ny)
            x, y = _ind2xy(vacant, ny)
            same_frame = (y - y0) ** 2 <= np.finfo(np.float64).eps
            distance = np.where(same_frame, np.abs(x - x0), np.inf)
            chosen = int(np.argmin(distance))
            pt[position] = vacant[chosen]
            vacant = np.delete(vacant, chosen)
    x, y = _ind2xy(pt, ny)
    return x - math.ceil((ny + 1) / 2), y - math.ceil((nt + 1) / 2)


def _kt_lines(ph: np.ndarray, ti: np.ndarray, ny: int, nt: int) -> np.ndarray:
    """Shared tail of ktUniformSampling.m / ktGaussianSampling.m: (ky, t) samples -> ``(nt, ny)``."""
    ph, ti = _ktdup(ph, ti, ny, nt)
    ind = _matlab_round(ny * (ti + nt // 2) + (ph + ny // 2 + 1)).astype(np.int64)
    ind[ind <= 0] = 1  # ktUniformSampling.m: "ind(ind<=0) = 1;  % Changed"
    samp = np.zeros(ny * nt, dtype=bool)  # MATLAB samp(ny, nt), column-major
    samp[ind - 1] = True
    return samp.reshape(nt, ny)


def _kt_uniform_lines(ny: int, nt: int, acceleration: int) -> np.ndarray:
    """ktUniformSampling.m: the sheared lattice ``(ky - t) mod R == 0`` of ``toeplitz``.

    The official index arithmetic offsets frames by ``floor(nt)/2`` before ktdup.m and by
    ``floor(nt/2)`` after it. For even ``nt`` this returns exactly the lattice; for odd ``nt``
    (e.g. 9 T1 or 3 T2 weightings) it shifts every sample by ``ny/2`` positions in the
    column-major (ky, t) grid, wrapping into the neighbouring frame, and indices <= 0 are
    clamped to the first grid point. Both are reproduced as the official masks have them.
    """
    ky, t = np.meshgrid(np.arange(ny), np.arange(nt), indexing="ij")
    on_lattice = (ky - t) % acceleration == 0  # toeplitz(ptmp, ttmp) with ones every R
    linear = np.flatnonzero(on_lattice.ravel(order="F")) + 1  # find(Top), 1-based
    ph = np.remainder(linear - 1, ny) - ny // 2
    ti = np.floor((linear - 1) / ny) - nt / 2
    return _kt_lines(ph.astype(np.float64), ti.astype(np.float64), ny, nt)


def _kt_gaussian_lines(ny: int, nt: int, acceleration: int, seed: int) -> np.ndarray:
    """ktGaussianSampling.m (alpha 0.2): round(ny/R) lines per frame from a Gaussian density.

    ``rng(seed)`` draws one sub-seed per frame; per frame ``randp`` draws ``round(ny/R)``
    ky indices with replacement from ``0.1 + a/(1-a) exp(-k^2/s^2)`` (s = ny/5) by inverting
    the cumulative density with ``histc``; ktdup.m then moves duplicates to free lines.
    With MATLAB's Mersenne Twister reproduced, ``seed`` equals the official ``seed`` argument.
    """
    alpha = KT_GAUSSIAN_ALPHA
    k = np.arange(-(ny // 2), math.ceil(ny / 2), dtype=np.float64)
    sigma = ny / 5
    prob = 0.1 + alpha / (1 - alpha + 1e-10) * np.exp(-(k**2) / (1 * sigma**2))
    edges = np.concatenate([[0.0], np.cumsum(prob)]) / np.sum(prob)
    lines_per_frame = int(_matlab_round(ny / acceleration))
    frame_seeds = _matlab_round(1e6 * _matlab_rand(seed, nt)).astype(np.int64)
    ph_frames, ti_frames = [], []
    for frame, frame_seed in enumerate(frame_seeds):
        uniform = _matlab_rand(int(frame_seed), lines_per_frame)
        bins = np.searchsorted(edges, uniform, side="right")  # histc bin, 1-based
        ph_frames.append(bins - ny // 2 - 1)
        ti_frames.append(np.full(lines_per_frame, frame - nt // 2))
    ph = np.concatenate(ph_frames).astype(np.float64)
    ti = np.concatenate(ti_frames).astype(np.float64)
    return _kt_lines(ph, ti, ny, nt)


def _radial_hits(
    angles: np.ndarray, rows: np.ndarray, cols: np.ndarray, centre: float, line_row: int, a: int
) -> tuple[np.ndarray, np.ndarray]:
    """Output pixels (row index, col index) that nearest-neighbour rotation maps onto the line.

    Output offset ``(d_row, d_col)`` reads source ``row_s = round(centre + d_col sin + d_row cos)``
    and ``col_s = round(centre + d_col cos - d_row sin)`` (inverse of a counter-clockwise
    rotation); it is on the spoke when ``row_s`` is the line's row and ``col_s`` in the array.
    Instead of testing every pixel, each column (and each row) gets the few candidates that
    can satisfy the row condition, which are then tested with exactly that expression: one
    of the two candidate sets is complete, because ``max(|cos|, |sin|) >= 1/sqrt(2)``.
    """
    sin, cos = np.sin(angles)[:, None, None], np.cos(angles)[:, None, None]
    low = line_row - 0.5 - centre  # row_s rounds to line_row iff it lies in [line_row - .5, + .5)
    steps = np.arange(-1, 4)[None, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        # Column-wise candidates: solve the band condition for d_row.
        d_col = cols[None, :, None]
        edge = np.minimum((low - d_col * sin) / cos, (low + 1 - d_col * sin) / cos)
        start = np.floor(np.nan_to_num(edge - rows[0], nan=-10.0, posinf=-10.0, neginf=-10.0))
        row_idx_a = np.broadcast_to(start + steps, (len(angles), len(cols), 5)).astype(np.int64)
        col_idx_a = np.broadcast_to(np.arange(len(cols))[None, :, None], row_idx_a.shape)
        # Row-wise candidates: solve the band condition for d_col.
        d_row = rows[None, :, None]
        edge = np.minimum((low - d_row * cos) / sin, (low + 1 - d_row * cos) / sin)
        start = np.floor(np.nan_to_num(edge - cols[0], nan=-10.0, posinf=-10.0, neginf=-10.0))
        col_idx_b = np.broadcast_to(start + steps, (len(angles), len(rows), 5)).astype(np.int64)
        row_idx_b = np.broadcast_to(np.arange(len(rows))[None, :, None], col_idx_b.shape)
    angle_idx = np.concatenate(
        [np.broadcast_to(np.arange(len(angles))[:, None, None], row_idx_a.shape).ravel(),
         np.broadcast_to(np.arange(len(angles))[:, None, None], row_idx_b.shape).ravel()]
    )
    row_idx = np.concatenate([row_idx_a.ravel(), row_idx_b.ravel()])
    col_idx = np.concatenate([col_idx_a.ravel(), col_idx_b.ravel()])
    inside = (row_idx >= 0) & (row_idx < len(rows)) & (col_idx >= 0) & (col_idx < len(cols))
    angle_idx, row_idx, col_idx = angle_idx[inside], row_idx[inside], col_idx[inside]
    s, c = np.sin(angles)[angle_idx], np.cos(angles)[angle_idx]
    d_row, d_col = rows[row_idx], cols[col_idx]
    source_row = _matlab_round(centre + d_col * s + d_row * c)
    source_col = _matlab_round(centre + d_col * c - d_row * s)
    hit = (source_row == line_row) & (source_col >= 0) & (source_col <= a - 1)
    return row_idx[hit], col_idx[hit]


def _kt_radial(nx: int, ny: int, nt: int, acceleration: int) -> np.ndarray:
    """ktRadialSampling.m with ktMaskGenerator_Task2.m's settings, as ``(nt, ny, nx)``.

    ``R' = 0.6 R``; ``beams = floor(180/R')``; a one-pixel line (row ``round(a/2)`` of an
    ``a x a`` square, ``a = max(nx, ny)``) is rotated with nearest-neighbour ``imrotate(...,
    'crop')`` about the square's centre ``(a-1)/2`` to ``off + k*180/beams`` degrees,
    k = 0..beams (both 0 and 180 included, as MATLAB's colon gives), with ``off = 137.5 t``
    for frame t, and the union of spokes is centre-cropped to ``nx x ny`` (MATLAB rows = x).
    """
    rate = 1 / (acceleration * KT_RADIAL_R_FACTOR)
    beams = math.floor(rate * 180)
    if beams < 1:
        raise MaskError(f"ktRadial at acceleration {acceleration} leaves no spoke (beams={beams})")
    a = max(nx, ny)
    line_row = int(_matlab_round(a / 2)) - 1  # aux(round(a/2), :) = 1, 0-based
    centre = (a - 1) / 2
    rows = np.arange(_centred_start(a, nx), _centred_start(a, nx) + nx) - centre  # MATLAB dim 1 = x
    cols = np.arange(_centred_start(a, ny), _centred_start(a, ny) + ny) - centre  # MATLAB dim 2 = y
    mask = np.zeros((nt, ny, nx), dtype=bool)
    for frame in range(nt):
        angles = np.deg2rad(KT_RADIAL_ANGLE_STEP_DEG * frame + np.arange(beams + 1) * (180 / beams))
        row_idx, col_idx = _radial_hits(angles, rows, cols, centre, line_row, a)
        mask[frame, col_idx, row_idx] = True
    return mask


def make_mask(
    pattern: str,
    nx: int,
    ny: int,
    nt: int,
    acceleration: int,
    acs: int = DEFAULT_ACS,
    seed: int = 0,
) -> np.ndarray:
    """Boolean undersampling mask ``(nt, ny, nx)`` of the official CMRxRecon2024 generators.

    Args:
        pattern: ``Uniform`` (Task 1), ``ktUniform``, ``ktGaussian`` or ``ktRadial`` (Task 2).
        nx: readout size (MATLAB's first axis, sampled fully by Cartesian patterns).
        ny: phase-encoding size (the undersampled axis of Cartesian patterns).
        nt: frames (or weightings); Uniform repeats one mask over them.
        acceleration: nominal R, an integer >= 2 (official: ``TASK1_ACCELERATIONS`` for
            Uniform, ``TASK2_ACCELERATIONS`` for the k-t patterns). ACS lines are not counted.
        acs: autocalibration size (16 in the challenge), see ``acs_mask``.
        seed: ktGaussian only: the official generator's ``seed`` (it used ``randi([1 1000])``
            per file); deterministic, and with MATLAB's generator semantics (see module doc).

    Raises:
        MaskError (a ValueError) naming the bad pattern, acceleration or size.
    """
    _validate(pattern, nx, ny, nt, acceleration, acs)
    acceleration = int(acceleration)
    if pattern == "Uniform":
        lines = np.broadcast_to(_uniform_lines(ny, acceleration), (nt, ny))
    elif pattern == "ktUniform":
        lines = _kt_uniform_lines(ny, nt, acceleration)
    elif pattern == "ktGaussian":
        lines = _kt_gaussian_lines(ny, nt, acceleration, seed)
    else:
        return _kt_radial(nx, ny, nt, acceleration) | acs_mask(pattern, nx, ny, acs)[None]
    mask = np.repeat(lines[:, :, None], nx, axis=2)
    return mask | acs_mask(pattern, nx, ny, acs)[None]


def effective_acceleration(mask: np.ndarray) -> float:
    """Actual acceleration of ``mask``: all k-space samples / sampled ones (ACS included)."""
    mask = np.asarray(mask)
    sampled = int(np.count_nonzero(mask))
    if sampled == 0:
        raise MaskError("mask samples no k-space point; its acceleration is undefined")
    return mask.size / sampled


def acs_from_mask(mask: np.ndarray) -> np.ndarray:
    """The autocalibration region ``(ny, nx)`` read from a mask, as fastMRI's VarNet finds it.

    VarNet (``fastmri.models.varnet.SensitivityModel.get_pad_and_num_low_freqs``) takes the run
    of sampled lines around the centre. Here, for ``(nt, ny, nx)`` (or ``(ny, nx)``) masks, the
    largest rectangle grown from the centre ``(ny//2, nx//2)``, one row or column at a time
    (round robin over the four sides), whose points are all sampled in every frame. Cartesian
    masks give their central lines over the whole readout; ktRadial at least its central
    square (the spokes' dense centre may add a ring). A lattice line adjacent to the ACS joins
    it, as in VarNet. Raises MaskError when the centre is not sampled in every frame.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise MaskError(f"expected a (nt, ny, nx) or (ny, nx) mask, got shape {mask.shape}")
    every = mask.all(axis=0)
    ny, nx = every.shape
    y0, x0 = ny // 2, nx // 2
    if not every[y0, x0]:
        raise MaskError("the k-space centre is not sampled in every frame: no autocalibration region")
    y1, x1 = y0 + 1, x0 + 1
    grown = True
    while grown:
        grown = False
        if y0 > 0 and every[y0 - 1, x0:x1].all():
            y0, grown = y0 - 1, True
        if y1 < ny and every[y1, x0:x1].all():
            y1, grown = y1 + 1, True
        if x0 > 0 and every[y0:y1, x0 - 1].all():
            x0, grown = x0 - 1, True
        if x1 < nx and every[y0:y1, x1].all():
            x1, grown = x1 + 1, True
    region = np.zeros((ny, nx), dtype=bool)
    region[y0:y1, x0:x1] = True
    return region
