"""The performance gap, Welch's test, and the analyses built on them, against hand computations."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from stages.ct_fairness.gap import (
    control_holds,
    corrected_p_values,
    direction_agrees,
    expected_direction,
    false_positive_rate,
    flag_low_dice,
    fold_bootstrap_gap,
    gap_table,
    mark_corrected,
    organ_checks,
    paired_wilcoxon,
    performance_gap,
    significance_mark,
    training_volume_spread,
    true_group_effects,
    volume_diversity_fit,
    volume_diversity_points,
)
from stages.ct_fairness.organs import ORGANS


def welch_by_hand(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return 2 * stats.t.sf(abs(t), df)


def test_gap_and_p_match_the_formula_and_welch_by_hand():
    same, other = [0.8, 0.9, 0.85], [0.7, 0.75, 0.8, 0.65]
    gap, p = performance_gap(same, other)
    assert gap == pytest.approx(100 * (0.725 - 0.85) / ((0.85 + 0.725) / 2))
    assert gap == pytest.approx(-15.873015873)
    assert p == pytest.approx(welch_by_hand(same, other), rel=1e-10)
    assert p == pytest.approx(stats.ttest_ind(same, other, equal_var=False).pvalue)


def test_gap_sign_and_symmetry():
    better_other = performance_gap([0.5, 0.6, 0.55], [0.7, 0.8, 0.75])[0]
    assert better_other > 0
    assert performance_gap([0.7, 0.8, 0.75], [0.5, 0.6, 0.55])[0] == pytest.approx(-better_other)


def test_unequal_variances_differ_from_students_test():
    rng = np.random.default_rng(0)
    same, other = rng.normal(0.8, 0.01, 6), rng.normal(0.75, 0.15, 30)
    _, p = performance_gap(same, other)
    assert p == pytest.approx(welch_by_hand(same, other), rel=1e-9)
    assert p != pytest.approx(stats.ttest_ind(same, other, equal_var=True).pvalue, rel=1e-3)


def test_nan_scores_are_left_out_and_degenerate_cases():
    gap, p = performance_gap([0.8, np.nan, 0.9, 0.85], [0.7, 0.75, np.nan, 0.8, 0.65])
    assert (gap, p) == pytest.approx(performance_gap([0.8, 0.9, 0.85], [0.7, 0.75, 0.8, 0.65]))
    gap, p = performance_gap([0.8], [0.6])
    assert gap == pytest.approx(100 * (0.6 - 0.8) / 0.7) and math.isnan(p)
    assert all(math.isnan(v) for v in performance_gap([0.0, 0.0], [0.0, 0.0])[:1])
    assert all(math.isnan(v) for v in performance_gap([], [0.5, 0.6]))


@pytest.mark.parametrize("p, mark", [(0.001, "**"), (0.01, "**"), (0.02, "*"), (0.05, "*"), (0.0501, ""), (float("nan"), "")])
def test_significance_marks(p, mark):
    assert significance_mark(p) == mark


def test_gap_table_pools_folds_and_pairs_groups():
    rows = []
    scores = {("F", "F"): [0.9, 0.8, 0.85, 0.95], ("F", "M"): [0.7, 0.6, 0.65, 0.75],
              ("M", "M"): [0.8, 0.82, 0.78, 0.8], ("M", "F"): [0.81, 0.83, 0.79, 0.81]}
    for (test, train), values in scores.items():
        for index, value in enumerate(values):
            rows.append({"experiment": "sex_x", "variable": "sex", "dataset": "x", "fold": index // 2, "case": f"{test}{index}",
                         "test_group": test, "train_group": train, "organ": "liver", "dice": value})
    table = gap_table(pd.DataFrame(rows), "dice").set_index("test_group")
    assert table.loc["F", "gap_percent"] == pytest.approx(performance_gap(scores[("F", "F")], scores[("F", "M")])[0])
    assert table.loc["M", "p_value"] == pytest.approx(performance_gap(scores[("M", "M")], scores[("M", "F")])[1])
    assert table.loc["F", "other_group"] == "M" and table.loc["F", "n_cases"] == 4
    assert table.loc["F", "significance"] == significance_mark(table.loc["F", "p_value"])
    assert table.loc["M", "gap_percent"] > 0  # the F model happens to do better on M here


def test_volume_spread_and_diversity_fit_match_numpy_and_scipy():
    volumes = pd.DataFrame({"case": ["a", "b", "c"], **{f"volume_ml_{o}": [1.0, 2.0, 4.0] for o in ORGANS}}).set_index("case")
    spread = training_volume_spread(["a", "b", "c"], volumes)
    assert spread["liver"] == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))
    x, y = np.array([10.0, 20.0, 30.0, 40.0, 55.0]), np.array([0.70, 0.74, 0.73, 0.80, 0.82])
    fit = volume_diversity_fit(x, y)
    assert fit["pearson_r"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert fit["p_value"] == pytest.approx(stats.pearsonr(x, y).pvalue)
    slope, intercept = np.linalg.lstsq(np.c_[x, np.ones_like(x)], y, rcond=None)[0]
    assert (fit["slope"], fit["intercept"]) == pytest.approx((slope, intercept))
    assert math.isnan(volume_diversity_fit([1.0, 2.0], [0.5, 0.6])["pearson_r"])


def test_true_group_effects_and_expected_direction():
    truth = pd.DataFrame({
        "case": ["f1", "f2", "m1", "m2"], "noise_hu": [12.0] * 4,
        **{f"volume_scale_{o}": [0.8, 0.8, 1.0, 1.0] for o in ORGANS},
        **{f"hu_{o}": [100.0, 100.0, 100.0, 100.0] for o in ORGANS},
    })
    truth["hu_pancreas"] = [80.0, 80.0, 100.0, 100.0]
    effects = true_group_effects(truth, {"F": ["f1", "f2"], "M": ["m1", "m2"]})
    assert effects["liver"]["volume_change_percent"] == pytest.approx(25.0)
    assert effects["pancreas"]["hu_shift"] == pytest.approx(20.0) and effects["liver"]["hu_shift"] == 0.0
    assert expected_direction(effects["liver"], 5.0, 10.0) == "negative"
    assert expected_direction({"volume_change_percent": 1.0, "hu_shift": 2.0, "noise_change_hu": 0.0}, 5.0, 10.0) == "none"


def test_direction_agreement_rules():
    assert direction_agrees("negative", [-10.0, 2.0], [0.01, 0.6])          # asymmetric but negative on average
    assert not direction_agrees("negative", [-1.0, 5.0], [0.5, 0.01])
    assert direction_agrees("none", [-3.0, 4.0], [0.2, 0.7])
    assert not direction_agrees("none", [-3.0, 4.0], [0.01, 0.7])


def test_gap_table_counts_missed_organs_per_cell():
    """Issue 18 item 2: each cell reports how often each model missed the organ (counted here by hand)."""
    rows = []
    for test, train, values, missed in (("F", "F", [0.9, 0.8, 0.0], [False, False, True]),
                                        ("F", "M", [0.0, 0.0, 0.7], [True, True, False]),
                                        ("M", "M", [0.8, 0.8, 0.8], [False] * 3), ("M", "F", [0.7, 0.7, 0.0], [False, False, True])):
        for index, (value, miss) in enumerate(zip(values, missed, strict=True)):
            rows.append({"experiment": "sex_x", "variable": "sex", "dataset": "x", "fold": 0, "case": f"{test}{index}",
                         "test_group": test, "train_group": train, "organ": "pancreas", "dice": value, "missed": miss})
    table = gap_table(pd.DataFrame(rows), "dice").set_index("test_group")
    assert (table.loc["F", "n_missed_same"], table.loc["F", "n_missed_other"]) == (1, 2)
    assert (table.loc["M", "n_missed_same"], table.loc["M", "n_missed_other"]) == (0, 1)


def test_organ_checks_warn_below_the_voxel_floor_and_at_near_zero_dice():
    """Issue 18 item 3: a pancreas of median 3 voxels and a kidney never learned are warned about; the rest pass."""
    cases = pd.DataFrame({"preprocessed_voxels_liver": [900, 1000, 1100], "preprocessed_voxels_kidney_right": [60, 70, 80],
                          "preprocessed_voxels_kidney_left": [60, 70, 80], "preprocessed_voxels_pancreas": [0, 3, 40]})
    dice = {"liver": 0.9, "kidney_right": 0.01, "kidney_left": 0.6, "pancreas": 0.3}
    per_case = pd.DataFrame([{"test_group": g, "train_group": h, "organ": o, "dice": d if g == h else 0.0}
                             for o, d in dice.items() for g in "FM" for h in "FM"])
    checks = organ_checks(cases, per_case, min_voxels=20, near_zero_dice=0.05).set_index("organ")
    assert checks.loc["pancreas", "median_preprocessed_voxels"] == 3
    assert checks.below_voxel_floor.to_dict() == {"liver": False, "kidney_right": False, "kidney_left": False, "pancreas": True}
    assert checks.near_zero_dice.to_dict() == {"liver": False, "kidney_right": True, "kidney_left": False, "pancreas": False}
    assert "below the floor of 20" in checks.loc["pancreas", "warning"] and "not learned" in checks.loc["kidney_right", "warning"]
    assert checks.loc["liver", "warning"] == "" == checks.loc["kidney_left", "warning"]


def test_gaps_with_mean_dice_below_the_floor_are_flagged():
    gaps = pd.DataFrame([{"experiment": "e", "organ": o, "test_group": "F", "metric": m, "mean_same": s, "mean_other": t}
                         for o, s, t in (("liver", 0.9, 0.8), ("pancreas", 0.6, 0.3)) for m in ("dice", "hd95")])
    flagged = flag_low_dice(gaps, 0.5)
    assert flagged.low_dice.tolist() == [False, False, True, True]   # 0.45 < 0.5; the HD95 row takes the Dice row's flag


def test_paired_wilcoxon_against_the_exact_distribution_by_hand():
    """Issue 18 item 4: five pairs all improving: exact two-sided p = 2 / 2^5; a NaN pair is left out; no change gives 1."""
    same = [0.5, 0.6, 0.7, 0.4, 0.55, np.nan]
    other = [0.6, 0.62, 0.9, 0.45, 0.58, 0.3]
    assert paired_wilcoxon(same, other) == pytest.approx(2 / 32)
    assert paired_wilcoxon([0.5, 0.6], [0.5, 0.6]) == 1.0 and math.isnan(paired_wilcoxon([0.5], [0.6]))


def test_benjamini_hochberg_by_hand():
    adjusted = corrected_p_values([0.01, 0.04, 0.03, np.nan, 0.5])
    np.testing.assert_allclose(adjusted, [0.04, 0.16 / 3, 0.16 / 3, np.nan, 0.5])


def test_fold_bootstrap_interval_resamples_whole_folds():
    """Every fold with the same gap: a zero-width interval at that gap; two folds of gaps -40 % and 0 %: within them."""
    folds = [0, 0, 1, 1, 2, 2]
    same, other = [0.8, 0.6, 0.8, 0.6, 0.8, 0.6], [0.4, 0.3, 0.4, 0.3, 0.4, 0.3]
    low, high = fold_bootstrap_gap(folds, same, other, 200)
    assert low == pytest.approx(100 * (0.35 - 0.7) / 0.525) == high
    low, high = fold_bootstrap_gap([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.3, 0.3], 400)
    assert -50.0 <= low < high <= 0.0 and low == pytest.approx(-50.0) and high == pytest.approx(0.0)


def test_gap_table_pairs_cases_and_marks_by_the_corrected_paired_test():
    rows = []
    same = [0.9, 0.8, 0.85, 0.95, 0.7, 0.75]
    other = [0.7, 0.6, 0.65, 0.75, 0.68, np.nan]
    for index, (s_value, o_value) in enumerate(zip(same, other, strict=True)):
        for train, value in (("F", s_value), ("M", o_value)):
            rows.append({"experiment": "sex_x", "variable": "sex", "dataset": "x", "fold": index % 3, "case": f"F{index}",
                         "test_group": "F", "train_group": train, "organ": "liver", "dice": value})
    table = gap_table(pd.DataFrame(rows), "dice", n_resamples=100)
    row = table.iloc[0]
    assert row.p_paired == pytest.approx(2 / 32)                         # five finite pairs, all worse under M
    assert row.p_value == pytest.approx(stats.ttest_ind(same, other[:5], equal_var=False).pvalue)
    assert row.significance_welch == significance_mark(row.p_value)
    assert row.gap_low <= row.gap_percent <= row.gap_high
    marked = mark_corrected(pd.concat([table, table.assign(p_paired=0.5)], ignore_index=True))
    assert marked.p_paired_corrected.tolist() == pytest.approx([0.125, 0.5])
    assert marked.significance.tolist() == ["", ""]


def test_volume_diversity_has_one_point_per_training_group_over_its_folds():
    """Issue 18 item 5: three fold models of group F (training sets overlapping) make one point: the SD (ddof=0,
    numpy) over the union of their training cases, against the mean Dice over all their test scores."""
    volumes = pd.DataFrame({"case": list("abcdef"), **{f"volume_ml_{o}": [1.0, 2.0, 4.0, 8.0, 3.0, 5.0] for o in ORGANS}}).set_index("case")
    models = pd.DataFrame({"experiment": "sex_x", "fold": [0, 1, 2, 0, 1, 2], "group": list("FFFMMM"),
                           "train_cases": ["a b", "b c", "a c", "d e", "e f", "d f"]})
    per_case = pd.DataFrame([{"experiment": "sex_x", "fold": f, "train_group": g, "organ": o, "dice": d}
                             for f, g, d in ((0, "F", 0.6), (1, "F", 0.7), (2, "F", 0.8), (2, "F", np.nan), (0, "M", 0.5))
                             for o in ORGANS])
    points = volume_diversity_points(models, per_case, volumes).set_index(["train_group", "organ"])
    assert len(points) == 2 * len(ORGANS)
    assert points.loc[("F", "liver"), "volume_sd_ml"] == pytest.approx(np.std([1.0, 2.0, 4.0]))
    assert points.loc[("M", "pancreas"), "volume_sd_ml"] == pytest.approx(np.std([8.0, 3.0, 5.0]))
    assert points.loc[("F", "liver"), "dice"] == pytest.approx(0.7) and points.loc[("F", "liver"), "n_train_cases"] == 3
    assert points.loc[("M", "liver"), "n_models"] == 3


def test_control_cells_are_judged_by_the_corrected_paired_test():
    assert control_holds("negative", [-10.0, 2.0], [0.01, 0.6])          # one group significantly worse
    assert not control_holds("negative", [-10.0, 2.0], [0.2, 0.6])       # the old check passed this: mean gap < 0
    assert not control_holds("negative", [-10.0, 8.0], [0.01, 0.01])     # significant in the wrong direction too
    assert control_holds("none", [-3.0, 4.0], [0.2, np.nan])
    assert not control_holds("none", [-3.0, 4.0], [0.04, 0.7])
    assert false_positive_rate([0.01, 0.2, np.nan, 0.05, 0.9]) == (2, 4)


def test_fold_bootstrap_equals_the_shared_bootstrap_on_the_same_resamples():
    """The vectorised fold bootstrap against stages.common.stats.bootstrap_interval with a per-resample statistic."""
    from stages.common.stats import bootstrap_interval

    rng = np.random.default_rng(2)
    folds = np.repeat(np.arange(5), 4)
    same, other = rng.uniform(0.5, 0.9, 20), rng.uniform(0.3, 0.9, 20)
    same[3] = np.nan

    def gap(indices):
        chosen = np.concatenate([np.nonzero(folds == f)[0] for f in indices])
        a, b = np.nanmean(same[chosen]), np.nanmean(other[chosen])
        return 100 * (b - a) / ((a + b) / 2)

    expected = bootstrap_interval(gap, 5, n_resamples=300, seed=7)
    assert fold_bootstrap_gap(folds, same, other, 300, seed=7) == pytest.approx(expected)
