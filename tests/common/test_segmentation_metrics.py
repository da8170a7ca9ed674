"""stages.common.metrics.segmentation against medpy and MONAI on random masks, and hand-computed cases."""
import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch
from medpy.metric import binary as medpy_binary
from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance, compute_iou
from scipy.ndimage import binary_erosion, distance_transform_edt, gaussian_filter

from stages.common.metrics.segmentation import (
    SegmentationScores,
    assd,
    batch_scores,
    binary_scores,
    dice,
    directed_surface_distances,
    hd95,
    iou,
    per_class_scores,
)

SPACING = {2: (0.8, 2.1), 3: (0.7, 1.3, 2.5)}
SHAPE = {2: (64, 48), 3: (28, 32, 20)}


def blob(rng: np.random.Generator, shape: tuple[int, ...], window: float = 0.7) -> np.ndarray:
    """A smooth random mask inside a random window covering ``window`` of each axis (so the joint box crops)."""
    noise = gaussian_filter(rng.standard_normal(shape), 2.0)
    mask = noise > 0.5 * noise.std()
    keep = np.zeros(shape, dtype=bool)
    starts = [int(rng.integers(0, max(1, int(n * (1 - window))) + 1)) for n in shape]
    keep[tuple(slice(s, s + int(n * window)) for s, n in zip(starts, shape))] = True
    mask &= keep
    mask[tuple(s + int(n * window) // 2 for s, n in zip(starts, shape))] = True  # never empty
    return mask


def pairs(ndim: int, count: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed + ndim)
    out = [(blob(rng, SHAPE[ndim]), blob(rng, SHAPE[ndim])) for _ in range(count)]
    border = blob(rng, SHAPE[ndim], window=1.0)
    border[(0,) * ndim] = True  # a mask touching the array's edge: the crop must not change its surface
    out.append((border, blob(rng, SHAPE[ndim], window=1.0)))
    return out


def as_scores(values) -> np.ndarray:
    return np.array(dataclasses.astuple(values), dtype=float)


def one_hot_batch(mask: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(mask[None, None].astype(np.float32))


@pytest.mark.parametrize("ndim", [2, 3])
def test_medpy_convention_equals_medpy(ndim):
    spacing = SPACING[ndim]
    for prediction, reference in pairs(ndim):
        scores = binary_scores(prediction, reference, spacing)
        assert scores.dice == pytest.approx(medpy_binary.dc(prediction, reference), rel=1e-12)
        assert scores.iou == pytest.approx(medpy_binary.jc(prediction, reference), rel=1e-12)
        assert scores.hd95 == pytest.approx(medpy_binary.hd95(prediction, reference, spacing), rel=1e-12)
        # medpy <= 0.4's assd: the mean of the two directed means (medpy 0.5 pools them, see the monai test)
        directed_means = (medpy_binary.asd(prediction, reference, spacing) + medpy_binary.asd(reference, prediction, spacing)) / 2
        assert scores.assd == pytest.approx(directed_means, rel=1e-12)
        assert scores.hd95 != pytest.approx(binary_scores(prediction, reference).hd95)  # the spacing is used


@pytest.mark.parametrize("ndim", [2, 3])
def test_directed_distances_equal_medpy_full_volume_transform(ndim):
    """The crop to the joint box changes no distance: compare with the uncropped medpy recipe, voxel for voxel."""
    spacing = SPACING[ndim]
    for prediction, reference in pairs(ndim):
        to_reference, to_prediction = directed_surface_distances(prediction, reference, spacing)
        for source, target, ours in ((prediction, reference, to_reference), (reference, prediction, to_prediction)):
            source_surface = source ^ binary_erosion(source)
            target_surface = target ^ binary_erosion(target)
            full = distance_transform_edt(~target_surface, sampling=spacing)[source_surface]
            np.testing.assert_allclose(ours, full, rtol=1e-12, atol=0)


@pytest.mark.parametrize("ndim", [2, 3])
def test_monai_convention_equals_monai(ndim):
    spacing = SPACING[ndim]
    for prediction, reference in pairs(ndim):
        scores = binary_scores(prediction, reference, spacing, convention="monai")
        p, r = one_hot_batch(prediction), one_hot_batch(reference)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected_hd95 = float(compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=list(spacing)))
            expected_assd = float(compute_average_surface_distance(p, r, include_background=True, symmetric=True,
                                                                   spacing=list(spacing)))
        assert scores.dice == pytest.approx(float(compute_dice(p, r, include_background=True)), rel=1e-6)
        assert scores.iou == pytest.approx(float(compute_iou(p, r, include_background=True)), rel=1e-6)
        assert scores.hd95 == pytest.approx(expected_hd95, rel=1e-6)  # MONAI returns float32
        assert scores.assd == pytest.approx(expected_assd, rel=1e-6)
        # medpy 0.5's assd pools both directed sets, as MONAI's symmetric ASD does
        assert scores.assd == pytest.approx(medpy_binary.assd(prediction, reference, spacing), rel=1e-12)


def test_conventions_differ_as_documented_on_a_hand_computed_case():
    """One voxel at (2, 0) against a row of three at (0, 0..2): directed sets [2] and [2, sqrt5, sqrt8]."""
    prediction, reference = np.zeros((3, 3), bool), np.zeros((3, 3), bool)
    prediction[2, 0] = True
    reference[0, :] = True
    s5, s8 = math.sqrt(5), math.sqrt(8)
    medpy = binary_scores(prediction, reference)
    # pooled [2, 2, s5, s8]: rank 0.95 * 3 = 2.85 between s5 and s8
    assert medpy.hd95 == pytest.approx(s5 + 0.85 * (s8 - s5), rel=1e-12)
    assert medpy.assd == pytest.approx((2 + (2 + s5 + s8) / 3) / 2, rel=1e-12)
    monai = binary_scores(prediction, reference, convention="monai")
    # max(95th of [2], 95th of [2, s5, s8] = rank 1.9 between s5 and s8)
    assert monai.hd95 == pytest.approx(s5 + 0.9 * (s8 - s5), rel=1e-12)
    assert monai.assd == pytest.approx((2 + 2 + s5 + s8) / 4, rel=1e-12)
    assert medpy.dice == monai.dice == 0.0
    assert hd95(prediction, reference, spacing=(2.0, 1.0)) == pytest.approx(
        np.percentile([4, 4, math.sqrt(17), math.sqrt(20)], 95), rel=1e-12)


def test_single_voxels_with_anisotropic_spacing_by_hand():
    prediction, reference = np.zeros((5, 6, 2), bool), np.zeros((5, 6, 2), bool)
    prediction[0, 0, 0] = True
    reference[3, 4, 1] = True
    expected = math.sqrt((3 * 2.0) ** 2 + (4 * 1.0) ** 2 + (1 * 3.0) ** 2)
    for convention in ("medpy", "monai"):
        assert hd95(prediction, reference, (2.0, 1.0, 3.0), convention) == pytest.approx(expected, rel=1e-12)
        assert assd(prediction, reference, (2.0, 1.0, 3.0), convention) == pytest.approx(expected, rel=1e-12)


def test_empty_masks_nan_policy():
    empty, mask = np.zeros((4, 5), bool), np.zeros((4, 5), bool)
    mask[1:3, 1:4] = True
    assert np.isnan(as_scores(binary_scores(empty, empty))).all()
    for prediction, reference in ((empty, mask), (mask, empty)):
        scores = binary_scores(prediction, reference, cap=50)
        assert (scores.dice, scores.iou) == (0.0, 0.0)
        assert np.isnan(scores.hd95) and np.isnan(scores.assd)  # the cap does not turn NaN into a number
    assert np.isnan(dice(empty, empty)) and np.isnan(iou(empty, empty))
    assert np.isnan(hd95(empty, mask, convention="monai")) and np.isnan(assd(mask, empty))


def test_empty_masks_sam_tta_policy_and_cap():
    empty, mask = np.zeros((4, 5), bool), np.zeros((4, 5), bool)
    mask[1:3, 1:4] = True
    assert binary_scores(empty, empty, empty="sam_tta", cap=50) == SegmentationScores(1.0, 1.0, 0.0, 0.0)
    assert binary_scores(empty, empty, empty="sam_tta") == SegmentationScores(1.0, 1.0, 0.0, 0.0)
    for prediction, reference in ((empty, mask), (mask, empty)):
        assert binary_scores(prediction, reference, empty="sam_tta", cap=50) == SegmentationScores(0.0, 0.0, 50.0, 50.0)
        without_cap = binary_scores(prediction, reference, empty="sam_tta")
        assert (without_cap.dice, without_cap.iou) == (0.0, 0.0)
        assert np.isnan(without_cap.hd95) and np.isnan(without_cap.assd)  # no cap: NaN, never inf
    # both non-empty: computed as usual, each distance clipped at the cap
    far_a, far_b = np.zeros((3, 120), bool), np.zeros((3, 120), bool)
    far_a[1, 5], far_b[1, 105] = True, True
    assert binary_scores(far_a, far_b, empty="sam_tta") == SegmentationScores(0.0, 0.0, 100.0, 100.0)
    assert binary_scores(far_a, far_b, empty="sam_tta", cap=50) == SegmentationScores(0.0, 0.0, 50.0, 50.0)
    assert binary_scores(far_a, far_b, cap=50) == SegmentationScores(0.0, 0.0, 50.0, 50.0)
    assert hd95(far_a, far_b, spacing=(1.0, 0.2), cap=50) == pytest.approx(20.0)  # below the cap: unchanged


def test_per_class_and_batch_equal_looping_binary_scores():
    rng = np.random.default_rng(7)
    spacing = SPACING[3]
    truth = np.zeros(SHAPE[3], np.int64)
    predicted = np.zeros(SHAPE[3], np.int64)
    for label in (1, 2, 3):
        truth[blob(rng, SHAPE[3], 0.5)] = label
        predicted[blob(rng, SHAPE[3], 0.5)] = label
    predicted[predicted == 3] = 0  # class 3 missing from the prediction; class 4 in neither
    classes = [1, 2, 3, 4]
    for empty in ("nan", "sam_tta"):
        scores = per_class_scores(predicted, truth, classes, spacing, "monai", empty, 50.0)
        assert list(scores) == classes
        for label in classes:
            np.testing.assert_array_equal(as_scores(scores[label]),
                                          as_scores(binary_scores(predicted == label, truth == label, spacing, "monai", empty, 50.0)))
    assert np.isnan(scores_nan := as_scores(per_class_scores(predicted, truth, [4])[4])).all(), scores_nan
    for ndim in (2, 3):
        batch = pairs(ndim, count=3, seed=11)
        predictions, references = np.stack([p for p, _ in batch]), np.stack([r for _, r in batch])
        predictions[1] = False
        batched = batch_scores(predictions, references, SPACING[ndim], empty="sam_tta", cap=50)
        looped = [binary_scores(p, r, SPACING[ndim], empty="sam_tta", cap=50) for p, r in zip(predictions, references)]
        assert batched == looped and batched[1].hd95 == 50.0


def test_bad_input_is_refused_with_the_problem_named():
    mask = np.ones((4, 4), bool)
    with pytest.raises(ValueError, match="shapes differ"):
        dice(mask, np.ones((4, 5), bool))
    with pytest.raises(ValueError, match="spacing must be 2 positive numbers"):
        hd95(mask, mask, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="spacing must be 2 positive numbers"):
        hd95(mask, mask, spacing=(1.0, 0.0))
    with pytest.raises(ValueError, match="convention must be one of"):
        assd(mask, mask, convention="deepmind")
    with pytest.raises(ValueError, match="empty must be one of"):
        binary_scores(mask, mask, empty="zero")
    with pytest.raises(ValueError, match="2-D or 3-D"):
        dice(np.ones(4, bool), np.ones(4, bool))
    with pytest.raises(ValueError, match="non-empty"):
        directed_surface_distances(mask, np.zeros_like(mask))
