"""Turning challenge arrays into inputs of the prompt-conditioned network, and back.

Shared by cmr_recon-train and cmr_recon-evaluate so both build inputs the same way:
``adjacent_frames`` neighbours on each side (wrapping cyclically over the cardiac cycle),
k-space scaled by the 99th percentile of the zero-filled centre frame, and the condition
``(modality, pattern, acceleration bucket)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stages.cmr_recon.io import MODALITY_FOLDERS
from stages.cmr_recon.masks import PATTERNS
from stages.cmr_recon.model import PromptUnrolledNetConfig
from stages.cmr_recon.transforms import ifft2c, rss

MODALITIES: tuple[str, ...] = tuple(MODALITY_FOLDERS)
ACCELERATION_BUCKETS: tuple[int, ...] = (4, 8, 10, 12, 16, 20, 24)


def network_config(size: Any) -> PromptUnrolledNetConfig:
    """The network of a params ``network`` section; the vocabulary sizes come from this module."""
    return PromptUnrolledNetConfig(**size.model_dump(), num_modalities=len(MODALITIES), num_patterns=len(PATTERNS),
                                   num_accelerations=len(ACCELERATION_BUCKETS))


def condition_indices(modality: str, pattern: str, acceleration: int) -> tuple[int, int, int]:
    """Embedding indices; an acceleration between buckets takes the nearest one."""
    bucket = int(np.argmin([abs(acceleration - b) for b in ACCELERATION_BUCKETS]))
    return MODALITIES.index(modality), PATTERNS.index(pattern), bucket


def context_indices(num_frames: int, centre: int, adjacent: int) -> list[int]:
    """Frame indices ``centre - adjacent .. centre + adjacent``, wrapped cyclically."""
    return [(centre + offset) % num_frames for offset in range(-adjacent, adjacent + 1)]


def input_scale(kus_centre: np.ndarray) -> float:
    """99th percentile of the zero-filled RSS of one ``(nc, ny, nx)`` frame (never zero)."""
    return float(max(np.percentile(rss(ifft2c(kus_centre), coil_axis=0), 99), 1e-12))


@dataclass
class NetworkInputs:
    masked_kspace: torch.Tensor  # (B, F, C, H, W) complex64, scaled
    mask: torch.Tensor           # (B, F, 1, H, W) float32
    acs_mask: torch.Tensor       # (B, H, W) bool
    condition: torch.Tensor      # (B, 3) int64
    scale: torch.Tensor          # (B,) float32: multiply outputs by it

    def to(self, device: torch.device) -> NetworkInputs:
        return NetworkInputs(*(t.to(device) for t in (self.masked_kspace, self.mask, self.acs_mask, self.condition, self.scale)))


def build_inputs(
    kus: np.ndarray, mask: np.ndarray, acs: np.ndarray, slices_frames: list[tuple[int, int]],
    adjacent: int, condition: tuple[int, int, int],
) -> NetworkInputs:
    """Inputs for the (slice, frame) pairs of one file.

    ``kus`` is undersampled ``(nt, nz, nc, ny, nx)`` k-space, ``mask`` ``(nt, ny, nx)``,
    ``acs`` the ``(ny, nx)`` autocalibration region.
    """
    nt = kus.shape[0]
    kspaces, masks, scales = [], [], []
    for z, t in slices_frames:
        frames = context_indices(nt, t, adjacent)
        scale = input_scale(kus[t, z])
        kspaces.append(kus[frames, z] / scale)
        masks.append(mask[[f % mask.shape[0] for f in frames]][:, None])
        scales.append(scale)
    batch = len(slices_frames)
    return NetworkInputs(
        masked_kspace=torch.from_numpy(np.stack(kspaces).astype(np.complex64)),
        mask=torch.from_numpy(np.stack(masks).astype(np.float32)),
        acs_mask=torch.from_numpy(np.broadcast_to(acs, (batch, *acs.shape)).copy()),
        condition=torch.tensor([condition] * batch, dtype=torch.int64),
        scale=torch.tensor(scales, dtype=torch.float32),
    )


@torch.no_grad()
def reconstruct(model: torch.nn.Module, inputs: NetworkInputs, device: torch.device, batch_size: int = 8) -> np.ndarray:
    """Magnitude images ``(B, ny, nx)`` in the input's original scale."""
    model.eval()
    outputs = []
    total = inputs.condition.shape[0]
    for start in range(0, total, batch_size):
        part = NetworkInputs(*(t[start:start + batch_size] for t in (
            inputs.masked_kspace, inputs.mask, inputs.acs_mask, inputs.condition, inputs.scale))).to(device)
        image = model(part.masked_kspace, part.mask, part.acs_mask, part.condition)
        outputs.append((image * part.scale[:, None, None]).float().cpu().numpy())
    return np.concatenate(outputs)


def load_model(models_dir: Path, device: torch.device) -> torch.nn.Module:
    """The network saved by cmr_recon-train (``model.pt``: state dict and config), in eval mode."""
    saved = torch.load(models_dir / "model.pt", map_location="cpu", weights_only=True)
    model = PromptUnrolledNetConfig(**saved["config"]).build()
    model.load_state_dict(saved["state_dict"])
    return model.to(device).eval()
