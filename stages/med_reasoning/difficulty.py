"""med_reasoning-difficulty: the base model's pass rate over k sampled answers per training question, and easy / hard bins.

Bins (ours; the paper's thresholds are not public): training questions ranked by pass rate, the
upper half ``easy`` and the lower half ``hard``; ties are broken by id so both bins always hold
half the questions, and the share of ties is reported.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
from pydantic import Field

from stages.common.atomic import write_json
from stages.common.io import read_table, write_table
from stages.common.params import StrictModel
from stages.common.stage import Metrics, StageContext, run_stage
from stages.med_reasoning import model as lm
from stages.med_reasoning.formats import Question, format_prompt
from stages.med_reasoning.reward import extract_choice

PROMPT_STYLES = ("letter", "boxed")


class DifficultyParams(StrictModel):
    samples: int = Field(ge=1)            # k sampled answers per question
    temperature: float = Field(gt=0)      # sampling temperature (TRL's GRPO default: 1.0)
    max_new_tokens: int = Field(ge=1)
    prompt_style: str = Field(pattern="^(letter|boxed)$")
    batch_size: int = Field(ge=1)
    precision: str = Field(pattern="^(auto|bf16|fp32)$")   # ours: bf16 autocast where native (model.use_bf16)
    num_threads: int = Field(ge=1)


def manifest_questions(manifest: pd.DataFrame) -> list[Question]:
    """Questions back from manifest rows (stem and options are stored there)."""
    return [Question(str(r.id), str(r.question), json.loads(r.options_json), str(r.answer), str(r.source_dataset))
            for r in manifest.itertuples()]


def pass_rates(completions: list[list[str]], questions: list[Question]) -> tuple[np.ndarray, np.ndarray]:
    """(share of right answers, share of parseable answers) per question."""
    chosen = [[extract_choice(text, q.letters) for text in texts] for texts, q in zip(completions, questions)]
    right = np.array([np.mean([c == q.answer for c in cs]) for cs, q in zip(chosen, questions)])
    parsed = np.array([np.mean([c is not None for c in cs]) for cs in chosen])
    return right, parsed


def difficulty_bins(ids: list[str], rates: np.ndarray) -> list[str]:
    """Upper half by pass rate ``easy``, lower half ``hard`` (ties broken by id)."""
    order = sorted(range(len(ids)), key=lambda i: (-rates[i], ids[i]))
    easy = set(order[: len(ids) // 2])
    return ["easy" if i in easy else "hard" for i in range(len(ids))]


def difficulty(ctx: StageContext[DifficultyParams]) -> Metrics:
    p = ctx.params
    device = ctx.torch_device(p.num_threads)
    manifest = read_table(ctx.dep("interim/ingest/manifest.csv"), keep_default_na=False)
    train = manifest[manifest["split"] == "train"].reset_index(drop=True)
    questions = manifest_questions(train)
    model, tokenizer = lm.load_folder(ctx.dep("models/base"), device)
    prompts = [lm.chat_prompt(tokenizer, format_prompt(q, p.prompt_style)) for q in questions]
    completions = lm.generate(model, tokenizer, prompts, p.max_new_tokens, p.samples, p.temperature, p.batch_size,
                              lm.use_bf16(p.precision, device.type))
    right, parsed = pass_rates(completions, questions)
    bins = difficulty_bins([q.id for q in questions], right)
    table = pd.DataFrame({"id": [q.id for q in questions], "subset": train["subset"], "pass_rate": right,
                          "parse_rate": parsed, "bin": bins})
    write_table(ctx.out("interim/difficulty/difficulty.csv"), table)
    median = float(np.median(right))
    summary = {"questions": len(table), "samples": p.samples, "bf16": lm.use_bf16(p.precision, device.type), "mean_pass_rate": float(right.mean()),
               "mean_parse_rate": float(parsed.mean()), "median_pass_rate": median,
               "tied_at_median": float(np.mean(right == median)),
               "pass_rate_by_bin": table.groupby("bin")["pass_rate"].mean().to_dict()}
    write_json(ctx.out("metrics/difficulty.json"), summary)
    return {k: v for k, v in summary.items() if isinstance(v, float)}


if __name__ == "__main__":
    run_stage(difficulty)
