"""Detection AP against pycocotools' COCOeval on random multi-image, multi-class cases, and by hand."""
import numpy as np
import pytest

from stages.common.metrics.detection import (
    COCO_IOU_THRESHOLDS,
    BoxSet,
    Detection,
    GroundTruth,
    accumulate,
    evaluate_detections,
    match_detections,
)
from tests.common.coco_reference import coco_ap, coco_evaluator, coco_precision, coco_recall, coco_summary_map

CATEGORIES = ["lesion", "nodule", "mass", "cyst"]


def random_case(rng, n_images=30, with_scores=True, quantised=False, n_categories=3):
    """Gold and detection rows; some images without gold, the last category never predicted."""
    gold, detections = [], []
    categories = CATEGORIES[:n_categories]
    for i in range(n_images):
        image_id = f"img{i:03d}"
        for category in categories:
            k = 0 if rng.random() < 0.3 else int(rng.integers(0, 4))
            m = 0 if category == categories[-1] else int(rng.integers(0, 5))
            boxes = np.column_stack([rng.uniform(0, 80, k), rng.uniform(0, 80, k), rng.uniform(5, 40, k), rng.uniform(5, 40, k)])
            guesses = np.column_stack([rng.uniform(0, 80, m), rng.uniform(0, 80, m), rng.uniform(5, 40, m), rng.uniform(5, 40, m)])
            for j in range(min(k, m)):  # some detections near a gold box, so every IoU threshold matters
                if rng.random() < 0.7:
                    guesses[j] = boxes[j] + rng.normal(0, 3, 4)
                    guesses[j, 2:] = np.abs(guesses[j, 2:]) + 1
            if k and m and rng.random() < 0.2:
                guesses[-1] = boxes[0]  # exact copies: IoU 1 and, with a second copy, IoU ties
            scores = rng.random(m)
            if quantised:
                scores = np.round(scores, 1)  # many ties within and across images
            gold += [(image_id, category, box) for box in boxes]
            detections += [(image_id, category, box, float(s) if with_scores else None) for box, s in zip(guesses, scores)]
    order = rng.permutation(len(detections))  # input order is not query order
    detections = [detections[o] for o in order]
    images = [f"img{i:03d}" for i in range(n_images)]
    return gold, detections, images, categories


def box_sets(gold, detections):
    gt = BoxSet.from_records(GroundTruth(i, c, b) for i, c, b in gold)
    dt = BoxSet.from_records(Detection(i, c, b, s) for i, c, b, s in detections)
    return gt, dt


@pytest.mark.parametrize("with_scores, quantised", [(True, False), (True, True), (False, False)])
@pytest.mark.parametrize("thresholds", [COCO_IOU_THRESHOLDS, np.array([0.3]), np.array([0.1, 0.3, 0.5, 0.75, 0.9, 1.0])])
def test_equals_pycocotools_per_class_and_mean(with_scores, quantised, thresholds):
    rng = np.random.default_rng(7 + 2 * with_scores + quantised + len(thresholds))
    for _ in range(3):
        gold, detections, images, categories = random_case(rng, 25, with_scores, quantised)
        reference = coco_evaluator(gold, detections, images, categories, thresholds)
        result = evaluate_detections(*box_sets(gold, detections), thresholds, images=images)
        assert result.categories == sorted(categories)
        np.testing.assert_allclose(result.precision, coco_precision(reference), rtol=0, atol=1e-12)
        np.testing.assert_allclose(result.ap, coco_ap(reference), rtol=0, atol=1e-12)
        np.testing.assert_allclose(result.recall, coco_recall(reference), rtol=0, atol=1e-12)
        assert result.mean_ap() == pytest.approx(coco_summary_map(reference), abs=1e-12)
        assert result.mean_ap(float(thresholds[0])) == pytest.approx(coco_summary_map(reference, 0), abs=1e-12)
        per_class = coco_ap(reference).mean(axis=0)  # per-class AP over the thresholds
        assert list(result.class_ap(thresholds).values()) == pytest.approx(list(per_class), abs=1e-12, nan_ok=True)


def test_max_detections_matches_pycocotools_maxdets():
    gold, detections, images, categories = random_case(np.random.default_rng(11), 30)
    for cap in (1, 2):
        reference = coco_evaluator(gold, detections, images, categories, COCO_IOU_THRESHOLDS, max_detections=cap)
        result = evaluate_detections(*box_sets(gold, detections), images=images, max_detections=cap)
        np.testing.assert_allclose(result.precision, coco_precision(reference), rtol=0, atol=1e-12)


