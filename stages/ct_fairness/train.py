"""ct_fairness-train@<variable>: one 3D U-Net per (experiment, fold, training group) of one group variable.

DVC runs this step once per group variable (``foreach: [sex, age, dataset]``: stages
``ct_fairness-train@sex`` and so on), so the three are independent branches a flow can run in
parallel; the variable is ``ctx.item``. ``@sex`` trains every sex experiment's 5 folds x 2
groups (likewise ``@age`` and ``@dataset``). Within a stage the models are independent jobs: run
one after another, or with ``parallel.backend: ray`` as Ray tasks with the CPUs and GPUs per
model from params (``parallel.address`` joins a running cluster); each job sets torch's threads
from params, so both backends train the same bytes.

Both models of a fold start from the same initial weights and see the same augmentation
stream, so they differ only in their training group.
"""
from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, PositiveInt, field_validator, model_validator

from stages.common.atomic import atomic_directory, write_json
from stages.common.io import read_table, write_table
from stages.common.params import StrictModel
from stages.common.runtime import configure_torch, import_monai, keep_local_ray_on_loopback, progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.ct_fairness.folds import load_splits
from stages.ct_fairness.model import NetworkConfig
from stages.ct_fairness.transforms import training_chain

MODEL_COLUMNS = ["experiment", "variable", "dataset", "fold", "group", "replicate", "model", "train_cases", "n_train", "final_loss", "patches"]


class NetworkParams(StrictModel):
    """The U-Net's size and the patch it trains and infers on: the fields of :class:`NetworkConfig` that params choose."""

    channels: tuple[PositiveInt, ...] = Field(min_length=2)
    strides: tuple[PositiveInt, ...] = Field(min_length=1)
    res_units: int = Field(ge=0)
    dropout: float = Field(ge=0, lt=1)
    patch: tuple[PositiveInt, PositiveInt, PositiveInt]

    @model_validator(mode="after")
    def consistent(self) -> NetworkParams:
        if len(self.strides) != len(self.channels) - 1:
            raise ValueError(f"give one stride per level below the first: len(strides) must be len(channels) - 1 "
                             f"(got strides {list(self.strides)}, channels {list(self.channels)})")
        factor = math.prod(self.strides)
        if any(size % factor for size in self.patch):
            raise ValueError(f"patch: every size must be a multiple of the strides' product {factor} (got {list(self.patch)})")
        return self


class ParallelParams(StrictModel):
    backend: Literal["serial", "ray"]
    address: str | None
    cpus_per_model: float = Field(gt=0)
    gpus_per_model: float = Field(ge=0)


class TrainParams(StrictModel):
    network: NetworkParams
    seeds: int = Field(ge=1)                # training replicates per (fold, group): training variance (issue 18 item 8)
    samples_per_volume: int = Field(ge=1)
    batch_size: int = Field(ge=1)           # volumes per step; patches per step = batch_size x samples_per_volume
    positive_fraction: float = Field(ge=0, le=1)
    batch_dice: bool
    iterations: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    flip_axes: list[int]
    flip_probability: float = Field(ge=0, le=1)
    intensity_shift: float = Field(ge=0)
    intensity_scale: float = Field(ge=0)
    cache_rate: float = Field(ge=0, le=1)
    num_workers: int = Field(ge=0)
    num_threads: int = Field(ge=1)          # torch threads per model, in this process or in each Ray task
    log_every: int = Field(ge=1)
    parallel: ParallelParams

    @field_validator("flip_axes")
    @classmethod
    def no_left_right_flip(cls, axes: list[int]) -> list[int]:
        if any(a not in (1, 2) for a in axes):
            raise ValueError("flip axes must be 1 (anterior-posterior) or 2 (superior-inferior); "
                             "axis 0 (left-right) would swap the right and left kidney labels")
        return axes


def network_config(params: TrainParams) -> NetworkConfig:
    return NetworkConfig(**params.network.model_dump())


@dataclass(frozen=True)
class TrainJob:
    """One model: the experiment, fold and group it belongs to, and its training cases (npz paths)."""

    experiment: str
    variable: str
    dataset: str
    fold: int
    group: str
    cases: tuple[str, ...]
    paths: tuple[str, ...]
    seed: int
    replicate: int = 0   # training seed replicate (train.seeds), 0 for the first

    @property
    def name(self) -> str:
        return f"{self.experiment}/fold{self.fold}_{self.group}" + (f"_seed{self.replicate}" if self.replicate else "")


def jobs_for(variable: str, splits: dict, cases: pd.DataFrame, preprocessed: Path, seed: int,
             seeds: int = 1) -> list[TrainJob]:
    """Every (experiment, fold, group, replicate) of ``variable``; the seed depends on experiment, fold and
    replicate only, so both groups' models of a fold share it. ``seeds`` replicates per model (issue 18 item 8)."""
    paths = {str(c): str(preprocessed / p) for c, p in zip(cases["case"], cases["path"], strict=True)}
    jobs = []
    for experiment in splits["experiments"]:
        if experiment["variable"] != variable:
            continue
        for fold in experiment["folds"]:
            for replicate in range(seeds):
                key = f"{experiment['name']}/{fold['index']}" + (f"/seed{replicate}" if replicate else "")
                fold_seed = (seed * 1_000_003 + zlib.crc32(key.encode())) % (2**31)
                for group in experiment["groups"]:
                    members = tuple(fold["train"][group])
                    jobs.append(TrainJob(experiment["name"], variable, experiment["dataset"], int(fold["index"]), group,
                                         members, tuple(paths[c] for c in members), fold_seed, replicate))
    return jobs


def polynomial_decay(step: int, total: int, power: float = 0.9) -> float:
    """nnU-Net's learning-rate factor ``(1 - step / total) ** power``."""
    return max(1.0 - step / max(total, 1), 0.0) ** power


