"""MeshHeart as the official code builds it (MengyunQ/MeshHeart model/transformer_vae_batch.py), and the
per-frame VAE baseline (ours: the same mesh encoder and decoder MLP without the temporal transformer).

Differences from the official code, all ours: every frame shares one topology, so the two
``GCNConv`` layers (torch_geometric's weights, bias and ``gcn_norm``) aggregate all frames at once
through one sparse matrix product with the normalised template adjacency (:func:`gcn_layer`,
tested equal to ``GCNConv.forward``; about 5x faster on CPU than PyG's scatter over a batch of
frames) instead of building a ``Batch`` per frame; edges are made undirected
(``to_undirected``) because the official ``heart_e`` layout does not say whether both directions
are stored; inputs are ``[B, T, N, 3]`` in batch-first order throughout.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import to_undirected


@dataclass(frozen=True)
class MeshHeartConfig:
    vertices: int
    frames: int
    z_dim: int = 64
    condition_in: int = 10
    condition_dim: int = 32
    condition_hidden: int = 64
    ff_size: int = 1024
    num_heads: int = 4
    num_layers: int = 4
    dropout: float = 0.1


class PixelNorm(nn.Module):
    """x / sqrt(mean(x^2) + 1e-5) over the feature dimension (official)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-5)


def condition_mlp(inputs: int, outputs: int, hidden: int) -> nn.Sequential:
    """The official ``MLP(c_dim_in, c_dim, 64, 2)`` with PixelNorm around each linear layer."""
    return nn.Sequential(PixelNorm(), nn.Linear(inputs, hidden), nn.ReLU(True), PixelNorm(),
                         nn.Linear(hidden, outputs), PixelNorm())


class PositionalEncoding(nn.Module):
    """Sinusoidal positions over the sequence (first) axis, max 60 tokens, dropout after (official)."""

    def __init__(self, d_model: int, dropout: float, max_len: int = 60) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe.unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [S, B, D]
        return self.dropout(x + self.pe[: x.shape[0]])


def normalised_adjacency(edge_index: torch.Tensor, nodes: int) -> torch.Tensor:
    """GCN's ``D^-1/2 (A + I) D^-1/2`` from PyG's ``gcn_norm``, as a sparse ``[N, N]`` (row = target)."""
    index, weight = gcn_norm(edge_index, None, nodes, add_self_loops=True)
    return torch.sparse_coo_tensor(index.flip(0), weight, (nodes, nodes), check_invariants=False).coalesce()


