"""sam_tta-adapt@<group>: run each method of the group online over every target stream and prompt type.

Writes, per (domain, prompt, method), a per-image CSV in stream order (case, order, predicted IoU,
loss) and the predicted masks, the truth masks and the learned curves in ``predictions.npz``.
Time per image varies run to run, so it goes to MLflow only (``seconds_per_image.<method>``),
never into a hashed file.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from stages.common.atomic import atomic_directory, write_json
from stages.common.badinput import BadInputError
from stages.common.io import write_npz, write_table
from stages.common.params import StrictModel
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.sam_tta.data import case_prompts
from stages.sam_tta.pretrain import load_model, role_cases
from stages.sam_tta.tta import METHODS, Settings, adapt_stream

PROMPT_KINDS = ("box", "point")


class AdaptParams(StrictModel):
    groups: dict[str, list[str]] = Field(min_length=1)
    prompts: list[str] = Field(min_length=1)
    stream_seed: int
    lora_rank: int = Field(ge=1)
    ema_momentum: float = Field(ge=0, le=1)
    mean_teacher_momentum: float = Field(ge=0, le=1)
    learning_rate: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    lr_decay: float = Field(gt=0, le=1)
    sbct_learning_rate: float = Field(gt=0)
    threshold: float
    num_threads: int = Field(ge=1)

    @model_validator(mode="after")
    def known(self) -> AdaptParams:
        unknown = sorted({m for methods in self.groups.values() for m in methods} - set(METHODS))
        if unknown:
            raise ValueError(f"groups: unknown methods {unknown}; known: {sorted(METHODS)}")
        if set(self.prompts) - set(PROMPT_KINDS):
            raise ValueError(f"prompts: {sorted(set(self.prompts) - set(PROMPT_KINDS))} unknown; known: {list(PROMPT_KINDS)}")
        return self

    def settings(self) -> Settings:
        return Settings(self.lora_rank, self.ema_momentum, self.mean_teacher_momentum, self.learning_rate,
                        self.weight_decay, self.lr_decay, self.sbct_learning_rate, self.threshold)


def stream_key(domain: str, prompt: str, method: str) -> str:
    return f"{domain}__{prompt}__{method}"


def adapt(ctx: StageContext[AdaptParams]) -> Metrics:
    p = ctx.params
    if ctx.item not in p.groups:
        raise BadInputError(f"sam_tta.adapt.groups has no group {ctx.item!r} (groups: {sorted(p.groups)})")
    device = ctx.torch_device(p.num_threads)
    models = {"source": load_model(ctx.dep("models/source/model.pt"), device),
              "medsam": load_model(ctx.dep("models/medsam/model.pt"), device)}
    for model in models.values():
        model.eval()
    cases = role_cases(ctx, "target", models["source"].config.image_size)
    domains = sorted({c.domain for c in cases})
    arrays: dict[str, np.ndarray] = {}
    tables: dict[str, pd.DataFrame] = {}
    summary: dict[str, dict] = {}
    timings: dict[str, list[float]] = {}
    streams = [(d, k, m) for d in domains for k in p.prompts for m in p.groups[ctx.item]]
    for domain, prompt, method in progress(streams, f"adapt@{ctx.item}", len(streams)):
        stream = [c for c in cases if c.domain == domain]
        rng = np.random.default_rng([p.stream_seed, len(domain), sum(map(ord, domain))])
        prompts = [case_prompts(c, prompt, rng) for c in stream]  # the same prompts for every method
        model = models[METHODS[method].model]
        records, curves = adapt_stream(method, model, stream, prompts, p.settings(), p.stream_seed, device, keep_curved=0)
        key = stream_key(domain, prompt, method)
        tables[f"{key}.csv"] = pd.DataFrame([{"domain": domain, "prompt": prompt, "method": method, "case": r.case,
                                               "order": r.order, "predicted_iou": r.predicted_iou, "loss": r.loss}
                                              for r in records])
        for r in records:
            arrays[f"pred__{key}__{r.case}"] = r.prediction.astype(np.uint8)
            if r.curved_image is not None:
                arrays[f"curved__{key}__{r.case}"] = r.curved_image.astype(np.float32)
        if curves:
            arrays[f"curves__{key}"] = np.stack(curves).astype(np.float32)
        timings.setdefault(method, []).extend(r.seconds for r in records)
        summary[key] = {"mean_predicted_iou": float(np.mean([r.predicted_iou for r in records])), "images": len(records)}
    for case in cases:
        arrays[f"truth__{case.domain}__{case.case}"] = (case.original_labels > 0).astype(np.uint8)
        arrays[f"input__{case.domain}__{case.case}"] = case.image.astype(np.float32)
    with atomic_directory(ctx.out(f"adapted/{ctx.item}")) as staging:
        for name, table in tables.items():
            write_table(staging / name, table)
        write_npz(staging / "predictions.npz", arrays)
    write_json(ctx.out(f"metrics/adapt_{ctx.item}.json"), summary)
    seconds = {f"seconds_per_image.{m}": float(np.mean(t)) for m, t in timings.items()}
    seconds.update({f"images_per_second.{m}": 1.0 / float(np.mean(t)) for m, t in timings.items()})
    return {"streams": len(streams), **seconds}


if __name__ == "__main__":
    run_stage(adapt)