def train_one(job: TrainJob, params: TrainParams, device_name: str) -> dict:
    """Train one model; returns its weights (CPU), loss history, time, patch count and the torch threads it used.

    Threads come from params here too: a Ray task runs in its own process, where torch would
    otherwise take them from OMP_NUM_THREADS (which Ray sets per task).
    """
    import_monai()
    from monai.data import CacheDataset, DataLoader
    from monai.losses import DiceCELoss

    configure_torch(params.num_threads)
    device = torch.device(device_name)
    torch.manual_seed(job.seed)
    network = network_config(params).build().to(device)
    chain = training_chain(params.network.patch, params.samples_per_volume, params.positive_fraction, params.flip_axes,
                           params.flip_probability, params.intensity_shift, params.intensity_scale)
    chain.set_random_state(seed=job.seed)
    data = [{"case": c, "path": p} for c, p in zip(job.cases, job.paths, strict=True)]
    dataset = CacheDataset(data, transform=chain, cache_rate=params.cache_rate, num_workers=0, progress=False)
    loader = DataLoader(dataset, batch_size=params.batch_size, shuffle=True, num_workers=params.num_workers,
                        generator=torch.Generator().manual_seed(job.seed), drop_last=len(data) >= params.batch_size)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True, batch=params.batch_dice)
    optimiser = torch.optim.AdamW(network.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: polynomial_decay(step, params.iterations))
    history, recent, patches, step = [], [], 0, 0
    started = time.perf_counter()
    network.train()
    while step < params.iterations:
        for batch in loader:
            image, label = batch["image"].to(device), batch["label"].to(device)
            loss = loss_function(network(image), label)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            patches += int(image.shape[0])
            recent.append(float(loss.detach()))
            if step % params.log_every == 0 or step == params.iterations:
                history.append({"step": step, "loss": float(np.mean(recent))})
                recent = []
            if step >= params.iterations:
                break
    seconds = time.perf_counter() - started
    return {"state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()}, "history": history,
            "seconds": seconds, "patches": patches, "threads": torch.get_num_threads()}


def run_jobs(jobs: list[TrainJob], params: TrainParams, device_name: str) -> list[dict]:
    """Every job's result, in job order: one after another, or as Ray tasks."""
    if params.parallel.backend == "serial":
        return [train_one(job, params, device_name) for job in progress(jobs, "training models", len(jobs))]
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        if params.parallel.address is None:
            keep_local_ray_on_loopback()
        ray.init(address=params.parallel.address, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(train_one).options(num_cpus=params.parallel.cpus_per_model, num_gpus=params.parallel.gpus_per_model)
        device_for_task = "cuda" if params.parallel.gpus_per_model > 0 else "cpu"
        futures = [remote.remote(job, params, device_for_task) for job in jobs]
        return [ray.get(future) for future in progress(futures, "training models (ray)", len(futures))]
    finally:
        if started_here:
            ray.shutdown()


def save_model(path: Path, job: TrainJob, params: TrainParams, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": result["state_dict"], "config": network_config(params).to_dict(), "experiment": job.experiment,
                "fold": job.fold, "group": job.group, "train_cases": list(job.cases), "history": result["history"]}, path)


def train(ctx: StageContext[TrainParams]) -> Metrics:
    variable, p = ctx.item, ctx.params
    device = ctx.torch_device(p.num_threads)
    preprocessed = ctx.dep("interim/preprocessed")
    cases = read_table(preprocessed / "cases.csv", ("case", "path"), dtype={"case": str})
    jobs = jobs_for(variable, load_splits(ctx.dep("interim/splits")), cases, preprocessed, ctx.common.seed, p.seeds)
    ctx.log_params({"variable": variable})
    print(f"training {len(jobs)} models for {variable} on {device.type}")
    results = run_jobs(jobs, p, device.type)

    rows, curves = [], []
    with atomic_directory(ctx.out(f"models/{variable}")) as staging:
        for job, result in zip(jobs, results, strict=True):
            relative = f"{job.name}.pt"
            save_model(staging / relative, job, p, result)
            rows.append({"experiment": job.experiment, "variable": job.variable, "dataset": job.dataset, "fold": job.fold,
                         "group": job.group, "replicate": job.replicate, "model": relative, "train_cases": " ".join(job.cases),
                         "n_train": len(job.cases), "final_loss": result["history"][-1]["loss"], "patches": result["patches"]})
            curves += [{"model": job.name, **point} for point in result["history"]]
        write_table(staging / "models.csv", pd.DataFrame(rows, columns=MODEL_COLUMNS))
    table = pd.DataFrame(rows, columns=MODEL_COLUMNS)
    curve = pd.DataFrame(curves, columns=["model", "step", "loss"]).groupby("step", as_index=False)["loss"].mean()
    # Timings vary run to run: they go to MLflow only, never into the hashed metrics file or models.csv.
    seconds = float(sum(result["seconds"] for result in results))
    summary = {"models": len(table), "final_loss_mean": float(table.final_loss.mean()) if len(table) else None,
               "patches": int(table.patches.sum()), "device": device.type, "backend": p.parallel.backend}
    write_json(ctx.out(f"metrics/train_{variable}.json"), summary)
    write_table(ctx.out(f"metrics/train_{variable}_loss.csv"), curve)
    for row in curve.itertuples():
        ctx.log_metrics({"train_loss": row.loss}, step=int(row.step))
    ctx.log_artifact(ctx.out(f"models/{variable}/models.csv"))
    return {"models": len(table), "final_loss_mean": summary["final_loss_mean"], "training_seconds": seconds,
            "patches_per_second": float(table.patches.sum()) / seconds if seconds else 0.0}


if __name__ == "__main__":
    run_stage(train)
