"""ct_fairness-evaluate: Dice and HD95 per test case and organ, performance gaps, volume diversity, synthetic truth.

Every fold's balanced test set is segmented by both of the fold's models (trained on one group
each); the performance gap of each test group (:func:`stages.ct_fairness.gap.performance_gap`)
pools the folds. The cross-dataset gap is the same computation on the dataset experiment.
Training-set organ-volume spread is set against test Dice (Pearson r). With the synthetic
default, the generator's true group differences are put beside the measured gaps.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from stages.ct_fairness.folds import VARIABLES, load_splits
from stages.ct_fairness.gap import (SIGNIFICANCE_LEVELS, direction_agrees, expected_direction, gap_table,
                                    training_volume_spread, true_group_effects, volume_diversity_fit)
from stages.ct_fairness.metrics import dice_and_hd95
from stages.ct_fairness.model import load_network, predict_labels
from stages.ct_fairness.organs import ORGANS
from stages.common.atomic import atomic_directory, write_json
from stages.common.io import read_table, write_table
from stages.common.params import StrictModel
from stages.common.paths import resolve_inside
from stages.common.runtime import choose_device, progress
from stages.common.stage import run_stage

STUDY = "ct_fairness"


class EvaluateParams(StrictModel):
    overlap: float = 0.25
    sw_batch_size: int = 4
    significance: tuple[float, float] = SIGNIFICANCE_LEVELS
    volume_threshold_percent: float = 5.0
    hu_threshold: float = 10.0
    num_threads: int = 1


def load_case(preprocessed: Path, relative: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(resolve_inside(preprocessed, relative, "preprocessed case")) as arrays:
        return arrays["image"].astype(np.float32), arrays["label"][0]


def example_slice(label: np.ndarray) -> int:
    """The axial slice (last axis) with the most organ voxels."""
    return int(np.argmax((label > 0).sum(axis=(0, 1))))


def score_experiment(experiment: dict, models: pd.DataFrame, models_dir: Path, cases: pd.DataFrame, preprocessed: Path,
                     spacing: tuple[float, ...], params: EvaluateParams, device: torch.device, examples: dict) -> list[dict]:
    """Per-case, per-organ scores of every fold's test cases under both of the fold's models."""
    paths = dict(zip(cases["case"], cases["path"]))
    rows = []
    for fold in experiment["folds"]:
        networks = {}
        for group in experiment["groups"]:
            entry = models[(models.experiment == experiment["name"]) & (models.fold == fold["index"]) & (models.group == group)]
            if entry.empty:
                raise FileNotFoundError(f"no model for {experiment['name']} fold {fold['index']} group {group} in {models_dir}")
            networks[group] = load_network(resolve_inside(models_dir, entry.model.iloc[0], "model path"), device)
        for test_group, test_cases in fold["test"].items():
            for case in test_cases:
                image, truth = load_case(preprocessed, paths[case])
                predictions = {}
                for train_group, (network, config, _) in networks.items():
                    prediction = predict_labels(network, torch.from_numpy(image).to(device), config.patch, params.overlap,
                                                params.sw_batch_size).cpu().numpy()
                    predictions[train_group] = prediction
                    dice, hd95 = dice_and_hd95(prediction, truth, spacing)
                    for index, organ in enumerate(ORGANS):
                        rows.append({"experiment": experiment["name"], "variable": experiment["variable"],
                                     "dataset": experiment["dataset"], "fold": fold["index"], "case": case,
                                     "test_group": test_group, "train_group": train_group, "organ": organ,
                                     "dice": dice[index], "hd95": hd95[index]})
                key = f"{experiment['name']}/{test_group}"
                if key not in examples:
                    z = example_slice(truth)
                    other = next(g for g in experiment["groups"] if g != test_group)
                    examples[key] = {"image": image[0, :, :, z], "truth": truth[:, :, z], "same": predictions[test_group][:, :, z],
                                     "other": predictions[other][:, :, z], "case": case, "other_group": other}
    return rows


def volume_diversity(models: pd.DataFrame, per_case: pd.DataFrame, volumes: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, organ): training-set volume SD (ml) and the model's mean Dice on its fold's test set."""
    mean_dice = per_case.groupby(["experiment", "fold", "train_group", "organ"])["dice"].mean()
    rows = []
    for model in models.itertuples():
        spread = training_volume_spread(str(model.train_cases).split(), volumes)
        for organ in ORGANS:
            rows.append({"experiment": model.experiment, "fold": model.fold, "train_group": model.group, "organ": organ,
                         "volume_sd_ml": spread[organ], "dice": float(mean_dice.get((model.experiment, model.fold, model.group, organ), np.nan))})
    return pd.DataFrame(rows)


