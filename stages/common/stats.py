"""Statistics any study may need: percentile bootstrap intervals over resampling units, and
Welch's t-test with the gap between two samples' means.

Bootstrap: each resample draws ``n_units`` unit indices with replacement from a seeded
``numpy.random.Generator`` (``rng.integers(0, n_units, n_units)``, resample after resample);
the caller's statistic maps unit indices (repeats allowed) to numbers, so a unit can be a case
whose slices stay together. The interval is the ``(1 - confidence) / 2`` and
``(1 + confidence) / 2`` percentiles of the resampled values (numpy's linear interpolation), the
same as ``scipy.stats.bootstrap(method="percentile")`` on the same resamples.

Welch: Student's t with unequal variances and Welch-Satterthwaite degrees of freedom, as
``scipy.stats.ttest_ind(equal_var=False)``. Non-finite values are left out (and counted).
Our rules where scipy returns nan: fewer than two values on a side gives a nan p value; both
sides constant gives p = 1 when the means are equal and 0 when they differ (the difference is
then exact), as ct_fairness's gap has always done.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

# scipy.stats (about 1 s to import) is imported inside the two functions that use its t
# distribution, so stages that only bootstrap do not pay for it.


# --------------------------------------------------------------------------- bootstrap
def bootstrap_draws(
    statistic: Callable[[np.ndarray], Mapping[str, float]],
    n_units: int,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Every resample's value of each named statistic: ``{name: (n_resamples,)}`` (nan where not finite)."""
    if n_units == 0 or n_resamples == 0:
        return {}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n_resamples):
        for name, value in statistic(rng.integers(0, n_units, n_units)).items():
            draws.setdefault(name, []).append(float(value))
    return {name: np.asarray(values, dtype=np.float64) for name, values in draws.items()}


def percentile_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """``(low, high)`` percentiles of the finite values around the central ``confidence`` mass (nan if none)."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_intervals(
    statistic: Callable[[np.ndarray], Mapping[str, float]],
    n_units: int,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of several statistics computed together.

    Each resample draws ``n_units`` unit indices with replacement; ``statistic`` receives them
    (with repeats) and returns named numbers. Non-finite values of a resample are left out of
    that statistic's interval. Returns ``{name: (low, high)}`` (nan when nothing was finite).
    """
    draws = bootstrap_draws(statistic, n_units, n_resamples, seed)
    return {name: percentile_interval(values, confidence) for name, values in draws.items()}


