"""Localisation metrics against pycocotools, hand cases for the count metrics, bootstrap known answers."""
import numpy as np
import pytest

from stages.nova.metrics import (
    COCO_THRESHOLDS,
    bootstrap_interval,
    bootstrap_intervals,
    grouped_indices,
    localisation_metrics,
    match_table,
    mean_statistic,
    precision_recall_curve,
    summarise,
)
from tests.nova.coco_reference import pycocotools_ap


def random_benchmark(rng, n_images, with_scores=True, quantised=False):
    gt, pred = {}, {}
    for i in range(n_images):
        k, m = int(rng.integers(0, 4)), int(rng.integers(0, 6))
        gold = np.column_stack([rng.uniform(0, 80, k), rng.uniform(0, 80, k), rng.uniform(5, 40, k), rng.uniform(5, 40, k)])
        boxes = np.column_stack([rng.uniform(0, 80, m), rng.uniform(0, 80, m), rng.uniform(5, 40, m), rng.uniform(5, 40, m)])
        for j in range(min(k, m)):  # some predictions near a gold box, so every IoU threshold matters
            if rng.random() < 0.6:
                boxes[j] = gold[j] + rng.normal(0, 4, 4)
                boxes[j, 2:] = np.abs(boxes[j, 2:]) + 1
        scores = rng.random(m) if with_scores else None
        if quantised and scores is not None:
            scores = np.round(scores, 1)  # many ties across and within images
        gt[f"img{i:04d}"], pred[f"img{i:04d}"] = gold, (boxes, scores)
    return gt, pred


@pytest.mark.parametrize("with_scores, quantised", [(True, False), (True, True), (False, False)])
def test_average_precision_equals_pycocotools(with_scores, quantised):
    rng = np.random.default_rng(42 + quantised + 2 * with_scores)
    for _ in range(6):
        gt, pred = random_benchmark(rng, 40, with_scores, quantised)
        ours = localisation_metrics(gt, pred)
        at30 = pycocotools_ap(gt, pred, [0.3])[0]
        coco = pycocotools_ap(gt, pred, COCO_THRESHOLDS)
        assert ours["map30"] == pytest.approx(at30, abs=1e-9)
        assert ours["map50"] == pytest.approx(coco[0], abs=1e-9)
        assert ours["map50_95"] == pytest.approx(coco.mean(), abs=1e-9)


def test_missing_predictions_and_empty_images_match_pycocotools():
    gt = {"a": np.array([[0, 0, 10, 10]]), "b": np.zeros((0, 4)), "c": np.array([[20, 20, 5, 5], [0, 0, 4, 4]])}
    pred = {"a": (np.array([[1, 1, 10, 10]]), np.array([0.9])), "b": (np.array([[0, 0, 5, 5]]), np.array([0.95]))}
    ours = localisation_metrics(gt, pred)
    assert ours["map30"] == pytest.approx(pycocotools_ap(gt, pred, [0.3])[0], abs=1e-12)
    # Hand: detections by score: b (FP, 0.95), a (TP). Recall 1/3 reached at precision 1/2 -> AP = 34/101 * 0.5
    assert ours["map30"] == pytest.approx(34 / 101 * 0.5)


def test_count_metrics_by_hand():
    gt = {"one": np.array([[0, 0, 10, 10], [20, 0, 10, 10]]), "two": np.array([[0, 0, 10, 10]]), "three": np.zeros((0, 4))}
    pred = {
        # IoU 0.81 with box 0 (TP at .3 and .5), IoU 1/3 with box 1 (TP at .3 only), one far miss (FP)
        "one": (np.array([[1, 1, 9, 9], [25, 0, 10, 10], [50, 50, 5, 5]]), None),
        # two boxes on one gold box: greedy one-to-one keeps the better, the other is an FP
        "two": (np.array([[0, 0, 10, 10], [0, 0, 10, 9]]), np.array([0.1, 0.9])),
        "three": (np.array([[0, 0, 3, 3]]), None),
    }
    metrics = localisation_metrics(gt, pred)
    assert metrics["tp30"] == 3 and metrics["fp30"] == 6 - 3
    tp50, fp50, fn50 = 2, 4, 1  # one: box0 only; two: the identical box; FN: one's box 1
    assert metrics["acc50"] == pytest.approx(tp50 / (tp50 + fp50 + fn50))
    assert metrics["fnr50"] == pytest.approx(fn50 / 3)
    assert (metrics["n_images"], metrics["n_gt"], metrics["n_pred"]) == (3, 3, 6)