def test_queries_score_only_the_asked_pairs_like_cocoeval_per_category_image_lists():
    """Phrase grounding: each image is asked for some classes; COCOeval with per-category imgIds is the reference."""
    rng = np.random.default_rng(5)
    gold, detections, images, categories = random_case(rng, 30, n_categories=3)
    asked = {c: sorted(rng.choice(images, 18, replace=False).tolist()) for c in categories}
    gold = [row for row in gold if row[0] in asked[row[1]]]
    detections = [row for row in detections if row[0] in asked[row[1]]]
    queries = [(image, c) for c in categories for image in asked[c]]
    result = evaluate_detections(*box_sets(gold, detections), queries=queries)
    for k, category in enumerate(result.categories):
        rows_gold = [r for r in gold if r[1] == category]
        rows_det = [r for r in detections if r[1] == category]
        reference = coco_evaluator(rows_gold, rows_det, asked[category], [category], COCO_IOU_THRESHOLDS)
        np.testing.assert_allclose(result.ap[:, k], coco_ap(reference)[:, 0], rtol=0, atol=1e-12)
    asked_somewhere = {i for c in categories for i in asked[c]}
    image, category = next((i, c) for c in categories for i in sorted(asked_somewhere) if i not in asked[c])
    stray = BoxSet([image], [category], [[0, 0, 5, 5]], [0.5])
    with pytest.raises(ValueError, match=f"detection box 0 \\('{image}', '{category}'\\) is not a scored query"):
        evaluate_detections(box_sets(gold, detections)[0], stray, queries=queries)


def test_equal_ious_go_to_the_later_gold_box_as_in_pycocotools():
    # The first detection straddles both gold boxes (IoU 1/3 with each): taking the later one, B,
    # leaves A for the second detection (two TPs); taking A would leave one.
    gold = [("x", "c", [0, 0, 10, 10]), ("x", "c", [10, 0, 10, 10])]
    detections = [("x", "c", [5, 0, 10, 10], 0.9), ("x", "c", [0, 0, 10, 10], 0.8)]
    reference = coco_evaluator(gold, detections, ["x"], ["c"], [0.3])
    result = evaluate_detections(*box_sets(gold, detections), [0.3])
    assert result.ap[0, 0] == pytest.approx(coco_ap(reference)[0, 0], abs=1e-12)
    assert result.ap[0, 0] == pytest.approx(1.0)


def test_hand_computed_two_classes_and_an_empty_image():
    gt = BoxSet(["a", "a", "b"], ["cat", "dog", "cat"], [[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 10, 10]])
    # cat: b's exact box (TP, 0.9), a stray on empty image c (FP, 0.8), a's box shifted by 5 (IoU 1/3: FP at 0.5, TP at 0.3, 0.7)
    dt = BoxSet(["b", "c", "a"], ["cat", "cat", "cat"], [[20, 20, 10, 10], [50, 50, 5, 5], [5, 0, 10, 10]], [0.9, 0.8, 0.7])
    result = evaluate_detections(gt, dt, [0.3, 0.5], images=["a", "b", "c"])
    # IoU 0.3: TP, FP, TP -> precision 1, 1/2, 2/3; recall 1/2, 1/2, 1; envelope 1 up to recall .5, then 2/3.
    assert result.ap[0, 0] == pytest.approx((51 * 1 + 50 * 2 / 3) / 101)
    # IoU 0.5: TP, FP, FP -> recall 1/2 at precision 1, never more.
    assert result.ap[1, 0] == pytest.approx(51 / 101)
    assert result.ap[:, 1].tolist() == [0.0, 0.0]  # dog: gold, no detection
    assert result.class_ap(0.5) == {"cat": pytest.approx(51 / 101), "dog": 0.0}
    assert result.mean_ap(0.5) == pytest.approx(51 / 101 / 2)
    assert result.mean_ap([0.3, 0.5]) == result.mean_ap() == pytest.approx(((51 + 50 * 2 / 3) / 101 + 51 / 101) / 4)
    recall, precision = result.curve(0.3, "cat")
    assert precision[50] == pytest.approx(1.0) and precision[51] == pytest.approx(2 / 3) and recall[51] == pytest.approx(0.51)


