"""Dice and HD95 per organ against hand-computed volumes, a scipy distance-transform reference and MONAI."""
import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage

from stages.ct_fairness.metrics import dice_and_hd95, missed_organs
from stages.ct_fairness.organs import NUM_CLASSES, amos_to_organ_table
from stages.ct_fairness.phantom import Effects, Scanner, render_phantom, subject_anatomy

torch.set_num_threads(1)


def one_hot(labels: np.ndarray, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """``(X, Y, Z)`` integer labels -> ``(1, C, X, Y, Z)`` float one-hot, MONAI's layout."""
    encoded = torch.nn.functional.one_hot(torch.as_tensor(labels).long(), num_classes)
    return encoded.movedim(-1, 0)[None].float()


def monai_dice_and_hd95(prediction: np.ndarray, truth: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """What ct_fairness computed before the shared module: MONAI's metrics, infinity read as NaN."""
    from monai.metrics import DiceMetric, HausdorffDistanceMetric

    predicted, target = one_hot(prediction), one_hot(truth)
    dice = DiceMetric(include_background=False, reduction="none", ignore_empty=True)(predicted, target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd95 = HausdorffDistanceMetric(include_background=False, percentile=95, reduction="none")(
            predicted, target, spacing=[float(s) for s in spacing])
    hd95 = hd95[0].numpy().astype(np.float64)
    hd95[~np.isfinite(hd95)] = np.nan
    return dice[0].numpy().astype(np.float64), hd95


def box(shape, lo, hi, value=1):
    volume = np.zeros(shape, dtype=np.uint8)
    volume[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = value
    return volume


def reference_hd95(a: np.ndarray, b: np.ndarray, spacing) -> float:
    """Symmetric 95th-percentile surface distance: border voxels (mask minus its erosion), Euclidean EDT in mm."""
    def border(mask):
        return mask & ~ndimage.binary_erosion(mask)

    edges_a, edges_b = border(a.astype(bool)), border(b.astype(bool))
    a_to_b = ndimage.distance_transform_edt(~edges_b, sampling=spacing)[edges_a]
    b_to_a = ndimage.distance_transform_edt(~edges_a, sampling=spacing)[edges_b]
    return max(np.percentile(a_to_b, 95), np.percentile(b_to_a, 95))


def phantom_labels(seed: int) -> tuple[np.ndarray, tuple[float, ...]]:
    scanner = Scanner(spacing=(8.0, 8.0, 10.0), fov_mm=(336.0, 252.0, 224.0))
    _, amos = render_phantom(subject_anatomy("F" if seed % 2 else "M", 40 + seed, Effects(), np.random.default_rng(seed)), scanner)
    table = amos_to_organ_table()
    return np.vectorize(table.get)(amos).astype(np.uint8), scanner.spacing


def test_equals_monai_on_phantom_label_maps():
    """The shared module (MONAI convention) against MONAI's own metrics on the study's phantoms with segmentation errors."""
    rng = np.random.default_rng(5)
    for seed in range(3):
        truth, spacing = phantom_labels(seed)
        prediction = np.roll(truth, 1, axis=seed % 3)                      # a one-voxel misregistration
        boundary = ndimage.morphological_gradient(truth, size=3) > 0
        prediction[boundary & (rng.random(truth.shape) < 0.3)] = 0        # ragged edges
        if seed == 1:
            prediction[prediction == 4] = 0                                # the pancreas missed
            prediction[2:4, 2:4, 2:4] = 3                                  # a far-away false positive
        if seed == 2:
            truth = truth.copy()
            truth[truth == 2] = 0                                          # right kidney absent from the truth only
        dice, hd95 = dice_and_hd95(prediction, truth, spacing)
        expected_dice, expected_hd95 = monai_dice_and_hd95(prediction, truth, spacing)
        # MONAI leaves a missed organ undefined; ours is the worst case, the image diagonal in mm
        missed = np.array([(truth == o).any() and not (prediction == o).any() for o in range(1, 5)])
        assert missed.any() == (seed == 1)
        expected_hd95 = np.where(missed, np.linalg.norm(np.array(truth.shape) * np.array(spacing)), expected_hd95)
        np.testing.assert_allclose(dice, expected_dice, rtol=1e-6)        # MONAI computes in float32
        np.testing.assert_allclose(hd95, expected_hd95, rtol=1e-5)        # and interpolates the percentile in float32
        assert np.isfinite(dice).sum() >= 3 and np.isfinite(hd95).sum() >= 3
    assert np.isnan(dice[1]) and np.isnan(hd95[1])


def test_dice_matches_hand_counts():
    shape = (12, 10, 8)
    truth = box(shape, (2, 2, 2), (6, 6, 6), 1)           # liver: 64 voxels
    prediction = box(shape, (3, 2, 2), (7, 6, 6), 1)      # shifted by one: 48 overlap
    truth[8:10, 1:3, 1:3] = 3                             # left kidney: 8 voxels, predicted as 4 of them
    prediction[8:10, 1:3, 1:2] = 3
    truth[1, 8, 1] = 4                                    # pancreas: one voxel, missed entirely
    dice, _ = dice_and_hd95(prediction, truth, (1.0, 1.0, 1.0))
    assert dice[0] == pytest.approx(2 * 48 / (64 + 64))
    assert math.isnan(dice[1])                            # right kidney absent from the truth
    assert dice[2] == pytest.approx(2 * 4 / (8 + 4))
    assert dice[3] == 0.0


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 0.8, 2.5), (3.0, 1.5, 1.0)])
def test_hd95_matches_scipy_reference_with_spacing(spacing):
    rng = np.random.default_rng(1)
    shape = (20, 18, 16)
    centre = np.array(shape) / 2
    grid = np.indices(shape).astype(float)
    truth_mask = (((grid - centre[:, None, None, None]) / np.array([6, 5, 4])[:, None, None, None]) ** 2).sum(0) <= 1
    noisy = truth_mask ^ (ndimage.binary_dilation(truth_mask) & (rng.random(shape) < 0.3))
    prediction_mask = noisy.copy()
    prediction_mask[2:4, 2:4, 2:4] = True                 # a far-away false positive blob
    truth, prediction = truth_mask.astype(np.uint8), prediction_mask.astype(np.uint8)
    _, hd95 = dice_and_hd95(prediction, truth, spacing)
    assert hd95[0] == pytest.approx(reference_hd95(prediction_mask, truth_mask, spacing), rel=1e-5)
    assert all(math.isnan(v) for v in hd95[1:])           # organs absent from both


def test_hd95_of_a_pure_shift_is_the_shift_in_mm():
    truth = box((16, 16, 16), (4, 4, 4), (10, 10, 10))
    prediction = box((16, 16, 16), (6, 4, 4), (12, 10, 10))
    _, hd95 = dice_and_hd95(prediction, truth, (1.5, 1.0, 1.0))
    assert hd95[0] == pytest.approx(2 * 1.5)


def test_a_missed_organ_gets_the_image_diagonal_as_hd95():
    """Issue 18 item 2: truth present, prediction empty -> Dice 0 and the worst-case HD95 (the image
    diagonal in mm, by hand: sqrt((10*1.5)^2 + (12*1)^2 + (8*2.5)^2)); an organ absent from the truth stays NaN."""
    truth = box((10, 12, 8), (2, 2, 2), (6, 6, 6), 2)
    dice, hd95 = dice_and_hd95(np.zeros_like(truth), truth, (1.5, 1.0, 2.5))
    assert dice[1] == 0.0 and hd95[1] == pytest.approx(math.sqrt(15.0 ** 2 + 12.0 ** 2 + 20.0 ** 2))
    assert math.isnan(hd95[0]) and math.isnan(dice[0])
    assert missed_organs(np.zeros_like(truth), truth).tolist() == [False, True, False, False]
    assert not missed_organs(truth, truth).any()
