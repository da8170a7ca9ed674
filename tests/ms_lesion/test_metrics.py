"""Lesion-wise F1 (MSSEG rule, CoactSeg thresholds) and temporal consistency on hand-built cases."""
import numpy as np
import pytest

from stages.ms_lesion.metrics import lesion_components, lesion_f1, temporal_consistency


def cube(shape, corner, size):
    mask = np.zeros(shape, bool)
    mask[tuple(slice(c, c + size) for c in corner)] = True
    return mask


SHAPE = (30, 30, 30)


def test_identical_maps_detect_every_lesion():
    truth = cube(SHAPE, (2, 2, 2), 3) | cube(SHAPE, (20, 20, 20), 4)
    result = lesion_f1(truth, truth)
    assert (result.f1, result.true_positive_truth, result.truth_lesions, result.predicted_lesions) == (1.0, 2, 2, 2)


def test_one_missed_lesion_and_one_false_positive_give_one_half():
    truth = cube(SHAPE, (2, 2, 2), 3) | cube(SHAPE, (20, 20, 20), 3)
    prediction = cube(SHAPE, (2, 2, 2), 3) | cube(SHAPE, (2, 20, 10), 3)
    result = lesion_f1(truth, prediction)
    # sensitivity 1/2, precision 1/2
    assert result.f1 == pytest.approx(0.5)
    assert (result.false_negative, result.false_positive) == (1, 1)


def test_components_under_min_voxels_are_dropped_from_both():
    truth = cube(SHAPE, (2, 2, 2), 3) | cube(SHAPE, (20, 20, 20), 2)      # 27 and 8 voxels
    prediction = cube(SHAPE, (2, 2, 2), 3) | cube(SHAPE, (10, 20, 2), 2)  # the 8-voxel false positive is ignored
    result = lesion_f1(truth, prediction, min_voxels=11)
    assert (result.truth_lesions, result.predicted_lesions, result.f1) == (1, 1, 1.0)
    assert lesion_f1(truth, prediction, min_voxels=1).f1 == pytest.approx(0.5)


def test_a_prediction_mostly_outside_the_truth_does_not_detect_it():
    truth = cube(SHAPE, (10, 10, 10), 3)                   # 27 voxels
    prediction = cube(SHAPE, (12, 10, 10), 6)              # covers 9 truth voxels (alpha 1/3 > 0.1) but 207/216 outside
    result = lesion_f1(truth, prediction)
    assert result.true_positive_truth == 0 and result.f1 == 0.0
    # the same overlap from a compact prediction is accepted
    assert lesion_f1(truth, cube(SHAPE, (10, 10, 10), 3) & cube(SHAPE, (11, 10, 10), 5)).true_positive_truth == 1


def test_coverage_at_or_below_alpha_is_a_miss():
    truth = cube(SHAPE, (0, 0, 0), 10)                     # 1000 voxels
    prediction = cube(SHAPE, (0, 0, 0), 4)                 # 64 voxels = 6.4% of the lesion
    assert lesion_f1(truth, prediction).true_positive_truth == 0
    assert lesion_f1(truth, prediction, alpha=0.05).true_positive_truth == 1


def test_components_are_relabelled_consecutively():
    mask = cube(SHAPE, (0, 0, 0), 2) | cube(SHAPE, (10, 10, 10), 3) | cube(SHAPE, (20, 20, 20), 3)
    labels, count = lesion_components(mask, min_voxels=11)
    assert count == 2 and sorted(np.unique(labels).tolist()) == [0, 1, 2]


def test_empty_truth_and_prediction():
    empty = np.zeros(SHAPE, bool)
    assert lesion_f1(empty, empty).f1 == 1.0
    assert lesion_f1(empty, cube(SHAPE, (1, 1, 1), 3)).f1 == 0.0


def test_temporal_consistency_by_hand():
    a1, new, gone = cube(SHAPE, (0, 0, 0), 3), cube(SHAPE, (10, 10, 10), 3), cube(SHAPE, (20, 20, 20), 3)
    a1 = a1 | gone
    consistent_a2 = (a1 | new) & ~gone
    assert temporal_consistency(a1, consistent_a2, new, gone) == 1.0
    # a2 missing the new lesion: implied 54 voxels, predicted 27, overlap 27 -> 2*27/81
    assert temporal_consistency(a1, consistent_a2 & ~new, new, gone) == pytest.approx(2 / 3)

