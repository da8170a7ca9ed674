"""ecg_text-pretrain: MERL and the K-MERL analogue (and its two ablations) on the pre-training corpus.

All variants see the same records, reports (cached MiniLM embeddings) and optimiser (MERL's AdamW,
lr 1e-3, wd 1e-8, cosine warm restarts stepped per batch). MERL always gets all 12 leads; K-MERL
gets dynamically masked lead subsets and per-lead segment masks (rates ours); the ablations drop
the entity loss or the lead masking (segment masking stays).
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator

from stages.common.atomic import atomic_directory, write_json
from stages.common.io import read_table, write_table
from stages.common.params import StrictModel
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.ecg_text.entities import ENTITIES
from stages.ecg_text.masking import dynamic_lead_masks, segment_masks
from stages.ecg_text.models import VARIANTS, EcgTextModel, EncoderParams, pretraining_loss


class PretrainParams(StrictModel):
    variants: list[str] = Field(min_length=1)
    encoder: EncoderParams
    temperature: float = Field(gt=0)
    learning_rate: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    restart_period: int = Field(ge=1)
    batch_size: int = Field(ge=2)
    epochs: int = Field(ge=1)
    full_leads_probability: float = Field(ge=0, le=1)
    lead_groups_probability: float = Field(ge=0, le=1)
    segment_mask_ratio: float = Field(ge=0, lt=1)
    entity_loss_weight: float = Field(ge=0)
    num_threads: int = Field(ge=1)

    @field_validator("variants")
    @classmethod
    def known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(VARIANTS))
        if unknown:
            raise ValueError(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
        return value


def load_pretraining_data(ctx: StageContext, split: str) -> dict[str, torch.Tensor]:
    records = read_table(ctx.dep("interim/preprocessed/records.csv"), keep_default_na=False)
    arrays = np.load(ctx.dep("interim/preprocessed/ecgs.npz"))
    rows = np.flatnonzero((records["role"] == "pretrain").to_numpy() & (records["split"] == split).to_numpy())
    return {"signals": torch.from_numpy(arrays["signals"][rows].astype(np.float32)),
            "text": torch.from_numpy(arrays["report_embeddings"][rows]),
            "entities": torch.from_numpy(arrays["entities"][rows])}


def train_variant(name: str, data: dict[str, torch.Tensor], p: PretrainParams, seed: int,
                  device: torch.device) -> tuple[EcgTextModel, list[dict], float]:
    torch.manual_seed(seed)
    variant = VARIANTS[name]
    samples = data["signals"].shape[-1]
    model = EcgTextModel(variant, p.encoder, samples, data["text"].shape[1], len(ENTITIES)).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimiser, T_0=p.restart_period)
    generator = torch.Generator().manual_seed(seed)
    count = data["signals"].shape[0]
    history, seen, started = [], 0, time.perf_counter()
    for epoch in progress(range(p.epochs), f"pre-training {name}", p.epochs):
        model.train()
        order = torch.randperm(count, generator=generator)
        totals: dict[str, float] = {}
        batches = [order[i:i + p.batch_size] for i in range(0, count - 1, p.batch_size) if len(order[i:i + p.batch_size]) > 1]
        for batch in batches:
            signal = data["signals"][batch].to(device)
            visible = None
            if variant.architecture == "lead_aware":
                present = (dynamic_lead_masks(len(batch), p.full_leads_probability, p.lead_groups_probability, generator)
                           if variant.lead_masking else torch.ones(len(batch), 12, dtype=torch.bool))
                visible = segment_masks(present, model.encoder.tokens, p.segment_mask_ratio, generator).to(device)
            parts = pretraining_loss(model, signal, data["text"][batch].to(device), data["entities"][batch].to(device),
                                     visible, p.temperature, p.entity_loss_weight)
            optimiser.zero_grad()
            parts["loss"].backward()
            optimiser.step()
            schedule.step()
            seen += len(batch)
            for key, value in parts.items():
                totals[key] = totals.get(key, 0.0) + float(value) / len(batches)
        history.append({"variant": name, "epoch": epoch + 1, **{k: round(v, 6) for k, v in totals.items()}})
    return model, history, seen / max(time.perf_counter() - started, 1e-9)


def pretrain(ctx: StageContext[PretrainParams]) -> Metrics:
    p = ctx.params
    device = ctx.torch_device(p.num_threads)
    data = load_pretraining_data(ctx, "train")
    metrics: Metrics = {}
    histories = []
    with atomic_directory(ctx.out("models")) as staging:
        for name in p.variants:
            model, history, speed = train_variant(name, data, p, ctx.common.seed, device)
            torch.save(model.cpu().state_dict(), staging / f"{name}.pt")
            histories += history
            metrics[f"{name}.final_loss"] = history[-1]["loss"]
            metrics[f"{name}.ecgs_per_second"] = speed
        write_json(staging / "config.json", {"variants": p.variants, "encoder": p.encoder.model_dump(),
                                             "samples": int(data["signals"].shape[-1]),
                                             "text_dim": int(data["text"].shape[1]), "entities": list(ENTITIES)})
    table = pd.DataFrame(histories)
    write_table(ctx.out("metrics/pretrain_loss.csv"), table.pivot(index="epoch", columns="variant", values="loss").reset_index())
    write_json(ctx.out("metrics/pretrain.json"), {"records": int(data["signals"].shape[0]),
                                                  "final_loss": {n: metrics[f"{n}.final_loss"] for n in p.variants}})
    return metrics


if __name__ == "__main__":
    run_stage(pretrain)
