"""TIP's networks (siyi-wind/TIP models/Tip_utils: Tip_pretraining.py, Transformer.py) and the baselines' encoders.

- :class:`TabularTransformer`: categorical cells through one shared embedding indexed with per-column
  offsets, continuous cells through ``Linear(1, dim)``, a learned column embedding, a CLS token,
  LayerNorm, pre-norm blocks. A missing or masked cell becomes the learned [MASK] token and an
  additive -1e9 attention mask stops other tokens attending to it (it still sees itself; CLS is
  never masked).
- :class:`InteractionModule`: image patches projected to ``dim`` with LayerNorm; blocks of
  self-attention over the tabular tokens, cross-attention to the patches and an MLP; final LayerNorm.
- :class:`ImageEncoder`: ResNet-50 (MONAI, 2-D) at full scale, or a small CNN at smoke scale (ours);
  its last feature map gives the patch tokens, its average the pooled feature.
- :class:`TabularMLP`: MMCL's MLP tabular encoder on one-hot encoded cells (ours: its size).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from stages.common.runtime import import_monai

NEG_INF = -1e9


@dataclass(frozen=True)
class NetworkConfig:
    image_encoder: Literal["cnn", "resnet50"]
    image_channels: int          # input channels
    cnn_width: int               # smoke CNN: channels of its last feature map
    dim: int                     # tabular / multimodal width (official 512)
    depth: int                   # tabular transformer blocks (official 4)
    interaction_depth: int       # interaction module blocks (official 4)
    heads: int                   # official 8
    mlp_ratio: float             # official 4
    projection_dim: int          # official 128
    field_lengths: tuple[int, ...]

    @property
    def image_features(self) -> int:
        return 2048 if self.image_encoder == "resnet50" else self.cnn_width


def one_hot(table: torch.Tensor, field_lengths: torch.Tensor) -> torch.Tensor:
    """MMCL's one_hot_encode: categorical columns one-hot (codes clamped), continuous as they are."""
    parts = []
    for column, length in enumerate(field_lengths.tolist()):
        values = table[:, column]
        if length == 1:
            parts.append(values[:, None])
        else:
            parts.append(F.one_hot(values.clamp(0, length - 1).long(), length).float())
    return torch.cat(parts, dim=1)


