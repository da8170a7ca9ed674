"""ct_fairness-report: gap tables with significance, gap bars, population vs cross-dataset gap,
volume diversity, the synthetic truth beside the measurements, and example segmentations."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from pydantic import Field

from stages.common.io import read_table
from stages.common.params import StrictModel
from stages.common.report import HtmlReport, plt
from stages.common.stage import Metrics, StageContext, run_stage
from stages.ct_fairness.folds import VARIABLES
from stages.ct_fairness.organs import ORGANS

LABEL_COLOURS = ListedColormap([(0, 0, 0, 0), (0.85, 0.3, 0.2, 0.6), (0.2, 0.7, 0.3, 0.6), (0.2, 0.4, 0.9, 0.6), (0.95, 0.8, 0.1, 0.7)])


class ReportParams(StrictModel):
    examples: int = Field(ge=0)   # example segmentation figures (one per experiment and test group, at most)


def gap_cell(gap: float, mark: str, low_dice: bool = False) -> str:
    """The gap with its significance mark; cells whose mean Dice is below evaluate.min_reliable_dice end in ' (low Dice)'."""
    return "n/a" if not np.isfinite(gap) else f"{gap:+.1f}%{mark}" + (" (low Dice)" if low_dice else "")


def gap_matrix(gaps: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows experiment x organ; per test group: the gap marked by the corrected paired test, its fold-bootstrap
    interval, the BH-corrected Wilcoxon p, the paper's Welch p with its own mark, and the two means."""
    rows = []
    selected = gaps[gaps.metric == metric]
    for (experiment, organ), block in selected.groupby(["experiment", "organ"], sort=False):
        row = {"experiment": experiment, "organ": organ}
        for item in block.itertuples():
            row[f"test {item.test_group}: gap"] = gap_cell(item.gap_percent, item.significance, bool(getattr(item, "low_dice", False)))
            row[f"test {item.test_group}: fold-bootstrap 95%"] = (f"[{item.gap_low:+.1f}, {item.gap_high:+.1f}]"
                                                                  if np.isfinite(item.gap_low) else "n/a")
            row[f"test {item.test_group}: paired p (BH)"] = item.p_paired_corrected
            row[f"test {item.test_group}: Welch p (paper's)"] = f"{item.p_value:.3g}{item.significance_welch}"
            row[f"test {item.test_group}: same / other"] = f"{item.mean_same:.3f} / {item.mean_other:.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def makeup_table(makeup: pd.DataFrame) -> pd.DataFrame:
    """Per (experiment, role, group), averaged over folds: set size, women / men and mean age with its range."""
    rows = []
    for (experiment, role, group), block in makeup.groupby(["experiment", "role", "group"], sort=False):
        rows.append({"experiment": experiment, "set": f"{role} {group}", "cases per fold": f"{block.n.mean():.0f}",
                     "women / men": f"{block.n_female.mean():.1f} / {block.n_male.mean():.1f}",
                     "age": f"{block.age_mean.mean():.0f} ({block.age_min.min():.0f}-{block.age_max.max():.0f})"})
    return pd.DataFrame(rows)


def gap_bars(gaps: pd.DataFrame):
    """One panel per experiment: Dice gap per organ, a bar per test group, significance above the bars."""
    dice = gaps[gaps.metric == "dice"]
    experiments = list(dict.fromkeys(dice.experiment))
    figure, axes = plt.subplots(1, len(experiments), figsize=(4.4 * len(experiments), 3.6), squeeze=False, sharey=True)
    for axis, experiment in zip(axes[0], experiments, strict=True):
        block = dice[dice.experiment == experiment]
        groups = list(dict.fromkeys(block.test_group))
        x = np.arange(len(ORGANS))
        for offset, group in enumerate(groups):
            values = block[block.test_group == group].set_index("organ").reindex(list(ORGANS))
            positions = x + (offset - 0.5) * 0.38
            axis.bar(positions, values.gap_percent, width=0.38, label=f"test {group}")
            for position, gap, mark in zip(positions, values.gap_percent, values.significance.fillna(""), strict=True):
                if mark and np.isfinite(gap):
                    axis.text(position, gap, mark, ha="center", va="bottom" if gap >= 0 else "top", fontsize=10)
        axis.axhline(0, color="black", linewidth=0.8)
        axis.set_xticks(x, [o.replace("_", "\n") for o in ORGANS], fontsize=8)
        axis.set_title(experiment)
        axis.legend(fontsize=7)
    axes[0, 0].set_ylabel("Dice performance gap (%)")
    figure.tight_layout()
    return figure


