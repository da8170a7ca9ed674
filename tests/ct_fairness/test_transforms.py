"""Preprocessing (window, resample, crop) and the training patch chain."""
import numpy as np
import pytest
import torch

from stages.ct_fairness.transforms import load_preprocessed, preprocess_case, preprocessing_chain, training_chain

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
