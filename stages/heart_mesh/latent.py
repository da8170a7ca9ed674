"""Loading the trained models, reconstructing and generating sequences, and the latent delta (our definition).

Latent delta (ours; the paper's formula could not be read): for a subject with mesh sequence X
and condition c, ``delta = || mu(X, c) - mean_k mu(Dec(z_k, c), c) ||_2`` with ``z_k ~ N(0, I)``,
``k = 1..K``, ``mu`` the encoder mean: how far the heart lies from the model's personalised
normative pattern for that condition.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stages.heart_mesh.dataset import CoordinateScaling
from stages.heart_mesh.model import FrameVAE, MeshHeart, MeshHeartConfig


@dataclass
class Models:
    meshheart: MeshHeart
    scaling: CoordinateScaling
    pca_mean: np.ndarray
    pca_components: np.ndarray
    vae: FrameVAE
    device: torch.device


def load_models(meshheart_dir: Path, baselines_dir: Path, edges: np.ndarray, device: torch.device) -> Models:
    edge_tensor = torch.from_numpy(np.asarray(edges, dtype=np.int64))
    state = torch.load(meshheart_dir / "model.pt", map_location="cpu", weights_only=True)
    model = MeshHeart(MeshHeartConfig(**state["config"]), edge_tensor)
    model.load_state_dict(state["state_dict"])
    baseline = torch.load(baselines_dir / "vae.pt", map_location="cpu", weights_only=True)
    vae = FrameVAE(baseline["vertices"], baseline["latent"], baseline["condition_dim"], baseline["condition_hidden"], edge_tensor)
    vae.load_state_dict(baseline["state_dict"])
    pca = np.load(baselines_dir / "pca.npz")
    return Models(model.to(device).eval(), CoordinateScaling.from_state(state["scaling"]), pca["mean"], pca["components"],
                  vae.to(device).eval(), device)


@torch.no_grad()
def encode_mean(models: Models, normalised: np.ndarray, condition: np.ndarray) -> np.ndarray:
    """Encoder means ``[S, z]`` of normalised sequences ``[S, T, N, 3]``."""
    mu, _, _ = models.meshheart.encode(torch.from_numpy(normalised).to(models.device), torch.from_numpy(condition).to(models.device))
    return mu.cpu().numpy()


@torch.no_grad()
def decode(models: Models, z: np.ndarray, condition: np.ndarray, frames: int) -> np.ndarray:
    """Normalised sequences ``[S, T, N, 3]`` from latents ``[S, z]`` and conditions ``[S, 10]``."""
    out = models.meshheart.decode(torch.from_numpy(z).float().to(models.device),
                                  torch.from_numpy(condition).to(models.device), frames)
    return out.cpu().numpy()


def reconstruct(models: Models, sequences_mm: np.ndarray, condition: np.ndarray) -> dict[str, np.ndarray]:
    """Each method's reconstruction (mm) of sequences ``[S, T, N, 3]``: MeshHeart from its encoder mean,
    PCA by projection, the per-frame VAE from its encoder mean."""
    normalised = models.scaling.forward(sequences_mm)
    subjects, frames, vertices, _ = normalised.shape
    meshheart = decode(models, encode_mean(models, normalised, condition), condition, frames)
    flat = normalised.reshape(subjects * frames, -1) - models.pca_mean
    pca = (flat @ models.pca_components.T @ models.pca_components + models.pca_mean).reshape(normalised.shape)
    frame_condition = torch.from_numpy(np.repeat(condition, frames, axis=0)).to(models.device)
    with torch.no_grad():
        mu, _ = models.vae.encode(torch.from_numpy(normalised.reshape(-1, vertices, 3)).to(models.device), frame_condition)
        vae = models.vae.decode(mu, frame_condition).cpu().numpy().reshape(normalised.shape)
    return {name: models.scaling.inverse(value) for name, value in (("meshheart", meshheart), ("pca", pca), ("vae", vae))}


def generate(models: Models, condition: np.ndarray, samples: int, frames: int, seed: int) -> np.ndarray:
    """``samples`` sequences (mm) per condition: ``[C, K, T, N, 3]`` with ``z ~ N(0, I)``."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(len(condition) * samples, models.meshheart.config.z_dim, generator=generator).numpy()
    repeated = np.repeat(condition, samples, axis=0)
    out = decode(models, z, repeated, frames)
    return models.scaling.inverse(out).reshape(len(condition), samples, frames, *out.shape[2:])


def latent_delta(models: Models, sequences_mm: np.ndarray, condition: np.ndarray, samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(delta ``[S]``, encoder means ``[S, z]``): our latent delta of each subject (module docstring)."""
    frames = sequences_mm.shape[1]
    mu = encode_mean(models, models.scaling.forward(sequences_mm), condition)
    generated = generate(models, condition, samples, frames, seed)                        # [S, K, T, N, 3] mm
    flat = models.scaling.forward(generated.reshape(-1, *generated.shape[2:]))
    normative = encode_mean(models, flat, np.repeat(condition, samples, axis=0)).reshape(len(condition), samples, -1).mean(axis=1)
    return np.linalg.norm(mu - normative, axis=1), mu