def comparison_table(gaps: pd.DataFrame) -> pd.DataFrame:
    """Per organ: mean |Dice gap| over both test groups for each group variable (population vs cross-dataset)."""
    dice = gaps[gaps.metric == "dice"]
    table = dice.assign(abs_gap=dice.gap_percent.abs()).pivot_table(index="organ", columns="variable", values="abs_gap", aggfunc="mean")
    table = table.reindex(list(ORGANS))[[v for v in VARIABLES if v in table.columns]]
    table.columns = [f"mean |gap| {c} (%)" for c in table.columns]
    return table.reset_index()


def comparison_figure(table: pd.DataFrame):
    figure, axis = plt.subplots(figsize=(6.5, 3.4))
    columns = [c for c in table.columns if c != "organ"]
    x = np.arange(len(table))
    width = 0.8 / max(len(columns), 1)
    for index, column in enumerate(columns):
        axis.bar(x + (index - (len(columns) - 1) / 2) * width, table[column], width=width, label=column.replace("mean |gap| ", "").replace(" (%)", ""))
    axis.set_xticks(x, table.organ)
    axis.set_ylabel("mean |Dice gap| (%)")
    axis.legend(title="group variable", fontsize=8)
    figure.tight_layout()
    return figure


def diversity_figure(diversity: pd.DataFrame, fits: pd.DataFrame):
    figure, axes = plt.subplots(1, len(ORGANS), figsize=(3.4 * len(ORGANS), 3.2), squeeze=False)
    fit_by_organ = fits.set_index("organ")
    for axis, organ in zip(axes[0], ORGANS, strict=True):
        points = diversity[diversity.organ == organ]
        for experiment, block in points.groupby("experiment"):
            axis.scatter(block.volume_sd_ml, block.dice, s=14, label=experiment)
        fit = fit_by_organ.loc[organ] if organ in fit_by_organ.index else None
        if fit is not None and np.isfinite(fit.slope):
            line_x = np.linspace(points.volume_sd_ml.min(), points.volume_sd_ml.max(), 10)
            axis.plot(line_x, fit.slope * line_x + fit.intercept, color="black", linewidth=1)
            axis.set_title(f"{organ}: r = {fit.pearson_r:.2f} (p = {fit.p_value:.2g})", fontsize=9)
        else:
            axis.set_title(organ, fontsize=9)
        axis.set_xlabel("training-set volume SD (ml)")
    axes[0, 0].set_ylabel("mean test Dice")
    axes[0, 0].legend(fontsize=6)
    figure.tight_layout()
    return figure


def example_figure(examples, key: str):
    """Image, ground truth, same-group model and other-group model on the slice with most organ voxels."""
    image = examples[f"{key}/image"]
    panels = [("image", None), ("ground truth", "truth"), ("same-group model", "same"),
              (f"model trained on {examples[f'{key}/other_group']}", "other")]
    figure, axes = plt.subplots(1, 4, figsize=(12, 3.3))
    for axis, (title, name) in zip(axes, panels, strict=True):
        # RAS array: show patient right on the image's left, anterior up (radiological view)
        axis.imshow(np.flipud(image.T)[:, ::-1], cmap="gray", vmin=0, vmax=1)
        if name:
            axis.imshow(np.flipud(examples[f"{key}/{name}"].T)[:, ::-1], cmap=LABEL_COLOURS, vmin=0, vmax=4, interpolation="nearest")
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    figure.suptitle(f"{key} (case {examples[f'{key}/case']}); red liver, green right kidney, blue left kidney, yellow pancreas", fontsize=9)
    figure.tight_layout()
    return figure