def attention_bias(masked: torch.Tensor) -> torch.Tensor:
    """Additive ``(B, 1, T+1, T+1)`` bias: -1e9 where the key is a masked cell, except on the diagonal."""
    keys = torch.cat([torch.zeros_like(masked[:, :1]), masked], dim=1)  # CLS never masked
    size = keys.shape[1]
    bias = keys[:, None, :].float().expand(-1, size, -1) * NEG_INF
    bias = bias * (1 - torch.eye(size, device=masked.device))[None]
    return bias[:, None]


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        b, n, d = x.shape
        q = self.query(x).view(b, n, self.heads, d // self.heads).transpose(1, 2)
        k, v = self.key_value(context).view(b, context.shape[1], 2, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


def mlp(dim: int, ratio: float) -> nn.Sequential:
    hidden = int(dim * ratio)
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class Block(nn.Module):
    """Pre-norm transformer block; with ``cross`` it also cross-attends to a context (the image patches)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, cross: bool = False) -> None:
        super().__init__()
        self.norm1, self.attention = nn.LayerNorm(dim), Attention(dim, heads)
        self.cross = cross
        if cross:
            self.norm_cross, self.cross_attention = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None, context: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), bias=bias)
        if self.cross:
            x = x + self.cross_attention(self.norm_cross(x), context=context)
        return x + self.mlp(self.norm2(x))


class TabularTransformer(nn.Module):
    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        lengths = torch.tensor(config.field_lengths)
        categorical = lengths > 1
        self.num_categorical = int(categorical.sum())
        self.register_buffer("offsets", torch.cat([torch.zeros(1, dtype=torch.long), lengths[categorical].cumsum(0)[:-1]]))
        self.num_categories = int(lengths[categorical].sum())
        self.category_embedding = nn.Embedding(max(self.num_categories, 1), config.dim)
        self.continuous_embedding = nn.Linear(1, config.dim)
        self.column_embedding = nn.Parameter(torch.zeros(1, len(config.field_lengths), config.dim))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        nn.init.trunc_normal_(self.column_embedding, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.norm_in = nn.LayerNorm(config.dim)
        self.blocks = nn.ModuleList(Block(config.dim, config.heads, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim)

    def embed(self, table: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        k = self.num_categorical
        categorical = self.category_embedding(table[:, :k].long().clamp(min=0) + self.offsets)
        continuous = self.continuous_embedding(table[:, k:, None].float())
        tokens = torch.cat([categorical, continuous], dim=1)
        tokens = torch.where(masked[..., None], self.mask_token.expand_as(tokens), tokens) + self.column_embedding
        return self.norm_in(torch.cat([self.cls_token.expand(len(table), -1, -1), tokens], dim=1))

    def forward(self, table: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """``(B, columns)`` cells and their mask (True = missing or masked) -> ``(B, 1 + columns, dim)``."""
        bias = attention_bias(masked)
        x = self.embed(table, masked)
        for block in self.blocks:
            x = block(x, bias)
        return self.norm(x)


class InteractionModule(nn.Module):
    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.image_projection = nn.Sequential(nn.Linear(config.image_features, config.dim), nn.LayerNorm(config.dim))
        self.blocks = nn.ModuleList(Block(config.dim, config.heads, config.mlp_ratio, cross=True)
                                    for _ in range(config.interaction_depth))
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, tabular_tokens: torch.Tensor, patches: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        bias = attention_bias(masked)
        context = self.image_projection(patches)
        x = tabular_tokens
        for block in self.blocks:
            x = block(x, bias, context)
        return self.norm(x)


class ImageEncoder(nn.Module):
    """Images ``(B, C, H, W)`` -> (pooled ``(B, F)``, patch tokens ``(B, h*w, F)``)."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        if config.image_encoder == "resnet50":
            import_monai()
            from monai.networks.nets import ResNet

            net = ResNet("bottleneck", [3, 4, 6, 3], [64, 128, 256, 512], spatial_dims=2, n_input_channels=config.image_channels,
                         num_classes=1)
            self.body = nn.Sequential(net.conv1, net.bn1, net.act, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
        else:
            w = config.cnn_width
            self.body = nn.Sequential(
                nn.Conv2d(config.image_channels, w // 2, 3, padding=1), nn.BatchNorm2d(w // 2), nn.ReLU(),
                nn.Conv2d(w // 2, w, 3, stride=2, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
                nn.Conv2d(w, w, 3, stride=2, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            )

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature_map = self.body(images)
        patches = feature_map.flatten(2).transpose(1, 2)
        return patches.mean(dim=1), patches


class TabularMLP(nn.Module):
    """MMCL-style tabular encoder: one-hot cells -> MLP (ours: two hidden layers of ``dim``)."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.register_buffer("field_lengths", torch.tensor(config.field_lengths))
        inputs = int(sum(config.field_lengths))
        self.net = nn.Sequential(nn.Linear(inputs, config.dim), nn.BatchNorm1d(config.dim), nn.ReLU(),
                                 nn.Linear(config.dim, config.dim), nn.BatchNorm1d(config.dim), nn.ReLU())

    def forward(self, table: torch.Tensor) -> torch.Tensor:
        return self.net(one_hot(table, self.field_lengths))


def projection(inputs: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, out))


class TIP(nn.Module):
    """Image encoder, tabular transformer, interaction module, projections and the ITM / MTR heads."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = ImageEncoder(config)
        self.tabular_encoder = TabularTransformer(config)
        self.interaction = InteractionModule(config)
        f, d, p = config.image_features, config.dim, config.projection_dim
        self.image_projection = projection(f, f, p)
        self.tabular_projection = projection(d, d, p)
        self.itm_head = nn.Linear(d, 2)
        self.categorical_head = nn.Linear(d, max(self.tabular_encoder.num_categories, 1))
        self.continuous_head = nn.Linear(d, 1)

    def multimodal(self, patches: torch.Tensor, table: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        return self.interaction(self.tabular_encoder(table, masked), patches, masked)

    def reconstruct(self, fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token predictions from the multimodal outputs: category logits and continuous values."""
        k = self.tabular_encoder.num_categorical
        return self.categorical_head(fused[:, 1:1 + k]), self.continuous_head(fused[:, 1 + k:]).squeeze(-1)

    def features(self, images: torch.Tensor, table: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """The multimodal representation downstream heads use: the interaction output at CLS."""
        _, patches = self.image_encoder(images)
        return self.multimodal(patches, table, masked)[:, 0]


class MMCL(nn.Module):
    """MMCL-style: image encoder + MLP tabular encoder, trained with the CLIP loss only."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = ImageEncoder(config)
        self.tabular_encoder = TabularMLP(config)
        f, d, p = config.image_features, config.dim, config.projection_dim
        self.image_projection = projection(f, f, p)
        self.tabular_projection = projection(d, d, p)

    def features(self, images: torch.Tensor, table: torch.Tensor, masked: torch.Tensor | None = None) -> torch.Tensor:
        """MMCL's multimodal evaluation: the image and tabular embeddings concatenated (tables already imputed)."""
        pooled, _ = self.image_encoder(images)
        return torch.cat([pooled, self.tabular_encoder(table)], dim=1)


class Concat(nn.Module):
    """Supervised CONCAT's encoder: image encoder and MLP tabular encoder, embeddings concatenated
    (a linear classifier on top is trained with it from scratch)."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = ImageEncoder(config)
        self.tabular_encoder = TabularMLP(config)

    def features(self, images: torch.Tensor, table: torch.Tensor, masked: torch.Tensor | None = None) -> torch.Tensor:
        pooled, _ = self.image_encoder(images)
        return torch.cat([pooled, self.tabular_encoder(table)], dim=1)


def build(method: str, config: NetworkConfig) -> nn.Module:
    return MMCL(config) if method == "mmcl" else TIP(config)


def config_dict(config: NetworkConfig) -> dict:
    return {**asdict(config), "field_lengths": list(config.field_lengths)}


def load_pretrained(path, device) -> tuple[str, nn.Module]:
    state = torch.load(path, map_location=device, weights_only=True)
    config = NetworkConfig(**{**state["config"], "field_lengths": tuple(state["config"]["field_lengths"])})
    model = build(state["method"], config).to(device)
    model.load_state_dict(state["state_dict"])
    return state["method"], model.eval()


def field_lengths_tuple(lengths: np.ndarray) -> tuple[int, ...]:
    return tuple(int(v) for v in lengths)
