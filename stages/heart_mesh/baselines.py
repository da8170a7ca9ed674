"""heart_mesh-baselines (ours): per-frame PCA and a per-frame conditional VAE without the temporal transformer.

Both see frames one at a time, on the same training split and coordinate scaling as MeshHeart.
PCA keeps ``latent_per_frame`` components; the VAE has MeshHeart's frame encoder, condition MLP
and mesh decoder MLP with a ``latent_per_frame`` latent, and MeshHeart's loss and its weights.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field
from sklearn.decomposition import PCA

from stages.common.atomic import atomic_directory, write_json
from stages.common.io import write_npz
from stages.common.params import StrictModel
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.heart_mesh.dataset import CoordinateScaling, conditions, load_cohort, load_sequences
from stages.heart_mesh.losses import meshheart_loss
from stages.heart_mesh.model import FrameVAE


class BaselinesParams(StrictModel):
    latent_per_frame: int = Field(ge=1)
    condition_dim: int = Field(ge=1)        # MeshHeart's condition MLP and loss, as in heart_mesh.train
    condition_hidden: int = Field(ge=1)
    reconstruction: Literal["mse", "chamfer"]
    beta: float = Field(ge=0)
    lambd: float = Field(ge=0)
    lambd_s: float = Field(ge=0)
    vae_epochs: int = Field(ge=1)
    vae_learning_rate: float = Field(gt=0)
    vae_batch_size: int = Field(ge=1)
    num_threads: int = Field(ge=1)


def fit_pca(frames: np.ndarray, components: int, seed: int) -> PCA:
    """PCA of flattened frames ``[M, N * 3]``; full SVD so the fit is deterministic."""
    return PCA(n_components=min(components, *frames.shape), svd_solver="full", random_state=seed).fit(frames)


def build_vae(vertices: int, latent: int, condition_dim: int, condition_hidden: int, edges: np.ndarray) -> FrameVAE:
    return FrameVAE(vertices, latent, condition_dim, condition_hidden, torch.from_numpy(np.asarray(edges, dtype=np.int64)))


def baselines(ctx: StageContext[BaselinesParams]) -> Metrics:
    p = ctx.params
    device = ctx.torch_device(p.num_threads)
    cohort = load_cohort(ctx.dep("interim/ingest"), ctx.root)
    training = cohort.split("train")
    raw = load_sequences(cohort, training)
    scaling = CoordinateScaling.fit(raw)
    normalised = scaling.forward(raw)
    subjects, frames, vertices, _ = normalised.shape
    flat = normalised.reshape(subjects * frames, vertices * 3)
    pca = fit_pca(flat, p.latent_per_frame, ctx.common.seed)

    frame_vertices = torch.from_numpy(normalised.reshape(-1, vertices, 3)).to(device)
    frame_condition = torch.from_numpy(np.repeat(conditions(training), frames, axis=0)).to(device)
    edges = torch.from_numpy(cohort.edges).to(device)
    vae = build_vae(vertices, p.latent_per_frame, p.condition_dim, p.condition_hidden, cohort.edges).to(device)
    optimiser = torch.optim.Adam(vae.parameters(), lr=p.vae_learning_rate)
    losses = []
    for epoch in progress(range(p.vae_epochs), "training the per-frame VAE", p.vae_epochs):
        order = np.random.default_rng([ctx.common.seed, epoch]).permutation(len(frame_vertices))
        epoch_losses = []
        for first in range(0, len(order), p.vae_batch_size):
            batch = torch.from_numpy(order[first:first + p.vae_batch_size]).to(device)
            prediction, mu, logvar = vae(frame_vertices[batch], frame_condition[batch])
            loss, _ = meshheart_loss(prediction, frame_vertices[batch], mu, logvar, edges, p.reconstruction, p.beta, p.lambd, p.lambd_s)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            epoch_losses.append(float(loss.detach()))
        losses.append(float(np.mean(epoch_losses)))
    with atomic_directory(ctx.out("models/baselines")) as staging:
        write_npz(staging / "pca.npz", {"mean": pca.mean_, "components": pca.components_})
        torch.save({"state_dict": vae.state_dict(), "vertices": vertices, "latent": p.latent_per_frame,
                    "condition_dim": p.condition_dim, "condition_hidden": p.condition_hidden, "scaling": scaling.state()}, staging / "vae.pt")
    explained = float(pca.explained_variance_ratio_.sum())
    write_json(ctx.out("metrics/baselines.json"), {"pca_components": int(pca.n_components_), "pca_explained_variance": explained,
                                                  "vae_final_loss": losses[-1], "vae_epochs": p.vae_epochs})
    return {"pca_explained_variance": explained, "vae_final_loss": losses[-1]}


if __name__ == "__main__":
    run_stage(baselines)
