"""sam_tta-pretrain: the small SAM-like promptable model trained from scratch on the source domain.

No SAM weights can be loaded here, so the model SAM-TTA adapts is first pretrained on the natural-
like ``source`` scenes with box and point prompts (:mod:`stages.sam_tta.training`). A checkpoint
is written every ``checkpoint_every`` steps to the stage's scratch folder; a rerun after an
interruption with the same params, code and data resumes from it. It is deleted once the model is saved.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

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
from stages.sam_tta.data import Case, load_cases, load_manifest
from stages.sam_tta.model import PATCH, SamConfig, TinySam
from stages.sam_tta.training import train_step


class NetworkParams(StrictModel):
    image_size: int = Field(ge=PATCH * 2, multiple_of=PATCH)
    encoder_dim: int = Field(ge=8)
    encoder_depth: int = Field(ge=1)
    encoder_heads: int = Field(ge=1)
    prompt_dim: int = Field(ge=8, multiple_of=8)
    decoder_depth: int = Field(ge=1)
    decoder_heads: int = Field(ge=1)
    mlp_ratio: float = Field(gt=0)


class PretrainParams(StrictModel):
    network: NetworkParams
    steps: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    box_jitter: float = Field(ge=0, lt=1)
    checkpoint_every: int = Field(ge=1)
    num_threads: int = Field(ge=1)


def network_config(network: NetworkParams) -> SamConfig:
    return SamConfig(**network.model_dump())


def role_cases(ctx: StageContext, role: str, size: int) -> list[Case]:
    manifest, root = load_manifest(ctx.dep("interim/ingest"), ctx.root)
    rows = manifest[manifest["role"] == role]
    if rows.empty:
        raise BadInputError(f"{ctx.dep('interim/ingest/manifest.csv')}: no cases with role {role!r}")
    return load_cases(rows, root, size)


def save_model(folder: Path, model: TinySam) -> None:
    torch.save({"state_dict": model.state_dict(), "config": asdict(model.config)}, folder / "model.pt")


def load_model(path: Path, device) -> TinySam:
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = SamConfig(**saved["config"]).build()
    model.load_state_dict(saved["state_dict"])
    return model.to(device)


def fingerprint(params: StrictModel, seed: int, input_hashes: dict[str, str]) -> str:
    payload = {"params": params.model_dump(exclude={"steps"}), "seed": seed, "inputs": input_hashes}
    return hashlib.md5(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def run_training(ctx: StageContext, model: TinySam, cases: list[Case], steps: int, batch_size: int, learning_rate: float,
                 box_jitter: float, checkpoint_every: int, device) -> tuple[list[dict], int]:
    """Train with checkpoints and resume; returns the loss history and the steps trained in this run."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    key = fingerprint(ctx.params, ctx.common.seed, ctx.input_hashes())
    checkpoint = ctx.scratch("last.pt")
    history, start = [], 0
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if state.get("fingerprint") == key:
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            history, start = state["history"], state["step"]
            print(f"resuming from {checkpoint} after step {start}")
    model.train()
    for step in progress(range(start, steps), f"{ctx.step}", steps - start):
        rng = np.random.default_rng([ctx.common.seed, step])
        batch = [cases[i] for i in rng.choice(len(cases), min(batch_size, len(cases)), replace=False)]
        history.append({"step": step + 1, "loss": train_step(model, optimiser, batch, rng, box_jitter, device)})
        if (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            with atomic_path(checkpoint) as temporary:
                torch.save({"fingerprint": key, "step": step + 1, "history": history, "model": model.state_dict(),
                            "optimiser": optimiser.state_dict()}, temporary)
    return history, steps - start


def pretrain(ctx: StageContext[PretrainParams]) -> Metrics:
    p = ctx.params
    device = ctx.torch_device(p.num_threads)
    cases = role_cases(ctx, "source", p.network.image_size)
    model = network_config(p.network).build().to(device)
    started = time.perf_counter()
    history, trained = run_training(ctx, model, cases, p.steps, p.batch_size, p.learning_rate, p.box_jitter,
                                    p.checkpoint_every, device)
    seconds = time.perf_counter() - started
    with atomic_directory(ctx.out("models/source")) as staging:
        save_model(staging, model.cpu())
    losses = pd.DataFrame(history, columns=["step", "loss"])
    final = float(losses["loss"].tail(max(1, len(losses) // 10)).mean())
    parameters = sum(t.numel() for t in model.parameters())
    write_json(ctx.out("metrics/pretrain.json"), {"final_loss": final, "steps": p.steps, "parameters": parameters,
                                                  "source_cases": len(cases)})
    write_table(ctx.out("metrics/pretrain_loss.csv"), losses)
    ctx.log_artifact(ctx.out("metrics/pretrain_loss.csv"))
    ctx.scratch("last.pt").unlink(missing_ok=True)
    return {"final_loss": final, "parameters": parameters, "steps_per_second": trained / seconds if trained else 0.0}


if __name__ == "__main__":
    run_stage(pretrain)
