"""A small SAM-like promptable segmenter (ours at smoke scale; SAM's structure and proportions).

- Image encoder: ViT on 16 x 16 patches (the embedding is 1/16 of the input side), fused ``qkv``
  attention as in SAM, then SAM's neck (1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d).
- Prompt encoder: random-Fourier positional encoding, learned point-label embeddings (negative,
  positive, box corner 1, box corner 2), ``not_a_point`` padding, ``no_mask`` dense embedding.
- Mask decoder: two-way transformer between the [IoU, mask] tokens plus prompt tokens and the
  image embedding, two transposed convs (low-res logits at 1/4 of the input side), a hypernetwork
  MLP, and an IoU head trained to regress the true IoU of the predicted mask.

:func:`inject_lora` adds LoRA (rank 4 in the official code; A Kaiming-uniform, B zero) to q and v
of every encoder block's fused ``qkv``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

PATCH = 16          # SAM: the image embedding is 1/16 of the input side
LOW_RES_FACTOR = 4  # SAM: the low-res logits are 4x the embedding side (1/4 of the input side)


@dataclass(frozen=True)
class SamConfig:
    image_size: int
    encoder_dim: int
    encoder_depth: int
    encoder_heads: int
    prompt_dim: int          # SAM: 256
    decoder_depth: int       # SAM: 2
    decoder_heads: int       # SAM: 8
    mlp_ratio: float

    def __post_init__(self) -> None:
        if self.image_size % PATCH:
            raise ValueError(f"image_size must be a multiple of {PATCH}, got {self.image_size}")

    @property
    def embedding_side(self) -> int:
        return self.image_size // PATCH

    def build(self) -> TinySam:
        return TinySam(self)


class LayerNorm2d(nn.Module):
    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(torch.ones(channels)), nn.Parameter(torch.zeros(channels)), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        return self.weight[:, None, None] * (x - mean) / torch.sqrt(var + self.eps) + self.bias[:, None, None]


class Mlp(nn.Module):
    def __init__(self, dim_in: int, hidden: int, dim_out: int, layers: int = 2) -> None:
        super().__init__()
        dims = [dim_in] + [hidden] * (layers - 1) + [dim_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.layers) - 1:
                x = F.gelu(x) if len(self.layers) == 2 else F.relu(x)
        return x


# --------------------------------------------------------------------------- image encoder
class FusedAttention(nn.Module):
    """Self-attention with one ``qkv`` linear, as SAM's ViT (where LoRA hooks in)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = FusedAttention(dim, heads)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ImageEncoder(nn.Module):
    def __init__(self, config: SamConfig) -> None:
        super().__init__()
        side, dim = config.embedding_side, config.encoder_dim
        self.patch_embed = nn.Conv2d(3, dim, PATCH, stride=PATCH)
        self.pos_embed = nn.Parameter(torch.zeros(1, side * side, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(Block(dim, config.encoder_heads, config.mlp_ratio) for _ in range(config.encoder_depth))
        self.neck = nn.Sequential(nn.Conv2d(dim, config.prompt_dim, 1, bias=False), LayerNorm2d(config.prompt_dim),
                                  nn.Conv2d(config.prompt_dim, config.prompt_dim, 3, padding=1, bias=False),
                                  LayerNorm2d(config.prompt_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images)
        b, d, h, w = x.shape
        x = x.flatten(2).transpose(1, 2) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.transpose(1, 2).reshape(b, d, h, w))


# --------------------------------------------------------------------------- prompt encoder
class PromptEncoder(nn.Module):
    def __init__(self, config: SamConfig) -> None:
        super().__init__()
        self.dim, self.image_size, self.side = config.prompt_dim, config.image_size, config.embedding_side
        self.register_buffer("gaussian", torch.randn(2, config.prompt_dim // 2))
        self.point_embeddings = nn.Embedding(4, config.prompt_dim)   # negative, positive, box corner 1, box corner 2
        self.not_a_point = nn.Embedding(1, config.prompt_dim)
        self.no_mask = nn.Embedding(1, config.prompt_dim)

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        """Coordinates in [0, 1] -> random Fourier features."""
        projected = (2 * coords - 1) @ self.gaussian * (2 * math.pi)
        return torch.cat([projected.sin(), projected.cos()], dim=-1)

    def dense_positional(self) -> torch.Tensor:
        grid = (torch.arange(self.side, device=self.gaussian.device, dtype=torch.float32) + 0.5) / self.side
        yy, xx = torch.meshgrid(grid, grid, indexing="ij")
        return self._encode(torch.stack([xx, yy], dim=-1)).permute(2, 0, 1).unsqueeze(0)

    def forward(self, boxes: torch.Tensor | None, points: torch.Tensor | None, labels: torch.Tensor | None):
        """Sparse ``(N, T, D)`` and dense ``(N, D, h, w)`` embeddings for N prompts (boxes or points, in pixels)."""
        sparse = []
        if points is not None:
            coords = (points + 0.0) / self.image_size
            embedded = self._encode(coords)
            embedded = embedded + self.point_embeddings(labels.clamp(min=0))
            pad = self.not_a_point.weight.expand(points.shape[0], 1, -1)
            sparse += [embedded, pad] if boxes is None else [embedded]
        if boxes is not None:
            corners = boxes.view(-1, 2, 2) / self.image_size
            embedded = self._encode(corners)
            embedded = embedded + self.point_embeddings.weight[2:4].unsqueeze(0)
            sparse.append(embedded)
        sparse_embedding = torch.cat(sparse, dim=1)
        count = sparse_embedding.shape[0]
        dense = self.no_mask.weight.view(1, -1, 1, 1).expand(count, -1, self.side, self.side)
        return sparse_embedding, dense


# --------------------------------------------------------------------------- mask decoder
class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, downsample: int = 1) -> None:
        super().__init__()
        inner = dim // downsample
        self.heads = heads
        self.q, self.k, self.v, self.out = nn.Linear(dim, inner), nn.Linear(dim, inner), nn.Linear(dim, inner), nn.Linear(inner, dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        def split(x):
            b, n, c = x.shape
            return x.view(b, n, self.heads, c // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q(q)), split(self.k(k)), split(self.v(v)))
        b, h, n, c = out.shape
        return self.out(out.transpose(1, 2).reshape(b, n, h * c))


class TwoWayBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, skip_first_pe: bool) -> None:
        super().__init__()
        self.self_attn = CrossAttention(dim, heads)
        self.token_to_image = CrossAttention(dim, heads, downsample=2)
        self.image_to_token = CrossAttention(dim, heads, downsample=2)
        self.mlp = Mlp(dim, mlp_dim, dim)
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(4))
        self.skip_first_pe = skip_first_pe

    def forward(self, queries, keys, query_pe, key_pe):
        if self.skip_first_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norms[0](queries)
        queries = self.norms[1](queries + self.token_to_image(queries + query_pe, keys + key_pe, keys))
        queries = self.norms[2](queries + self.mlp(queries))
        keys = self.norms[3](keys + self.image_to_token(keys + key_pe, queries + query_pe, queries))
        return queries, keys


class MaskDecoder(nn.Module):
    """SAM's decoder with one mask output (``multimask_output=False``) and its IoU prediction."""

    def __init__(self, config: SamConfig) -> None:
        super().__init__()
        dim = config.prompt_dim
        self.iou_token, self.mask_token = nn.Embedding(1, dim), nn.Embedding(1, dim)
        self.blocks = nn.ModuleList(TwoWayBlock(dim, config.decoder_heads, dim * 4, i == 0) for i in range(config.decoder_depth))
        self.final_attn = CrossAttention(dim, config.decoder_heads, downsample=2)
        self.final_norm = nn.LayerNorm(dim)
        self.upscale = nn.Sequential(nn.ConvTranspose2d(dim, dim // 4, 2, stride=2), LayerNorm2d(dim // 4), nn.GELU(),
                                     nn.ConvTranspose2d(dim // 4, dim // 8, 2, stride=2), nn.GELU())
        self.hypernetwork = Mlp(dim, dim, dim // 8, layers=3)
        self.iou_head = Mlp(dim, dim, 1, layers=3)

    def forward(self, image_embedding, image_pe, sparse, dense):
        n = sparse.shape[0]
        tokens = torch.cat([self.iou_token.weight, self.mask_token.weight], dim=0).unsqueeze(0).expand(n, -1, -1)
        queries = torch.cat([tokens, sparse], dim=1)
        source = image_embedding.expand(n, -1, -1, -1) + dense if image_embedding.shape[0] == 1 else image_embedding + dense
        b, c, h, w = source.shape
        keys = source.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2).expand(n, -1, -1)
        query_pe = queries
        for block in self.blocks:
            queries, keys = block(queries, keys, query_pe, key_pe)
        queries = self.final_norm(queries + self.final_attn(queries + query_pe, keys + key_pe, keys))
        upscaled = self.upscale(keys.transpose(1, 2).reshape(b, c, h, w))
        weights = self.hypernetwork(queries[:, 1])
        low_res = torch.einsum("nc,nchw->nhw", weights, upscaled).unsqueeze(1)
        return low_res, self.iou_head(queries[:, 0]).squeeze(-1)


@dataclass
class SamOutput:
    embedding: torch.Tensor   # (1, D, h, w) image embedding
    low_res: torch.Tensor     # (N, 1, 4h, 4w) low-res logits
    iou: torch.Tensor         # (N,) predicted IoU


class TinySam(nn.Module):
    def __init__(self, config: SamConfig) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = ImageEncoder(config)
        self.prompt_encoder = PromptEncoder(config)
        self.mask_decoder = MaskDecoder(config)

    def decode(self, embedding: torch.Tensor, boxes=None, points=None, labels=None) -> tuple[torch.Tensor, torch.Tensor]:
        sparse, dense = self.prompt_encoder(boxes, points, labels)
        return self.mask_decoder(embedding, self.prompt_encoder.dense_positional(), sparse, dense)

    def forward(self, image: torch.Tensor, boxes=None, points=None, labels=None) -> SamOutput:
        """One image ``(1, 3, S, S)`` and N prompts -> embedding, N low-res logits and N IoU predictions."""
        embedding = self.image_encoder(image)
        low_res, iou = self.decode(embedding, boxes, points, labels)
        return SamOutput(embedding, low_res, iou)


def full_size(low_res: torch.Tensor, size: int) -> torch.Tensor:
    """Low-res logits upsampled (bilinear) to the input side, as SAM's postprocessing."""
    return F.interpolate(low_res, size=(size, size), mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------- LoRA
class LoRAqkv(nn.Module):
    """A frozen fused ``qkv`` linear plus low-rank updates of its q and v outputs (SAMed / SAM-TTA style)."""

    def __init__(self, qkv: nn.Linear, rank: int) -> None:
        super().__init__()
        self.qkv = qkv
        dim = qkv.in_features
        self.dim = dim
        self.a_q, self.b_q = nn.Linear(dim, rank, bias=False), nn.Linear(rank, dim, bias=False)
        self.a_v, self.b_v = nn.Linear(dim, rank, bias=False), nn.Linear(rank, dim, bias=False)
        for a, b in ((self.a_q, self.b_q), (self.a_v, self.b_v)):
            nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))
            nn.init.zeros_(b.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.qkv(x)
        delta_q, delta_v = self.b_q(self.a_q(x)), self.b_v(self.a_v(x))
        zeros = torch.zeros_like(delta_q)
        return out + torch.cat([delta_q, zeros, delta_v], dim=-1)


def inject_lora(model: TinySam, rank: int) -> list[nn.Parameter]:
    """Wrap every encoder block's ``qkv`` with LoRA; freeze the encoder's base weights; return the LoRA parameters."""
    for parameter in model.image_encoder.parameters():
        parameter.requires_grad_(False)
    lora = []
    for block in model.image_encoder.blocks:
        block.attn.qkv = LoRAqkv(block.attn.qkv, rank)
        for module in (block.attn.qkv.a_q, block.attn.qkv.b_q, block.attn.qkv.a_v, block.attn.qkv.b_v):
            lora += list(module.parameters())
    return lora
