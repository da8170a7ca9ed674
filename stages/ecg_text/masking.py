"""Lead and segment masks (K-MERL's dynamic lead masking and lead-independent segment masking; rates are ours).

Masks are boolean, True = present / visible. Leads are in canonical order (stages.ecg_text.io.CANONICAL_LEADS).
"""
from __future__ import annotations

import numpy as np
import torch

from stages.ecg_text.io import CANONICAL_LEADS

LEAD_GROUPS: dict[str, tuple[str, ...]] = {
    "limb_6": ("I", "II", "III", "aVR", "aVL", "aVF"),
    "precordial_6": ("V1", "V2", "V3", "V4", "V5", "V6"),
}


def leads_mask(leads: list[str] | tuple[str, ...]) -> np.ndarray:
    """(12,) bool, True for the named leads; an unknown name fails naming it."""
    unknown = sorted(set(leads) - set(CANONICAL_LEADS))
    if unknown:
        raise ValueError(f"unknown lead(s) {unknown}; leads are {list(CANONICAL_LEADS)}")
    return np.asarray([lead in leads for lead in CANONICAL_LEADS])


def random_k_masks(count: int, k: int, seed: int) -> np.ndarray:
    """(count, 12): each row a seeded random subset of exactly k leads."""
    if not 1 <= k <= len(CANONICAL_LEADS):
        raise ValueError(f"k must be in 1..12, got {k}")
    rng = np.random.default_rng(seed)
    masks = np.zeros((count, len(CANONICAL_LEADS)), dtype=bool)
    for row in masks:
        row[rng.choice(len(CANONICAL_LEADS), size=k, replace=False)] = True
    return masks


def dynamic_lead_masks(batch: int, full_probability: float, group_probability: float,
                       generator: torch.Generator) -> torch.Tensor:
    """(batch, 12) training lead masks: all 12, a named group, or a random subset of random size k >= 1."""
    n = len(CANONICAL_LEADS)
    draw = torch.rand(batch, generator=generator)
    masks = torch.ones(batch, n, dtype=torch.bool)
    groups = [torch.from_numpy(leads_mask(list(g))) for g in LEAD_GROUPS.values()]
    for i in range(batch):
        if draw[i] < full_probability:
            continue
        if draw[i] < full_probability + group_probability:
            masks[i] = groups[int(torch.randint(len(groups), (1,), generator=generator))]
        else:
            k = int(torch.randint(1, n + 1, (1,), generator=generator))
            chosen = torch.randperm(n, generator=generator)[:k]
            masks[i] = False
            masks[i, chosen] = True
    return masks


def segment_masks(present: torch.Tensor, tokens: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """(batch, 12, tokens) visibility: absent leads hidden; in each present lead one contiguous run of
    ``round(ratio * tokens)`` time tokens hidden, its start drawn per lead (lead-independent)."""
    batch, n = present.shape
    run = int(round(ratio * tokens))
    visible = present[:, :, None].expand(batch, n, tokens).clone()
    if run == 0:
        return visible
    run = min(run, tokens - 1)   # every present lead keeps at least one token
    starts = torch.randint(0, tokens - run + 1, (batch, n), generator=generator)
    positions = torch.arange(tokens)[None, None, :]
    hidden = (positions >= starts[:, :, None]) & (positions < starts[:, :, None] + run)
    return visible & ~hidden