def truth_comparison(splits: dict, gaps: pd.DataFrame, truth: pd.DataFrame, params: EvaluateParams) -> pd.DataFrame:
    """Per (experiment, organ): the generator's true difference of the second group from the first
    beside the measured Dice gap of each test group."""
    rows = []
    dice_gaps = gaps[gaps.metric == "dice"].set_index(["experiment", "organ", "test_group"])
    for experiment in splits["experiments"]:
        first, second = experiment["groups"]
        members = {g: [c for fold in experiment["folds"] for c in fold["test"][g]] for g in (first, second)}
        effects = true_group_effects(truth, members)
        for organ in ORGANS:
            effect = effects[organ]
            expected = expected_direction(effect, params.volume_threshold_percent, params.hu_threshold)
            measured = [dice_gaps.loc[(experiment["name"], organ, g)] for g in (first, second)]
            rows.append({
                "experiment": experiment["name"], "variable": experiment["variable"], "organ": organ,
                "first_group": first, "second_group": second,
                "true_volume_change_percent": effect["volume_change_percent"], "true_hu_shift": effect["hu_shift"],
                "true_noise_change_hu": effect["noise_change_hu"], "expected_gap": expected,
                "gap_first": float(measured[0].gap_percent), "p_first": float(measured[0].p_value),
                "gap_second": float(measured[1].gap_percent), "p_second": float(measured[1].p_value),
                "direction_agrees": direction_agrees(expected, [m.gap_percent for m in measured],
                                                     [m.p_value for m in measured], max(params.significance)),
            })
    return pd.DataFrame(rows)


def summary_metrics(gaps: pd.DataFrame, per_case: pd.DataFrame, fits: pd.DataFrame, truth_rows: pd.DataFrame | None) -> dict:
    """Flat-ish JSON for DVC metrics and MLflow: each gap and p, mean |gap| per variable, fits, truth agreement."""
    dice = gaps[gaps.metric == "dice"]
    summary: dict = {"gap": {}, "p_value": {}, "mean_abs_gap_percent": {}, "mean_dice": {}}
    for row in dice.itertuples():
        summary["gap"].setdefault(row.experiment, {}).setdefault(row.organ, {})[row.test_group] = row.gap_percent
        summary["p_value"].setdefault(row.experiment, {}).setdefault(row.organ, {})[row.test_group] = row.p_value
    for variable, rows in dice.groupby("variable"):
        summary["mean_abs_gap_percent"][variable] = float(rows.gap_percent.abs().mean())
    same = per_case[per_case.test_group == per_case.train_group]
    summary["mean_dice"] = {organ: float(v) for organ, v in same.groupby("organ")["dice"].mean().items()}
    summary["volume_diversity_r"] = {row.organ: row.pearson_r for row in fits.itertuples()}
    if truth_rows is not None and len(truth_rows):
        summary["truth_direction_agrees"] = int(truth_rows.direction_agrees.sum())
        summary["truth_rows"] = int(len(truth_rows))
    return summary


def flatten_for_mlflow(summary: dict) -> dict[str, float]:
    flat = {}
    for experiment, organs in summary["gap"].items():
        for organ, groups in organs.items():
            for group, value in groups.items():
                flat[f"gap.{experiment}.{organ}.{group}"] = value
                flat[f"p.{experiment}.{organ}.{group}"] = summary["p_value"][experiment][organ][group]
    flat.update({f"mean_abs_gap.{k}": v for k, v in summary["mean_abs_gap_percent"].items()})
    flat.update({f"dice.{k}": v for k, v in summary["mean_dice"].items()})
    flat.update({f"volume_diversity_r.{k}": v for k, v in summary["volume_diversity_r"].items()})
    if "truth_direction_agrees" in summary:
        flat["truth_direction_agrees"] = summary["truth_direction_agrees"]
    return {k: float(v) for k, v in flat.items() if v is not None and np.isfinite(v)}


