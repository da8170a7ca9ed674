"""Training losses for the cmr_recon network: SSIM (fastMRI's SSIMLoss definition) and SSIM + L1.

SSIM uses a 7 x 7 uniform window, K1 = 0.01, K2 = 0.03 and the sample covariance (factor N / (N - 1)),
evaluated only where the window lies fully inside the image ("valid" convolution). That equals
scikit-image's ``structural_similarity(..., win_size=7, gaussian_weights=False, use_sample_covariance=True)``
exactly: scikit-image filters with reflected borders but then averages the SSIM map only over
``[3:-3, 3:-3]``, the pixels whose windows never touch the reflected border. With several images the loss is
the mean of the per-image SSIMs (all images in a batch share one size, so this is also the mean of all
window values, as in fastMRI).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_WINDOW = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _as_batch_of_images(x: torch.Tensor, name: str) -> torch.Tensor:
    """(B, H, W) or (B, 1, H, W) -> (B, 1, H, W)."""
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"{name} must have shape (B, H, W) or (B, 1, H, W), got {tuple(x.shape)}")
    if torch.is_complex(x):
        raise ValueError(f"{name} must be real (a magnitude image), got {x.dtype}")
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"{name} is {tuple(x.shape[-2:])}; SSIM needs both sides >= {SSIM_WINDOW}")
    return x


def _per_image_data_range(data_range: torch.Tensor | float, batch: int, like: torch.Tensor) -> torch.Tensor:
    """Scalar or (B,) data range -> (B, 1, 1, 1) tensor on ``like``'s device and dtype."""
    data_range = torch.as_tensor(data_range, dtype=like.dtype, device=like.device)
    if data_range.ndim == 0:
        data_range = data_range.expand(batch)
    if data_range.shape != (batch,):
        raise ValueError(f"data_range must be a scalar or have shape ({batch},), got {tuple(data_range.shape)}")
    return data_range.reshape(batch, 1, 1, 1)


def ssim_per_image(pred: torch.Tensor, target: torch.Tensor, data_range: torch.Tensor | float) -> torch.Tensor:
    """SSIM of each image pair -> (B,), mean over the valid (border-free) 7 x 7 windows.

    Args:
        pred, target: real images (B, H, W) or (B, 1, H, W), H and W >= 7.
        data_range: scalar or (B,) per-image dynamic range (fastMRI uses the target volume's maximum).
    """
    pred = _as_batch_of_images(pred, "pred")
    target = _as_batch_of_images(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    batch = pred.shape[0]
    data_range = _per_image_data_range(data_range, batch, pred)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    window = torch.full((1, 1, SSIM_WINDOW, SSIM_WINDOW), 1.0 / SSIM_WINDOW**2, dtype=pred.dtype, device=pred.device)
    num_points = SSIM_WINDOW**2
    cov_norm = num_points / (num_points - 1)
    mean_p = F.conv2d(pred, window)
    mean_t = F.conv2d(target, window)
    var_p = cov_norm * (F.conv2d(pred * pred, window) - mean_p * mean_p)
    var_t = cov_norm * (F.conv2d(target * target, window) - mean_t * mean_t)
    cov_pt = cov_norm * (F.conv2d(pred * target, window) - mean_p * mean_t)
    ssim_map = ((2 * mean_p * mean_t + c1) * (2 * cov_pt + c2)) / (
        (mean_p**2 + mean_t**2 + c1) * (var_p + var_t + c2)
    )
    return ssim_map.mean(dim=(1, 2, 3))


def ssim_loss(pred: torch.Tensor, target: torch.Tensor, data_range: torch.Tensor | float) -> torch.Tensor:
    """``1 - mean SSIM`` over the batch (fastMRI's SSIMLoss). Shapes as in :func:`ssim_per_image`."""
    return 1.0 - ssim_per_image(pred, target, data_range).mean()


def reconstruction_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 0.1,
    data_range: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """``ssim_loss + alpha * L1``, both computed with the same per-image ``data_range``.

    The L1 term is the mean absolute error divided by each image's data range, so ``alpha`` means the
    same thing whatever the intensity scale of the data (SSIM is scale-free in the same way).

    Args:
        pred, target: real magnitude images (B, H, W) or (B, 1, H, W).
        alpha: weight of the L1 term (0 gives the pure SSIM loss).
        data_range: scalar or (B,); default: each target image's maximum (detached).
    """
    pred = _as_batch_of_images(pred, "pred")
    target = _as_batch_of_images(target, "target")
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    batch = target.shape[0]
    if data_range is None:
        data_range = target.detach().reshape(batch, -1).amax(dim=1)
    per_image_range = _per_image_data_range(data_range, batch, pred)
    if bool((per_image_range <= 0).any()):
        raise ValueError("data_range must be positive for every image (is a target image all zeros?)")
    l1 = ((pred - target).abs() / per_image_range).mean()
    return ssim_loss(pred, target, per_image_range.reshape(batch)) + alpha * l1
