"""ms_lesion-train <model>: one four-output network on the datasets the model names, constraints on or off.

Supervised BCE + Dice only for the labels a case has; after ``warmup_fraction`` of the
iterations the longitudinal, spatial and volumetric constraints are ramped in linearly over
``ramp_fraction`` (CoactSeg switches its relation losses on half-way; the ramp is ours). The five
models of params (union, union without constraints, one per dataset) are a ``foreach`` in
dvc.yaml, so a flow on Ray trains them side by side.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator

from stages.common.atomic import atomic_directory, write_json
from stages.common.badinput import BadInputError
from stages.common.io import read_table, write_table
from stages.common.params import StrictModel
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.ms_lesion import constraints
from stages.ms_lesion.batches import draw_patches, training_case
from stages.ms_lesion.model import NetworkConfig, save_model, supervised_loss


class NetworkParams(StrictModel):
    architecture: str = Field(pattern="^(unet|vnet)$")
    channels: list[int] = Field(min_length=2)
    strides: list[int] = Field(min_length=1)

    @model_validator(mode="after")
    def unet_shape(self) -> NetworkParams:
        if len(self.strides) != len(self.channels) - 1:
            raise ValueError(f"strides: need one fewer than channels ({len(self.channels)}), got {len(self.strides)}")
        return self


class ModelParams(StrictModel):
    datasets: list[str] = Field(min_length=1)
    constraints: bool


class ConstraintWeights(StrictModel):
    longitudinal: float = Field(ge=0)
    spatial: float = Field(ge=0)
    volumetric: float = Field(ge=0)


class TrainParams(StrictModel):
    network: NetworkParams
    models: dict[str, ModelParams]
    patch: tuple[int, int, int]
    iterations: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    warmup_fraction: float = Field(ge=0, le=1)
    ramp_fraction: float = Field(ge=0, le=1)
    constraint_weights: ConstraintWeights
    lesion_patch_fraction: float = Field(ge=0, le=1)
    num_threads: int = Field(ge=1)

    @model_validator(mode="after")
    def patch_fits(self) -> TrainParams:
        multiple = 16 if self.network.architecture == "vnet" else int(np.prod(self.network.strides))
        if any(size % multiple for size in self.patch):
            raise ValueError(f"patch: every size must be a multiple of {multiple} for the {self.network.architecture} (got {self.patch})")
        return self


def constraint_ramp(iteration: int, iterations: int, warmup_fraction: float, ramp_fraction: float) -> float:
    """0 during the warm-up, then linear to 1 over ``ramp_fraction`` of the iterations."""
    start = warmup_fraction * iterations
    if iteration < start:
        return 0.0
    span = ramp_fraction * iterations
    return 1.0 if span <= 0 else min(1.0, (iteration - start + 1) / span)


def constraint_loss(logits: torch.Tensor, white_matter: torch.Tensor, weights: ConstraintWeights) -> dict[str, torch.Tensor]:
    p = torch.sigmoid(logits)
    p_a1, p_a2, p_n, p_v = p.unbind(1)
    return {"longitudinal": weights.longitudinal * constraints.longitudinal_loss(p_a1, p_a2, p_n, p_v),
            "spatial": weights.spatial * constraints.spatial_loss(p, white_matter),
            "volumetric": weights.volumetric * constraints.volumetric_loss(p_a1, p_a2, p_n, p_v)}


def train(ctx: StageContext[TrainParams]) -> Metrics:
    p = ctx.params
    name = ctx.spec.item
    if name not in p.models:
        raise BadInputError(f"ms_lesion.train.models: no model {name!r} (have {sorted(p.models)})")
    spec = p.models[name]
    device = ctx.torch_device(p.num_threads)
    splits = read_table(ctx.dep("interim/splits/splits.csv"), ("dataset", "split", "file"))
    chosen = splits[(splits.split == "train") & splits.dataset.isin(spec.datasets)]
    missing = sorted(set(spec.datasets) - set(chosen.dataset))
    if missing:
        raise BadInputError(f"{ctx.dep('interim/splits/splits.csv')}: no training cases of {missing} for model {name}")
    folder = ctx.dep("interim/preprocessed")
    cases = [training_case(row.dataset, np.load(folder / row.file)) for row in chosen.itertuples()]

    config = NetworkConfig(p.network.architecture, tuple(p.network.channels), tuple(p.network.strides))
    model = config.build().to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=p.learning_rate)
    rng = np.random.default_rng([ctx.common.seed, sorted(p.models).index(name)])
    history = []
    started = time.perf_counter()
    model.train()
    for iteration in progress(range(p.iterations), f"training {name}", p.iterations):
        batch = {k: torch.from_numpy(v).to(device) for k, v in draw_patches(cases, p.batch_size, p.patch,
                                                                               p.lesion_patch_fraction, rng).items()}
        logits = model(batch["inputs"])
        supervised = supervised_loss(logits, batch["labels"], batch["known"])
        ramp = constraint_ramp(iteration, p.iterations, p.warmup_fraction, p.ramp_fraction) if spec.constraints else 0.0
        terms = constraint_loss(logits, batch["white_matter"], p.constraint_weights) if ramp > 0 else {}
        loss = supervised + ramp * sum(terms.values()) if terms else supervised
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        history.append({"iteration": iteration + 1, "loss": float(loss.detach()), "supervised": float(supervised.detach()),
                        "ramp": ramp, **{k: float(v.detach()) for k, v in terms.items()}})
    seconds = time.perf_counter() - started

    with atomic_directory(ctx.out(f"models/{name}")) as staging:
        save_model(staging / "model.pt", model, config, p.patch)
    table = pd.DataFrame(history).reindex(columns=["iteration", "loss", "supervised", "ramp", "longitudinal", "spatial", "volumetric"])
    every = max(1, p.iterations // 40)
    logged = table[(table.iteration % every == 0) | (table.iteration == p.iterations)]
    write_table(ctx.out(f"metrics/train_{name}_loss.csv"), logged.round(6))
    tail = table.tail(max(1, p.iterations // 10))
    summary = {"model": name, "datasets": spec.datasets, "constraints": spec.constraints, "architecture": config.architecture,
               "training_cases": len(cases), "iterations": p.iterations,
               "final_loss": round(float(tail.loss.mean()), 6), "final_supervised": round(float(tail.supervised.mean()), 6),
               "parameters": sum(t.numel() for t in model.parameters()), "device": device.type}
    write_json(ctx.out(f"metrics/train_{name}.json"), summary)
    # Throughput varies run to run: MLflow only, never the hashed metrics file.
    return {"final_loss": summary["final_loss"], "patches_per_second": p.iterations * p.batch_size / seconds}


if __name__ == "__main__":
    run_stage(train)
