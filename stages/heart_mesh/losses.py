"""MeshHeart's loss (loss/loss.py) in plain torch: reconstruction x 1e3, beta KL, uniform Laplacian smoothing.

The official ``VAECELoss`` with its default ``loss='cham_smooth'`` runs the *MSE* branch (the
'cham' and 'mse' branch names are swapped), so ``reconstruction: mse`` is the official default;
``chamfer`` is PyTorch3D's ``chamfer_distance`` (sum of the two directed mean squared
nearest-neighbour distances). The smoothing term is PyTorch3D's ``mesh_laplacian_smoothing``
with the uniform Laplacian, averaged over frames.
"""
from __future__ import annotations

import torch


def chamfer_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PyTorch3D's default Chamfer on ``[M, N, 3]`` batches: per cloud, both directed mean squared NN
    distances summed; then the mean over the batch. All pairs per cloud: fine at training sizes."""
    distances = torch.cdist(prediction, target) ** 2
    return (distances.min(dim=2).values.mean(dim=1) + distances.min(dim=1).values.mean(dim=1)).mean()


def uniform_laplacian_smoothing(vertices: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Mean over vertices of ``|| (1/deg) sum_neighbours v_j - v_i ||`` per mesh, averaged over meshes.

    ``vertices [M, N, 3]``; ``edges [E, 2]`` undirected, each edge once.
    """
    n = vertices.shape[1]
    source = torch.cat([edges[:, 0], edges[:, 1]])
    target = torch.cat([edges[:, 1], edges[:, 0]])
    degree = torch.zeros(n, dtype=vertices.dtype, device=vertices.device).index_add_(
        0, source, torch.ones_like(source, dtype=vertices.dtype))
    neighbour_sum = torch.zeros_like(vertices).index_add_(1, source, vertices[:, target])
    laplacian = neighbour_sum / degree.clamp(min=1)[None, :, None] - vertices
    return laplacian.norm(dim=2).mean(dim=1).mean()


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Official: ``-0.5 * sum(1 + logvar - mu^2 - exp(logvar))``, summed over batch and latent."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def meshheart_loss(prediction: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                   edges: torch.Tensor, reconstruction: str, beta: float, lambd: float, lambd_s: float):
    """(total, reconstruction term) for ``[B, T, N, 3]`` sequences (or ``[M, N, 3]`` frames)."""
    pred_frames = prediction.reshape(-1, *prediction.shape[-2:])
    true_frames = target.reshape(-1, *target.shape[-2:])
    if reconstruction == "mse":
        rec = 1e3 * torch.mean((pred_frames - true_frames) ** 2)
    elif reconstruction == "chamfer":
        rec = 1e3 * chamfer_loss(pred_frames, true_frames)
    else:
        raise ValueError(f"reconstruction must be 'mse' or 'chamfer', got {reconstruction!r}")
    smooth = uniform_laplacian_smoothing(pred_frames, edges)
    return lambd * rec + beta * kl_divergence(mu, logvar) + lambd_s * smooth, rec
