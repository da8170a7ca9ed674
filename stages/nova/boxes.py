"""Box conventions and overlap.

NOVA's gold and rater boxes are COCO ``[x, y, w, h]`` in pixels (x, y = top-left corner).
Vision-language models answer ``[ymin, xmin, ymax, xmax]`` on a 0-1000 scale relative to the
image (Gemini's and Qwen-VL's grounding convention). IoU follows pycocotools: areas ``w * h``
with no "+1" pixel, so boxes that only touch have IoU 0.
"""
from __future__ import annotations

import numpy as np

MODEL_SCALE = 1000.0


def as_boxes(boxes) -> np.ndarray:
    """Any list of 4-vectors (or an empty list) as a float64 ``(k, 4)`` array."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 4))
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"boxes must have shape (k, 4), got {array.shape}")
    return array


def xywh_to_xyxy(boxes) -> np.ndarray:
    """``[x, y, w, h]`` -> ``[x0, y0, x1, y1]``."""
    b = as_boxes(boxes)
    return np.column_stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]])


def xyxy_to_xywh(boxes) -> np.ndarray:
    """``[x0, y0, x1, y1]`` -> ``[x, y, w, h]``."""
    b = as_boxes(boxes)
    return np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])


def model_to_pixel_xywh(boxes_yxyx_1000, width: int, height: int) -> np.ndarray:
    """Model answer ``[ymin, xmin, ymax, xmax]`` on 0-1000 -> pixel ``[x, y, w, h]``.

    Corners are sorted (a model that swaps min and max still names a box) and clipped to the image.
    """
    b = as_boxes(boxes_yxyx_1000)
    y0, y1 = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
    x0, x1 = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
    x0, x1 = np.clip(x0, 0, MODEL_SCALE) * width / MODEL_SCALE, np.clip(x1, 0, MODEL_SCALE) * width / MODEL_SCALE
    y0, y1 = np.clip(y0, 0, MODEL_SCALE) * height / MODEL_SCALE, np.clip(y1, 0, MODEL_SCALE) * height / MODEL_SCALE
    return np.column_stack([x0, y0, x1 - x0, y1 - y0])


BOX_FORMATS = ("yxyx_1000", "xyxy_1000", "xyxy_px")


def answer_to_pixel_xywh(boxes, width: int, height: int, box_format: str = "yxyx_1000") -> np.ndarray:
    """A model's boxes in its ``box_format`` -> pixel ``[x, y, w, h]`` (corners sorted, clipped to the image).

    ``yxyx_1000``: ``[ymin, xmin, ymax, xmax]`` on 0-1000 (Gemini's convention, the paper's prompt);
    ``xyxy_1000``: ``[xmin, ymin, xmax, ymax]`` on 0-1000; ``xyxy_px``: ``[x1, y1, x2, y2]`` in pixels
    of the image sent (Qwen2.5-VL's native ``bbox_2d``).
    """
    b = as_boxes(boxes)
    if box_format == "yxyx_1000":
        return model_to_pixel_xywh(b, width, height)
    if box_format == "xyxy_1000":
        return model_to_pixel_xywh(b[:, [1, 0, 3, 2]], width, height)
    if box_format == "xyxy_px":
        x0, x1 = np.clip(np.minimum(b[:, 0], b[:, 2]), 0, width), np.clip(np.maximum(b[:, 0], b[:, 2]), 0, width)
        y0, y1 = np.clip(np.minimum(b[:, 1], b[:, 3]), 0, height), np.clip(np.maximum(b[:, 1], b[:, 3]), 0, height)
        return np.column_stack([x0, y0, x1 - x0, y1 - y0])
    raise ValueError(f"box_format must be one of {', '.join(BOX_FORMATS)}, got {box_format!r}")


def pixel_xywh_to_model(boxes_xywh, width: int, height: int) -> np.ndarray:
    """Pixel ``[x, y, w, h]`` -> ``[ymin, xmin, ymax, xmax]`` on 0-1000 (what a prompt example shows)."""
    b = as_boxes(boxes_xywh)
    return np.column_stack([
        b[:, 1] * MODEL_SCALE / height,
        b[:, 0] * MODEL_SCALE / width,
        (b[:, 1] + b[:, 3]) * MODEL_SCALE / height,
        (b[:, 0] + b[:, 2]) * MODEL_SCALE / width,
    ])


def iou_matrix(a_xywh, b_xywh) -> np.ndarray:
    """Pairwise IoU ``(len(a), len(b))`` of two sets of ``[x, y, w, h]`` boxes (pycocotools' definition)."""
    a, b = xywh_to_xyxy(a_xywh), xywh_to_xyxy(b_xywh)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    intersection = width * height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, intersection / union, 0.0)


def box_problems(boxes_xywh, width: int, height: int, tolerance: float = 0.5) -> list[str]:
    """Why each bad box is bad (empty list when all are fine): non-positive size or outside the image.

    ``tolerance`` pixels of overhang are accepted (annotation tools round to the pixel grid).
    """
    problems = []
    for index, (x, y, w, h) in enumerate(as_boxes(boxes_xywh)):
        values = np.array([x, y, w, h])
        if not np.all(np.isfinite(values)):
            problems.append(f"box {index} [{x:g}, {y:g}, {w:g}, {h:g}] has a missing or non-finite value")
        elif w <= 0 or h <= 0:
            problems.append(f"box {index} [{x:g}, {y:g}, {w:g}, {h:g}] has non-positive size")
        elif x < -tolerance or y < -tolerance or x + w > width + tolerance or y + h > height + tolerance:
            problems.append(f"box {index} [{x:g}, {y:g}, {w:g}, {h:g}] lies outside the {width}x{height} image")
    return problems


def mask_to_boxes(mask: np.ndarray, min_area: int = 1) -> np.ndarray:
    """One ``[x, y, w, h]`` box per 8-connected component of a boolean mask with at least ``min_area`` pixels."""
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    boxes = []
    for index, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is None or int((labels[found] == index).sum()) < min_area:
            continue
        rows, cols = found
        boxes.append([cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start])
    return as_boxes(boxes)
