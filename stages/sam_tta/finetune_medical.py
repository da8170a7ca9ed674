"""sam_tta-finetune_medical: the MedSAM-like baseline, the pretrained network fully fine-tuned with labels.

It is fine-tuned on the ``medical`` domain (synthetic ultrasound-like slices), never on a target
stream, as MedSAM is fine-tuned on a large medical corpus and then applied to new data as is.
"""
from __future__ import annotations

import pandas as pd
from pydantic import Field

from stages.common.atomic import atomic_directory, write_json
from stages.common.params import StrictModel
from stages.common.stage import Metrics, StageContext, run_stage
from stages.sam_tta.pretrain import load_model, role_cases, run_training, save_model


class FinetuneParams(StrictModel):
    steps: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    learning_rate: float = Field(gt=0)
    box_jitter: float = Field(ge=0, lt=1)
    num_threads: int = Field(ge=1)


def finetune_medical(ctx: StageContext[FinetuneParams]) -> Metrics:
    p = ctx.params
    device = ctx.torch_device(p.num_threads)
    model = load_model(ctx.dep("models/source/model.pt"), device)
    cases = role_cases(ctx, "medical", model.config.image_size)
    history, _ = run_training(ctx, model, cases, p.steps, p.batch_size, p.learning_rate, p.box_jitter, p.steps, device)
    with atomic_directory(ctx.out("models/medsam")) as staging:
        save_model(staging, model.cpu())
    losses = pd.DataFrame(history, columns=["step", "loss"])
    final = float(losses["loss"].tail(max(1, len(losses) // 10)).mean())
    write_json(ctx.out("metrics/finetune_medical.json"), {"final_loss": final, "steps": p.steps, "medical_cases": len(cases)})
    ctx.scratch("last.pt").unlink(missing_ok=True)
    return {"final_loss": final}


if __name__ == "__main__":
    run_stage(finetune_medical)
