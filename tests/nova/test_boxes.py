"""Box conventions: COCO [x, y, w, h] pixels <-> model [ymin, xmin, ymax, xmax] on 0-1000, IoU, checks."""
import numpy as np
import pytest

from stages.nova.boxes import (
    box_problems,
    iou_matrix,
    mask_to_boxes,
    model_to_pixel_xywh,
    pixel_xywh_to_model,
    xywh_to_xyxy,
    xyxy_to_xywh,
)


def test_model_answer_to_pixels_by_hand():
    # 480 x 240 (width x height) image; the model says rows 250-500, columns 100-300 of 1000.
    pixels = model_to_pixel_xywh([[250, 100, 500, 300]], width=480, height=240)
    # x = 0.1 * 480 = 48, y = 0.25 * 240 = 60, w = 0.2 * 480 = 96, h = 0.25 * 240 = 60
    np.testing.assert_allclose(pixels, [[48, 60, 96, 60]])


def test_pixels_to_model_answer_by_hand():
    model = pixel_xywh_to_model([[48, 60, 96, 60]], width=480, height=240)
    np.testing.assert_allclose(model, [[250, 100, 500, 300]])


def test_round_trip_and_swapped_corners_and_clipping():
    rng = np.random.default_rng(0)
    boxes = np.column_stack([rng.uniform(0, 100, 20), rng.uniform(0, 50, 20), rng.uniform(1, 60, 20), rng.uniform(1, 30, 20)])
    boxes[:, 2] = np.minimum(boxes[:, 2], 160 - boxes[:, 0])
    boxes[:, 3] = np.minimum(boxes[:, 3], 90 - boxes[:, 1])
    np.testing.assert_allclose(model_to_pixel_xywh(pixel_xywh_to_model(boxes, 160, 90), 160, 90), boxes, atol=1e-9)
    # ymax < ymin and xmax < xmin still name the same box; values beyond 1000 are clipped to the image.
    np.testing.assert_allclose(model_to_pixel_xywh([[500, 300, 250, 100]], 480, 240), [[48, 60, 96, 60]])
    np.testing.assert_allclose(model_to_pixel_xywh([[-50, 900, 1200, 1100]], 100, 100), [[90, 0, 10, 100]])


def test_xyxy_round_trip():
    boxes = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 10.0, 5.0]])
    np.testing.assert_allclose(xywh_to_xyxy(boxes), [[1, 2, 4, 6], [0, 0, 10, 5]])
    np.testing.assert_allclose(xyxy_to_xywh(xywh_to_xyxy(boxes)), boxes)


def test_iou_by_hand():
    a = [[0, 0, 10, 10]]
    b = [[5, 0, 10, 10], [10, 0, 5, 5], [0, 0, 10, 10], [2, 2, 2, 2]]
    # overlap 5x10=50, union 150 -> 1/3; touching -> 0; identical -> 1; inside: 4 / 100
    np.testing.assert_allclose(iou_matrix(a, b), [[1 / 3, 0.0, 1.0, 0.04]])
    assert iou_matrix(a, np.zeros((0, 4))).shape == (1, 0)


def test_box_problems_name_the_box_and_the_problem():
    assert box_problems([[0, 0, 10, 10]], 10, 10) == []
    assert box_problems([[0.0, 0.0, 10.4, 10.4]], 10, 10) == []  # half a pixel of rounding is accepted
    problems = box_problems([[0, 0, 0, 5], [5, 5, 10, 2], [1, 1, np.nan, 2]], 10, 10)
    assert "box 0" in problems[0] and "non-positive size" in problems[0]
    assert "box 1" in problems[1] and "outside the 10x10 image" in problems[1]
    assert "box 2" in problems[2] and "non-finite" in problems[2]


def test_mask_to_boxes_components():
    mask = np.zeros((20, 30), dtype=bool)
    mask[2:5, 3:9] = True      # 3 rows x 6 columns at (x=3, y=2)
    mask[10:12, 20:21] = True  # 2 pixels, dropped with min_area=3
    mask[15, 25] = mask[16, 26] = mask[17, 27] = True  # diagonal: one 8-connected component
    np.testing.assert_array_equal(mask_to_boxes(mask, min_area=3), [[3, 2, 6, 3], [25, 15, 3, 3]])


def test_bad_shape_is_an_error():
    with pytest.raises(ValueError, match=r"shape \(k, 4\)"):
        iou_matrix([[1, 2, 3]], [[1, 2, 3, 4]])
