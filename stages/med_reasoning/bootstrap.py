"""Percentile bootstrap of a mean (private; to move to ``stages.common.stats`` once that module lands on main)."""
from __future__ import annotations

import numpy as np


def bootstrap_interval(values: np.ndarray, resamples: int, confidence: float, seed: int) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` over ``resamples`` resamples with replacement."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("bootstrap of an empty sample")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))
