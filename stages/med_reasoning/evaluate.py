"""med_reasoning-evaluate: greedy accuracy of the base model and every RL model on held-out in-domain and out-of-domain sets.

Intervals are percentile bootstraps over questions (paired for RL minus base); the spread over
seeds is the range of per-seed accuracies. The main RL model of the claims is ``mixed`` (ours:
the paper trains on one subset at a time; every variant is in the table).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from stages.common.atomic import write_json
from stages.common.claims import Claim, write_claims
from stages.common.io import read_table, write_table
from stages.common.params import StrictModel
from stages.common.stage import Metrics, StageContext, run_stage
from stages.common.stats import bootstrap_interval
from stages.med_reasoning import model as lm
from stages.med_reasoning.difficulty import manifest_questions
from stages.med_reasoning.formats import format_prompt
from stages.med_reasoning.reward import extract_choice
from stages.med_reasoning.variants import VARIANTS

BASE = "base"
MAIN_VARIANT = "mixed"


class EvaluateParams(StrictModel):
    max_new_tokens: int = Field(ge=1)
    prompt_style: str = Field(pattern="^(letter|boxed)$")
    bootstrap_resamples: int = Field(ge=100)
    confidence: float = Field(gt=0.5, lt=1)
    batch_size: int = Field(ge=1)
    precision: str = Field(pattern="^(auto|bf16|fp32)$")   # ours: bf16 autocast where native (model.use_bf16)
    num_threads: int = Field(ge=1)


def predict(folder, questions, p: EvaluateParams, device) -> list[tuple[str | None, str]]:
    """(chosen letter, completion) per question, greedy."""
    model, tokenizer = lm.load_folder(folder, device)
    prompts = [lm.chat_prompt(tokenizer, format_prompt(q, p.prompt_style)) for q in questions]
    texts = [t[0] for t in lm.generate(model, tokenizer, prompts, p.max_new_tokens, 1, None, p.batch_size,
                                             lm.use_bf16(p.precision, device.type))]
    return [(extract_choice(text, q.letters), text) for text, q in zip(texts, questions)]


def mean_interval(values: np.ndarray, resamples: int, confidence: float, seed: int) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over questions (the resampling unit)."""
    values = np.asarray(values, dtype=float)
    return bootstrap_interval(lambda indices: float(values[indices].mean()), len(values), resamples, confidence, seed)


def accuracy_table(predictions: pd.DataFrame, resamples: int, confidence: float, seed: int) -> pd.DataFrame:
    """Accuracy per model and evaluation group (in domain, out of domain, each set), seed-averaged, with intervals."""
    rows = []
    for (model, group), frame in predictions.groupby(["model", "group"], sort=True):
        per_question = frame.groupby("id")["correct"].mean().to_numpy(dtype=float)
        per_seed = frame.groupby("seed")["correct"].mean()
        low, high = mean_interval(per_question, resamples, confidence, seed)
        rows.append({"model": model, "group": group, "questions": len(per_question), "accuracy": float(per_question.mean()),
                     "ci_low": low, "ci_high": high, "seed_min": float(per_seed.min()), "seed_max": float(per_seed.max()),
                     "parse_rate": float(frame["parsed"].mean())})
    return pd.DataFrame(rows)


def paired_difference(predictions: pd.DataFrame, model: str, group: str, resamples: int, confidence: float,
                      seed: int) -> tuple[float, tuple[float, float]]:
    """RL minus base accuracy on one group, with a paired bootstrap interval over questions."""
    frame = predictions[predictions["group"] == group]
    rl = frame[frame["model"] == model].groupby("id")["correct"].mean()
    base = frame[frame["model"] == BASE].groupby("id")["correct"].mean().reindex(rl.index)
    difference = (rl - base).to_numpy(dtype=float)
    return float(difference.mean()), mean_interval(difference, resamples, confidence, seed)


def late_effective_query_ratio(log: pd.DataFrame) -> float:
    """Mean effective-query ratio over the second half of the steps (all seeds)."""
    late = log[log["step"] > log["step"].max() / 2]
    return float(late["effective_query_ratio"].mean())


