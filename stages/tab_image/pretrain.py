"""tab_image-pretrain@<method>: self-supervised pre-training of one method on each task's training split.

Methods (the foreach items): ``tip`` (ITC + ITM with hard negatives + MTR), ``tip_no_itm``,
``tip_no_mtr`` (the ablations: the remaining losses averaged, ours), and ``mmcl`` (MMCL-style: ITC
only, with an MLP tabular encoder on one-hot cells). Per sample: the image view (augmented with
p 0.95, official), a corrupted table (30% of features redrawn from the column's empirical marginal)
and a masked table (50% of features masked, official). Adam with linear warm-up then cosine.

A checkpoint is written after every epoch to ``data/tab_image/.scratch/``; a rerun with the same
params, code and data resumes from it. It is deleted once the models are saved.
"""
from __future__ import annotations

import hashlib
import json
import math
import time

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch.nn import functional as F

from stages.common.atomic import atomic_directory, atomic_path
from stages.common.badinput import BadInputError
from stages.common.io import write_table
from stages.common.params import StrictModel
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.tab_image.augment import augment_images, corrupt, random_subsets
from stages.tab_image.dataset import TaskData, load_task
from stages.tab_image.losses import clip_loss, hard_negatives, mtr_loss
from stages.tab_image.models import MMCL, TIP, NetworkConfig, build, config_dict, field_lengths_tuple

METHODS = ("tip", "mmcl", "tip_no_itm", "tip_no_mtr")
LOSSES = {"tip": ("itc", "itm", "mtr"), "tip_no_itm": ("itc", "mtr"), "tip_no_mtr": ("itc", "itm"), "mmcl": ("itc",)}


class NetworkParams(StrictModel):
    image_encoder: str = Field(pattern="^(cnn|resnet50)$")
    cnn_width: int = Field(ge=2)
    dim: int = Field(ge=8)
    depth: int = Field(ge=1)
    interaction_depth: int = Field(ge=1)
    heads: int = Field(ge=1)
    mlp_ratio: float = Field(gt=0)
    projection_dim: int = Field(ge=2)


class PretrainParams(StrictModel):
    network: NetworkParams
    epochs: int = Field(ge=1)
    warmup_epochs: int = Field(ge=0)
    batch_size: int = Field(ge=4)
    learning_rate: float = Field(gt=0)
    weight_decay: dict[str, float]       # per task (official: DVM 1.5e-6, cardiac 1e-4)
    temperature: float = Field(gt=0)
    corruption_rate: float = Field(ge=0, le=1)
    mask_rate: float = Field(ge=0, le=1)
    augmentation_rate: float = Field(ge=0, le=1)
    crop_scale: dict[str, float]         # per task: smallest random-resized-crop area (official DVM 0.08, cardiac 0.2)
    num_threads: int = Field(ge=1)


def network_config(network: NetworkParams, data: TaskData) -> NetworkConfig:
    return NetworkConfig(image_channels=int(data.images.shape[1]), field_lengths=field_lengths_tuple(data.field_lengths),
                         **network.model_dump())


def learning_rate_factor(epoch: int, warmup: int, epochs: int) -> float:
    """Linear warm-up over ``warmup`` epochs, then cosine decay to 0 at ``epochs``."""
    if epoch < warmup:
        return (epoch + 1) / (warmup + 1)
    progress_fraction = (epoch - warmup) / max(epochs - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * progress_fraction))


def tip_losses(model: TIP, images, corrupted, original, masked, active, temperature, generator) -> dict[str, torch.Tensor]:
    pooled, patches = model.image_encoder(images)
    no_mask = torch.zeros_like(masked)
    tokens = model.tabular_encoder(corrupted, no_mask)
    itc, logits = clip_loss(model.image_projection(pooled), model.tabular_projection(tokens[:, 0]), temperature)
    losses = {"itc": itc}
    if "itm" in active:
        table_for_image, image_for_table = hard_negatives(logits, generator)
        pairs_tokens = torch.cat([tokens, tokens[table_for_image], tokens])
        pairs_patches = torch.cat([patches, patches, patches[image_for_table]])
        fused = model.interaction(pairs_tokens, pairs_patches, torch.cat([no_mask] * 3))[:, 0]
        labels = torch.cat([torch.ones(len(tokens)), torch.zeros(2 * len(tokens))]).long().to(images.device)
        losses["itm"] = F.cross_entropy(model.itm_head(fused), labels)
    if "mtr" in active:
        fused = model.multimodal(patches, original, masked)
        categorical_logits, continuous = model.reconstruct(fused)
        losses["mtr"] = mtr_loss(categorical_logits, continuous, original, masked, model.tabular_encoder.offsets)
    return losses


def mmcl_losses(model: MMCL, images, corrupted, temperature) -> dict[str, torch.Tensor]:
    pooled, _ = model.image_encoder(images)
    itc, _ = clip_loss(model.image_projection(pooled), model.tabular_projection(model.tabular_encoder(corrupted)), temperature)
    return {"itc": itc}


