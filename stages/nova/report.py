"""nova-report: one HTML page with example cases, metric tables with intervals, the
common-versus-rare breakdown and the published baselines (labelled as published)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
from matplotlib import patches
from pydantic import Field

from stages.common.io import read_table
from stages.common.params import StrictModel
from stages.common.report import HtmlReport, plt
from stages.common.stage import StageContext, run_stage
from stages.nova.dataset import declared_source, ingest_info, load_manifest, load_predictions, read_manifest_slice

MODEL_COLOURS = {"normative": "#e8453c", "random_boxes": "#8c8cff", "openai_compatible": "#2ca02c"}
# Real NOVA, as published (arXiv 2505.14064): value in the paper's unit; "ours" converts it to the
# unit of this report's tables (mAP, F1, Top-k on 0-1; BLEU-4 on 0-100, as sacrebleu and the paper).
PUBLISHED = [
    {"model": "Qwen2.5-VL-72B", "task": "localisation", "metric": "mAP@30", "published": 37.66, "unit": "%"},
    {"model": "Qwen2-VL-72B", "task": "localisation", "metric": "mAP@30", "published": 25.02, "unit": "%"},
    {"model": "Gemini 2.0 Flash", "task": "localisation", "metric": "mAP@30", "published": 20.16, "unit": "%"},
    {"model": "Gemini 2.0 Flash", "task": "captioning", "metric": "clinical-term F1", "published": 19.8, "unit": "%"},
    {"model": "GPT-4o", "task": "captioning", "metric": "clinical-term F1", "published": 15.7, "unit": "%"},
    {"model": "Qwen2.5-VL-72B", "task": "captioning", "metric": "clinical-term F1", "published": 13.6, "unit": "%"},
    {"model": "Gemini 2.0 Flash", "task": "captioning", "metric": "BLEU-4", "published": 1.83, "unit": "0-100"},
    {"model": "Gemini 2.0 Flash", "task": "diagnosis", "metric": "Top-1", "published": 22.1, "unit": "%"},
]


def published_rows() -> list[dict]:
    """The published numbers with a column in this report's units (percent -> 0-1; BLEU-4 stays 0-100)."""
    return [{**row, "in our units": round(row["published"] / 100, 4) if row["unit"] == "%" else row["published"]}
            for row in PUBLISHED]


class ReportParams(StrictModel):
    examples: int = Field(ge=0)   # slices shown with their boxes, captions and diagnoses (rare pathologies first)


def example_figure(pixels: np.ndarray, gold: np.ndarray, raters: dict[str, np.ndarray], predicted: dict[str, np.ndarray], title: str):
    """The slice with gold (gold), rater (dashed) and each model's boxes."""
    figure, axis = plt.subplots(figsize=(4.2, 4.2))
    axis.imshow(pixels, cmap="gray", vmin=0, vmax=1)
    for x, y, w, h in gold:
        axis.add_patch(patches.Rectangle((x, y), w, h, fill=False, edgecolor="gold", linewidth=2.2, label="gold"))
    for (name, boxes), colour in zip(raters.items(), ("#40E0D0", "#FA8072"), strict=False):
        for x, y, w, h in boxes:
            axis.add_patch(patches.Rectangle((x, y), w, h, fill=False, edgecolor=colour, linewidth=1, linestyle="--", label=name))
    for name, boxes in predicted.items():
        for x, y, w, h in boxes:
            axis.add_patch(patches.Rectangle((x, y), w, h, fill=False, edgecolor=MODEL_COLOURS.get(name, "white"), linewidth=1.4, label=name))
    handles, labels = axis.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    if unique:
        axis.legend(unique.values(), unique.keys(), loc="lower right", fontsize=7, framealpha=0.7)
    axis.set_title(title, fontsize=9)
    axis.set_xticks([])
    axis.set_yticks([])
    return figure


def pr_figure(curves: pd.DataFrame):
    figure, axis = plt.subplots(figsize=(5, 3.6))
    for column in curves.columns[1:]:
        axis.plot(curves.recall, curves[column], label=column, color=MODEL_COLOURS.get(column))
    axis.set_xlabel("recall")
    axis.set_ylabel("interpolated precision")
    axis.set_title("Precision-recall at IoU 0.3 (all slices)")
    axis.legend()
    figure.tight_layout()
    return figure


