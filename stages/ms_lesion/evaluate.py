"""ms_lesion-evaluate: every model on every dataset's test subjects, per task (all, new, vanishing).

Voxel Dice and HD95 (with spacing; the shared segmentation metrics, medpy convention), lesion-wise
F1 by the MSSEG rule, and temporal consistency. Synthetic subjects carry every label (the
generator knows each lesion's fate), so a task is scored even where a dataset's layout lacks its
label; real subjects are scored only on the labels their layout has. All-lesion maps are scored
at both time points (once for a cross-sectional scan); new and vanishing lesions on longitudinal
subjects only. Intervals: case-level bootstrap of paired mean differences (ours).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from stages.common.atomic import atomic_directory, write_json
from stages.common.claims import Claim, write_claims
from stages.common.io import read_table, write_npz, write_table, write_tables
from stages.common.metrics import segmentation
from stages.common.params import StrictModel
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.common.stats import bootstrap_interval, mean_statistic
from stages.ms_lesion.metrics import lesion_f1, temporal_consistency
from stages.ms_lesion.model import OUTPUTS as LABEL_KINDS
from stages.ms_lesion.model import load_model, network_inputs, predict

MODELS = ("union", "union_unconstrained", "crosssectional", "msseg2", "longitudinal")  # the train foreach
PER_DATASET_MODELS = ("crosssectional", "msseg2", "longitudinal")
TASK_OF_KIND = {"all_t1": "all", "all_t2": "all", "new": "new", "vanishing": "vanishing"}
TASKS = ("all", "new", "vanishing")
# The tasks each dataset's own labels cover (lesion labels, not the known-empty new/vanishing of one scan fed twice).
COVERED_TASKS = {"crosssectional": ("all",), "msseg2": ("new",), "longitudinal": ("all", "new", "vanishing")}


class EvaluateParams(StrictModel):
    threshold: float = Field(gt=0, lt=1)
    window: tuple[int, int, int]   # inference window; larger than the volume = one whole-volume pass (zero-padded)
    min_voxels: int = Field(ge=1)
    bootstrap_samples: int = Field(ge=100)
    num_threads: int = Field(ge=1)


def kinds_scored(longitudinal: bool, truth_known: np.ndarray) -> list[str]:
    kinds = ["all_t1", "all_t2", "new", "vanishing"] if longitudinal else ["all_t1"]
    return [k for k in kinds if truth_known[LABEL_KINDS.index(k)]]


def score_case(predicted: np.ndarray, arrays, longitudinal: bool, params: EvaluateParams) -> list[dict]:
    """Rows of one case for one model: one per scored label kind, plus its temporal consistency."""
    spacing = tuple(float(s) for s in arrays["spacing"])
    rows = []
    for kind in kinds_scored(longitudinal, arrays["truth_known"]):
        index = LABEL_KINDS.index(kind)
        truth, prediction = arrays["truth"][index] > 0, predicted[index]
        detection = lesion_f1(truth, prediction, min_voxels=params.min_voxels)
        rows.append({"kind": kind, "task": TASK_OF_KIND[kind],
                     "dice": segmentation.dice(prediction, truth), "hd95": segmentation.hd95(prediction, truth, spacing),
                     "lesion_f1": detection.f1, "tp": detection.true_positive_truth, "fp": detection.false_positive,
                     "fn": detection.false_negative, "truth_lesions": detection.truth_lesions,
                     "predicted_lesions": detection.predicted_lesions,
                     "truth_ml": float(truth.sum() * np.prod(spacing) / 1000), "predicted_ml": float(prediction.sum() * np.prod(spacing) / 1000)})
    rows.append({"kind": "temporal", "task": "temporal", "dice": temporal_consistency(*predicted)})
    return rows


def paired_bootstrap(first: np.ndarray, second: np.ndarray, samples: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of mean(first - second), test subjects resampled (NaN pairs left out)."""
    difference = np.asarray(first, float) - np.asarray(second, float)
    return bootstrap_interval(mean_statistic(difference), len(difference), samples, seed=seed)


