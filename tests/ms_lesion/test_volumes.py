"""Preprocessing numerics against hand-computed cases and scipy."""
import numpy as np
import pytest
from scipy import ndimage

from stages.ms_lesion.synthetic import bounding_box
from stages.ms_lesion.volumes import brain_centre, centre_crop_or_pad, normalise, otsu_brain_mask, resample, white_matter_prior


def test_resample_changes_the_grid_by_the_spacing_ratio():
    volume = np.random.default_rng(0).random((20, 30, 10)).astype(np.float32)
    assert resample(volume, (2.0, 2.0, 4.0), 4.0, 1).shape == (10, 15, 10)
    assert resample(volume, (4.0, 4.0, 4.0), 4.0, 1) is volume
    mask = np.zeros((20, 20, 20), np.uint8)
    mask[5:15, 5:15, 5:15] = 1
    assert set(np.unique(resample(mask, (1.0,) * 3, 2.0, 0)).tolist()) == {0, 1}


def test_centre_crop_or_pad_by_hand():
    volume = np.arange(5 * 6 * 7).reshape(5, 6, 7)
    out = centre_crop_or_pad(volume, (0, 3, 3), (2, 2, 2))  # x window [-1, 1): one row of padding
    assert out.shape == (2, 2, 2) and (out[0] == 0).all() and np.array_equal(out[1], volume[0, 2:4, 2:4])


def test_normalise_is_a_z_score_inside_the_brain():
    rng = np.random.default_rng(1)
    image = rng.normal(300, 40, (10, 10, 10)).astype(np.float32)
    brain = np.zeros(image.shape, bool)
    brain[2:8, 2:8, 2:8] = True
    out = normalise(image, brain)
    assert out[brain].mean() == pytest.approx(0, abs=1e-5) and out[brain].std() == pytest.approx(1, abs=1e-4)
    assert (out[~brain] == 0).all()


def test_otsu_mask_finds_a_bright_ball_and_fills_it():
    grid = np.mgrid[:30, :30, :30]
    ball = ((grid - 15) ** 2).sum(0) <= 81
    image = np.where(ball, 1.0, 0.02).astype(np.float32)
    image[15, 15, 15] = 0.0  # a dark hole inside the brain
    mask = otsu_brain_mask(image)
    # half the Otsu level on the smoothed scan (ours) keeps the whole ball and at most one voxel beyond its edge
    assert mask[15, 15, 15] and mask[ball].all() and not mask[~ndimage.binary_dilation(ball, iterations=1)].any()
    assert brain_centre(mask) == (15, 15, 15)


def test_white_matter_prior_fills_the_brain_box():
    template = np.ones((4, 4, 4), np.float32)
    brain = np.zeros((20, 20, 20), bool)
    brain[3:11, 5:13, 2:18] = True
    prior = white_matter_prior(template, brain)
    assert bounding_box(prior > 0) == bounding_box(brain) and prior.max() == pytest.approx(1.0)
