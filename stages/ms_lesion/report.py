"""ms_lesion-report: claims first, then example maps over the FLAIR pair, tables per task and dataset, the ablation, agreement plots."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
from pydantic import Field

from stages.common.io import read_table
from stages.common.params import StrictModel
from stages.common.report import HtmlReport, plt
from stages.common.stage import StageContext, run_stage

MAP_NAMES = ("all lesions t1", "all lesions t2", "new", "vanishing")
MAP_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")


class ReportParams(StrictModel):
    example_cases: int = Field(ge=0)


def example_figure(examples, case_id: str):
    """Rows: truth, union, union without constraints; columns: FLAIR t1, t2, then each map over FLAIR t2."""
    scans = examples[f"{case_id}/scans"]
    rows = [("truth", examples[f"{case_id}/truth"]), ("union", examples[f"{case_id}/prediction_union"]),
            ("union, no constraints", examples[f"{case_id}/prediction_union_unconstrained"])]
    figure, axes = plt.subplots(len(rows), 6, figsize=(13, 2.3 * len(rows)))
    for r, (name, maps) in enumerate(rows):
        axes[r, 0].imshow(scans[0].T, cmap="gray", origin="lower")
        axes[r, 1].imshow(scans[1].T, cmap="gray", origin="lower")
        for k in range(4):
            axis = axes[r, 2 + k]
            axis.imshow(scans[1 if k != 0 else 0].T, cmap="gray", origin="lower")
            overlay = np.ma.masked_where(maps[k].T == 0, maps[k].T)
            axis.imshow(overlay, cmap=plt.matplotlib.colors.ListedColormap([MAP_COLOURS[k]]), origin="lower", alpha=0.8)
            if r == 0:
                axis.set_title(MAP_NAMES[k], fontsize=9)
        axes[r, 0].set_ylabel(name, fontsize=9)
        if r == 0:
            axes[r, 0].set_title("FLAIR t1", fontsize=9)
            axes[r, 1].set_title("FLAIR t2", fontsize=9)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(f"{case_id}: axial slice with the most new + vanishing truth")
    figure.tight_layout()
    return figure


def agreement_figure(scores: pd.DataFrame):
    """Union model: predicted against true lesion count and volume, per task."""
    union = scores[(scores.model == "union") & scores.task.isin(["all", "new", "vanishing"])]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for task, colour in zip(("all", "new", "vanishing"), MAP_COLOURS[1:]):
        rows = union[union.task == task]
        axes[0].scatter(rows.truth_lesions, rows.predicted_lesions, label=task, color=colour, alpha=0.8)
        axes[1].scatter(rows.truth_ml, rows.predicted_ml, label=task, color=colour, alpha=0.8)
    for axis, what in zip(axes, ("lesion count", "lesion volume (ml)")):
        top = max(axis.get_xlim()[1], axis.get_ylim()[1])
        axis.plot([0, top], [0, top], color="grey", linewidth=1)
        axis.set_xlabel(f"true {what}")
        axis.set_ylabel(f"predicted {what}")
        axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def loss_figure(losses: dict[str, pd.DataFrame]):
    figure, axis = plt.subplots(figsize=(6, 3.2))
    for name, table in losses.items():
        axis.plot(table.iteration, table.loss, label=f"{name} (total)")
        axis.plot(table.iteration, table.supervised, linestyle="--", label=f"{name} (supervised)")
    axis.set_xlabel("iteration")
    axis.set_ylabel("loss")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def dice_table(summary: pd.DataFrame, dataset: str) -> pd.DataFrame:
    rows = summary[summary.dataset == dataset]
    return rows.pivot_table(index="model", columns="task", values="dice").reset_index()


def report(ctx: StageContext[ReportParams]) -> None:
    evaluation = ctx.dep("evaluation")
    claims = json.loads(ctx.dep("metrics/claims.json").read_text())["claims"]
    summary = read_table(evaluation / "summary.csv")
    scores = read_table(evaluation / "per_case.csv")
    examples = np.load(evaluation / "examples.npz")
    page = HtmlReport("ms_lesion: SegHeD-style multi-dataset, multi-task MS lesion segmentation")
    page.heading("Claims")
    page.table([{"claim": key, "holds": value["holds"], "test": value["comparison"]} for key, value in claims.items()],
               "each claim with the comparison applied; the numbers are in metrics/claims.json")
    page.paragraph("No SegHeD code is public: the constraint equations and weights, the WM prior, the patch sampler, "
                   "the splits and the smoke-scale UNet are ours (stages/ms_lesion/README.md). Synthetic data "
                   "from the MNI152 template; only the ordering of models is meaningful.", note=True)
    page.heading("Example maps over the FLAIR pair")
    case_ids = sorted({name.split("/scans")[0] for name in examples.files if name.endswith("/scans")})
    for case_id in case_ids[: ctx.params.example_cases]:
        page.figure(example_figure(examples, case_id), f"{case_id}: truth and each model's four maps")
    page.heading("Dice per task, every model")
    page.table(dice_table(summary, "all"), "mean Dice over all test subjects (all = both time points)")
    for dataset in sorted(set(summary.dataset) - {"all"}):
        page.table(dice_table(summary, dataset), f"mean Dice, {dataset} test subjects")
    page.table(summary, "every metric per model, task and dataset (HD95 in mm, NaN where a map is empty)")
    page.heading("Union against each per-dataset model")
    page.table(read_table(evaluation / "union_vs_per_dataset.csv"), "covered = the dataset's own labels hold lesions of that task")
    page.heading("Constraint ablation")
    page.table(read_table(evaluation / "constraint_ablation.csv"), "union with and without the three constraints; 95% paired bootstrap intervals")
    page.table(read_table(evaluation / "temporal.csv"), "temporal consistency (ours): Dice of all-t2 against (all-t1 + new) - vanishing")
    page.heading("Lesion count and volume agreement")
    page.figure(agreement_figure(scores), "union model, each test subject and task")
    page.heading("Training")
    losses = {name: read_table(ctx.dep(f"metrics/train_{name}_loss.csv")) for name in ("union", "union_unconstrained")}
    page.figure(loss_figure(losses), "loss per iteration; constraints enter after the warm-up")
    ctx.publish_report(page)


if __name__ == "__main__":
    run_stage(report)
