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


@pytest.mark.parametrize("with_scores, quantised", [(True, False), (True, True)])
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
        "two": (np.array([[0, 0, 10, 9], [0, 0, 10, 10]]), None),
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


def iou(a, b):
    """IoU of two [x, y, w, h] boxes, by hand."""
    w = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return w * h / (a[2] * a[3] + b[2] * b[3] - w * h)


def test_scoreless_ap_does_not_depend_on_the_order_of_the_boxes():
    gt = {"a": np.array([[0, 0, 10, 10]])}
    right = np.array([[0, 0, 10, 10], [50, 50, 10, 10]])
    first_right = localisation_metrics(gt, {"a": (right, None)})
    first_wrong = localisation_metrics(gt, {"a": (right[::-1], None)})
    assert first_right["map30"] == first_wrong["map30"] == pytest.approx(0.5)  # P 1/2 at recall 1: 101/101 * 1/2


def separated_benchmark(rng, n_images):
    """Gold boxes far apart; at most one prediction near each gold box, the others far from all: a box's TP or FP
    status at each IoU threshold is then fixed whatever the order, so pycocotools' worst tie order is known."""
    gt, pred = {}, {}
    for i in range(n_images):
        k = int(rng.integers(0, 4))
        gold = np.array([[100.0 * j + rng.uniform(0, 10), rng.uniform(0, 10), rng.uniform(10, 30), rng.uniform(10, 30)]
                         for j in range(k)]).reshape(-1, 4)
        boxes = [g + np.r_[rng.normal(0, 4, 2), rng.normal(0, 3, 2)] for g in gold if rng.random() < 0.7]
        boxes += [np.array([1000.0 + 50 * j, 500.0, 10.0, 10.0]) for j in range(int(rng.integers(0, 3)))]
        order = rng.permutation(len(boxes))
        gt[f"img{i:03d}"], pred[f"img{i:03d}"] = gold, (np.array(boxes).reshape(-1, 4)[order], None)
    return gt, pred


def test_scoreless_ap_is_pycocotools_with_false_positives_ranked_first():
    rng = np.random.default_rng(11)
    gt, pred = separated_benchmark(rng, 40)
    ours = localisation_metrics(gt, pred)
    shuffled = {k: (b[rng.permutation(len(b))], None) for k, (b, _) in pred.items()}
    assert localisation_metrics(gt, shuffled) == ours
    for key, threshold in (("map30", 0.3), ("map50", 0.5)):
        worst, best = {}, {}
        for image_id, (boxes, _) in pred.items():
            hit = np.array([max([iou(b, g) for g in gt[image_id]], default=0.0) >= threshold for b in boxes], dtype=float)
            worst[image_id], best[image_id] = (boxes, 2.0 - hit), (boxes, 1.0 + hit)
        reference = pycocotools_ap(gt, worst, [threshold])[0]
        assert ours[key] == pytest.approx(reference, abs=1e-12)
        assert pycocotools_ap(gt, best, [threshold])[0] >= reference  # the lower bound of any tie order


def test_a_model_mixing_scored_and_unscored_slices_is_refused():
    gt = {"a": np.array([[0, 0, 10, 10]]), "b": np.array([[0, 0, 10, 10]])}
    with pytest.raises(ValueError, match="mix slices with scores and without"):
        localisation_metrics(gt, {"a": (np.array([[0, 0, 10, 10]]), None), "b": (np.array([[0, 0, 5, 5]]), np.array([0.3]))})


def test_hit_rates_and_mean_best_iou_by_hand():
    gt = {"a": np.array([[0, 0, 10, 10]]), "b": np.array([[0, 0, 10, 10], [40, 40, 10, 10]]), "c": np.array([[0, 0, 4, 4]]),
          "empty": np.zeros((0, 4))}
    pred = {"a": (np.array([[0, 0, 10, 5]]), None),            # IoU 0.5 exactly
            "b": (np.array([[50, 0, 5, 5], [42, 42, 10, 10]]), None),  # best: the second with gold 2
            "empty": (np.array([[0, 0, 3, 3]]), None)}        # c: no prediction -> best IoU 0; empty: not counted
    best = {"a": iou([0, 0, 10, 5], [0, 0, 10, 10]), "b": iou([42, 42, 10, 10], [40, 40, 10, 10]), "c": 0.0}
    metrics = localisation_metrics(gt, pred)
    values = np.array(list(best.values()))
    assert metrics["mean_best_iou"] == pytest.approx(values.mean())
    assert metrics["hit30"] == pytest.approx((values >= 0.3).mean()) and metrics["hit50"] == pytest.approx((values >= 0.5).mean())
    assert (metrics["hit30"], metrics["hit50"]) == pytest.approx((2 / 3, 1 / 3))  # a: 0.5, b: 64/136 = 0.47, c: none


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


def test_best_iou_per_image_against_a_brute_force_loop():
    gt, pred = random_benchmark(np.random.default_rng(8), 60)
    table = match_table(gt, pred)
    for position, image_id in enumerate(table.image_ids):
        pairs = [iou(b, g) for b in pred[image_id][0] for g in gt[image_id]]
        assert table.best_iou[position] == pytest.approx(max(pairs, default=0.0), abs=1e-12)
