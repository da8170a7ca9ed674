"""med_reasoning-report: claims first, then accuracy with intervals, training dynamics, question lengths, examples, the published table."""
from __future__ import annotations

import json

import pandas as pd
from pydantic import Field

from stages.common.io import read_table
from stages.common.params import StrictModel
from stages.common.report import HtmlReport, plt
from stages.common.stage import Metrics, StageContext, run_stage
from stages.med_reasoning.variants import VARIANTS

# Accuracy (%) of 8B models, RL on one 1.2K subset (AlphaMed project page; real data, published, not reproduced here).
PUBLISHED = [
    {"model": "Llama3.1-8B-Instruct", "MedQA": 58.7, "MedMCQA": 56.2, "PubMedQA": 75.2, "MMLU-ProM": 58.7, "GPQA-M": 42.7, "MedXpert": 13.0},
    {"model": "HuatuoGPT-o1-8B", "MedQA": 72.6, "MedMCQA": 60.4, "PubMedQA": 79.2, "MMLU-ProM": 63.7, "GPQA-M": 55.4, "MedXpert": 16.8},
    {"model": "RL on MedQA-Sub", "MedQA": 74.2, "MedMCQA": 63.1, "PubMedQA": 79.0, "MMLU-ProM": 62.9, "GPQA-M": 52.7, "MedXpert": 21.8},
    {"model": "RL on MedMCQA-Sub", "MedQA": 72.8, "MedMCQA": 61.9, "PubMedQA": 79.2, "MMLU-ProM": 61.7, "GPQA-M": 50.1, "MedXpert": 18.7},
    {"model": "RL on PubMedQA-Sub", "MedQA": 69.9, "MedMCQA": 59.8, "PubMedQA": 79.2, "MMLU-ProM": 59.3, "GPQA-M": 48.0, "MedXpert": 17.9},
]


class ReportParams(StrictModel):
    examples: int = Field(ge=0)


def curves_figure(logs: dict[str, pd.DataFrame], column: str, label: str):
    figure, axis = plt.subplots(figsize=(6, 3.5))
    for variant, log in logs.items():
        mean = log.groupby("step")[column].mean()
        axis.plot(mean.index, mean.to_numpy(), marker="o", label=variant)
    axis.set_xlabel("GRPO step")
    axis.set_ylabel(label)
    axis.legend(fontsize=8)
    return figure


def length_figure(manifest: pd.DataFrame):
    figure, axis = plt.subplots(figsize=(6, 3.5))
    for subset, frame in sorted(manifest[manifest["split"] == "train"].groupby("subset")):
        axis.hist(frame["question_words"], bins=15, alpha=0.6, label=str(subset))
    axis.set_xlabel("question length (words)")
    axis.set_ylabel("training questions")
    axis.legend(fontsize=8)
    return figure


def report(ctx: StageContext[ReportParams]) -> Metrics:
    claims = json.loads(ctx.dep("metrics/claims.json").read_text())["claims"]
    accuracy = read_table(ctx.dep("evaluation/accuracy.csv"))
    predictions = read_table(ctx.dep("evaluation/predictions.csv"), keep_default_na=False)
    manifest = read_table(ctx.dep("interim/ingest/manifest.csv"), keep_default_na=False)
    logs = {v: read_table(ctx.dep(f"metrics/train_{v}.csv")) for v in VARIANTS}
    untrained = [v for v, log in logs.items() if not len(log)]
    logs = {v: log for v, log in logs.items() if len(log)}

    page = HtmlReport("med_reasoning: medical multiple-choice reasoning from rule-based RL alone (AlphaMed)")
    page.heading("Claims")
    page.table([{"claim": c["claim"], "holds": c["holds"], "measured": json.dumps(c["measured"]),
                 "intervals": json.dumps(c.get("intervals", {}))} for c in claims.values()])
    page.paragraph(f"Scale: {ctx.common.scale}. Synthetic clinical-calculation questions (ours) and SmolLM2-135M-Instruct at smoke "
                   "scale; GRPO settings, prompt and difficulty bins are ours where the paper's are not public.", note=True)
    if untrained:
        page.paragraph(f"Not trained at this scale (train.variants): {', '.join(untrained)}; the claims comparing them are "
                       "reported as not tested (holds false).", note=True)
    page.heading("Accuracy (greedy, seed-averaged, 95% bootstrap interval over questions, range over seeds)")
    page.table(accuracy, float_format="{:.3f}")
    page.heading("Training dynamics")
    page.figure(curves_figure(logs, "reward", "mean reward"), "Reward per step (mean over seeds) per variant")
    page.figure(curves_figure(logs, "effective_query_ratio", "effective-query ratio"),
                "Share of prompts whose rollouts do not all get the same reward; the short subset should fall first")
    page.figure(curves_figure(logs, "completion_length", "completion tokens"), "Mean completion length per step")
    page.figure(curves_figure(logs, "parse_rate", "parse rate"), "Share of completions stating an option letter")
    page.heading("Question lengths")
    page.figure(length_figure(manifest), "Training-question length by subset (long vignettes vs short questions)")
    page.heading("Example completions, before and after RL (mixed, seed 0)")
    base = predictions[predictions["model"] == "base"].set_index("id")
    after = predictions[(predictions["model"] == "mixed") & (predictions["seed"] == predictions["seed"].min())].set_index("id")
    ids = sorted(set(base.index) & set(after.index))[: ctx.params.examples]
    if ids:
        page.table([{"id": i, "answer": base.loc[i, "answer"], "base": base.loc[i, "completion"],
                     "after RL": after.loc[i, "completion"]} for i in ids])
    else:
        page.paragraph("No examples: the mixed variant was not trained at this scale, or report.examples is 0.", note=True)
    page.heading("Published (real data, 8B models; context, not reproduced here)")
    page.table(PUBLISHED, float_format="{:.1f}")
    ctx.publish_report(page)
    return {"claims_holding": float(sum(c["holds"] for c in claims.values()))}


if __name__ == "__main__":
    run_stage(report)
