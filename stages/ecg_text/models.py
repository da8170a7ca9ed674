"""The two ECG encoders, the text projection, the entity query network and the losses.

MERL (official code, utils/vit1d.py, utils/utils_builder.py, utils/utils_loss.py): ViT-1D over
Conv1d patches spanning all 12 leads, learned positions, mean pool, an MLP projection with
BatchNorm, CLIP loss (temperature 0.07, both directions summed) plus the uni-modal alignment loss
between two dropout views. The K-MERL analogue (ours, from the paper's abstract and summaries):
one token per lead and patch with lead and time embeddings, absent or segment-masked tokens left
out of attention and pooling (not zero-filled), and one learned query per entity attending to the
ECG tokens, trained with a binary entity loss beside the ECG-text contrast.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from stages.common.params import StrictModel

N_LEADS = 12


class EncoderParams(StrictModel):
    patch_size: int = Field(ge=1)
    width: int = Field(ge=4)
    depth: int = Field(ge=1)
    heads: int = Field(ge=1)
    mlp_width: int = Field(ge=4)
    projection_dim: int = Field(ge=4)
    text_hidden: int = Field(ge=4)
    dropout: float = Field(ge=0, lt=1)


@dataclass(frozen=True)
class Variant:
    architecture: str        # "vit" (MERL) or "lead_aware" (K-MERL)
    entity_loss: bool
    lead_masking: bool


VARIANTS: dict[str, Variant] = {
    "merl": Variant("vit", entity_loss=False, lead_masking=False),
    "kmerl": Variant("lead_aware", entity_loss=True, lead_masking=True),
    "kmerl_no_entity": Variant("lead_aware", entity_loss=False, lead_masking=True),
    "kmerl_no_lead_mask": Variant("lead_aware", entity_loss=True, lead_masking=False),
}


def _transformer(p: EncoderParams) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(p.width, p.heads, p.mlp_width, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, p.depth, enable_nested_tensor=False)


def projection_head(width: int, dim: int) -> nn.Sequential:
    """MERL's ECG projection: Linear, BatchNorm, ReLU, Linear."""
    return nn.Sequential(nn.Linear(width, dim), nn.BatchNorm1d(dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))


