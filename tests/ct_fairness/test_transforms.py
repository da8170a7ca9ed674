"""Preprocessing (window, resample, crop) and the training patch chain."""
import numpy as np
import pytest
import torch

from stages.ct_fairness.transforms import (
    crop_around_organs,
    crop_window,
    load_preprocessed,
    organ_losses,
    preprocess_case,
    preprocessing_chain,
    training_chain,
)

torch.set_num_threads(1)


def test_window_maps_hu_linearly_to_unit_range_and_clips():
    hu = np.full((8, 8, 8), 37.5, dtype=np.float32)
    hu[0, 0, 0], hu[1, 1, 1], hu[2, 2, 2] = -1000.0, 250.0, 3000.0
    label = np.zeros_like(hu, dtype=np.uint8)
    image, _ = preprocess_case(hu, label, (1.0, 1.0, 1.0), preprocessing_chain((-175.0, 250.0), (1.0, 1.0, 1.0), (8, 8, 8)))
    assert image.shape == (1, 8, 8, 8)
    assert image[0, 4, 4, 4] == pytest.approx((37.5 + 175.0) / 425.0)
    assert image[0, 1, 1, 1] == pytest.approx(1.0) and image[0, 2, 2, 2] == pytest.approx(1.0)
    assert image.min() >= 0.0


def test_resampling_changes_grid_and_keeps_label_values():
    hu = np.full((20, 20, 10), -1000.0, dtype=np.float32)
    hu[2:18, 2:18, :] = 40.0                                 # body
    label = np.zeros(hu.shape, dtype=np.uint8)
    label[4:10, 4:10, 2:8] = 1
    label[12:16, 12:16, 4:6] = 4
    chain = preprocessing_chain((-175.0, 250.0), (2.0, 2.0, 2.0), (12, 12, 8))
    image, resampled = preprocess_case(hu, label, (1.0, 1.0, 2.0), chain)
    assert image.shape == resampled.shape == (1, 12, 12, 8)
    assert set(np.unique(resampled)) == {0, 1, 4}            # nearest neighbour: no new label values
    # 1 mm -> 2 mm in x and y halves the voxel count of each organ in-plane; z spacing unchanged
    assert (resampled == 1).sum() == pytest.approx((label == 1).sum() / 4, rel=0.2)
    assert (image[resampled > 0] > 0.3).all()                # organs stay inside the body after cropping


def test_training_chain_yields_patches(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.random((1, 20, 16, 12)).astype(np.float32)
    label = np.zeros((1, 20, 16, 12), dtype=np.uint8)
    label[0, 5:9, 5:9, 3:6] = 2
    path = tmp_path / "case.npz"
    np.savez(path, image=image, label=label)
    loaded = load_preprocessed({"case": "c", "path": str(path)})
    assert loaded["image"].shape == (1, 20, 16, 12)
    chain = training_chain((8, 8, 8), 3, 1.0, [2], 0.5, 0.1, 0.1)
    chain.set_random_state(seed=0)
    patches = chain({"case": "c", "path": str(path)})
    assert len(patches) == 3
    for patch in patches:
        assert tuple(patch["image"].shape) == (1, 8, 8, 8) and tuple(patch["label"].shape) == (1, 8, 8, 8)
        assert (patch["label"] == 2).any()                  # positive_fraction 1: every patch centred on an organ
        assert "label_fg_indices" not in patch


def test_an_off_centre_organ_of_a_whole_body_scan_survives_the_crop():
    """Issue 18 item 1: a 600 mm scan with an organ 460-540 mm up (the old body + centre crop left 0 of it);
    its voxel count on the 8 mm grid checked against the native count scaled by the voxel volumes."""
    hu = np.full((40, 40, 150), 40.0, dtype=np.float32)         # 4 mm voxels, body everywhere
    label = np.zeros(hu.shape, dtype=np.uint8)
    label[10:30, 10:30, 115:135] = 2                            # z 460-540 mm
    chain = preprocessing_chain((-175.0, 250.0), (8.0, 8.0, 8.0), (16, 16, 20))
    _, resampled = preprocess_case(hu, label, (4.0, 4.0, 4.0), chain)
    assert resampled.shape == (1, 16, 16, 20)
    assert (resampled == 2).sum() == pytest.approx((label == 2).sum() / 8, rel=0.15)
    losses = organ_losses([0.0, (label == 2).sum() * 64 / 1000, 0.0, 0.0], [int((resampled == i).sum()) for i in range(1, 5)], (8.0, 8.0, 8.0))
    assert np.isnan(losses[0]) and abs(losses[1]) < 0.15


def test_crop_window_centres_on_the_organs_and_stays_inside():
    image = np.zeros((1, 30, 10, 10), dtype=np.float32)
    label = np.zeros((1, 30, 10, 10), dtype=np.uint8)
    label[0, 20:24, 4:6, 4:6] = 1
    cropped_image, cropped = crop_around_organs(image, label, (8, 14, 10))
    assert cropped.shape == (1, 8, 14, 10) and cropped.sum() == label.sum()     # y padded 2 + 2, nothing lost
    assert np.nonzero(cropped[0])[0].tolist()[0] == 2                          # window x 18..26: organ at 2..5
    assert crop_window([29.0], [8], [30]) == [(22, 30)]                        # pushed back inside the image
    assert crop_window([1.0], [8], [30]) == [(0, 8)]