def bootstrap_interval(
    statistic: Callable[[np.ndarray], float],
    n_units: int,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of one statistic of unit indices (see :func:`bootstrap_intervals`)."""
    intervals = bootstrap_intervals(lambda indices: {"value": statistic(indices)}, n_units, n_resamples, confidence, seed)
    return intervals.get("value", (float("nan"), float("nan")))


def grouped_indices(groups: Sequence[str]) -> tuple[list[str], list[np.ndarray]]:
    """Unique group labels (sorted) and, per group, the item indices that belong to it (units of several items)."""
    labels = np.asarray(groups, dtype=object)
    unique = sorted(set(labels.tolist()))
    return unique, [np.nonzero(labels == label)[0] for label in unique]


def mean_statistic(values: np.ndarray) -> Callable[[np.ndarray], float]:
    """``indices -> mean(values[indices])``, nan-aware."""
    values = np.asarray(values, dtype=float)

    def statistic(indices: np.ndarray) -> float:
        chosen = values[indices]
        chosen = chosen[np.isfinite(chosen)]
        return float(chosen.mean()) if len(chosen) else float("nan")

    return statistic


# --------------------------------------------------------------------------- Welch
@dataclass(frozen=True)
class WelchTest:
    """Welch's t-test of ``mean(a) - mean(b)``."""

    statistic: float
    df: float
    p_value: float
    n_a: int
    n_b: int
    n_dropped: int  # non-finite values left out, both sides together


@dataclass(frozen=True)
class MeanGap:
    """``other`` against ``reference``: the difference of means with its Welch interval, the gap in
    percent of the two means' average (ct_fairness's performance gap), and Welch's test."""

    mean_reference: float
    mean_other: float
    difference: float       # mean_other - mean_reference
    low: float              # Welch confidence interval of the difference
    high: float
    gap_percent: float      # 100 * difference / mean(mean_reference, mean_other); nan when that is 0
    test: WelchTest         # of other against reference


def _finite(values: Sequence[float]) -> tuple[np.ndarray, int]:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    keep = np.isfinite(array)
    return array[keep], int((~keep).sum())


def _welch_parts(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """``(mean difference, standard error, Welch-Satterthwaite df)``; needs two values per side."""
    variance_a, variance_b = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    standard_error = np.sqrt(variance_a + variance_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (variance_a + variance_b) ** 2 / (variance_a ** 2 / (len(a) - 1) + variance_b ** 2 / (len(b) - 1))
    return float(a.mean() - b.mean()), float(standard_error), float(df)


def welch_t_test(a: Sequence[float], b: Sequence[float],
                 alternative: Literal["two-sided", "less", "greater"] = "two-sided") -> WelchTest:
    """Welch's unequal-variance t-test of ``mean(a) - mean(b)`` (see the module docstring for edge cases)."""
    a_values, dropped_a = _finite(a)
    b_values, dropped_b = _finite(b)
    nan = float("nan")
    if len(a_values) < 2 or len(b_values) < 2:
        return WelchTest(nan, nan, nan, len(a_values), len(b_values), dropped_a + dropped_b)
    difference, standard_error, df = _welch_parts(a_values, b_values)
    if standard_error == 0:
        p_value = 1.0 if difference == 0 else 0.0
        statistic = 0.0 if difference == 0 else float(np.copysign(np.inf, difference))
        if alternative != "two-sided" and difference != 0:
            p_value = 0.0 if (difference < 0) == (alternative == "less") else 1.0
        return WelchTest(statistic, nan, p_value, len(a_values), len(b_values), dropped_a + dropped_b)
    from scipy import stats as scipy_stats

    statistic = difference / standard_error
    if alternative == "two-sided":
        p_value = 2.0 * scipy_stats.t.sf(abs(statistic), df)
    elif alternative == "greater":
        p_value = scipy_stats.t.sf(statistic, df)
    else:
        p_value = scipy_stats.t.cdf(statistic, df)
    return WelchTest(float(statistic), df, float(min(p_value, 1.0)), len(a_values), len(b_values), dropped_a + dropped_b)


def mean_gap(reference: Sequence[float], other: Sequence[float], confidence: float = 0.95) -> MeanGap:
    """Gap of ``other``'s mean from ``reference``'s with Welch's interval and test (non-finite values left out).

    The interval is ``difference -/+ t_{df, (1 + confidence) / 2} * standard error``; nan with fewer
    than two values on a side, zero-width when both sides are constant.
    """
    reference_values, _ = _finite(reference)
    other_values, _ = _finite(other)
    test = welch_t_test(other, reference)
    nan = float("nan")
    if len(reference_values) == 0 or len(other_values) == 0:
        return MeanGap(nan, nan, nan, nan, nan, nan, test)
    mean_reference, mean_other = float(reference_values.mean()), float(other_values.mean())
    difference = mean_other - mean_reference
    centre = (mean_reference + mean_other) / 2.0
    gap_percent = 100.0 * difference / centre if centre != 0 else nan
    if len(reference_values) < 2 or len(other_values) < 2:
        low = high = nan
    else:
        from scipy import stats as scipy_stats

        _, standard_error, df = _welch_parts(other_values, reference_values)
        half = 0.0 if standard_error == 0 else float(scipy_stats.t.ppf((1.0 + confidence) / 2.0, df)) * standard_error
        low, high = difference - half, difference + half
    return MeanGap(mean_reference, mean_other, difference, low, high, float(gap_percent), test)