class ViT1D(nn.Module):
    """MERL's ECG encoder: a token per patch of all 12 leads. Absent leads must arrive zero-filled."""

    def __init__(self, p: EncoderParams, samples: int) -> None:
        super().__init__()
        if samples % p.patch_size:
            raise ValueError(f"samples ({samples}) must be a multiple of patch_size ({p.patch_size})")
        self.tokens = samples // p.patch_size
        self.patch = nn.Conv1d(N_LEADS, p.width, p.patch_size, stride=p.patch_size)
        self.position = nn.Parameter(torch.randn(1, self.tokens, p.width) * 0.02)
        self.blocks = _transformer(p)
        self.norm = nn.LayerNorm(p.width)

    def forward(self, signal: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        if present is not None:   # MERL's code has no lead mask: absent leads are zero-filled
            signal = signal * present[:, :, None].to(signal.dtype)
        tokens = self.patch(signal).transpose(1, 2) + self.position
        return self.norm(self.blocks(tokens)).mean(dim=1)


class LeadAwareEncoder(nn.Module):
    """K-MERL analogue: per-lead patch tokens + lead and time embeddings; hidden tokens are masked out."""

    def __init__(self, p: EncoderParams, samples: int) -> None:
        super().__init__()
        if samples % p.patch_size:
            raise ValueError(f"samples ({samples}) must be a multiple of patch_size ({p.patch_size})")
        self.tokens = samples // p.patch_size
        self.patch = nn.Conv1d(1, p.width, p.patch_size, stride=p.patch_size)
        self.lead_embedding = nn.Parameter(torch.randn(1, N_LEADS, 1, p.width) * 0.02)
        self.time_embedding = nn.Parameter(torch.randn(1, 1, self.tokens, p.width) * 0.02)
        self.blocks = _transformer(p)
        self.norm = nn.LayerNorm(p.width)

    def token_states(self, signal: torch.Tensor, visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, 12 * tokens, width) states and the (batch, 12 * tokens) visibility they were computed under."""
        batch = signal.shape[0]
        patches = self.patch(signal.reshape(batch * N_LEADS, 1, -1)).transpose(1, 2)
        tokens = patches.reshape(batch, N_LEADS, self.tokens, -1) + self.lead_embedding + self.time_embedding
        flat_visible = visible.reshape(batch, -1)
        states = self.blocks(tokens.reshape(batch, N_LEADS * self.tokens, -1), src_key_padding_mask=~flat_visible)
        return self.norm(states), flat_visible

    def forward(self, signal: torch.Tensor, present: torch.Tensor | None = None,
                visible: torch.Tensor | None = None) -> torch.Tensor:
        states, flat_visible = self.token_states(signal, self.visibility(signal, present, visible))
        return masked_mean(states, flat_visible)

    def visibility(self, signal: torch.Tensor, present: torch.Tensor | None, visible: torch.Tensor | None) -> torch.Tensor:
        if visible is not None:
            return visible
        if present is None:
            present = torch.ones(signal.shape[0], N_LEADS, dtype=torch.bool, device=signal.device)
        return present[:, :, None].expand(-1, -1, self.tokens)


def masked_mean(states: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    weights = visible.to(states.dtype)[:, :, None]
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


class EntityQueries(nn.Module):
    """One learned query per entity attending to the visible ECG tokens; a logit per entity."""

    def __init__(self, entities: int, width: int, heads: int) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(1, entities, width) * 0.02)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.classify = nn.Linear(width, 1)

    def forward(self, states: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        queries = self.queries.expand(states.shape[0], -1, -1)
        attended, _ = self.attention(queries, states, states, key_padding_mask=~visible)
        return self.classify(attended).squeeze(-1)


class EcgTextModel(nn.Module):
    """Encoder + ECG projection + text projection (on cached MiniLM embeddings) + the variant's extra heads."""

    def __init__(self, variant: Variant, p: EncoderParams, samples: int, text_dim: int, entities: int) -> None:
        super().__init__()
        self.variant = variant
        self.encoder = ViT1D(p, samples) if variant.architecture == "vit" else LeadAwareEncoder(p, samples)
        self.ecg_projection = projection_head(p.width, p.projection_dim)
        self.text_projection = nn.Sequential(nn.Linear(text_dim, p.text_hidden), nn.GELU(),
                                             nn.Linear(p.text_hidden, p.projection_dim))
        if variant.architecture == "vit":   # MERL's uni-modal alignment: two dropout + linear views
            self.uma_dropout = nn.Dropout(p.dropout)
            self.uma_first = nn.Linear(p.projection_dim, p.projection_dim)
            self.uma_second = nn.Linear(p.projection_dim, p.projection_dim)
        else:
            self.entity_queries = EntityQueries(entities, p.width, p.heads)

    def features(self, signal: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        """The frozen-encoder features a linear probe reads (mean-pooled tokens)."""
        return self.encoder(signal, present)

    def embed_ecg(self, signal: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
        return F.normalize(self.ecg_projection(self.features(signal, present)), dim=-1)

    def embed_text(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_projection(text_embeddings), dim=-1)


def clip_loss(x: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """MERL's clip_loss: cosine similarities / temperature, cross-entropy both ways, summed."""
    x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    similarity = x @ y.T / temperature
    labels = torch.arange(x.shape[0], device=x.device)
    return F.cross_entropy(similarity, labels) + F.cross_entropy(similarity.T, labels)


def pretraining_loss(model: EcgTextModel, signal: torch.Tensor, text: torch.Tensor, entities: torch.Tensor,
                     visible: torch.Tensor | None, temperature: float, entity_weight: float) -> dict[str, torch.Tensor]:
    """MERL: L_CMA + L_UMA. K-MERL analogue: L_CMA + entity_weight * BCE(entity logits) (0 without entity loss)."""
    text_embedding = model.text_projection(text)
    if model.variant.architecture == "vit":
        projected = model.ecg_projection(model.encoder(signal))
        cma = clip_loss(projected, text_embedding, temperature)
        uma = clip_loss(model.uma_first(model.uma_dropout(projected)), model.uma_second(model.uma_dropout(projected)), temperature)
        return {"loss": cma + uma, "cma": cma, "uma": uma}
    encoder: LeadAwareEncoder = model.encoder
    states, flat_visible = encoder.token_states(signal, encoder.visibility(signal, None, visible))
    projected = model.ecg_projection(masked_mean(states, flat_visible))
    cma = clip_loss(projected, text_embedding, temperature)
    parts = {"cma": cma}
    loss = cma
    if model.variant.entity_loss:
        entity = F.binary_cross_entropy_with_logits(model.entity_queries(states, flat_visible), entities)
        loss = loss + entity_weight * entity
        parts["entity"] = entity
    return {"loss": loss, **parts}