def evaluate(ctx: StageContext[EvaluateParams]) -> Metrics:
    p = ctx.params
    device = ctx.torch_device(p.num_threads)
    manifest = read_table(ctx.dep("interim/ingest/manifest.csv"), keep_default_na=False)
    held_out = manifest[manifest["split"] != "train"].sort_values(["set", "id"]).reset_index(drop=True)
    questions = manifest_questions(held_out)
    models = [(BASE, 0, ctx.dep("models/base"))] + [
        (variant, int(folder.name.removeprefix("seed")), folder)
        for variant in VARIANTS for folder in sorted(ctx.dep(f"models/rl/{variant}").glob("seed*"))]
    rows = []
    for name, seed, folder in models:
        for q, row, (chosen, text) in zip(questions, held_out.itertuples(), predict(folder, questions, p, device)):
            rows.append({"model": name, "seed": seed, "set": row.set, "id": q.id, "answer": q.answer, "chosen": chosen or "",
                         "correct": chosen == q.answer, "parsed": chosen is not None, "completion": text})
    predictions = pd.DataFrame(rows)
    predictions["group"] = np.where(predictions["set"] == "test_in", "in_domain", "out_of_domain")
    by_set = predictions.assign(group=predictions["set"])
    table = pd.concat([accuracy_table(predictions, p.bootstrap_resamples, p.confidence, ctx.common.seed),
                       accuracy_table(by_set[by_set["set"] != "test_in"], p.bootstrap_resamples, p.confidence, ctx.common.seed)],
                      ignore_index=True)
    write_table(ctx.out("evaluation/predictions.csv"), predictions)
    write_table(ctx.out("evaluation/accuracy.csv"), table)

    def accuracy(model: str, group: str) -> float:
        return float(table[(table["model"] == model) & (table["group"] == group)]["accuracy"].iloc[0])

    logs = {v: read_table(ctx.dep(f"metrics/train_{v}.csv")) for v in VARIANTS}
    trained = sorted(v for v, log in logs.items() if len(log))
    claims, summary = [], {"accuracy": {f"{r.model}.{r.group}": r.accuracy for r in table.itertuples()}, "trained_variants": trained}

    def claim(needs: tuple[str, ...], measure, **fields) -> Claim:
        """The claim measured when every variant it compares was trained, else reported as not tested (holds false)."""
        missing = [v for v in needs if v not in trained]
        if missing:
            reason = f"variants {missing} not trained at {ctx.common.scale} scale (trained: {trained})"
            return Claim(**fields, measured={"tested": "no", "reason": reason}, holds=False)
        return Claim(**fields, **measure())

    for group, source in (("in_domain", "Table 1 (MedQA, MedMCQA, PubMedQA)"),
                          ("out_of_domain", "Table 1 (MMLU-ProM, GPQA-M, MedXpert)")):
        def beats_base(group=group):
            difference, interval = paired_difference(predictions, MAIN_VARIANT, group, p.bootstrap_resamples, p.confidence,
                                                     ctx.common.seed)
            summary[f"rl_minus_base.{group}"] = difference
            return {"measured": {"base": accuracy(BASE, group), "rl_mixed": accuracy(MAIN_VARIANT, group),
                                 "rl_minus_base": difference, "ci_excludes_zero": str(interval[0] > 0)},
                    "intervals": {"rl_minus_base": interval}, "holds": difference > 0}
        claims.append(claim(
            (MAIN_VARIANT,), beats_base, id=f"rl_beats_base_{group}", source=source,
            claim=f"Rule-based RL alone, with no SFT, lifts {group.replace('_', '-')} accuracy above the base instruct model.",
            comparison="mean RL (mixed, over seeds) accuracy minus base accuracy > 0"))

    def saturates():
        short_late, long_late = late_effective_query_ratio(logs["short"]), late_effective_query_ratio(logs["long"])
        return {"measured": {"short_late_effective_query_ratio": short_late, "long_late_effective_query_ratio": long_late},
                "holds": short_late < long_late}
    claims.append(claim(
        ("short", "long"), saturates, id="short_questions_saturate_early",
        claim="Training on short questions saturates early: its ratio of effective queries falls below that of long, "
              "informative questions.",
        source="project page, training-dynamics figure (PubMedQA-Sub vs MedQA-Sub)",
        comparison="mean effective-query ratio over the second half of training: short < long"))

    def informative():
        long_acc, short_acc = accuracy("long", "in_domain"), accuracy("short", "in_domain")
        return {"measured": {"rl_long": long_acc, "rl_short": short_acc}, "holds": long_acc > short_acc}
    claims.append(claim(
        ("long", "short"), informative, id="informative_questions_help_more",
        claim="Informativeness drives gains: RL on long, informative questions beats RL on short ones.",
        source="project page (research findings)", comparison="in-domain accuracy: long > short"))

    def every_subset():
        difficulty = {v: accuracy(v, "in_domain") for v in ("easy", "hard", "mixed")}
        return {"measured": {"base": accuracy(BASE, "in_domain"), **{f"rl_{k}": v for k, v in difficulty.items()}},
                "holds": all(v > accuracy(BASE, "in_domain") for v in difficulty.values())}
    claims.append(claim(
        ("easy", "hard", "mixed"), every_subset, id="every_difficulty_subset_beats_base",
        claim="RL on a small subset (easy-only, hard-only or mixed) already beats the base model.",
        source="project page (1,200 questions per subset beat baselines)",
        comparison="in-domain accuracy of each of easy, hard, mixed > base"))
    write_json(ctx.out("metrics/evaluate.json"), summary)
    write_claims(ctx, claims)
    return {k: v for k, v in summary.items() if isinstance(v, float)} | {
        f"accuracy.{k}": v for k, v in summary["accuracy"].items() if k.split(".")[1] in ("in_domain", "out_of_domain")}


if __name__ == "__main__":
    run_stage(evaluate)
