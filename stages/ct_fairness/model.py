"""The segmentation network: a MONAI 3D U-Net, small at smoke scale."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from stages.common.runtime import import_monai
from stages.ct_fairness.organs import NUM_CLASSES


@dataclass(frozen=True)
class NetworkConfig:
    channels: tuple[int, ...] = (4, 8, 16)
    strides: tuple[int, ...] = (2, 2)
    res_units: int = 0
    patch: tuple[int, int, int] = (32, 32, 32)
    num_classes: int = NUM_CLASSES
    dropout: float = 0.0

    def build(self) -> torch.nn.Module:
        import_monai()
        from monai.networks.nets import UNet

        if len(self.strides) != len(self.channels) - 1:
            raise ValueError(f"U-Net needs len(strides) == len(channels) - 1, got {self.strides} and {self.channels}")
        return UNet(spatial_dims=3, in_channels=1, out_channels=self.num_classes, channels=tuple(self.channels),
                    strides=tuple(self.strides), num_res_units=self.res_units, dropout=self.dropout, norm="instance")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict) -> NetworkConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})


def load_network(path, device: torch.device) -> tuple[torch.nn.Module, NetworkConfig, dict]:
    """A model saved by ct_fairness-train: (network in eval mode, its config, the whole checkpoint)."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    config = NetworkConfig.from_dict(saved["config"])
    network = config.build()
    network.load_state_dict(saved["state_dict"])
    return network.to(device).eval(), config, saved


@torch.no_grad()
def predict_labels(network: torch.nn.Module, image: torch.Tensor, patch: tuple[int, int, int], overlap: float,
                   sw_batch_size: int) -> torch.Tensor:
    """Organ-table label map ``(X, Y, Z)`` of one ``(1, X, Y, Z)`` image by sliding-window inference."""
    import_monai()
    from monai.inferers import sliding_window_inference

    logits = sliding_window_inference(image[None], roi_size=patch, sw_batch_size=sw_batch_size, predictor=network,
                                      overlap=overlap, mode="gaussian")
    return torch.argmax(logits, dim=1)[0]
