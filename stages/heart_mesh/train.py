"""heart_mesh-train: MeshHeart on the training split, as the official main.py trains it.

Adam (no weight decay), the official loss (:mod:`stages.heart_mesh.losses`), validation every
``validate_every`` epochs on the validation split's healthy subjects (ours: the diseased ones are
for the latent delta). A checkpoint after every epoch (``.scratch/heart_mesh-train/last.pt``) lets
an interrupted run with the same params, code and data resume; it is deleted once the model is saved.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from typing import Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from stages.common.atomic import atomic_directory, atomic_path, write_json
from stages.common.badinput import BadInputError
from stages.common.io import write_table
from stages.common.params import StrictModel
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.heart_mesh.dataset import CoordinateScaling, conditions, load_cohort, load_sequences
from stages.heart_mesh.losses import meshheart_loss
from stages.heart_mesh.model import MeshHeart, MeshHeartConfig


class NetworkParams(StrictModel):
    z_dim: int = Field(ge=2)
    condition_dim: int = Field(ge=1)
    condition_hidden: int = Field(ge=1)
    ff_size: int = Field(ge=1)
    num_heads: int = Field(ge=1)
    num_layers: int = Field(ge=1)
    dropout: float = Field(ge=0, lt=1)


class TrainParams(StrictModel):
    network: NetworkParams
    reconstruction: Literal["mse", "chamfer"]
    beta: float = Field(ge=0)
    lambd: float = Field(ge=0)
    lambd_s: float = Field(ge=0)
    learning_rate: float = Field(gt=0)
    batch_size: int = Field(ge=1)
    epochs: int = Field(ge=1)
    validate_every: int = Field(ge=1)
    num_threads: int = Field(ge=1)


def training_fingerprint(params: TrainParams, seed: int, input_hashes: dict[str, str]) -> str:
    """Resume only a checkpoint of the same params (``epochs`` aside), seed, code and data."""
    payload = {"params": params.model_dump(exclude={"epochs"}), "seed": seed, "inputs": input_hashes}
    return hashlib.md5(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def build_model(config: MeshHeartConfig, edges: np.ndarray) -> MeshHeart:
    return MeshHeart(config, torch.from_numpy(np.asarray(edges, dtype=np.int64)))


def validation_error(model, vertices: torch.Tensor, condition: torch.Tensor, edges, p: TrainParams) -> float:
    """Mean reconstruction term over subjects (the official ``val``), from the encoder mean."""
    model.eval()
    with torch.no_grad():
        errors = []
        for index in range(len(vertices)):
            mu, _, _ = model.encode(vertices[index:index + 1], condition[index:index + 1])
            prediction = model.decode(mu, condition[index:index + 1], vertices.shape[1])
            _, rec = meshheart_loss(prediction, vertices[index:index + 1], mu, torch.zeros_like(mu), edges,
                                    p.reconstruction, p.beta, p.lambd, p.lambd_s)
            errors.append(float(rec))
    model.train()
    return float(np.mean(errors))


def train(ctx: StageContext[TrainParams]) -> Metrics:
    p = ctx.params
    device = ctx.torch_device(p.num_threads)
    cohort = load_cohort(ctx.dep("interim/ingest"), ctx.root)
    training, validation = cohort.split("train"), cohort.split("val")
    if "disease" in validation:
        validation = validation[validation.disease == 0]
    if training.empty:
        raise BadInputError(f"{ctx.dep('interim/ingest/manifest.csv')}: no training subjects (split 'train')")
    raw = load_sequences(cohort, training)
    scaling = CoordinateScaling.fit(raw)
    vertices = torch.from_numpy(scaling.forward(raw)).to(device)
    condition = torch.from_numpy(conditions(training)).to(device)
    val_vertices = torch.from_numpy(scaling.forward(load_sequences(cohort, validation))).to(device) if len(validation) else None
    val_condition = torch.from_numpy(conditions(validation)).to(device) if len(validation) else None
    edges = torch.from_numpy(cohort.edges).to(device)
    config = MeshHeartConfig(vertices=vertices.shape[2], frames=vertices.shape[1], **p.network.model_dump())
    model = build_model(config, cohort.edges).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=p.learning_rate)

    fingerprint = training_fingerprint(p, ctx.common.seed, ctx.input_hashes())
    checkpoint_path = ctx.scratch("last.pt")
    history: list[dict] = []
    start_epoch = 0
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["torch_rng"])
            history, start_epoch = list(state["history"]), int(state["epoch"]) + 1
            print(f"resuming from {checkpoint_path} after epoch {start_epoch}")
    parameters = sum(t.numel() for t in model.parameters())
    ctx.log_metrics({"parameters": parameters, "resumed_epochs": start_epoch})

    started = time.perf_counter()
    model.train()
    for epoch in progress(range(start_epoch, p.epochs), "training MeshHeart", p.epochs - start_epoch):
        order = np.random.default_rng([ctx.common.seed, epoch]).permutation(len(vertices))
        losses, reconstructions = [], []
        for first in range(0, len(order), p.batch_size):
            batch = torch.from_numpy(order[first:first + p.batch_size]).to(device)
            prediction, mu, logvar = model(vertices[batch], condition[batch])
            loss, rec = meshheart_loss(prediction, vertices[batch], mu, logvar, edges, p.reconstruction,
                                       p.beta, p.lambd, p.lambd_s)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            reconstructions.append(float(rec.detach()))
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "reconstruction": float(np.mean(reconstructions)),
               "val_reconstruction": float("nan")}
        if val_vertices is not None and ((epoch + 1) % p.validate_every == 0 or epoch + 1 == p.epochs):
            row["val_reconstruction"] = validation_error(model, val_vertices, val_condition, edges, p)
        history.append(row)
        ctx.log_metrics({k: v for k, v in row.items() if k != "epoch" and not np.isnan(v)}, step=epoch + 1)
        with atomic_path(checkpoint_path) as temporary:
            torch.save({"fingerprint": fingerprint, "epoch": epoch, "model": model.state_dict(),
                        "optimizer": optimiser.state_dict(), "history": history, "torch_rng": torch.get_rng_state()},
                       temporary)
    seconds = time.perf_counter() - started
    trained = (p.epochs - start_epoch) * len(vertices)

    with atomic_directory(ctx.out("models/meshheart")) as staging:
        torch.save({"state_dict": model.state_dict(), "config": asdict(config), "scaling": scaling.state(),
                    "reconstruction": p.reconstruction}, staging / "model.pt")
    last = history[-1]
    summary = {"final_loss": last["loss"], "final_reconstruction": last["reconstruction"],
               "val_reconstruction": last["val_reconstruction"], "epochs": p.epochs, "parameters": parameters,
               "reconstruction_loss": p.reconstruction, "device": device.type}
    write_json(ctx.out("metrics/train.json"), summary)  # no timings: they vary run to run (MLflow only)
    write_table(ctx.out("metrics/train_loss.csv"), pd.DataFrame(history))
    ctx.log_artifact(ctx.out("metrics/train_loss.csv"))
    checkpoint_path.unlink(missing_ok=True)
    return {"final_loss": last["loss"], "parameters": parameters,
            "sequences_per_second": trained / seconds if trained else 0.0}


if __name__ == "__main__":
    run_stage(train)
