"""cmr_recon-report: one HTML page with masks, example reconstructions, tables and curves."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
from pydantic import Field

from stages.cmr_recon.masks import PATTERNS, effective_acceleration, make_mask
from stages.cmr_recon.metrics import METHODS
from stages.common.io import read_table
from stages.common.params import StrictModel
from stages.common.report import HtmlReport, plt
from stages.common.stage import StageContext, run_stage

# Real CMRxRecon2023 validation data, PromptMR+ at 10x (the study note); context only, not comparable
# with the synthetic smoke run.
PUBLISHED_PROMPTMR_PLUS = [
    {"modality": "Cine SAX", "psnr": 39.99, "ssim": 0.9658},
    {"modality": "Cine LAX", "psnr": 39.13, "ssim": 0.9605},
    {"modality": "T1 map", "psnr": 40.37, "ssim": 0.9719},
    {"modality": "T2 map", "psnr": 38.22, "ssim": 0.9670},
]


class ReportParams(StrictModel):
    examples_per_pattern: int = Field(ge=0)


def mask_figure(patterns_and_rates: dict[str, int], ny: int = 64, nx: int = 96, nt: int = 12):
    """Frame 0 and the ky-t plane of each pattern's mask."""
    figure, axes = plt.subplots(2, len(patterns_and_rates), figsize=(3.2 * len(patterns_and_rates), 5.5), squeeze=False)
    for column, (pattern, rate) in enumerate(patterns_and_rates.items()):
        mask = make_mask(pattern, nx, ny, nt, rate, seed=0)
        axes[0, column].imshow(mask[0], cmap="gray", aspect="auto")
        axes[0, column].set_title(f"{pattern} R={rate} (effective {effective_acceleration(mask):.1f})", fontsize=9)
        axes[1, column].imshow(mask[:, :, nx // 2].T, cmap="gray", aspect="auto")
        axes[1, column].set_xlabel("frame t")
        axes[1, column].set_ylabel("ky (centre column)")
        axes[0, column].set_xticks([])
        axes[0, column].set_yticks([])
    figure.suptitle(f"Sampling masks on a {ny} x {nx} x {nt} grid (top: frame 0, bottom: ky-t at the centre kx)")
    return figure


def example_figure(examples, key: str):
    target = examples[f"{key}/target"]
    scale = float(np.percentile(target, 99.5))
    figure, axes = plt.subplots(2, 4, figsize=(12, 6))
    panels = [("target", target), *[(m, examples[f"{key}/{m}"]) for m in METHODS]]
    for column, (name, image) in enumerate(panels):
        axes[0, column].imshow(image, cmap="gray", vmin=0, vmax=scale)
        axes[0, column].set_title(name)
        error = np.abs(image - target) if name != "target" else examples[f"{key}/mask"].astype(float)
        axes[1, column].imshow(error, cmap="magma" if name != "target" else "gray", vmin=0,
                               vmax=scale * 0.25 if name != "target" else 1)
        axes[1, column].set_title("mask (frame 0)" if name == "target" else f"|{name} - target|")
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(f"{key}: {examples[f'{key}/subject']} {examples[f'{key}/modality']}, first scored slice/frame")
    return figure


def curve_figure(per_setting: pd.DataFrame, metric: str):
    validation = per_setting[per_setting.protocol == "validation"]
    patterns = [p for p in PATTERNS if p in set(validation.pattern)]
    figure, axes = plt.subplots(1, len(patterns), figsize=(3.6 * len(patterns), 3.4), squeeze=False)
    for axis, pattern in zip(axes[0], patterns):
        rows = validation[validation.pattern == pattern].groupby(["method", "acceleration"])[metric].mean().reset_index()
        for method in METHODS:
            line = rows[rows.method == method]
            axis.plot(line.acceleration, line[metric], marker="o", label=method)
        axis.set_title(pattern)
        axis.set_xlabel("nominal acceleration R")
        axis.set_ylabel(f"official {metric.upper()}")
    axes[0, 0].legend()
    figure.tight_layout()
    return figure


def loss_figure(loss: pd.DataFrame):
    figure, axis = plt.subplots(figsize=(5, 3))
    axis.plot(loss.epoch, loss.loss, marker="o")
    axis.set_xlabel("epoch")
    axis.set_ylabel("training loss (1 - SSIM + a L1)")
    figure.tight_layout()
    return figure


def cell_table(per_setting: pd.DataFrame, metric: str, held_out: set[str]) -> pd.DataFrame:
    """Rows modality x pattern x acceleration, a column per method (validation protocol)."""
    validation = per_setting[per_setting.protocol == "validation"]
    table = validation.pivot_table(index=["modality", "pattern", "acceleration"], columns="method", values=metric).reset_index()
    table["modality"] = [f"{m} (held out)" if m in held_out else m for m in table.modality]
    return table[["modality", "pattern", "acceleration", *[m for m in METHODS if m in table.columns]]]


def report(ctx: StageContext[ReportParams]) -> None:
    evaluation = ctx.dep("evaluation")
    summary = json.loads(ctx.dep("metrics/evaluate.json").read_text())
    per_setting = read_table(evaluation / "per_setting.csv")
    per_image = read_table(evaluation / "per_image.csv")
    settings = read_table(ctx.dep("interim/undersampled/undersampled.csv"))
    loss = read_table(ctx.dep("metrics/train_loss.csv"))
    held_out = set(per_image.loc[per_image.held_out.astype(bool), "modality"])
    examples = np.load(evaluation / "examples.npz", allow_pickle=False)

    page = HtmlReport("cmr_recon: CMRxRecon2024 reconstruction (synthetic smoke run)"
                        if ctx.common.scale == "smoke" else "cmr_recon: CMRxRecon2024 reconstruction")
    wins = summary["learned_vs_zero_filled"]
    against_sense = summary["learned_vs_sense"]
    page.paragraph(
        f"Learned model vs zero-filled, official validation metrics: better PSNR in {wins['psnr']}/{wins['cells']} "
        f"(modality, pattern) cells, SSIM in {wins['ssim']}/{wins['cells']}, NMSE in {wins['nmse']}/{wins['cells']}. "
        f"Against SENSE (as measured): PSNR {against_sense['psnr']}/{against_sense['cells']}, "
        f"SSIM {against_sense['ssim']}/{against_sense['cells']}, NMSE {against_sense['nmse']}/{against_sense['cells']}."
    )
    page.heading("Overall (mean over (modality, pattern) cells)")
    overall = [{"protocol": protocol, "method": method, **values}
               for protocol in ("validation", "test", "fastmri") for method, values in summary[protocol].items()]
    page.table(overall, "validation = official metrics, central slices, first frames, centre crop; "
                          "test = official metrics without crop; fastmri = fastMRI's volume-wise definition")
    page.heading("Sampling masks")
    highest = settings.groupby("pattern").acceleration.max().to_dict()
    page.figure(mask_figure({p: int(highest[p]) for p in PATTERNS if p in highest}), "16 ACS lines (16 x 16 for ktRadial) are not counted in R")
    effective = settings.groupby(["pattern", "acceleration"]).effective_acceleration.mean().reset_index()
    page.table(effective, "nominal vs effective acceleration of the evaluated masks")
    page.heading("Example reconstructions")
    keys = sorted({name.split("/")[0] for name in examples.files})
    for key in keys[: ctx.params.examples_per_pattern * len(PATTERNS)]:
        page.figure(example_figure(examples, key), f"{key}: target, zero-filled, SENSE, learned and error maps")
    page.heading("Metric against acceleration")
    page.figure(curve_figure(per_setting, "psnr"), "official PSNR (validation protocol)")
    page.figure(curve_figure(per_setting, "ssim"), "official SSIM (validation protocol)")
    for metric in ("psnr", "ssim", "nmse"):
        page.heading(f"{metric.upper()} per modality x pattern x acceleration", level=3)
        page.table(cell_table(per_setting, metric, held_out), f"official {metric}, validation protocol; held-out modalities were never trained on")
    page.heading("Training")
    page.figure(loss_figure(loss), "training loss per epoch")
    page.heading("Published reference points (real data; not comparable with the synthetic run)")
    page.table(PUBLISHED_PROMPTMR_PLUS, "PromptMR+ on CMRxRecon2023 validation at 10x, as published")
    page.paragraph("Published numbers are on real CMRxRecon data; the smoke run uses a small synthetic phantom, "
                     "so only the ordering of methods is meaningful here.", note=True)
    ctx.publish_report(page)


if __name__ == "__main__":
    run_stage(report)
