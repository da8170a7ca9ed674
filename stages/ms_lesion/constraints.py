"""SegHeD's longitudinal, spatial and volumetric constraints, on probability maps (ours: the equations were not readable).

The forms are the study note's: with sigmoid maps ``p_a1``, ``p_a2`` (all lesions at t1, t2),
``p_n`` (new) and ``p_v`` (vanishing), each ``(B, x, y, z)``, and a white-matter map ``wm``:

- longitudinal: new lies within all-t2 and vanished within all-t1 (``relu(p_n - p_a2) +
  relu(p_v - p_a1)``), new is absent at t1 and vanished absent at t2 (``p_n p_a1 + p_v p_a2``),
  and all-t2 is all-t1 minus vanished plus new (``(p_a2 - (p_a1 - p_v + p_n))^2``); voxel means.
- spatial: the mean of ``p (1 - wm)`` over every map: lesions stay in white matter.
- volumetric: ``|sum p_a2 - sum p_a1 - sum p_n + sum p_v|`` over the total of the four sums:
  the volumes must balance.
"""
from __future__ import annotations

import torch


def longitudinal_loss(p_a1: torch.Tensor, p_a2: torch.Tensor, p_n: torch.Tensor, p_v: torch.Tensor) -> torch.Tensor:
    containment = torch.relu(p_n - p_a2) + torch.relu(p_v - p_a1)
    exclusion = p_n * p_a1 + p_v * p_a2
    balance = (p_a2 - (p_a1 - p_v + p_n)) ** 2
    return (containment + exclusion + balance).mean()


def spatial_loss(probabilities: torch.Tensor, white_matter: torch.Tensor) -> torch.Tensor:
    """``probabilities`` ``(B, C, x, y, z)``; ``white_matter`` ``(B, x, y, z)`` in [0, 1]."""
    return (probabilities * (1.0 - white_matter.unsqueeze(1))).mean()


def volumetric_loss(p_a1: torch.Tensor, p_a2: torch.Tensor, p_n: torch.Tensor, p_v: torch.Tensor,
                    eps: float = 1.0) -> torch.Tensor:
    """Per case ``|V_a2 - V_a1 - V_n + V_v| / (V_a1 + V_a2 + V_n + V_v + eps)``, averaged over the batch."""
    volumes = [p.flatten(1).sum(1) for p in (p_a1, p_a2, p_n, p_v)]
    imbalance = (volumes[1] - volumes[0] - volumes[2] + volumes[3]).abs()
    return (imbalance / (sum(volumes) + eps)).mean()