def fingerprint(method: str, task: str, params: PretrainParams, seed: int, input_hashes: dict[str, str]) -> str:
    payload = {"method": method, "task": task, "params": params.model_dump(exclude={"epochs"}), "seed": seed, "inputs": input_hashes}
    return hashlib.md5(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def pretrain_task(ctx: StageContext[PretrainParams], method: str, task: str, data: TaskData, device) -> tuple[torch.nn.Module, list[dict], int]:
    p = ctx.params
    if task not in p.weight_decay or task not in p.crop_scale:
        raise BadInputError(f"tab_image.pretrain: weight_decay and crop_scale need an entry for task {task!r}")
    train = data.part("train")
    torch.manual_seed(ctx.common.seed)
    config = network_config(p.network, train)
    model = build(method, config).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay[task])
    checkpoint_path = ctx.scratch(f"{task}.pt")
    key = fingerprint(method, task, p, ctx.common.seed, ctx.input_hashes())
    history, start = [], 0
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location=device, weights_only=True)
        if state.get("fingerprint") == key:
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimizer"])
            history, start = list(state["history"]), int(state["epoch"]) + 1
            print(f"resuming {method}/{task} from {checkpoint_path} after epoch {start}")
    images_all = torch.from_numpy(train.images)
    n, columns = train.table.shape
    pairs = 0
    for epoch in progress(range(start, p.epochs), f"pretrain {method}/{task}", p.epochs - start):
        for group in optimiser.param_groups:
            group["lr"] = p.learning_rate * learning_rate_factor(epoch, p.warmup_epochs, p.epochs)
        rng = np.random.default_rng([ctx.common.seed, epoch])
        generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
        model.train()
        order = rng.permutation(n)
        sums: dict[str, float] = {}
        batches = 0
        for begin in range(0, n - 1, p.batch_size):
            index = order[begin:begin + p.batch_size]
            if len(index) < 4:
                continue
            images = images_all[index]
            augmented = augment_images(images, p.crop_scale[task], generator)
            keep = torch.rand(len(index), generator=generator) < p.augmentation_rate
            images = torch.where(keep[:, None, None, None], augmented, images).to(device)
            original = torch.from_numpy(train.table[index]).float().to(device)
            corrupted = torch.from_numpy(corrupt(train.table[index], train.table, p.corruption_rate, rng)).float().to(device)
            masked = torch.from_numpy(random_subsets(len(index), columns, int(columns * p.mask_rate), rng)).to(device)
            if method == "mmcl":
                losses = mmcl_losses(model, images, corrupted, p.temperature)
            else:
                losses = tip_losses(model, images, corrupted, original, masked, LOSSES[method], p.temperature, generator)
            loss = sum(losses.values()) / len(losses)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            for name, value in {"loss": loss, **losses}.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            batches += 1
            pairs += len(index)
        history.append({"epoch": epoch + 1, "task": task, **{k: v / max(batches, 1) for k, v in sums.items()}})
        ctx.log_metrics({f"{task}.loss": history[-1]["loss"]}, step=epoch + 1)
        with atomic_path(checkpoint_path) as temporary:
            torch.save({"fingerprint": key, "epoch": epoch, "model": model.state_dict(),
                        "optimizer": optimiser.state_dict(), "history": history}, temporary)
    return model, history, pairs


def pretrain(ctx: StageContext[PretrainParams]) -> Metrics:
    method = ctx.item
    if method not in METHODS:
        raise BadInputError(f"tab_image-pretrain: unknown method {method!r}; known: {list(METHODS)}")
    device = ctx.torch_device(ctx.params.num_threads)
    ingest_folder = ctx.dep("interim/ingest")
    tasks = list(json.loads((ingest_folder / "dataset.json").read_text())["tasks"])
    rows, metrics, models = [], {}, {}
    started, pairs = time.perf_counter(), 0
    for task in tasks:
        model, history, task_pairs = pretrain_task(ctx, method, task, load_task(ingest_folder, task), device)
        models[task] = model
        rows += history
        pairs += task_pairs
        metrics[f"{task}.final_loss"] = history[-1]["loss"]
    seconds = time.perf_counter() - started
    with atomic_directory(ctx.out(f"models/{method}")) as staging:
        for task, model in models.items():
            torch.save({"method": method, "config": config_dict(model.config),
                        "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}}, staging / f"{task}.pt")
    columns = ["epoch", "task", "loss", *LOSSES[method]]
    write_table(ctx.out(f"metrics/pretrain_{method}_loss.csv"), pd.DataFrame(rows, columns=columns))
    for task in tasks:
        ctx.scratch(f"{task}.pt").unlink(missing_ok=True)
    # Throughput varies run to run: MLflow only.
    return {**metrics, "pairs_per_second": pairs / seconds if seconds > 0 else 0.0, "device_is_cuda": float(device.type == "cuda")}


if __name__ == "__main__":
    run_stage(pretrain)