def case_means(scores: pd.DataFrame, model: str, task: str, metric: str) -> pd.Series:
    """Per case, the mean of ``metric`` over the kinds of ``task`` (all = both time points)."""
    rows = scores[(scores.model == model) & (scores.task == task)]
    return rows.groupby("case_id")[metric].mean()


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean metrics per model and task, pooled over test subjects and per dataset."""
    metrics = ["dice", "hd95", "lesion_f1"]
    pooled = scores.groupby(["model", "task"])[metrics].mean().reset_index().assign(dataset="all")
    per_dataset = scores.groupby(["model", "task", "dataset"])[metrics].mean().reset_index()
    cases = scores.groupby(["model", "task", "dataset"]).case_id.nunique().rename("cases").reset_index()
    per_dataset = per_dataset.merge(cases, on=["model", "task", "dataset"])
    pooled = pooled.merge(scores.groupby(["model", "task"]).case_id.nunique().rename("cases").reset_index(), on=["model", "task"])
    table = pd.concat([pooled, per_dataset], ignore_index=True)[["model", "task", "dataset", "cases", *metrics]]
    return table.sort_values(["model", "task", "dataset"]).reset_index(drop=True)


def union_comparisons(scores: pd.DataFrame, samples: int, seed: int) -> pd.DataFrame:
    """Union against each per-dataset model, per task, on all test subjects: mean Dice and a paired interval."""
    rows = []
    for model in PER_DATASET_MODELS:
        for task in TASKS:
            union, single = case_means(scores, "union", task, "dice"), case_means(scores, model, task, "dice")
            union, single = union.align(single, join="inner")
            low, high = paired_bootstrap(union.to_numpy(), single.to_numpy(), samples, seed)
            rows.append({"per_dataset_model": model, "task": task, "covered": task in COVERED_TASKS[model],
                         "union_dice": float(np.nanmean(union)), "per_dataset_dice": float(np.nanmean(single)),
                         "difference_low": low, "difference_high": high,
                         "union_better": bool(np.nanmean(union) > np.nanmean(single))})
    return pd.DataFrame(rows)


def constraint_ablation(scores: pd.DataFrame, samples: int, seed: int) -> pd.DataFrame:
    rows = []
    for task, metric in (("new", "dice"), ("new", "lesion_f1"), ("vanishing", "dice"), ("vanishing", "lesion_f1"),
                         ("temporal", "dice")):
        on, off = case_means(scores, "union", task, metric), case_means(scores, "union_unconstrained", task, metric)
        on, off = on.align(off, join="inner")
        low, high = paired_bootstrap(on.to_numpy(), off.to_numpy(), samples, seed)
        rows.append({"task": task, "metric": "consistency" if task == "temporal" else metric,
                     "with_constraints": float(np.nanmean(on)), "without_constraints": float(np.nanmean(off)),
                     "difference_low": low, "difference_high": high, "raised": bool(np.nanmean(on) > np.nanmean(off))})
    return pd.DataFrame(rows)


def finite(value: float) -> float | None:
    """Rounded for the metrics file; None (JSON null) where a mean is undefined (e.g. HD95 of only empty maps)."""
    return round(float(value), 6) if np.isfinite(value) else None


def example_slices(arrays, predictions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The axial slice with the most new plus vanishing truth: scans, truth and each model's four maps."""
    changes = arrays["truth"][2].astype(int) + arrays["truth"][3]
    z = int(np.argmax(changes.sum((0, 1)))) if changes.any() else arrays["truth"].shape[-1] // 2
    example = {"scans": arrays["scans"][..., z], "truth": arrays["truth"][..., z]}
    example.update({f"prediction_{m}": p[..., z].astype(np.uint8) for m, p in predictions.items()})
    return example


def paper_claims(comparisons: pd.DataFrame, ablation: pd.DataFrame, vanishing: dict) -> list[Claim]:
    claims = []
    for covered, which in ((True, "covered"), (False, "lacking")):
        rows = comparisons[comparisons.covered == covered]
        measured = {f"{r.per_dataset_model}.{r.task}.union_dice": round(r.union_dice, 4) for r in rows.itertuples()}
        measured.update({f"{r.per_dataset_model}.{r.task}.per_dataset_dice": round(r.per_dataset_dice, 4) for r in rows.itertuples()})
        measured.update({"comparisons": len(rows), "union_wins": int(rows.union_better.sum())})
        claims.append(Claim(
            id=f"union_beats_per_dataset_{which}",
            claim="One model trained on the union of heterogeneous MS datasets segments better than models trained on "
                  f"each dataset alone, on the tasks that dataset's labels {'cover' if covered else 'lack'}.",
            source="SegHeD abstract (one model for heterogeneous data); the per-dataset comparison is ours",
            measured=measured,
            intervals={f"{r.per_dataset_model}.{r.task}.difference": (r.difference_low, r.difference_high) for r in rows.itertuples()},
            comparison="union mean Dice above the per-dataset model's on every (model, task) pair, pooled test subjects",
            holds=bool(rows.union_better.all()),
        ))
    measured = {f"{r.task}.{r.metric}.with": round(r.with_constraints, 4) for r in ablation.itertuples()}
    measured.update({f"{r.task}.{r.metric}.without": round(r.without_constraints, 4) for r in ablation.itertuples()})
    claims.append(Claim(
        id="constraints_raise_new_vanishing_and_consistency",
        claim="The longitudinal, spatial and volumetric constraints raise new- and vanishing-lesion Dice, lesion-wise F1 "
              "and temporal consistency.",
        source="SegHeD abstract (anatomical constraints); summary (better temporal consistency); loss forms are ours",
        measured=measured,
        intervals={f"{r.task}.{r.metric}.difference": (r.difference_low, r.difference_high) for r in ablation.itertuples()},
        comparison="union with constraints above union without on all five means (test subjects, longitudinal cases)",
        holds=bool(ablation.raised.all()),
    ))
    claims.append(Claim(
        id="vanishing_lesions_segmented",
        claim="Vanishing lesions are segmented (SegHeD reports the first vanishing-lesion results).",
        source="SegHeD abstract (three tasks incl. vanishing lesions); summary",
        measured={"union_vanishing_dice": round(vanishing["dice"], 4), "union_vanishing_lesion_f1": round(vanishing["lesion_f1"], 4),
                  "cases": vanishing["cases"]},
        intervals={"union_vanishing_dice": vanishing["interval"]},
        comparison="the 95% bootstrap interval of the union model's mean vanishing-lesion Dice lies above 0 and its "
                   "lesion-wise F1 is above 0 (at least one vanishing lesion detected), on subjects whose truth has them",
        holds=bool(vanishing["interval"][0] > 0 and vanishing["lesion_f1"] > 0),
    ))
    return claims