def interval_table(summary: pd.DataFrame, group: str) -> pd.DataFrame:
    """Rows metric, a column per model: 'value [low, high]'."""
    chosen = summary[summary.group == group].copy()

    def cell(row) -> str:
        if not np.isfinite(row.value):
            return "n/a"
        if row.metric in ("tp30", "fp30"):
            return f"{row.value:.0f} [{row.low:.0f}, {row.high:.0f}]"
        return f"{row.value:.3f} [{row.low:.3f}, {row.high:.3f}]"

    chosen["cell"] = chosen.apply(cell, axis=1)
    table = chosen.pivot_table(index=["task", "metric"], columns="model", values="cell", aggfunc="first", sort=False).reset_index()
    return table


def endpoint_of(path) -> str:
    """Which endpoint and served model answered (never the key), or ``offline``."""
    payload = json.loads(path.read_text())
    return f"{payload['endpoint_model']} at {payload['endpoint']}" if payload.get("endpoint") else "offline (this machine)"


def group_sentence(metrics: dict) -> str:
    """How results are grouped, with each group's case count; empty groups named; a lopsided split flagged."""
    counts = {g: n for g, n in metrics["cases"].items() if g != "all"}
    listed = ", ".join(f"{g}: {n} cases" + (" (empty)" if n == 0 else "") for g, n in counts.items())
    if metrics.get("frequency_by", "cases") == "cases":
        text = (f"Groups by the number of cases per pathology in this benchmark (rare = at most the configured "
                f"number of cases; ours): {listed}.")
        total = metrics["cases"]["all"]
        if total and min(counts.values(), default=0) < 0.1 * total:
            text += (" One group holds under a tenth of the cases, so the split says little; on the real release, where "
                     "nearly every pathology has one case, set nova.ingest.frequency_by: category.")
        return text
    return f"Groups by pathology category, read from the final diagnosis (ours): {listed}."


