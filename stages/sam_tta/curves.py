"""SBCT's learnable curves in torch: the 12 raw points (official), fixed random curves, and a control-point CNN."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from stages.sam_tta.sbct import INITIAL_RAW_POINTS


def bernstein_basis(t: torch.Tensor) -> torch.Tensor:
    s = 1 - t
    return torch.stack([s ** 3, 3 * t * s ** 2, 3 * t ** 2 * s, t ** 3], dim=-1)


def apply_curves(images: torch.Tensor, raw_points: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` in [0, 1] (gray already replicated) and ``(B or 1, 3, 4)`` raw points -> curved images."""
    points = torch.sigmoid(raw_points)
    if points.dim() == 2:
        points = points.unsqueeze(0)
    basis = bernstein_basis(images)                      # (B, 3, H, W, 4)
    return torch.einsum("bchwk,bck->bchw", basis, points.expand(images.shape[0], -1, -1)).clamp(0.0, 1.0)


class BezierCurves(nn.Module):
    """The 12 learnable raw control points (official init), one curve per channel."""

    def __init__(self, initial: np.ndarray = INITIAL_RAW_POINTS) -> None:
        super().__init__()
        self.raw_points = nn.Parameter(torch.tensor(np.asarray(initial, dtype=np.float32)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return apply_curves(images, self.raw_points)


class ControlPointCNN(nn.Module):
    """The repo's unused alternative: a tiny CNN predicting the raw control points per image.

    Its last layer starts at zero weight with the official initialisation as bias, so before any
    step it applies the same curves as :class:`BezierCurves`. Width is ours.
    """

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.GELU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(width, 12)
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():
            self.head.bias.copy_(torch.from_numpy(INITIAL_RAW_POINTS.reshape(-1)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raw = self.head(self.features(images)).view(-1, 3, 4)
        return apply_curves(images, raw)

    def raw_points_for(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images)).view(-1, 3, 4)


class FixedCurves(nn.Module):
    """The repo's fixed random curves: raw points drawn once (seeded) and never learned."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        generator = np.random.default_rng(seed)
        raw = np.sort(generator.uniform(-2.0, 2.0, size=(3, 4)), axis=1).astype(np.float32)
        self.register_buffer("raw_points", torch.from_numpy(raw))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return apply_curves(images, self.raw_points)
