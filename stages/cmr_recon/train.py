"""cmr_recon-train: the prompt-conditioned unrolled network on random masks of every pattern.

Each step draws a training file, a pattern and acceleration from params, a fresh mask
(the challenge's algorithms, new seed each step) and ``batch_size`` (slice, frame) pairs.
A checkpoint is written after every epoch to ``data/cmr_recon/checkpoints/last.pt``; a rerun
after an interruption, with the same params, code and data, resumes from it instead of starting
over. It is deleted once the model is saved.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from stages.cmr_recon.dataset import apply_mask, load_manifest, manifest_file, with_time_axis
from stages.cmr_recon.io import read_kspace
from stages.cmr_recon.learned import build_inputs, condition_indices, network_config
from stages.cmr_recon.losses import reconstruction_loss
from stages.cmr_recon.masks import AccelerationsByPattern, acs_from_mask, make_mask
from stages.cmr_recon.transforms import ifft2c, rss
from stages.common.atomic import atomic_directory, atomic_path, write_json
from stages.common.badinput import BadInputError
from stages.common.io import write_table
from stages.common.params import StrictModel
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage


class NetworkParams(StrictModel):
    """The network's size; its fields are those of :class:`PromptUnrolledNetConfig` that params choose."""

    num_cascades: int = Field(ge=1)
    chans: int = Field(ge=1)
    pools: int = Field(ge=1)
    sens_chans: int = Field(ge=1)
    sens_pools: int = Field(ge=1)
    adjacent_frames: int = Field(ge=0)
    num_prompts: int = Field(ge=1)
    prompt_dim: int = Field(ge=1)


class TrainParams(StrictModel):
    network: NetworkParams
    epochs: int = Field(ge=1)
    steps_per_epoch: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    l1_weight: float = Field(ge=0)
    patterns: AccelerationsByPattern
    acs: int = Field(ge=0)
    cached_files: int = Field(ge=1)
    num_threads: int = Field(ge=1)


def training_fingerprint(params: TrainParams, seed: int, input_hashes: dict[str, str]) -> str:
    """Identifies a training run: a checkpoint is resumed only when this matches.

    It covers the params, the seed and the hashes of every dependency of the stage (code and
    data, as DVC sees them), so changed code or data never resumes a stale checkpoint.
    ``epochs`` is left out so that raising it mid-run continues instead of restarting.
    """
    payload = {"params": params.model_dump(exclude={"epochs"}), "seed": seed, "inputs": input_hashes}
    return hashlib.md5(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def draw_batch(rng: np.random.Generator, files: pd.DataFrame, read, params: TrainParams):
    """One random training batch: (network inputs, target magnitudes scaled like the inputs)."""
    case = files.iloc[int(rng.integers(len(files)))]
    kspace = with_time_axis(read(case.path))
    nt, nz, _, ny, nx = kspace.shape
    pattern = str(rng.choice(list(params.patterns)))
    acceleration = int(rng.choice(params.patterns[pattern]))
    mask = make_mask(pattern, nx, ny, nt, acceleration, acs=params.acs, seed=int(rng.integers(2**31)))
    pairs = [(int(rng.integers(nz)), int(rng.integers(nt))) for _ in range(params.batch_size)]
    # Only the drawn slices are masked (one (nt, nc, ny, nx) block each), never the whole 5-D volume.
    drawn = sorted({z for z, _ in pairs})
    kus = apply_mask(kspace[:, drawn], mask)
    local_pairs = [(drawn.index(z), t) for z, t in pairs]
    inputs = build_inputs(kus, mask, acs_from_mask(mask), local_pairs,
                          params.network.adjacent_frames, condition_indices(case.modality, pattern, acceleration))
    targets = np.stack([rss(ifft2c(kspace[t, z]), coil_axis=0) for z, t in pairs]).astype(np.float32)
    return inputs, torch.from_numpy(targets) / inputs.scale[:, None, None]


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def load_checkpoint(path: Path, fingerprint: str) -> dict | None:
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state if state.get("fingerprint") == fingerprint else None


def train(ctx: StageContext[TrainParams]) -> Metrics:
    p = ctx.params
    device = ctx.torch_device(p.num_threads)
    manifest, dataset_root = load_manifest(ctx.dep("interim/ingest"), ctx.root)
    files = manifest[manifest["split"] == "train"].reset_index(drop=True)
    if files.empty:
        raise BadInputError(f"{ctx.dep('interim/ingest/manifest.csv')}: no training files (split 'train')")

    @lru_cache(maxsize=p.cached_files)
    def read(relative: str) -> np.ndarray:
        return read_kspace(manifest_file(dataset_root, relative))

    model = network_config(p.network).build().to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=p.learning_rate)
    fingerprint = training_fingerprint(p, ctx.common.seed, ctx.input_hashes())
    checkpoint_path = ctx.scratch("last.pt")
    history: list[dict] = []
    start_epoch = 0
    resumed = load_checkpoint(checkpoint_path, fingerprint)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimiser.load_state_dict(resumed["optimizer"])
        history, start_epoch = list(resumed["history"]), int(resumed["epoch"]) + 1
        print(f"resuming from {checkpoint_path} after epoch {start_epoch}")
    parameters = sum(t.numel() for t in model.parameters())
    ctx.log_metrics({"parameters": parameters, "resumed_epochs": start_epoch})

    started = time.perf_counter()
    for epoch in range(start_epoch, p.epochs):
        model.train()
        rng = np.random.default_rng([ctx.common.seed, epoch])
        losses = []
        for step in progress(range(p.steps_per_epoch), f"epoch {epoch + 1}/{p.epochs}", p.steps_per_epoch):
            inputs, target = draw_batch(rng, files, read, p)
            inputs, target = inputs.to(device), target.to(device)
            prediction = model(inputs.masked_kspace, inputs.mask, inputs.acs_mask, inputs.condition)
            loss = reconstruction_loss(prediction, target, alpha=p.l1_weight)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            if step % 10 == 0:
                ctx.log_metrics({"train_loss_step": losses[-1]}, step=epoch * p.steps_per_epoch + step)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses))})
        ctx.log_metrics({"train_loss": history[-1]["loss"]}, step=epoch + 1)
        save_checkpoint(checkpoint_path, {"fingerprint": fingerprint, "epoch": epoch, "model": model.state_dict(),
                                          "optimizer": optimiser.state_dict(), "history": history})
    seconds = time.perf_counter() - started
    trained_steps = (p.epochs - start_epoch) * p.steps_per_epoch

    with atomic_directory(ctx.out("models")) as staging:
        torch.save({"state_dict": model.state_dict(), "config": asdict(network_config(p.network))}, staging / "model.pt")
    # Timings vary run to run: they go to MLflow only, never into the hashed metrics file.
    summary = {"final_loss": history[-1]["loss"] if history else float("nan"), "epochs": p.epochs,
               "parameters": parameters, "device": device.type}
    write_json(ctx.out("metrics/train.json"), summary)
    write_table(ctx.out("metrics/train_loss.csv"), pd.DataFrame(history, columns=["epoch", "loss"]))
    ctx.log_artifact(ctx.out("metrics/train_loss.csv"))
    checkpoint_path.unlink(missing_ok=True)  # it only serves an interrupted run; a forced rerun trains afresh
    return {"final_loss": summary["final_loss"], "parameters": parameters,
            "samples_per_second": trained_steps * p.batch_size / seconds if trained_steps else 0.0}


if __name__ == "__main__":
    run_stage(train)