def test_category_without_gold_is_nan_and_left_out_of_means():
    gt = BoxSet(["a"], ["cat"], [[0, 0, 10, 10]])
    dt = BoxSet(["a", "a"], ["cat", "bird"], [[0, 0, 10, 10], [0, 0, 3, 3]], [0.5, 0.9])
    result = evaluate_detections(gt, dt, [0.5], categories=["bird", "cat"])
    assert np.isnan(result.ap[0, 0]) and result.ap[0, 1] == pytest.approx(1.0)
    assert result.mean_ap() == pytest.approx(1.0) and result.n_detections.tolist() == [1, 1]


def test_without_scores_list_position_ranks_each_query():
    gt = BoxSet(["a", "b"], [0, 0], [[0, 0, 10, 10], [0, 0, 10, 10]])
    # a: miss listed first; b: hit listed first. Positions tie across images: image order (a, b) decides.
    dt = BoxSet(["a", "a", "b", "b"], [0, 0, 0, 0], [[50, 50, 5, 5], [0, 0, 10, 10], [0, 0, 10, 10], [60, 60, 5, 5]])
    result = evaluate_detections(gt, dt, [0.5])
    # pooled: a-miss (1), b-hit (1), a-hit (1/2), b-miss (1/2): FP TP TP FP -> precision .5 at recall .5, 2/3 at 1
    assert result.ap[0, 0] == pytest.approx(101 * (2 / 3) / 101)


def test_resampled_queries_equal_a_direct_evaluation():
    gold, detections, images, _ = random_case(np.random.default_rng(3), 20, n_categories=2)
    table = match_detections(*box_sets(gold, detections), images=images)
    chosen_images = [2, 5, 5, 11]
    renamed = {f"{images[i]}#{n}": images[i] for n, i in enumerate(chosen_images)}
    direct = evaluate_detections(
        BoxSet.from_records(GroundTruth(new, c, b) for new, old in renamed.items() for i, c, b in gold if i == old),
        BoxSet.from_records(Detection(new, c, b, s) for new, old in renamed.items() for i, c, b, s in detections if i == old),
        images=list(renamed), categories=table.categories)
    n_images = len(table.images)
    queries = [k * n_images + i for k in range(len(table.categories)) for i in chosen_images]
    np.testing.assert_allclose(accumulate(table, np.array(queries)).ap, direct.ap, rtol=0, atol=1e-12)


def test_bad_input_is_refused_with_the_box_named():
    gt = BoxSet(["a"], ["cat"], [[0, 0, 10, 10]])
    with pytest.raises(ValueError, match="detection box 0: image 'zzz' is not among the scored images"):
        evaluate_detections(gt, BoxSet(["zzz"], ["cat"], [[0, 0, 1, 1]], [0.5]))
    with pytest.raises(ValueError, match="detection box 1: category 'dog'"):
        evaluate_detections(gt, BoxSet(["a", "a"], ["cat", "dog"], [[0, 0, 1, 1]] * 2, [0.5, 0.5]))
    with pytest.raises(ValueError, match="has no score while others have"):
        BoxSet.from_records([Detection("a", "cat", [0, 0, 1, 1], 0.3), Detection("a", "cat", [0, 0, 1, 1])])
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        BoxSet(["a", "a"], ["cat", "cat"], np.zeros((2, 4)), [0.1])
    with pytest.raises(ValueError, match="not finite"):
        BoxSet(["a"], ["cat"], np.zeros((1, 4)), [np.nan])
    with pytest.raises(ValueError, match=r"box 0 \[0.0, 0.0, -1.0, 2.0\]: \[x, y, w, h\] must be finite with w, h >= 0"):
        BoxSet(["a"], ["cat"], [[0, 0, -1, 2]])
    with pytest.raises(KeyError, match="IoU 0.75 was not evaluated"):
        evaluate_detections(gt, BoxSet([], [], np.zeros((0, 4)), None), [0.5]).mean_ap(0.75)


def test_integer_labels_as_coco_ids_equal_pycocotools():
    gold, detections, images, categories = random_case(np.random.default_rng(21), 20)
    image_number = {image: 100 - n for n, image in enumerate(images)}  # int ids, sorted opposite to the names
    category_number = {c: 7 * (n + 1) for n, c in enumerate(categories)}
    gold = [(image_number[i], category_number[c], b) for i, c, b in gold]
    detections = [(image_number[i], category_number[c], b, s) for i, c, b, s in detections]
    reference = coco_evaluator(gold, detections, list(image_number.values()), list(category_number.values()), COCO_IOU_THRESHOLDS)
    result = evaluate_detections(*box_sets(gold, detections), images=list(image_number.values()))
    assert result.categories == [7, 14, 21]
    np.testing.assert_allclose(result.precision, coco_precision(reference), rtol=0, atol=1e-12)