def main() -> None:
    with run_stage(STUDY, "evaluate", EvaluateParams) as ctx:
        p = ctx.params
        if p.num_threads:
            torch.set_num_threads(p.num_threads)
        device = choose_device(ctx.common.device)
        preprocessed = ctx.data / "interim" / "preprocessed"
        spacing = tuple(json.loads((preprocessed / "preprocess.json").read_text())["spacing_mm"])
        cases = read_table(preprocessed / "cases.csv", ("case", "path", *(f"volume_ml_{o}" for o in ORGANS)), dtype={"case": str})
        splits = load_splits(ctx.data)
        models_by_variable = {}
        for variable in VARIABLES:
            listing = ctx.data / "models" / variable / "models.csv"
            if listing.exists():
                models_by_variable[variable] = read_table(listing, ("experiment", "fold", "group", "model", "train_cases"),
                                                          dtype={"train_cases": str})
        rows, examples = [], {}
        experiments = [e for e in splits["experiments"] if e["variable"] in models_by_variable]
        for experiment in progress(experiments, "evaluating experiments", len(experiments)):
            rows += score_experiment(experiment, models_by_variable[experiment["variable"]], ctx.data / "models" / experiment["variable"],
                                     cases, preprocessed, spacing, p, device, examples)
        per_case = pd.DataFrame(rows)
        gaps = pd.concat([gap_table(per_case, metric, p.significance) for metric in ("dice", "hd95")], ignore_index=True)
        all_models = pd.concat(models_by_variable.values(), ignore_index=True)
        diversity = volume_diversity(all_models, per_case, cases.set_index("case"))
        fits = pd.DataFrame([{"organ": organ, **volume_diversity_fit(rows_organ.volume_sd_ml, rows_organ.dice)}
                             for organ, rows_organ in diversity.groupby("organ", sort=False)])
        ingest_info = json.loads((ctx.data / "interim" / "ingest" / "datasets.json").read_text())
        truth_rows = None
        if ingest_info.get("truth"):
            truth = read_table(resolve_inside(ctx.root, ingest_info["truth"], "synthetic truth"), ("case",), dtype={"case": str})
            truth_rows = truth_comparison({"experiments": experiments}, gaps, truth, p)

        out = ctx.data / "evaluation"
        with atomic_directory(out) as staging:
            write_table(staging / "per_case.csv", per_case)
            write_table(staging / "gaps.csv", gaps)
            write_table(staging / "volume_diversity.csv", diversity)
            write_table(staging / "volume_diversity_fit.csv", fits)
            if truth_rows is not None:
                write_table(staging / "truth_vs_measured.csv", truth_rows)
            arrays = {f"{key}/{name}": np.asarray(value) for key, example in examples.items() for name, value in example.items()}
            with open(staging / "examples.npz", "wb") as handle:
                np.savez_compressed(handle, **arrays)
        dice_gaps = gaps[gaps.metric == "dice"]
        bars = dice_gaps.assign(label=dice_gaps.experiment + " " + dice_gaps.organ + " test " + dice_gaps.test_group)
        write_table(ctx.data / "plots" / "gap_dice.csv", bars[["label", "gap_percent"]])
        write_table(ctx.data / "plots" / "volume_diversity.csv", diversity[["organ", "volume_sd_ml", "dice"]])
        summary = summary_metrics(gaps, per_case, fits, truth_rows)
        write_json(ctx.data / "metrics" / "evaluate.json", summary)
        ctx.log_metrics(flatten_for_mlflow(summary))
        ctx.log_artifact(out / "gaps.csv")
        for row in dice_gaps.itertuples():
            print(f"{row.experiment:28s} {row.organ:13s} test {row.test_group:16s} gap {row.gap_percent:+7.2f}%  p={row.p_value:.3g}{row.significance}")


if __name__ == "__main__":
    main()
