"""grounding-report: claims first, example images with gold and predicted boxes, mAP tables and curves."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
from pydantic import Field

from stages.common.io import read_table
from stages.common.params import StrictModel
from stages.common.report import HtmlReport, plt
from stages.common.stage import StageContext, run_stage
from stages.grounding.formats import read_image
from stages.grounding.tokens import decode

# VinDr-CXR test set, read off the AG-KD teaser figure (real data, context only; the study note).
PUBLISHED = [
    {"model": "RadVLM (7B), published", "map50": 21.93, "map75": 5.14, "map50_95": 8.18,
     "rodeo_total": 53.98, "rodeo_cls": 81.36, "rodeo_shape": 39.47, "rodeo_loc": 60.15},
    {"model": "AG-KD (0.23B), published", "map50": 25.50, "map75": 7.45, "map50_95": 10.81,
     "rodeo_total": 54.38, "rodeo_cls": 80.09, "rodeo_shape": 41.41, "rodeo_loc": 56.92},
]
COMPARED = ("descriptions", "names")


class ReportParams(StrictModel):
    examples: int = Field(ge=1)


def draw_boxes(axis, boxes, colour: str, style: str = "-") -> None:
    for x1, y1, x2, y2 in boxes:
        axis.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linestyle=style, linewidth=1.5))


def example_figure(rows: pd.DataFrame, queries: pd.DataFrame, images_folder, title: str):
    """One row per query: the image with gold boxes (green) and each model's predicted boxes."""
    samples = list(dict.fromkeys(rows["sample"]))
    figure, axes = plt.subplots(len(samples), len(COMPARED), figsize=(4 * len(COMPARED), 4 * len(samples)), squeeze=False)
    for r, sample in enumerate(samples):
        query = queries[queries["sample"] == sample].iloc[0]
        image = read_image(images_folder / f"{query.image_id}.png")
        for c, variant in enumerate(COMPARED):
            axis = axes[r, c]
            axis.imshow(image, cmap="gray", vmin=0, vmax=1)
            draw_boxes(axis, json.loads(query.boxes), "lime")
            answer = rows[(rows["sample"] == sample) & (rows.variant == variant)]
            predicted = [box for _, box in decode(str(answer.answer.iloc[0]), query.width, query.height)] if len(answer) else []
            draw_boxes(axis, predicted, "red", "--")
            axis.set_title(f"{variant}: {query.class_name} ({len(predicted)} box(es))", fontsize=9)
            axis.set_xticks([])
            axis.set_yticks([])
    figure.suptitle(f"{title}: gold (green) and predicted (red, dashed) boxes")
    figure.tight_layout()
    return figure


def map_figure(scores: pd.DataFrame):
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for axis, (subset, protocol) in zip(axes, [("seen", "matched"), ("unseen", "queried")], strict=True):
        table = scores[(scores.subset == subset) & (scores.protocol == protocol)]
        x = np.arange(len(table))
        for offset, metric in zip((-0.25, 0, 0.25), ("map50", "map75", "map50_95"), strict=True):
            axis.bar(x + offset, table[metric], width=0.25, label=metric)
            if f"{metric}_low" in table:
                low, high = table[f"{metric}_low"].to_numpy(), table[f"{metric}_high"].to_numpy()
                value = table[metric].to_numpy()
                ok = np.isfinite(low)
                axis.errorbar(x[ok] + offset, value[ok], yerr=[value[ok] - low[ok], high[ok] - value[ok]], fmt="none", color="k", lw=1)
        axis.set_xticks(x, table.variant, rotation=15)
        axis.set_title(f"{subset} classes ({'AG-KD phrase matching' if protocol == 'matched' else 'boxes as queried class, ours'})", fontsize=9)
        axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def fraction_figure(fractions: pd.DataFrame):
    figure, axis = plt.subplots(figsize=(5, 3.5))
    described = fractions[fractions.use_definition.astype(bool)]
    axis.plot(described.data_pct, described.map50, "o-", label="with descriptions")
    for row in fractions[~fractions.use_definition.astype(bool)].itertuples():
        axis.axhline(row.map50, color="tab:orange", linestyle="--", label=f"names only, data_pct {row.data_pct:g}")
    axis.set_xlabel("share of training rows (data_pct)")
    axis.set_ylabel("seen-class mAP50")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def report(ctx: StageContext[ReportParams]) -> None:
    info = json.loads(ctx.dep("interim/ingest/dataset.json").read_text())
    queries = read_table(ctx.dep("interim/ingest/queries.csv"), dtype={"image_id": str})
    queries = queries.assign(sample=queries.image_id + "|" + queries.class_name)
    answers = read_table(ctx.dep("evaluation/answers.csv"), dtype={"image_id": str, "answer": str}, keep_default_na=False)
    scores = read_table(ctx.dep("evaluation/scores.csv"))
    per_class = read_table(ctx.dep("evaluation/per_class.csv"))
    fractions = read_table(ctx.dep("plots/map_by_fraction.csv"))
    claims = json.loads(ctx.dep("metrics/claims.json").read_text())["claims"]
    images_folder = ctx.root / info["images"]

    page = HtmlReport(f"grounding: abnormality grounding with knowledge descriptions ({ctx.common.scale} run)")
    page.heading("Claims")
    page.table([{"claim": name, "holds": c["holds"], "comparison": c["comparison"],
                 "measured": ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in c["measured"].items())}
                for name, c in claims.items()],
               "each claim as measured on this run (metrics/claims.json); a claim that fails is shown as failed")
    page.paragraph("The model is ours: a tiny seq2seq grounder trained from scratch (Florence-2 weights cannot be "
                   "loaded here), with AG-KD's prompts, targets, 1000 location bins, greedy decoding, confidence 1.0 "
                   "and mAP over (image, class) queries. Unseen classes are held-out attribute combinations.", note=True)
    page.heading("Examples")
    for subset, title in ((True, "seen class"), (False, "unseen class")):
        chosen = answers[answers.seen.astype(bool) == subset]["sample"].drop_duplicates().head(ctx.params.examples)
        if len(chosen):
            page.figure(example_figure(answers[answers["sample"].isin(chosen)], queries, images_folder, title),
                        f"{title}: left prompt with the description, right the class name alone")
    page.heading("mAP")
    page.figure(map_figure(scores), "bars: mAP; whiskers: 95% bootstrap intervals over queries")
    page.table(scores, "all variants and protocols; chance = random boxes of training-box size")
    page.heading("Per class", level=3)
    page.table(per_class, "AP per class")
    page.heading("mAP against the share of training data")
    page.figure(fraction_figure(fractions), "descriptions at each data_pct against the name-only model on all data")
    page.table(fractions, "seen classes, AG-KD phrase matching")
    unparsed = int((answers.unparsed > 0).sum())
    page.paragraph(f"{unparsed} of {len(answers)} answers held text that did not parse as phrase + box; "
                   f"{int(answers.no_box.astype(bool).sum())} answers gave no box (each an empty prediction).")
    page.heading("Published reference points (real VinDr-CXR; not comparable with this run)")
    page.table(PUBLISHED, "as published (AG-KD teaser figure); RoDeO is not computed here")
    ctx.publish_report(page)


if __name__ == "__main__":
    run_stage(report)