def evaluate(ctx: StageContext[EvaluateParams]) -> Metrics:
    p = ctx.params
    device = ctx.torch_device(p.num_threads)
    splits = read_table(ctx.dep("interim/splits/splits.csv"), ("case_id", "dataset", "split", "file", "longitudinal"))
    test = splits[splits.split == "test"].reset_index(drop=True)
    folder = ctx.dep("interim/preprocessed")
    models = {name: load_model(ctx.dep(f"models/{name}") / "model.pt", device) for name in MODELS}
    rows, examples = [], {}
    for case in progress(list(test.itertuples()), "evaluating test subjects", len(test)):
        arrays = dict(np.load(folder / case.file))
        inputs = network_inputs(arrays["scans"], arrays["white_matter"])
        predictions = {}
        for name, (model, _) in models.items():
            predictions[name] = predict(model, inputs, p.window, device) > p.threshold
            for row in score_case(predictions[name], arrays, bool(case.longitudinal), p):
                rows.append({"model": name, "case_id": case.case_id, "dataset": case.dataset, **row})
        if case.longitudinal:
            for key, value in example_slices(arrays, {m: predictions[m] for m in ("union", "union_unconstrained")}).items():
                examples[f"{case.case_id}/{key}"] = value
    scores = pd.DataFrame(rows)
    summary_table = summarise(scores[scores.task != "temporal"])
    temporal = scores[scores.task == "temporal"].groupby(["model", "dataset"]).dice.mean().rename("consistency").reset_index()
    comparisons = union_comparisons(scores, p.bootstrap_samples, ctx.common.seed)
    ablation = constraint_ablation(scores, p.bootstrap_samples, ctx.common.seed)
    vanishing_rows = scores[(scores.model == "union") & (scores.task == "vanishing") & (scores.truth_lesions > 0)]
    vanishing = {"dice": float(vanishing_rows.dice.mean()), "lesion_f1": float(vanishing_rows.lesion_f1.mean()),
                 "cases": len(vanishing_rows), "interval": bootstrap_interval(mean_statistic(vanishing_rows.dice.to_numpy()), len(vanishing_rows),
                                               p.bootstrap_samples, seed=ctx.common.seed)}

    with atomic_directory(ctx.out("evaluation")) as staging:
        write_tables(staging, {"per_case.csv": scores.round(6), "summary.csv": summary_table.round(6),
                               "temporal.csv": temporal.round(6), "union_vs_per_dataset.csv": comparisons.round(6),
                               "constraint_ablation.csv": ablation.round(6)})
        write_npz(staging / "examples.npz", examples)
    pooled = summary_table[summary_table.dataset == "all"]
    write_table(ctx.out("plots/dice_per_task.csv"), pd.DataFrame({"label": pooled.model + " / " + pooled.task,
                                                                  "dice": pooled.dice.round(6)}))
    summary = {model: {r.task: {"dice": finite(r.dice), "hd95": finite(r.hd95), "lesion_f1": finite(r.lesion_f1)}
                       for r in pooled[pooled.model == model].itertuples()} for model in MODELS}
    for model in MODELS:
        summary[model]["temporal_consistency"] = finite(scores[(scores.model == model) & (scores.task == "temporal")].dice.mean())
    write_json(ctx.out("metrics/evaluate.json"), {"pooled_test": summary, "test_subjects": len(test)})
    write_claims(ctx, paper_claims(comparisons, ablation, vanishing))
    ctx.log_artifact(ctx.out("evaluation") / "summary.csv")
    return {f"{model}.{task}.{metric}": value for model, tasks in summary.items() for task, values in tasks.items()
            if isinstance(values, dict) for metric, value in values.items() if value is not None}


if __name__ == "__main__":
    run_stage(evaluate)