def report(ctx: StageContext[ReportParams]) -> None:
    ingest = ctx.dep("interim/ingest")
    manifest = load_manifest(ingest, ctx.root)
    declared_source(ctx, manifest.root, "the benchmark slices")
    evaluation = ctx.dep("evaluation")
    summary = read_table(evaluation / "summary.csv")
    per_case = read_table(evaluation / "per_case.csv")
    per_pathology = read_table(evaluation / "per_pathology.csv")
    judges = json.loads((evaluation / "judges.json").read_text())
    metrics = json.loads(ctx.dep("metrics/evaluate.json").read_text())
    predictions_dir = ctx.dep("predictions")
    predict_summary = json.loads((predictions_dir / "summary.json").read_text())
    curves = read_table(ctx.dep("plots/pr_iou30.csv"))
    models = list(predict_summary)
    predictions = {name: load_predictions(predictions_dir / f"{name}.json") for name in models}

    synthetic = ingest_info(ingest)["source"] == "synthetic"
    report = HtmlReport("nova: rare-anomaly localisation, captioning and diagnosis"
                        + (" (synthetic smoke run)" if synthetic else ""))
    images = manifest.images
    report.paragraph(f"{len(images)} slices from {images.case_id.nunique()} cases and {images.pathology.nunique()} "
                     f"pathologies. {int((images.n_gold == 0).sum())} slices have no gold box.")
    report.paragraph(group_sentence(metrics), note=True)
    if synthetic:
        report.paragraph("The benchmark is synthetic: slices of the MNI152 template with painted 'pathologies' from the "
                         "study's catalogue. The retrieval diagnoser reads the same catalogue the histories were drawn "
                         "from, so its diagnosis scores here are an upper bound, not a finding.", note=True)
    report.paragraph(f"Judges: caption keywords by {judges['caption_keywords']}; diagnoses by {judges['diagnosis']}. "
                     f"METEOR: {judges['meteor']}. Intervals: {judges['bootstrap']}.", note=True)
    if "normative_beats_random_map30" in metrics:
        n, r = metrics["normative"]["map30"], metrics["random_boxes"]["map30"]
        report.paragraph(f"Normative detector mAP@30 {n:.3f} against {r:.3f} for random boxes "
                         f"({'better' if metrics['normative_beats_random_map30'] else 'not better'}).")

    report.heading("Metrics (all cases)")
    unscored = [name for name, flag in metrics.get("scoreless", {}).items() if flag]
    report.paragraph(
        "Localisation leads with the count metrics (ACC50, TP30, FP30, FNR50), which need no scores. hit30 / hit50: "
        "share of slices with a gold box whose best IoU reaches 0.3 / 0.5, and mean_best_iou, as the public "
        "re-implementation by NOVA's authors computes its 'mAP@30'; map30 / map50 / map50_95 are COCO AP "
        "(pycocotools' definition). The official scorer was not available, so which of the two definitions the "
        "published mAP@30 uses is unknown."
        + (f" Score-less models ({', '.join(unscored)}): their AP is one operating point (one constant score; "
           "independent of the order of their boxes; the lower bound over tie orders)." if unscored else ""), note=True)
    report.table(interval_table(summary, "all"), "value [95% bootstrap interval]; mAP, hit rates, mean best IoU, ACC50, "
                                                   "FNR50, F1 and Top-k on 0-1, BLEU-4, METEOR and ROUGE-L on 0-100, "
                                                   "TP30 and FP30 are counts")
    for group in [g for g in metrics["cases"] if g != "all"]:
        report.heading(f"Metrics, {group} pathologies", level=3)
        if group in metrics.get("empty_groups", []):
            report.paragraph(f"No case falls in the {group} group: it is empty and has no scores.", note=True)
            continue
        report.table(interval_table(summary, group), f"{group} pathologies only ({metrics['cases'][group]} cases)")
    report.heading("Per pathology", level=3)
    report.table(per_pathology.sort_values(["model", "cases"], ascending=[True, False]), "Top-k per pathology; tp30 out of gold_boxes")
    report.heading("Precision-recall")
    report.figure(pr_figure(curves), "interpolated precision at IoU 0.3; the area under each curve is its mAP@30")

    report.heading("Example cases")
    gold = manifest.boxes_of("gold")
    raters = {f"rater{r}": manifest.boxes_of(f"rater{r}") for r in (1, 2)}
    with_box = images[images.n_gold > 0].sort_values("image_id")
    rare_first = pd.concat([with_box[with_box.frequency == "rare"].head(ctx.params.examples // 2), with_box])
    examples = rare_first.drop_duplicates("image_id").head(ctx.params.examples)
    for row in examples.itertuples():
        pixels = read_manifest_slice(manifest, row.path)
        predicted = {name: predictions[name][0].get(row.image_id, (np.zeros((0, 4)), None))[0] for name in models}
        figure = example_figure(pixels, gold[row.image_id], {k: v[row.image_id] for k, v in raters.items()}, predicted,
                                f"{row.image_id} ({row.frequency}: {row.final_diagnosis})")
        report.figure(figure, f"{row.image_id}: gold box (gold), raters (dashed), predicted boxes per model")
        lines = [{"source": "gold caption", "text": row.caption}, {"source": "clinical history", "text": row.clinical_history}]
        for name in models:
            lines.append({"source": f"{name} caption", "text": predictions[name][1].get(row.image_id, "")})
            ranked = predictions[name][2].get(row.case_id, [])
            hit = per_case[(per_case.model == name) & (per_case.case_id == row.case_id)]
            verdict = "" if hit.empty else f" (top-1 {'hit' if bool(hit.top1.iloc[0]) else 'miss'}, top-5 {'hit' if bool(hit.top5.iloc[0]) else 'miss'})"
            lines.append({"source": f"{name} diagnoses", "text": "; ".join(ranked) + verdict})
        report.table(lines, f"{row.image_id}: gold diagnosis '{row.final_diagnosis}'")

    report.heading("Model runs")
    report.table([{"model": k, "endpoint": endpoint_of(predictions_dir / f"{k}.json"), "slices": v["slices"],
                   "problems": v["problems"], "first problems": "; ".join(v["problem_examples"][:3])}
                  for k, v in predict_summary.items()],
                 "problems = answers that did not parse or requests that failed (scored as empty predictions); "
                 "request and cache counts are in the nova-predict MLflow run")
    report.heading("Published reference points (real NOVA" + ("; not comparable with a synthetic run)" if synthetic else ")"))
    report.table(published_rows(), "as published in arXiv 2505.14064 (zero-shot; Gemini 2.0 Flash at temperature 0.1); "
                                   "'in our units' is the same number on this report's scale (mAP, F1 and Top-1 on 0-1)")
    report.paragraph("The official scorer was not available: whether the published mAP@30 is COCO AP (our map30) or the "
                     "per-image hit rate of the public re-implementation (our hit30) is unknown, so compare both.", note=True)
    ctx.publish_report(report)


if __name__ == "__main__":
    run_stage(report)