def gcn_layer(conv: GCNConv, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
    """``conv(x_m, edge_index)`` for every graph ``m`` of ``x [M, N, C]`` sharing one topology."""
    h = conv.lin(x)
    m, n, c = h.shape
    out = torch.sparse.mm(adjacency, h.transpose(0, 1).reshape(n, m * c)).reshape(n, m, c).transpose(0, 1)
    return out + conv.bias if conv.bias is not None else out


class FrameEncoder(nn.Module):
    """Per vertex Conv1d 3 -> 64 + ReLU, GCNConv 64 -> 128 -> 256 (leaky ReLU 0.15), max over vertices."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Sequential(nn.Conv1d(3, 64, kernel_size=1), nn.ReLU(inplace=True))
        self.gcn1 = GCNConv(64, 128)
        self.gcn2 = GCNConv(128, 256)

    def forward(self, vertices: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        """``[..., N, 3]`` and :func:`normalised_adjacency` -> ``[..., 256]``."""
        leading, nodes = vertices.shape[:-2], vertices.shape[-2]
        x = vertices.reshape(-1, nodes, 3).transpose(1, 2)
        x = self.embedding(x).transpose(1, 2)                      # [M, N, 64]
        x = F.leaky_relu(gcn_layer(self.gcn1, x, adjacency), 0.15)
        x = F.leaky_relu(gcn_layer(self.gcn2, x, adjacency), 0.15)
        return x.max(dim=1).values.reshape(*leading, -1)


def mesh_decoder_mlp(z_dim: int, vertices: int) -> nn.Sequential:
    """Official per-frame MLP z -> 64 -> 128 -> 512 -> 1024 -> 3N."""
    widths = [z_dim, 64, 128, 512, 1024]
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.Linear(1024, vertices * 3))


class MeshHeart(nn.Module):
    """Conditional transformer VAE over mesh sequences (ACTOR-style, as the official ``CAE``)."""

    def __init__(self, config: MeshHeartConfig, edges: torch.Tensor) -> None:
        super().__init__()
        self.config = config
        c = config
        self.register_buffer("adjacency", normalised_adjacency(to_undirected(edges.t().contiguous().long()), c.vertices),
                             persistent=False)
        self.mapping = condition_mlp(c.condition_in, c.condition_dim, c.condition_hidden)
        self.frame_encoder = FrameEncoder()
        self.fc = nn.Sequential(nn.Linear(256 + c.condition_dim, c.z_dim), nn.ReLU(inplace=True))
        self.mu_query = nn.Parameter(torch.randn(c.z_dim))
        self.sigma_query = nn.Parameter(torch.randn(c.z_dim))
        self.encoder_positions = PositionalEncoding(c.z_dim, c.dropout)
        self.sequence_encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(c.z_dim, c.num_heads, c.ff_size, c.dropout, activation="gelu"), c.num_layers,
            enable_nested_tensor=False)
        self.z_condition = nn.Linear(c.z_dim + c.condition_dim, c.z_dim)
        self.decoder_positions = PositionalEncoding(c.z_dim, c.dropout)
        self.sequence_decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(c.z_dim, c.num_heads, c.ff_size, c.dropout, activation="gelu"), c.num_layers)
        self.mesh_decoder = mesh_decoder_mlp(c.z_dim, c.vertices)

    def encode(self, vertices: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``vertices [B, T, N, 3]``, raw ``condition [B, 10]`` -> (mu, logvar, per-frame tokens ``[B, T, z]``)."""
        con = self.mapping(condition)
        return self._encode(vertices, con)

    def _encode(self, vertices: torch.Tensor, con: torch.Tensor):
        batch, frames = vertices.shape[:2]
        features = self.frame_encoder(vertices, self.adjacency)                     # [B, T, 256]
        x = self.fc(torch.cat([features, con[:, None].expand(-1, frames, -1)], dim=2))
        queries = torch.stack([self.mu_query, self.sigma_query])[None].expand(batch, -1, -1)
        sequence = self.encoder_positions(torch.cat([queries, x], dim=1).transpose(0, 1))
        sequence = self.sequence_encoder(sequence)
        return sequence[0], sequence[1], sequence[2:].transpose(0, 1)

    def decode(self, z: torch.Tensor, condition: torch.Tensor, frames: int | None = None) -> torch.Tensor:
        """``z [B, z_dim]`` and raw condition -> vertices ``[B, T, N, 3]``."""
        return self._decode(z, self.mapping(condition), frames)

    def _decode(self, z: torch.Tensor, con: torch.Tensor, frames: int | None) -> torch.Tensor:
        frames = frames or self.config.frames
        memory = self.z_condition(torch.cat([z, con], dim=1))[None]
        queries = self.decoder_positions(torch.zeros(frames, z.shape[0], self.config.z_dim, device=z.device))
        output = self.sequence_decoder(tgt=queries, memory=memory)                   # [T, B, z]
        return self.mesh_decoder(output).reshape(frames, z.shape[0], self.config.vertices, 3).transpose(0, 1)

    def forward(self, vertices: torch.Tensor, condition: torch.Tensor):
        con = self.mapping(condition)
        mu, logvar, _ = self._encode(vertices, con)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self._decode(z, con, vertices.shape[1]), mu, logvar


class FrameVAE(nn.Module):
    """Baseline (ours): each frame alone through MeshHeart's frame encoder and mesh decoder, no transformer."""

    def __init__(self, vertices: int, z_dim: int, condition_dim: int, condition_hidden: int, edges: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("adjacency", normalised_adjacency(to_undirected(edges.t().contiguous().long()), vertices),
                             persistent=False)
        self.vertices = vertices
        self.mapping = condition_mlp(10, condition_dim, condition_hidden)
        self.frame_encoder = FrameEncoder()
        self.head = nn.Linear(256 + condition_dim, 2 * z_dim)
        self.mesh_decoder = mesh_decoder_mlp(z_dim + condition_dim, vertices)

    def encode(self, frames: torch.Tensor, condition: torch.Tensor):
        """``frames [M, N, 3]``, raw condition ``[M, 10]`` -> (mu, logvar) ``[M, z]``."""
        con = self.mapping(condition)
        return self.head(torch.cat([self.frame_encoder(frames, self.adjacency), con], dim=1)).chunk(2, dim=1)

    def decode(self, z: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        return self.mesh_decoder(torch.cat([z, self.mapping(condition)], dim=1)).reshape(-1, self.vertices, 3)

    def forward(self, frames: torch.Tensor, condition: torch.Tensor):
        mu, logvar = self.encode(frames, condition)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z, condition), mu, logvar
