"""The one multi-task network: inputs [x_t1, x_t2, x_t2 - x_t1, wm], four sigmoid outputs (all t1, all t2, new, vanishing).

``vnet`` is MONAI's VNet (the summary's 3D V-Net; its input must be a multiple of 16 per axis);
``unet`` is MONAI's UNet, ours at smoke scale where a VNet does not fit 2 CPU cores. CoactSeg
feeds [x_t1, x_t2, x_t2 - x_t1]; the WM map as a fourth input follows the summary's "white-matter
map at t2" (ours). The t1 all-lesion map the summary also lists is not an input here (ours):
most cases have none at test time.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from stages.common.runtime import import_monai

import_monai()
from monai.inferers import sliding_window_inference  # noqa: E402
from monai.losses import DiceLoss  # noqa: E402

OUTPUTS = ("all_t1", "all_t2", "new", "vanishing")
IN_CHANNELS = 4


@dataclass(frozen=True)
class NetworkConfig:
    architecture: Literal["unet", "vnet"]
    channels: tuple[int, ...]
    strides: tuple[int, ...]

    def build(self) -> torch.nn.Module:
        if self.architecture == "vnet":
            from monai.networks.nets import VNet

            return VNet(spatial_dims=3, in_channels=IN_CHANNELS, out_channels=len(OUTPUTS))
        from monai.networks.nets import UNet

        return UNet(spatial_dims=3, in_channels=IN_CHANNELS, out_channels=len(OUTPUTS),
                    channels=tuple(self.channels), strides=tuple(self.strides), num_res_units=1)


def network_inputs(scans: np.ndarray, white_matter: np.ndarray) -> np.ndarray:
    """``scans`` ``(..., 2, x, y, z)`` and ``white_matter`` ``(..., x, y, z)`` -> ``(..., 4, x, y, z)``."""
    difference = scans[..., 1:2, :, :, :] - scans[..., 0:1, :, :, :]
    return np.concatenate([scans, difference, white_matter[..., None, :, :, :]], axis=-4).astype(np.float32)


_DICE = DiceLoss(sigmoid=True, reduction="none")


def supervised_loss(logits: torch.Tensor, labels: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """BCE on every known (case, output) and soft Dice where that label also has lesion voxels in the patch.

    ``logits``/``labels`` ``(B, 4, x, y, z)``; ``known`` ``(B, 4)`` bool. Unknown labels add nothing.
    """
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none").flatten(2).mean(2)
    dice = _DICE(logits, labels).flatten(1)
    has_lesion = labels.flatten(2).amax(2) > 0
    known = known.to(logits.dtype)
    dice_weight = known * has_lesion.to(logits.dtype)
    total = (bce * known).sum() / known.sum().clamp(min=1) + (dice * dice_weight).sum() / dice_weight.sum().clamp(min=1)
    return total


@torch.no_grad()
def predict(model: torch.nn.Module, inputs: np.ndarray, window: tuple[int, ...], device: torch.device) -> np.ndarray:
    """Sigmoid probabilities ``(4, x, y, z)`` of one case, by sliding ``window`` over the volume (padded where larger)."""
    model.eval()
    tensor = torch.from_numpy(inputs[None]).to(device)
    logits = sliding_window_inference(tensor, roi_size=window, sw_batch_size=2, predictor=model, overlap=0.25, mode="gaussian")
    return torch.sigmoid(logits)[0].cpu().numpy()


def save_model(path: Path, model: torch.nn.Module, config: NetworkConfig, patch: tuple[int, ...]) -> None:
    torch.save({"state_dict": model.state_dict(), "config": asdict(config), "patch": list(patch)}, path)


def load_model(path: Path, device: torch.device) -> tuple[torch.nn.Module, tuple[int, ...]]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    config = state["config"]
    model = NetworkConfig(config["architecture"], tuple(config["channels"]), tuple(config["strides"])).build()
    model.load_state_dict(state["state_dict"])
    return model.to(device), tuple(state["patch"])
