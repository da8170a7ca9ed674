"""Tests for stages/cmr_recon/losses.py against scikit-image's SSIM and hand-computed L1.

scikit-image filters with reflected borders but averages the SSIM map only over [3:-3, 3:-3] for a 7 x 7
window, i.e. over the windows that lie fully inside the image; the loss uses a valid convolution, which
computes exactly those windows. The two definitions are therefore identical, and the comparison is tight.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import structural_similarity

from stages.cmr_recon.losses import reconstruction_loss, ssim_loss, ssim_per_image

torch.set_num_threads(1)


def smooth_pair(seed: int, shape: tuple[int, int] = (33, 28)) -> tuple[np.ndarray, np.ndarray]:
    """A smooth non-negative image and a noisy, blurred version of it."""
    rng = np.random.default_rng(seed)
    target = np.abs(gaussian_filter(rng.standard_normal(shape), 3.0)) * 10
    pred = gaussian_filter(target, 1.0) + 0.05 * target.max() * rng.standard_normal(shape)
    return pred, target


def skimage_ssim(pred: np.ndarray, target: np.ndarray, data_range: float) -> float:
    return structural_similarity(
        target, pred, win_size=7, gaussian_weights=False, use_sample_covariance=True,
        K1=0.01, K2=0.03, data_range=data_range,
    )  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ssim_matches_scikit_image_in_float64(seed: int) -> None:
    pred, target = smooth_pair(seed)
    data_range = float(target.max())
    ours = ssim_per_image(torch.from_numpy(pred)[None], torch.from_numpy(target)[None], data_range).item()
    assert ours == pytest.approx(skimage_ssim(pred, target, data_range), abs=1e-10)


def test_ssim_map_equals_scikit_image_full_map_on_the_interior() -> None:
    pred, target = smooth_pair(7)
    data_range = float(target.max())
    _, full_map = structural_similarity(
        target, pred, win_size=7, gaussian_weights=False, use_sample_covariance=True,
        K1=0.01, K2=0.03, data_range=data_range, full=True,
    )  # fmt: skip
    ours = ssim_per_image(torch.from_numpy(pred)[None], torch.from_numpy(target)[None], data_range).item()
    assert ours == pytest.approx(full_map[3:-3, 3:-3].mean(), abs=1e-10)
    assert ours != pytest.approx(full_map.mean(), abs=1e-4)  # the reflected border would change the value


def test_batched_float32_loss_is_one_minus_mean_of_per_image_ssim_with_per_image_ranges() -> None:
    pairs = [smooth_pair(seed) for seed in range(3)]
    ranges = np.array([t.max() for _, t in pairs])
    pred = torch.from_numpy(np.stack([p for p, _ in pairs]).astype(np.float32))
    target = torch.from_numpy(np.stack([t for _, t in pairs]).astype(np.float32))
    expected = 1.0 - np.mean([skimage_ssim(p, t, r) for (p, t), r in zip(pairs, ranges)])
    loss = ssim_loss(pred, target, torch.from_numpy(ranges.astype(np.float32)))
    assert loss.item() == pytest.approx(expected, abs=1e-4)
    # (B, 1, H, W) input is accepted and equivalent
    assert ssim_loss(pred[:, None], target[:, None], torch.from_numpy(ranges)).item() == pytest.approx(loss.item())


def test_ssim_loss_is_zero_for_identical_images_and_positive_otherwise() -> None:
    pred, target = smooth_pair(4)
    t = torch.from_numpy(target)[None]
    assert ssim_loss(t, t, float(target.max())).item() == pytest.approx(0.0, abs=1e-12)
    assert ssim_loss(torch.from_numpy(pred)[None], t, float(target.max())).item() > 0.01


def test_reconstruction_loss_is_ssim_plus_alpha_times_range_normalised_l1() -> None:
    pairs = [smooth_pair(seed, (20, 17)) for seed in (5, 6)]
    pred = np.stack([p for p, _ in pairs])
    target = np.stack([t for _, t in pairs])
    ranges = target.reshape(2, -1).max(axis=1)
    alpha = 0.3
    expected_l1 = np.mean(np.abs(pred - target) / ranges[:, None, None])
    expected = 1.0 - np.mean([skimage_ssim(p, t, r) for p, t, r in zip(pred, target, ranges)]) + alpha * expected_l1
    pred_t = torch.from_numpy(pred).requires_grad_(True)
    loss = reconstruction_loss(pred_t, torch.from_numpy(target), alpha=alpha)
    assert loss.item() == pytest.approx(expected, abs=1e-10)
    loss.backward()
    assert torch.isfinite(pred_t.grad).all() and pred_t.grad.abs().sum() > 0
    # alpha = 0 is the pure SSIM loss; an explicit data range overrides the per-image maximum
    pure = reconstruction_loss(torch.from_numpy(pred), torch.from_numpy(target), alpha=0.0, data_range=2.0)
    assert pure.item() == pytest.approx(ssim_loss(torch.from_numpy(pred), torch.from_numpy(target), 2.0).item())


def test_loss_is_invariant_to_a_common_intensity_scale() -> None:
    pred, target = (torch.from_numpy(a)[None] for a in smooth_pair(8))
    assert reconstruction_loss(pred * 1e-4, target * 1e-4).item() == pytest.approx(
        reconstruction_loss(pred, target).item(), rel=1e-9
    )


def test_bad_inputs_raise() -> None:
    image = torch.rand(2, 16, 16)
    with pytest.raises(ValueError, match="shape"):
        ssim_loss(image, image[:, :, :8], 1.0)
    with pytest.raises(ValueError, match=">= 7"):
        ssim_loss(image[:, :6], image[:, :6], 1.0)
    with pytest.raises(ValueError, match="data_range"):
        ssim_loss(image, image, torch.ones(3))
    with pytest.raises(ValueError, match="positive"):
        reconstruction_loss(image, torch.zeros(2, 16, 16))
