"""The tiny seq2seq grounder (ours, in place of Florence-2): CNN image tokens + prompt -> Transformer -> answer.

Florence-2 feeds DaViT image tokens and the prompt's tokens to a BART encoder-decoder whose
vocabulary holds 1000 ``<loc_i>`` tokens. Here: a 3-layer CNN gives an ``(s/8)^2`` grid of image
tokens, a word-level vocabulary with the same 1000 location tokens, and ``torch.nn.Transformer``.
Ours, for a from-scratch model on a CPU: output weights tied to the token embeddings, and location
embeddings initialised on a sinusoid of the bin index, so neighbouring bins start out similar.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn

from stages.grounding.prompts import TASK_TOKEN

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>", TASK_TOKEN)
PAD, BOS, EOS, UNK = 0, 1, 2, 3
TOKEN_PATTERN = re.compile(r"<[^<>\s]+>|[a-z0-9]+|[^\sa-z0-9<>]")


def split_tokens(text: str) -> list[str]:
    return TOKEN_PATTERN.findall(text.lower())


@dataclass(frozen=True)
class Vocabulary:
    """Specials, the 1000 (``bins``) location tokens, then the words, in a fixed order."""

    words: tuple[str, ...]
    bins: int = 1000

    @classmethod
    def from_texts(cls, texts: Iterable[str], bins: int = 1000) -> Vocabulary:
        words = {t for text in texts for t in split_tokens(text) if not t.startswith("<")}
        return cls(tuple(sorted(words)), bins)

    @property
    def tokens(self) -> list[str]:
        return [*SPECIALS, *(f"<loc_{i}>" for i in range(self.bins)), *self.words]

    @property
    def first_location(self) -> int:
        return len(SPECIALS)

    def __len__(self) -> int:
        return len(SPECIALS) + self.bins + len(self.words)

    @cached_property
    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    def encode(self, text: str) -> list[int]:
        return [self.index.get(t, UNK) for t in split_tokens(text)]

    def decode(self, ids: Sequence[int]) -> str:
        """Words joined by spaces, location tokens glued to what precedes them; stops at ``<eos>``."""
        tokens = self.tokens
        text = ""
        for i in ids:
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            token = tokens[i]
            glued = token.startswith("<loc_") or not text or text.endswith(">")
            text += token if glued else " " + token
        return text.strip()


@dataclass(frozen=True)
class GrounderConfig:
    vocabulary_size: int
    first_location: int
    bins: int
    input_size: int
    width: int
    heads: int
    encoder_layers: int
    decoder_layers: int
    max_prompt_tokens: int
    max_answer_tokens: int


def sinusoid(positions: torch.Tensor, width: int) -> torch.Tensor:
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(0, width, 2, dtype=torch.float32) / width)
    angles = positions.float()[:, None] * frequencies[None, :] * (2 * math.pi / 50)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)[:, :width]


class TinyGrounder(nn.Module):
    def __init__(self, config: GrounderConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        self.image_encoder = nn.Sequential(
            nn.Conv2d(1, w // 4, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(w // 4, w // 2, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(w // 2, w, 3, stride=2, padding=1))
        grid = (config.input_size // 8) ** 2
        self.image_positions = nn.Parameter(torch.randn(1, grid, w) * 0.02)
        self.embedding = nn.Embedding(config.vocabulary_size, w, padding_idx=PAD)
        with torch.no_grad():
            locations = torch.arange(config.bins)
            self.embedding.weight[config.first_location:config.first_location + config.bins] = sinusoid(locations, w)
        self.prompt_positions = nn.Parameter(torch.randn(1, config.max_prompt_tokens, w) * 0.02)
        self.answer_positions = nn.Parameter(torch.randn(1, config.max_answer_tokens + 1, w) * 0.02)
        self.transformer = nn.Transformer(w, config.heads, config.encoder_layers, config.decoder_layers,
                                          dim_feedforward=2 * w, dropout=0.0, batch_first=True)
        self.norm = nn.LayerNorm(w)

    def encode(self, images: torch.Tensor, prompts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder memory over image tokens then prompt tokens, and its padding mask."""
        image_tokens = self.image_encoder(images).flatten(2).transpose(1, 2) + self.image_positions
        prompt_tokens = self.embedding(prompts) + self.prompt_positions[:, :prompts.shape[1]]
        padding = torch.cat([torch.zeros(image_tokens.shape[:2], dtype=torch.bool, device=images.device),
                             prompts == PAD], dim=1)
        memory = self.transformer.encoder(torch.cat([image_tokens, prompt_tokens], dim=1), src_key_padding_mask=padding)
        return memory, padding

    def decode_logits(self, memory: torch.Tensor, padding: torch.Tensor, answer_in: torch.Tensor) -> torch.Tensor:
        length = answer_in.shape[1]
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=answer_in.device), diagonal=1)
        states = self.transformer.decoder(self.embedding(answer_in) + self.answer_positions[:, :length], memory,
                                          tgt_mask=causal, memory_key_padding_mask=padding,
                                          tgt_key_padding_mask=answer_in == PAD)
        return self.norm(states) @ self.embedding.weight.T

    def forward(self, images: torch.Tensor, prompts: torch.Tensor, answer_in: torch.Tensor) -> torch.Tensor:
        memory, padding = self.encode(images, prompts)
        return self.decode_logits(memory, padding, answer_in)

    def _decoder_step(self, token: torch.Tensor, position: int, cache: list[torch.Tensor], memory: torch.Tensor,
                      padding: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits of the next token after ``token`` (B,), reusing each layer's inputs at earlier positions.

        Exactly what :meth:`decode_logits` gives at the last position (causal attention never lets an
        earlier position see a later one), at O(t) instead of O(t^2) per step. It follows
        ``nn.TransformerDecoderLayer`` with ``norm_first=False``: x = norm1(x + sa(x)),
        x = norm2(x + mha(x, memory)), x = norm3(x + ff(x)).
        """
        x = self.embedding(token)[:, None] + self.answer_positions[:, position:position + 1]
        updated = []
        for layer, past in zip(self.transformer.decoder.layers, cache, strict=True):
            inputs = x if past is None else torch.cat([past, x], dim=1)
            updated.append(inputs)
            h = layer.norm1(x + layer.self_attn(x, inputs, inputs, need_weights=False)[0])
            h = layer.norm2(h + layer.multihead_attn(h, memory, memory, key_padding_mask=padding, need_weights=False)[0])
            x = layer.norm3(h + layer.linear2(layer.activation(layer.linear1(h))))
        if self.transformer.decoder.norm is not None:
            x = self.transformer.decoder.norm(x)
        return (self.norm(x) @ self.embedding.weight.T)[:, 0], updated

    @torch.no_grad()
    def generate(self, images: torch.Tensor, prompts: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Greedy decoding (one beam), batched, incremental; rows stop at ``<eos>`` (then padded)."""
        memory, padding = self.encode(images, prompts)
        token = torch.full((len(images),), BOS, dtype=torch.long, device=images.device)
        finished = torch.zeros(len(images), dtype=torch.bool, device=images.device)
        cache: list = [None] * len(self.transformer.decoder.layers)
        generated = []
        for position in range(min(max_new_tokens, self.config.max_answer_tokens)):
            logits, cache = self._decoder_step(token, position, cache, memory, padding)
            token = torch.where(finished, torch.full_like(token, PAD), logits.argmax(dim=-1))
            generated.append(token)
            finished |= token == EOS
            if finished.all():
                break
        if not generated:
            return torch.zeros((len(images), 0), dtype=torch.long, device=images.device)
        return torch.stack(generated, dim=1)
