"""Pure signal steps of MERL's preprocessing: canonical lead order, resampling, non-finite repair, min-max."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

from stages.ecg_text.io import CANONICAL_LEADS


def to_canonical_order(signal: np.ndarray, leads: list[str]) -> np.ndarray:
    """Rows reordered to I, II, III, aVR, aVL, aVF, V1-V6 by name; a missing lead is an error naming it."""
    missing = [lead for lead in CANONICAL_LEADS if lead not in leads]
    if missing:
        raise ValueError(f"missing lead(s) {', '.join(missing)}")
    return signal[[leads.index(lead) for lead in CANONICAL_LEADS]]


def resample(signal: np.ndarray, fs: float, target_fs: float) -> np.ndarray:
    """Polyphase resampling along the last axis (exact rational ratio)."""
    if fs == target_fs:
        return signal.astype(np.float64)
    ratio = Fraction(target_fs / fs).limit_denominator(1000)
    return resample_poly(signal.astype(np.float64), ratio.numerator, ratio.denominator, axis=-1)


def fill_non_finite(signal: np.ndarray, window: int) -> np.ndarray:
    """NaN/inf replaced by the mean of the finite samples within ``window`` on each side (MERL: a local mean).

    A lead with no finite sample near a gap falls back to the lead's finite mean, then 0.
    """
    out = np.array(signal, dtype=np.float64)
    for row in out:
        bad = ~np.isfinite(row)
        if not bad.any():
            continue
        finite = np.where(bad, 0.0, row)
        counts = np.convolve((~bad).astype(float), np.ones(2 * window + 1), mode="same")
        sums = np.convolve(finite, np.ones(2 * window + 1), mode="same")
        fallback = finite[~bad].mean() if (~bad).any() else 0.0
        local = np.divide(sums, counts, out=np.full_like(sums, fallback), where=counts > 0)
        row[bad] = local[bad]
    return out


def min_max(signal: np.ndarray) -> np.ndarray:
    """Per-record min-max to [0, 1] over all leads together, as MERL's preprocessing does."""
    low, high = float(signal.min()), float(signal.max())
    if high - low < 1e-12:
        return np.zeros_like(signal, dtype=np.float64)
    return (signal - low) / (high - low)


def prepare(signal: np.ndarray, fs: float, leads: list[str], target_fs: float, duration_s: float,
            fill_window: int) -> np.ndarray:
    """Canonical order, first ``duration_s`` seconds at ``target_fs``, non-finite filled, min-max: (12, samples)."""
    ordered = to_canonical_order(signal, leads)
    repaired = fill_non_finite(ordered, fill_window)
    resampled = resample(repaired, fs, target_fs)
    samples = int(round(target_fs * duration_s))
    if resampled.shape[1] < samples:
        raise ValueError(f"{resampled.shape[1] / target_fs:.2f} s long, {duration_s} s required")
    return min_max(resampled[:, :samples])
