"""grounding-train@<variant>: the tiny grounder on AG-KD's samples, with descriptions or names only.

Variants (``train.variants``): ``descriptions`` (prompt ``{class} means {definition}.``),
``names`` (class name alone) and ``descriptions_fraction`` (descriptions on ``data_pct`` of the
training rows). Token cross-entropy on the answer (AG-KD's loss), AdamW with linear decay to 0
and no warm-up (AG-KD's schedule), batch 16 (AG-KD's). A checkpoint after every epoch in
``ctx.scratch``; a rerun with the same params, code and data resumes from it.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch.nn import functional as F

from stages.common.atomic import atomic_directory, atomic_path, write_json
from stages.common.badinput import BadInputError
from stages.common.io import write_table
from stages.common.params import StrictModel
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.grounding.model import PAD, GrounderConfig, TinyGrounder
from stages.grounding.samples import encode_rows, load_images, load_queries, training_rows, vocabulary_for


class NetworkParams(StrictModel):
    input_size: int = Field(ge=16, multiple_of=8)
    width: int = Field(ge=8, multiple_of=4)
    heads: int = Field(ge=1)
    encoder_layers: int = Field(ge=1)
    decoder_layers: int = Field(ge=1)
    max_prompt_tokens: int = Field(ge=8)
    max_answer_tokens: int = Field(ge=6)


class VariantParams(StrictModel):
    use_definition: bool
    data_pct: float = Field(gt=0, le=1)


class TrainParams(StrictModel):
    variants: dict[str, VariantParams] = Field(min_length=1)
    network: NetworkParams
    bins: int = Field(ge=2)
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    num_threads: int = Field(ge=1)


def grounder_config(network: NetworkParams, vocabulary_size: int, first_location: int, bins: int) -> GrounderConfig:
    return GrounderConfig(vocabulary_size=vocabulary_size, first_location=first_location, bins=bins, **network.model_dump())


def answer_loss(logits: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """Token cross-entropy of the answer (next-token), padding ignored."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), answers[:, 1:].reshape(-1), ignore_index=PAD)


def training_fingerprint(params: TrainParams, variant: str, seed: int, input_hashes: dict[str, str]) -> str:
    payload = {"params": params.model_dump(exclude={"epochs"}), "variant": variant, "seed": seed, "inputs": input_hashes}
    return hashlib.md5(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def train(ctx: StageContext[TrainParams]) -> Metrics:
    p = ctx.params
    variant_name = ctx.item
    if variant_name not in p.variants:
        raise BadInputError(f"grounding.train.variants has no {variant_name!r}; it has {sorted(p.variants)}")
    variant = p.variants[variant_name]
    device = ctx.torch_device(p.num_threads)
    queries, info = load_queries(ctx.dep("interim/ingest"))
    knowledge = info["knowledge"]
    rows = training_rows(queries, info["seen_classes"], variant.data_pct, ctx.common.seed)
    if rows.empty:
        raise BadInputError(f"{ctx.dep('interim/ingest/queries.csv')}: no train/validate queries of seen classes")
    images = load_images(ctx.root / info["images"], rows.image_id, p.network.input_size)
    vocabulary = vocabulary_for(knowledge, p.bins)
    data = encode_rows(rows, images, vocabulary, knowledge, variant.use_definition, p.network.max_prompt_tokens, p.bins)
    config = grounder_config(p.network, len(vocabulary), vocabulary.first_location, p.bins)
    model = TinyGrounder(config).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay)
    steps_per_epoch = -(-len(rows) // p.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: max(0.0, 1.0 - step / (p.epochs * steps_per_epoch)))

    fingerprint = training_fingerprint(p, variant_name, ctx.common.seed, ctx.input_hashes())
    checkpoint_path = ctx.scratch(f"{variant_name}.pt")
    history: list[dict] = []
    start_epoch = 0
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            history, start_epoch = list(state["history"]), int(state["epoch"]) + 1
            print(f"resuming from {checkpoint_path} after epoch {start_epoch}")
    parameters = sum(t.numel() for t in model.parameters())

    started = time.perf_counter()
    for epoch in progress(range(start_epoch, p.epochs), f"training {variant_name}", p.epochs - start_epoch):
        model.train()
        order = torch.from_numpy(np.random.default_rng([ctx.common.seed, epoch]).permutation(len(rows)))
        losses = []
        for start in range(0, len(rows), p.batch_size):
            take = order[start:start + p.batch_size]
            answers = data.answers[take].to(device)
            answers = answers[:, :int((answers != PAD).sum(dim=1).max())]
            logits = model(data.images[take].to(device), data.prompts[take].to(device), answers[:, :-1])
            loss = answer_loss(logits, answers)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(float(loss.detach()))
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses))})
        ctx.log_metrics({"train_loss": history[-1]["loss"]}, step=epoch + 1)
        with atomic_path(checkpoint_path) as temporary:
            torch.save({"fingerprint": fingerprint, "epoch": epoch, "model": model.state_dict(),
                        "optimizer": optimiser.state_dict(), "schedule": schedule.state_dict(), "history": history},
                       temporary)
    seconds = time.perf_counter() - started
    trained = (p.epochs - start_epoch) * len(rows)

    with atomic_directory(ctx.out(f"models/{variant_name}")) as staging:
        torch.save({"state_dict": model.state_dict(), "config": asdict(config), "words": list(vocabulary.words),
                    "use_definition": variant.use_definition}, staging / "model.pt")
    summary = {"variant": variant_name, "use_definition": variant.use_definition, "data_pct": variant.data_pct,
               "training_samples": len(rows), "final_loss": history[-1]["loss"] if history else float("nan"),
               "epochs": p.epochs, "parameters": parameters, "device": device.type}
    write_json(ctx.out(f"metrics/train_{variant_name}.json"), summary)
    write_table(ctx.out(f"metrics/train_{variant_name}_loss.csv"), pd.DataFrame(history, columns=["epoch", "loss"]))
    checkpoint_path.unlink(missing_ok=True)
    return {"final_loss": summary["final_loss"], "parameters": parameters, "training_samples": len(rows),
            "samples_per_second": trained / seconds if trained else 0.0}


if __name__ == "__main__":
    run_stage(train)