def loss_figure(curves: dict[str, pd.DataFrame]):
    figure, axis = plt.subplots(figsize=(5, 3))
    for variable, curve in curves.items():
        axis.plot(curve.step, curve.loss, label=variable)
    axis.set_xlabel("iteration")
    axis.set_ylabel("Dice + CE loss (mean over models)")
    axis.legend(title="models of")
    figure.tight_layout()
    return figure


def report(ctx: StageContext[ReportParams]) -> Metrics:
    evaluation = ctx.dep("evaluation")
    summary = json.loads(ctx.dep("metrics/evaluate.json").read_text())
    gaps = read_table(evaluation / "gaps.csv", keep_default_na=False, na_values=[""])
    for column in ("significance", "significance_welch"):
        gaps[column] = gaps[column].fillna("")
    diversity = read_table(evaluation / "volume_diversity.csv")
    fits = read_table(evaluation / "volume_diversity_fit.csv")
    truth_path = evaluation / "truth_vs_measured.csv"
    truth = read_table(truth_path) if truth_path.exists() else None
    curves = {v: curve for v in VARIABLES if len(curve := read_table(ctx.dep(f"metrics/train_{v}_loss.csv"), ("step", "loss")))}

    synthetic = truth is not None
    page = HtmlReport("ct_fairness: population shift by age and sex in abdominal CT segmentation"
                      + (" (synthetic smoke run)" if synthetic and ctx.common.scale == "smoke" else ""))
    page.paragraph(
        "Reproduces the design of Cevora, Glocker and Bai (MICCAI FAIMI 2024): per group variable, five folds with "
        "balanced test sets and one equal-size single-group training set per group; the performance gap "
        "PG_g = 100 (D(g|other) - D(g|same)) / mean(D(g|same), D(g|other)) per organ and test group. The paper's "
        "Welch t-test over test cases is shown in its own column; significance marks (* p <= 0.05, ** p <= 0.01) "
        "come from the paired Wilcoxon signed-rank test (both models score the same test cases), Benjamini-Hochberg "
        "corrected over every test of the run (ours). Intervals: percentile bootstrap over folds. A negative Dice "
        "gap means the model trained on the other group segments group g worse. HD95 is MONAI's: the larger of the "
        "two directed 95th-percentile surface distances, in mm (medpy pools both directions, up to 4 mm apart on "
        "small masks); a missed organ scores the image diagonal.")
    mean_abs = summary["mean_abs_gap_percent"]
    page.paragraph("Mean |Dice gap| over organs and test groups: "
                   + ", ".join(f"{variable} {value:.1f}%" for variable, value in mean_abs.items())
                   + (". The paper finds the age and sex gaps of similar size to the cross-dataset gap." if "dataset" in mean_abs else "."))
    if summary.get("placebo_tests"):
        page.paragraph(f"Placebo (shuffled group labels, ours): {summary['placebo_significant']} of {summary['placebo_tests']} "
                       f"Dice gaps significant under the corrected paired test (false-positive rate "
                       f"{summary['placebo_false_positive_rate']:.2f}).")
    if summary.get("planted_cells") or summary.get("null_cells"):
        page.paragraph(f"Synthetic controls (corrected paired test): planted cells holding {summary.get('planted_cells_holding', 0)} "
                       f"of {summary.get('planted_cells', 0)}, null-control cells holding {summary.get('null_cells_holding', 0)} "
                       f"of {summary.get('null_cells', 0)}.")
    if synthetic:
        page.paragraph(f"Synthetic truth: the measured gaps point the way the generator's known shifts predict in "
                       f"{summary.get('truth_direction_agrees', 0)} of {summary.get('truth_rows', 0)} (experiment, organ) cells.")

    warnings = summary.get("organ_warnings", {})
    if warnings:
        page.paragraph("Warning: these organs' gaps are not evidence of a population effect (the claim "
                       "'every_organ_resolved_and_learned' does not hold): "
                       + "; ".join(f"{organ}: {text}" for organ, text in warnings.items()) + ".", note=True)
    if summary.get("low_dice_gaps"):
        page.paragraph(f"{summary['low_dice_gaps']} of {summary['gap_cells']} Dice gap cells have a mean Dice below "
                       "the reliability floor and are marked '(low Dice)'.", note=True)
    page.heading("Dice performance gaps")
    page.table(gap_matrix(gaps, "dice"), "gap marked by the BH-corrected paired Wilcoxon test; its 95% fold-bootstrap interval; Welch's p as in the paper "
               "(with its own mark); mean Dice of the same-group / other-group model")
    page.figure(gap_bars(gaps), "Dice gap per organ and test group (BH-corrected paired test: * p <= 0.05, ** p <= 0.01)")
    page.heading("Population gap against the cross-dataset gap")
    table = comparison_table(gaps)
    sizes = summary.get("training_cases_per_model", {})
    page.table(table, "mean |Dice gap| per organ for each group variable; 'dataset' is the cross-dataset gap; training "
                      "cases per model: " + ", ".join(f"{name} {n}" for name, n in sizes.items()))
    if len(set(sizes.values())) > 1:
        page.paragraph("The experiments' models train on different numbers of cases, which confounds the comparison "
                       "(set preprocess.common_training_size).", note=True)
    page.figure(comparison_figure(table), "population (sex, age) against cross-dataset gaps")
    if synthetic:
        page.heading("Synthetic truth against the measured gaps")
        page.table(truth.drop(columns=["variable"]),
                   "true difference of the second group from the first (generator: organ volume change %, attenuation "
                   "shift HU, noise change HU) beside the measured Dice gap of each test group; 'negative' is expected "
                   "where the generator puts a shift (agrees: mean of the two gaps < 0, the effect may be asymmetric), "
                   "'none' where it puts none (agrees: neither gap significant)")
    makeup_path = evaluation / "set_makeup.csv"
    if makeup_path.exists():
        page.heading("Age and sex make-up of the training and test sets")
        page.table(makeup_table(read_table(makeup_path)), "per experiment, role and group, over the folds: cases per set, "
                                                          "women / men, mean age (min-max)")
    page.heading("Organ-volume diversity and generalisation")
    page.figure(diversity_figure(diversity, fits), "per training group (its folds pooled, as the authors' volumeAnalysis.py): SD of "
                                                   "ground-truth organ volume over its training cases against its models' mean "
                                                   "test Dice, with the least-squares line and Pearson r")
    page.table(fits, "Pearson r of training-set volume SD against test Dice, per organ")
    page.heading("HD95 performance gaps")
    page.table(gap_matrix(gaps, "hd95"), "same formula on HD95 (mm; lower is better, so a positive gap means worse)")
    page.heading("Example segmentations")
    with np.load(evaluation / "examples.npz", allow_pickle=False) as examples:
        keys = sorted({name.rsplit("/", 1)[0] for name in examples.files})[: ctx.params.examples]
        for key in keys:
            page.figure(example_figure(examples, key), f"{key}: same-group vs other-group model")
    if curves:
        page.heading("Training")
        page.figure(loss_figure(curves), "training loss, mean over each variable's models")
    if synthetic:
        page.paragraph("Numbers come from small synthetic phantoms and tiny U-Nets trained for a few hundred patches; "
                       "only the design and the direction of effects are meaningful, not the sizes.", note=True)
    ctx.publish_report(page)
    return {"example_figures": len(keys)}


if __name__ == "__main__":
    run_stage(report)
