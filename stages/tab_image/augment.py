"""Views for pre-training and fine-tuning: image augmentation, table corruption and table masking.

Table corruption is TIP's / SCARF's: ``int(N * rate)`` features per sample redrawn from the
column's empirical marginal (rate 0.3, official). Masking picks ``int(N * rate)`` features per
sample (rate 0.5, official). The image augmentation is ours in kind at smoke scale (random flip,
random resized crop from ``crop_scale`` to 1, brightness/contrast jitter), implemented on tensors;
the official DVM and cardiac pipelines (colour jitter, grayscale, blur, rotation) are in README.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F


def random_subsets(n_rows: int, n_cols: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean ``(n_rows, n_cols)``: ``count`` distinct columns per row."""
    chosen = np.zeros((n_rows, n_cols), dtype=bool)
    if count:
        order = np.argsort(rng.random((n_rows, n_cols)), axis=1)[:, :count]
        np.put_along_axis(chosen, order, True, axis=1)
    return chosen


def corrupt(table: np.ndarray, marginals: np.ndarray, rate: float, rng: np.random.Generator,
            available: np.ndarray | None = None) -> np.ndarray:
    """Replace ``int(N * rate)`` cells per row with draws from each column's marginal (``marginals`` = train table).

    With ``available`` (True = observed), the marginal is drawn only from observed cells, as the
    official loader does with its missing mask.
    """
    out = table.copy()
    replace = random_subsets(*table.shape, int(table.shape[1] * rate), rng)
    for column in range(table.shape[1]):
        rows = np.flatnonzero(replace[:, column])
        pool = marginals[:, column] if available is None else marginals[available[:, column], column]
        if rows.size and pool.size:
            out[rows, column] = rng.choice(pool, size=rows.size)
    return out


def augment_images(images: torch.Tensor, crop_scale: float, generator: torch.Generator) -> torch.Tensor:
    """Random flip, random resized crop (area ``crop_scale``..1) and brightness/contrast jitter, per image."""
    b, _, h, w = images.shape
    flips = torch.rand(b, generator=generator) < 0.5
    images = torch.where(flips[:, None, None, None], images.flip(-1), images)
    scale = crop_scale + (1 - crop_scale) * torch.rand(b, generator=generator)
    side = scale.sqrt()
    shift = (1 - side)[:, None] * (2 * torch.rand(b, 2, generator=generator) - 1)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = side, side
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(images.device), list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, align_corners=False, padding_mode="border")
    brightness = (0.8 + 0.4 * torch.rand(b, 1, 1, 1, generator=generator)).to(images.device)
    contrast = (0.8 + 0.4 * torch.rand(b, 1, 1, 1, generator=generator)).to(images.device)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return ((images - mean) * contrast + mean * brightness).clamp(0, 1)
