"""The paper's performance gap, its significance, and the analyses built on it.

For organ o and test group g, with D(g | h) the mean score on g of the model trained on h::

    PG_g = 100 * (D(g | other) - D(g | same)) / mean(D(g | same), D(g | other))

with Welch's t-test (unequal variances) over the test cases, as the paper. A negative Dice gap means the
model trained on the other group does worse on g. For HD95 (lower is better) the same formula
is applied, so there a positive gap means worse.

Beside the paper's Welch test (ours, issue 18 item 4): the same test cases are scored by both
models, so a paired test fits: Wilcoxon's signed-rank test of the per-case differences
(``scipy.stats.wilcoxon``, two-sided, zero differences dropped), corrected over every test of a run
by Benjamini-Hochberg (``scipy.stats.false_discovery_control``); the report marks significance by
the corrected paired p. The gap's interval is a percentile bootstrap over folds (a fold's test
cases and models resampled together), since training variance shows between folds.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from stages.common.stats import grouped_indices, mean_gap, percentile_interval
from stages.ct_fairness.organs import ORGANS

SIGNIFICANCE_LEVELS = (0.05, 0.01)


def performance_gap(score_same: Sequence[float], score_other: Sequence[float]) -> tuple[float, float]:
    """``(gap_percent, p_value)`` of one test group's per-case scores under the same- and other-group model.

    NaN scores (undefined cases) are left out. The gap is NaN when both means are zero; the p
    value (Welch's, ``stages.common.stats``) is NaN when either side has fewer than two scores.
    """
    gap = mean_gap(score_same, score_other)
    return gap.gap_percent, gap.test.p_value


def significance_mark(p_value: float, levels: Sequence[float] = SIGNIFICANCE_LEVELS) -> str:
    """``'**'`` for p <= the stricter level, ``'*'`` for p <= the looser one, else ``''``."""
    if not np.isfinite(p_value):
        return ""
    loose, strict = max(levels), min(levels)
    return "**" if p_value <= strict else "*" if p_value <= loose else ""


def paired_wilcoxon(same: Sequence[float], other: Sequence[float]) -> float:
    """Two-sided p of Wilcoxon's signed-rank test of ``other - same`` over cases scored by both models.

    Pairs with a non-finite score are left out; zero differences are dropped (scipy's ``"wilcox"``).
    NaN with fewer than two non-zero pairs, except that all-zero differences give p = 1.
    """
    from scipy import stats as scipy_stats

    a, b = np.asarray(same, dtype=np.float64), np.asarray(other, dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    difference = b[keep] - a[keep]
    if len(difference) and not difference.any():
        return 1.0
    if np.count_nonzero(difference) < 2:
        return float("nan")
    return float(scipy_stats.wilcoxon(difference, zero_method="wilcox", alternative="two-sided").pvalue)


def fold_bootstrap_gap(folds: Sequence[int], same: Sequence[float], other: Sequence[float],
                       n_resamples: int, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the pooled gap, resampling whole folds (their cases stay together).

    ``folds[i]`` is the fold of case-pair i with scores ``same[i]`` and ``other[i]`` (NaNs left out of
    the means). The resamples are those of :func:`stages.common.stats.bootstrap_interval` (units = folds,
    ``rng.integers(0, n_folds, n_folds)`` per resample from ``default_rng(seed)``), drawn in one call and
    summed with numpy; the interval is :func:`stages.common.stats.percentile_interval` of the draws.
    """
    labels, members = grouped_indices([str(f) for f in folds])
    if not labels or n_resamples == 0:
        return float("nan"), float("nan")
    a, b = np.asarray(same, dtype=np.float64), np.asarray(other, dtype=np.float64)
    sums = np.array([[np.nansum(a[m]), np.isfinite(a[m]).sum(), np.nansum(b[m]), np.isfinite(b[m]).sum()] for m in members])
    draws = np.random.default_rng(seed).integers(0, len(labels), (n_resamples, len(labels)))
    total = sums[draws].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_same, mean_other = total[:, 0] / total[:, 1], total[:, 2] / total[:, 3]
        gaps = 100.0 * (mean_other - mean_same) / ((mean_same + mean_other) / 2)
    return percentile_interval(gaps, confidence)


def corrected_p_values(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p values (``scipy.stats.false_discovery_control``) over the finite ones; NaN stays NaN."""
    from scipy import stats as scipy_stats

    values = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(values, np.nan)
    finite = np.isfinite(values)
    if finite.any():
        adjusted[finite] = scipy_stats.false_discovery_control(values[finite], method="bh")
    return adjusted


def mark_corrected(gaps: pd.DataFrame, levels: Sequence[float] = SIGNIFICANCE_LEVELS) -> pd.DataFrame:
    """Add ``p_paired_corrected`` (BH over every row's paired p: all tests of the run) and set ``significance``
    from it; the paper's Welch mark stays in ``significance_welch``."""
    adjusted = corrected_p_values(gaps.p_paired.to_numpy())
    return gaps.assign(p_paired_corrected=adjusted, significance=[significance_mark(p, levels) for p in adjusted])


def gap_table(per_case: pd.DataFrame, metric: str, levels: Sequence[float] = SIGNIFICANCE_LEVELS,
              n_resamples: int = 0, seed: int = 0) -> pd.DataFrame:
    """One row per (experiment, organ, test group): both means, the gap, Welch's p (the paper's, ``p_value``,
    marked in ``significance_welch``), the paired Wilcoxon p (``p_paired``), and, with ``n_resamples``,
    the fold-bootstrap interval of the gap (``gap_low``, ``gap_high``). ``significance`` starts as the
    Welch mark; :func:`mark_corrected` replaces it by the corrected paired test's.

    ``per_case`` has columns experiment, variable, dataset, test_group, train_group, organ, and ``metric``;
    with a boolean ``missed`` column (organ in the truth, none predicted) the misses of the same- and
    the other-group model are counted (``n_missed_same``, ``n_missed_other``).
    """
    rows = []
    keys = ["experiment", "variable", "dataset", "organ", "test_group"]
    for (experiment, variable, dataset, organ, test_group), rows_group in per_case.groupby(keys, sort=False):
        same = rows_group.loc[rows_group.train_group == test_group, metric].to_numpy()
        other_rows = rows_group[rows_group.train_group != test_group]
        gap, p_value = performance_gap(same, other_rows[metric].to_numpy())
        pairs = (rows_group.assign(same_model=rows_group.train_group == test_group)
                 .pivot_table(index=["fold", "case"], columns="same_model", values=metric, aggfunc="first", dropna=False)
                 .reindex(columns=[True, False]))
        interval = (fold_bootstrap_gap(pairs.index.get_level_values("fold"), pairs[True], pairs[False], n_resamples, seed=seed)
                    if n_resamples else (float("nan"), float("nan")))
        rows.append({
            "experiment": experiment, "variable": variable, "dataset": dataset, "organ": organ, "metric": metric,
            "test_group": test_group, "other_group": str(other_rows.train_group.iloc[0]) if len(other_rows) else "",
            "mean_same": float(np.nanmean(same)) if np.isfinite(same).any() else float("nan"),
            "mean_other": float(np.nanmean(other_rows[metric])) if np.isfinite(other_rows[metric]).any() else float("nan"),
            "gap_percent": gap, "gap_low": interval[0], "gap_high": interval[1],
            "p_value": p_value, "significance_welch": significance_mark(p_value, levels),
            "p_paired": paired_wilcoxon(pairs[True], pairs[False]), "significance": significance_mark(p_value, levels),
            "n_cases": int(np.isfinite(same).sum()),
            **missed_counts(rows_group, test_group),
        })
    return pd.DataFrame(rows)


def missed_counts(rows: pd.DataFrame, test_group: str) -> dict[str, int]:
    """Organs missed (in the truth, not predicted) by the same- and the other-group model in one cell."""
    if "missed" not in rows.columns:
        return {}
    missed = rows["missed"].astype(bool)
    same = rows.train_group == test_group
    return {"n_missed_same": int(missed[same].sum()), "n_missed_other": int(missed[~same].sum())}


def training_volume_spread(train_cases: Sequence[str], volumes: pd.DataFrame, ddof: int = 1) -> dict[str, float]:
    """Standard deviation (ml, ``ddof``) of each organ's ground-truth volume over one training set.

    ``volumes`` is indexed by case with columns ``volume_ml_<organ>``.
    """
    subset = volumes.loc[list(train_cases)]
    return {organ: float(subset[f"volume_ml_{organ}"].std(ddof=ddof)) for organ in ORGANS}


def volume_diversity_points(models: pd.DataFrame, per_case: pd.DataFrame, volumes: pd.DataFrame) -> pd.DataFrame:
    """One point per (experiment, training group, organ), as the authors' ``volumeAnalysis.py``: the organ-volume
    SD (ml, ``np.std``, ddof=0 as theirs) over the union of the group's training cases across folds, against the
    mean Dice of that group's models over every test case of every fold (both test groups).

    One point per fold model would count five overlapping training sets (4/5 shared) as independent.
    ``models`` has columns experiment, group, train_cases (space-separated ids); ``per_case`` the test scores.
    """
    mean_dice = per_case.groupby(["experiment", "train_group", "organ"])["dice"].mean()
    rows = []
    for (experiment, group), block in models.groupby(["experiment", "group"], sort=False):
        union = sorted({case for cases in block.train_cases for case in str(cases).split()})
        spread = training_volume_spread(union, volumes, ddof=0)
        for organ in ORGANS:
            rows.append({"experiment": experiment, "train_group": group, "organ": organ, "n_models": int(len(block)),
                         "n_train_cases": len(union), "volume_sd_ml": spread[organ],
                         "dice": float(mean_dice.get((experiment, group, organ), np.nan))})
    return pd.DataFrame(rows)


def volume_diversity_fit(spread: Sequence[float], dice: Sequence[float]) -> dict[str, float]:
    """Pearson r (and p) of training-set volume SD against test Dice, with the least-squares line."""
    x, y = np.asarray(spread, dtype=np.float64), np.asarray(dice, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"n": int(len(x)), "pearson_r": float("nan"), "p_value": float("nan"), "slope": float("nan"), "intercept": float("nan")}
    result = stats.pearsonr(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    return {"n": int(len(x)), "pearson_r": float(result.statistic), "p_value": float(result.pvalue),
            "slope": float(slope), "intercept": float(intercept)}


def true_group_effects(truth: pd.DataFrame, groups: dict[str, Sequence[str]]) -> dict[str, dict[str, float]]:
    """Per organ, the generator's systematic difference of the second group from the first.

    ``volume_change_percent`` = 100 (mean volume scale of group 2 / that of group 1 - 1) and
    ``hu_shift`` = mean organ attenuation of group 2 - that of group 1 (HU as the scanner shows it).
    """
    (first, first_cases), (second, second_cases) = list(groups.items())
    indexed = truth.set_index("case")
    a, b = indexed.loc[list(first_cases)], indexed.loc[list(second_cases)]
    effects = {}
    for organ in ORGANS:
        effects[organ] = {
            "volume_change_percent": float(100.0 * (b[f"volume_scale_{organ}"].mean() / a[f"volume_scale_{organ}"].mean() - 1.0)),
            "hu_shift": float(b[f"hu_{organ}"].mean() - a[f"hu_{organ}"].mean()),
            "noise_change_hu": float(b["noise_hu"].mean() - a["noise_hu"].mean()),
        }
    return effects


def expected_direction(effect: dict[str, float], volume_threshold_percent: float, hu_threshold: float) -> str:
    """``'negative'`` where the truth puts a real shift between the groups, ``'none'`` where it does not."""
    shifted = (abs(effect["volume_change_percent"]) >= volume_threshold_percent or abs(effect["hu_shift"]) >= hu_threshold
               or abs(effect.get("noise_change_hu", 0.0)) >= hu_threshold)
    return "negative" if shifted else "none"


def direction_agrees(expected: str, gaps: Sequence[float], p_values: Sequence[float], alpha: float = 0.05) -> bool:
    """Whether measured Dice gaps point the way the truth predicts.

    With a real shift (``'negative'``) the same-group models must do better on average: the mean
    of the test groups' gaps is negative (one group may still gain, the effect being asymmetric).
    Without one (``'none'``) no gap may be significant at ``alpha``.
    """
    gaps_array = np.asarray(gaps, dtype=np.float64)
    if expected == "negative":
        return bool(np.isfinite(gaps_array).all() and gaps_array.mean() < 0)
    return bool(np.all(~(np.asarray(p_values, dtype=np.float64) <= alpha)))


def organ_checks(cases: pd.DataFrame, per_case: pd.DataFrame, min_voxels: float, near_zero_dice: float) -> pd.DataFrame:
    """Per organ: is it resolved on the preprocessed grid and learned at all? (issue 18 item 3; thresholds ours)

    ``cases`` holds ``preprocessed_voxels_<organ>`` per case; ``per_case`` the test scores. An organ
    whose median preprocessed voxel count is below ``min_voxels``, or whose mean same-group Dice is
    below ``near_zero_dice``, gets a warning: its gaps compare noise, not generalisation.
    """
    same = per_case[per_case.test_group == per_case.train_group]
    same_dice = same.groupby("organ")["dice"].mean()
    rows = []
    for organ in ORGANS:
        voxels = float(cases[f"preprocessed_voxels_{organ}"].median())
        dice = float(same_dice.get(organ, np.nan))
        problems = []
        if voxels < min_voxels:
            problems.append(f"median {voxels:g} voxels on the preprocessed grid, below the floor of {min_voxels:g}")
        if not dice >= near_zero_dice:
            problems.append(f"same-group Dice {dice:.3f}, below {near_zero_dice:g} (not learned)")
        rows.append({"organ": organ, "median_preprocessed_voxels": voxels, "same_group_dice": dice,
                     "below_voxel_floor": voxels < min_voxels, "near_zero_dice": not dice >= near_zero_dice,
                     "warning": "; ".join(problems)})
    return pd.DataFrame(rows)


def flag_low_dice(gaps: pd.DataFrame, min_dice: float) -> pd.DataFrame:
    """``gaps`` with ``low_dice``: the cell's mean Dice (average of the same- and other-group means) is
    below ``min_dice`` (ours, 0.5 by default), so its gap is not to be trusted; HD95 rows take the flag
    of the Dice row of the same cell."""
    keys = ["experiment", "organ", "test_group"]
    dice = gaps[gaps.metric == "dice"].set_index(keys)
    mean_dice = (dice.mean_same + dice.mean_other) / 2
    low = ~(mean_dice >= min_dice)
    flags = [bool(low.get(tuple(row), True)) for row in gaps[keys].itertuples(index=False)]
    return gaps.assign(low_dice=flags)


def control_holds(expected: str, gaps: Sequence[float], corrected_p: Sequence[float], alpha: float = 0.05) -> bool:
    """Whether a synthetic control cell holds, judged by the corrected paired test (issue 18 item 9).

    A planted cell (``'negative'``) holds when at least one test group's gap is negative and significant
    (corrected paired p <= ``alpha``) and none is significant in the wrong direction; a null cell
    (``'none'``) holds when no test group's gap is significant.
    """
    gaps_array, p = np.asarray(gaps, dtype=np.float64), np.asarray(corrected_p, dtype=np.float64)
    significant = p <= alpha
    if expected == "negative":
        return bool((significant & (gaps_array < 0)).any() and not (significant & (gaps_array > 0)).any())
    return bool(not significant.any())


def false_positive_rate(corrected_p: Sequence[float], alpha: float = 0.05) -> tuple[int, int]:
    """``(significant, tests)`` among a placebo experiment's tests with a finite corrected p."""
    p = np.asarray(corrected_p, dtype=np.float64)
    finite = p[np.isfinite(p)]
    return int((finite <= alpha).sum()), int(len(finite))