def test_no_gold_at_all_gives_nan_ap_and_unknown_images_are_refused():
    metrics = localisation_metrics({"a": np.zeros((0, 4))}, {"a": (np.array([[0, 0, 1, 1]]), None)})
    assert np.isnan(metrics["map30"]) and metrics["fp30"] == 1
    with pytest.raises(ValueError, match="not in the gold set"):
        localisation_metrics({"a": np.zeros((0, 4))}, {"zzz": (np.zeros((0, 4)), None)})
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        localisation_metrics({"a": np.zeros((0, 4))}, {"a": (np.zeros((2, 4)), np.array([0.5]))})


def test_missing_scores_rank_boxes_by_list_position():
    gt = {"a": np.array([[0, 0, 10, 10]])}
    first_right = localisation_metrics(gt, {"a": (np.array([[0, 0, 10, 10], [50, 50, 10, 10]]), None)})
    first_wrong = localisation_metrics(gt, {"a": (np.array([[50, 50, 10, 10], [0, 0, 10, 10]]), None)})
    assert first_right["map30"] == pytest.approx(1.0)
    assert first_wrong["map30"] == pytest.approx(0.5)


def test_subsets_and_curve_agree_with_direct_computation():
    gt, pred = random_benchmark(np.random.default_rng(3), 30)
    table = match_table(gt, pred)
    chosen = np.array([0, 3, 3, 7, 12])
    ids = [table.image_ids[i] for i in chosen]
    direct = localisation_metrics({f"{k}#{n}": gt[k] for n, k in enumerate(ids)}, {f"{k}#{n}": pred[k] for n, k in enumerate(ids)})
    subset = summarise(table, chosen)
    for key in ("map30", "map50", "map50_95", "tp30", "fp30", "n_gt", "n_pred"):
        assert subset[key] == pytest.approx(direct[key], nan_ok=True)
    _, curve = precision_recall_curve(table, 0)
    assert curve.mean() == pytest.approx(summarise(table)["map30"])


def test_bootstrap_constant_data_has_zero_width():
    statistic = mean_statistic(np.full(25, 0.7))
    assert bootstrap_interval(statistic, 25, n_resamples=200, seed=1) == pytest.approx((0.7, 0.7))


def test_bootstrap_mean_matches_normal_theory():
    values = np.random.default_rng(0).normal(10.0, 2.0, 400)
    low, high = bootstrap_interval(mean_statistic(values), len(values), n_resamples=2000, seed=0)
    half_width = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    assert (low + high) / 2 == pytest.approx(values.mean(), abs=0.05)
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.1)


def test_grouped_indices_and_several_intervals_at_once():
    labels, members = grouped_indices(["b", "a", "b", "c"])
    assert labels == ["a", "b", "c"] and [m.tolist() for m in members] == [[1], [0, 2], [3]]
    values = np.array([0.0, 1.0, 0.0, 1.0])  # case a: 1; case b: 0, 0; case c: 1

    def statistic(cases):
        chosen = np.concatenate([members[c] for c in cases])
        return {"mean": values[chosen].mean(), "never": float("nan")}

    intervals = bootstrap_intervals(statistic, 3, n_resamples=300, seed=0)
    # A case resample of only b gives 0, of only a/c gives 1: the interval spans the extremes.
    assert intervals["mean"] == (0.0, 1.0) and np.isnan(intervals["never"][0])
