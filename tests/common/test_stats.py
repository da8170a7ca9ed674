"""Bootstrap intervals against scipy.stats.bootstrap, Welch's test against scipy.stats.ttest_ind, hand cases."""
import numpy as np
import pytest
from scipy import stats

from stages.common.stats import (
    bootstrap_draws,
    bootstrap_interval,
    bootstrap_intervals,
    grouped_indices,
    mean_gap,
    mean_statistic,
    percentile_interval,
    welch_t_test,
)


@pytest.mark.parametrize("n, confidence", [(40, 0.95), (13, 0.9)])
def test_bootstrap_equals_scipy_percentile_bootstrap_on_the_same_resamples(n, confidence):
    values = np.random.default_rng(1).gamma(2.0, 3.0, n)  # skewed: the percentile interval is asymmetric
    ours = bootstrap_interval(mean_statistic(values), n, n_resamples=999, confidence=confidence, seed=4)
    reference = stats.bootstrap((values,), np.mean, n_resamples=999, confidence_level=confidence, method="percentile",
                                rng=np.random.default_rng(4), batch=None)
    assert ours == pytest.approx((reference.confidence_interval.low, reference.confidence_interval.high), rel=1e-12)
    assert ours[1] - values.mean() > values.mean() - ours[0]  # right-skewed data, longer right arm


def test_bootstrap_draws_resample_whole_units():
    labels, members = grouped_indices(["b", "a", "b", "c"])
    assert labels == ["a", "b", "c"] and [m.tolist() for m in members] == [[1], [0, 2], [3]]
    values = np.array([5.0, 1.0, 7.0, 3.0])  # unit a: {1}, b: {5, 7}, c: {3}
    draws = bootstrap_draws(lambda units: {"sum": values[np.concatenate([members[u] for u in units])].sum()}, 3,
                            n_resamples=50, seed=2)
    rng = np.random.default_rng(2)
    unit_sums = np.array([1.0, 12.0, 3.0])
    expected = [unit_sums[rng.integers(0, 3, 3)].sum() for _ in range(50)]
    np.testing.assert_array_equal(draws["sum"], expected)


def test_percentile_interval_by_hand_and_non_finite_left_out():
    # 0..100 with a nan and an inf: the 2.5th and 97.5th percentiles of 0..100 are 2.5 and 97.5.
    values = np.concatenate([np.arange(101.0), [np.nan, np.inf]])
    assert percentile_interval(values, 0.95) == pytest.approx((2.5, 97.5))
    assert np.isnan(percentile_interval(np.array([np.nan]))[0])
    intervals = bootstrap_intervals(lambda units: {"nan": float("nan")}, 3, n_resamples=5)
    assert np.isnan(intervals["nan"]).all() and bootstrap_intervals(lambda u: {"x": 1.0}, 0) == {}


@pytest.mark.parametrize("alternative", ["two-sided", "less", "greater"])
def test_welch_equals_scipy_ttest_ind_unequal_variances(alternative):
    rng = np.random.default_rng(0)
    for n_a, n_b in [(5, 9), (30, 12), (2, 3)]:
        a, b = rng.normal(0.0, 1.0, n_a), rng.normal(0.6, 3.0, n_b)
        ours = welch_t_test(a, b, alternative)
        reference = stats.ttest_ind(a, b, equal_var=False, alternative=alternative)
        assert ours.statistic == pytest.approx(reference.statistic, rel=1e-12)
        assert ours.df == pytest.approx(reference.df, rel=1e-12)
        assert ours.p_value == pytest.approx(reference.pvalue, rel=1e-10)


def test_welch_by_hand():
    # a = 1..4: mean 5/2, var 5/3; b = 2, 4, .., 10: mean 6, var 10.
    # se^2 = (5/3)/4 + 10/5 = 29/12; t = -3.5 / sqrt(29/12); df = (29/12)^2 / ((5/12)^2 / 3 + 2^2 / 4) = (841/144) / (457/432)
    ours = welch_t_test([1, 2, 3, 4, np.nan], [2, 4, 6, 8, 10])
    assert ours.statistic == pytest.approx(-3.5 / np.sqrt(29 / 12))
    assert ours.df == pytest.approx((841 / 144) / (457 / 432))
    assert (ours.n_a, ours.n_b, ours.n_dropped) == (4, 5, 1)
    assert ours.p_value == pytest.approx(2 * stats.t.sf(3.5 / np.sqrt(29 / 12), (841 / 144) / (457 / 432)))


def test_welch_edge_rules():
    assert np.isnan(welch_t_test([1.0], [1.0, 2.0]).p_value)
    assert welch_t_test([2.0, 2.0], [2.0, 2.0, 2.0]).p_value == 1.0
    constant_apart = welch_t_test([1.0, 1.0], [2.0, 2.0])
    assert constant_apart.p_value == 0.0 and constant_apart.statistic == -np.inf


def test_mean_gap_interval_equals_scipy_and_percent_gap_by_hand():
    rng = np.random.default_rng(3)
    reference_scores, other_scores = rng.normal(0.8, 0.05, 14), rng.normal(0.7, 0.1, 9)
    gap = mean_gap(reference_scores, other_scores, confidence=0.9)
    scipy_interval = stats.ttest_ind(other_scores, reference_scores, equal_var=False).confidence_interval(0.9)
    assert (gap.low, gap.high) == pytest.approx((scipy_interval.low, scipy_interval.high), rel=1e-10)
    assert gap.difference == pytest.approx(other_scores.mean() - reference_scores.mean())
    assert gap.test.p_value == pytest.approx(stats.ttest_ind(other_scores, reference_scores, equal_var=False).pvalue)
    # Hand: means 0.8 and 0.6 -> 100 * (-0.2) / 0.7
    hand = mean_gap([0.7, 0.9, np.nan], [0.5, 0.7])
    assert hand.gap_percent == pytest.approx(-200 / 7) and hand.difference == pytest.approx(-0.2)
    assert np.isnan(mean_gap([0.0, 0.0], [0.0, 0.0]).gap_percent)
    assert np.isnan(mean_gap([0.5], [0.4, 0.6]).low)
