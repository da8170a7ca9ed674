"""Prompts against scikit-image's region properties and hand-built masks."""
import numpy as np
from skimage.measure import regionprops

from stages.sam_tta.prompts import boxes_from_mask, instance_masks, points_from_mask


def test_boxes_are_the_tight_boxes_of_each_label_value():
    rng = np.random.default_rng(1)
    mask = np.zeros((40, 50), dtype=np.int32)
    mask[3:9, 10:30] = 7
    mask[20:35, 2:6] = 2
    mask[rng.integers(0, 40, 5), rng.integers(36, 50, 5)] = 9   # scattered pixels: one label, one box
    boxes = boxes_from_mask(mask)
    expected = [[r.bbox[1], r.bbox[0], r.bbox[3], r.bbox[2]] for r in sorted(regionprops(mask), key=lambda r: r.label)]
    np.testing.assert_array_equal(boxes, np.asarray(expected, dtype=np.float32))
    np.testing.assert_array_equal(boxes[1], [10, 3, 30, 9])   # label 7 by hand: x0, y0, x1 (exclusive), y1


def test_at_most_forty_instances():
    mask = np.arange(1, 51).reshape(5, 10).repeat(2, axis=0)
    assert boxes_from_mask(mask).shape == (40, 4)
    assert boxes_from_mask(np.zeros((4, 4), int)).shape == (0, 4)
    assert instance_masks(mask, 3).shape == (3, 10, 10)


def test_points_fall_inside_and_outside_as_labelled():
    mask = np.zeros((30, 30), bool)
    mask[5:12, 8:20] = True
    points, labels = points_from_mask(mask, np.random.default_rng(0))
    assert points.shape == (10, 2) and labels.tolist() == [1] * 5 + [0] * 5
    columns, rows = np.floor(points).astype(int).T
    np.testing.assert_array_equal(mask[rows, columns], labels.astype(bool))
