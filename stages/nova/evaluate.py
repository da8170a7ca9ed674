"""nova-evaluate: score every model on the three tasks, with bootstrap intervals and a
common-versus-rare breakdown.

Localisation: ACC50, TP30, FP30, FNR50, the per-image hit30/hit50 and mean best IoU, and COCO
mAP at IoU 0.3, 0.5 and 0.5:0.95 (score-less models: one operating point; :mod:`stages.nova.metrics`). Captioning: BLEU-4, METEOR, ROUGE-L, clinical- and modality-term
F1, normal/abnormal F1 (:mod:`stages.nova.text_metrics`). Diagnosis: Top-1 and Top-5 with the
configured judge. Intervals: percentile bootstrap over cases (a case's slices stay together).
Groups (``nova.ingest.frequency_by``, recorded by ingest): common/rare, "rare" pathologies being those
with at most ``nova.ingest.rare_max_cases`` cases in the benchmark, or pathology categories. A group
without cases is listed as empty (``empty_groups``), never scored as NaN.
"""
from __future__ import annotations

import json
from functools import partial
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from stages.common.atomic import atomic_directory, write_json
from stages.common.claims import Claim, write_claims
from stages.common.io import write_table, write_tables
from stages.common.params import StrictModel
from stages.common.stage import Metrics, StageContext, run_stage
from stages.nova.dataset import ingest_info, load_manifest, load_predictions
from stages.nova.judges import LLMJudge, LLMKeywordExtractor, LLMRankedJudge, SynonymJudge, top_k_hits
from stages.nova.metrics import (
    MatchTable,
    bootstrap_intervals,
    grouped_indices,
    match_table,
    precision_recall_curve,
    summarise,
)
from stages.nova.openai_client import ChatClient, EndpointConfig
from stages.nova.text_metrics import CaptionScores, LexiconKeywordExtractor, score_captions

ANSWER_CACHE = "answers/evaluate"  # under data/nova: the LLM judges' answers (persistent output, like predict's)
# The count metrics lead: they do not depend on scores, which VLMs do not give (issue 17 item 8);
# hit30/hit50/mean_best_iou are the re-implementation's per-image definition (item 9).
LOCALISATION = ("acc50", "tp30", "fp30", "fnr50", "hit30", "hit50", "mean_best_iou", "map30", "map50", "map50_95")
CAPTIONING = ("bleu4", "meteor", "rouge_l", "clinical_f1", "modality_f1", "normal_abnormal_f1")
DIAGNOSIS = ("top1", "top5")
TASK_OF = {**{m: "localisation" for m in LOCALISATION}, **{m: "captioning" for m in CAPTIONING},
           **{m: "diagnosis" for m in DIAGNOSIS}}


class EvaluateParams(StrictModel):
    bootstrap_resamples: int = Field(ge=1)
    confidence: float = Field(gt=0, lt=1)
    caption_judge: Literal["lexicon", "openai_compatible"]
    diagnosis_judge: Literal["synonym", "openai_compatible", "openai_compatible_ranked"]
    judge_endpoint: EndpointConfig

    @property
    def llm_judged(self) -> bool:
        return self.caption_judge == "openai_compatible" or self.diagnosis_judge != "synonym"

    @model_validator(mode="after")
    def endpoint_when_judging(self) -> EvaluateParams:
        if self.llm_judged:
            try:
                self.judge_endpoint.require_url("an openai_compatible judge is configured")
            except ValueError as error:
                raise ValueError(f"judge_endpoint: {error}") from None
        return self


def build_judges(ctx: StageContext[EvaluateParams]):
    """(keyword extractor, diagnosis judge) as configured; LLM judges share one cached client."""
    p = ctx.params
    cache = ctx.out(ANSWER_CACHE)
    cache.mkdir(parents=True, exist_ok=True)  # a declared output, also while no LLM judges
    client = ChatClient(p.judge_endpoint, cache) if p.llm_judged else None
    extractor = LLMKeywordExtractor(client) if p.caption_judge == "openai_compatible" else LexiconKeywordExtractor()
    judges = {"openai_compatible": LLMJudge, "openai_compatible_ranked": LLMRankedJudge}
    judge = judges[p.diagnosis_judge](client) if p.diagnosis_judge in judges else SynonymJudge()
    return extractor, judge


class ModelScores:
    """Everything needed to score one model on any subset of cases."""

    def __init__(self, table: MatchTable, captions: CaptionScores, top1: np.ndarray, top5: np.ndarray,
                 members: list[np.ndarray]) -> None:
        self.table, self.captions, self.top1, self.top5 = table, captions, top1, top5
        self.members = members  # per case (sorted ids), the indices of its slices (sorted ids)

    def images_of(self, case_indices: np.ndarray) -> np.ndarray:
        parts = [self.members[c] for c in case_indices]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def metrics(self, case_indices: np.ndarray) -> dict[str, float]:
        images = self.images_of(case_indices)
        localisation = summarise(self.table, images)
        values = {m: localisation[m] for m in LOCALISATION}
        values.update(self.captions.summary(images))
        values["top1"] = float(self.top1[case_indices].mean()) if len(case_indices) else float("nan")
        values["top5"] = float(self.top5[case_indices].mean()) if len(case_indices) else float("nan")
        return values


def resampled_metrics(scores: ModelScores, chosen: np.ndarray, draw: np.ndarray) -> dict[str, float]:
    """The metrics of one bootstrap draw (indices into ``chosen``)."""
    return scores.metrics(chosen[draw])


def evaluate(ctx: StageContext[EvaluateParams]) -> Metrics:
    p = ctx.params
    manifest = load_manifest(ctx.dep("interim/ingest"), ctx.root)
    images = manifest.images.sort_values("image_id").reset_index(drop=True)
    gold = manifest.boxes_of("gold")
    case_ids, members = grouped_indices(images.case_id.tolist())
    cases = images.drop_duplicates("case_id").set_index("case_id").loc[case_ids].reset_index()
    info = ingest_info(ctx.dep("interim/ingest"))
    labels = list(info.get("groups", ["common", "rare"]))
    group_cases = {"all": np.arange(len(cases)), **{g: np.nonzero(cases.frequency.to_numpy() == g)[0] for g in labels}}
    empty_groups = [g for g in labels if len(group_cases[g]) == 0]
    scored_groups = [g for g in group_cases if g not in empty_groups]
    extractor, judge = build_judges(ctx)
    predictions_dir = ctx.dep("predictions")
    model_names = list(json.loads((predictions_dir / "summary.json").read_text()))

    summary_rows, image_rows, case_rows, curves, results, scoreless = [], [], [], {}, {}, {}
    for model_index, name in enumerate(model_names):
        boxes, captions, diagnoses, problems = load_predictions(predictions_dir / f"{name}.json")
        table = match_table(gold, {k: v for k, v in boxes.items() if k in gold})
        scoreless[name] = table.scoreless
        hypotheses = [captions.get(i, "") for i in images.image_id]
        caption_scores = score_captions(hypotheses, list(images.caption), None, extractor)  # gold label from the gold caption
        ranked = [diagnoses.get(c, []) for c in cases.case_id]
        top1, top5 = top_k_hits(judge, ranked, list(cases.final_diagnosis))
        scores = ModelScores(table, caption_scores, top1, top5, members)
        results[name] = {}
        for group in scored_groups:
            chosen = group_cases[group]
            values = scores.metrics(chosen)
            intervals = bootstrap_intervals(partial(resampled_metrics, scores, chosen), len(chosen),
                                            p.bootstrap_resamples, p.confidence, ctx.common.seed + model_index)
            results[name][group] = values
            for metric, value in values.items():
                low, high = intervals.get(metric, (float("nan"), float("nan")))
                summary_rows.append({"model": name, "group": group, "task": TASK_OF[metric], "metric": metric,
                                     "value": value, "low": low, "high": high, "cases": len(chosen)})
        curves[name] = precision_recall_curve(table, 0)[1]
        positions = {image_id: i for i, image_id in enumerate(table.image_ids)}
        for index, image in images.iterrows():
            position = positions[image.image_id]
            image_rows.append({
                "model": name, "image_id": image.image_id, "case_id": image.case_id, "frequency": image.frequency,
                "n_gold": int(table.n_gt[position]),
                "n_pred": int(table.dt_count[position]), "tp30": int(table.tp30[position]), "tp50": int(table.tp50[position]),
                "best_iou": float(table.best_iou[position]),
                "meteor": caption_scores.meteor[index], "rouge_l": caption_scores.rouge_l[index],
                "clinical_f1": caption_scores.clinical_f1[index], "modality_f1": caption_scores.modality_f1[index],
                "gold_abnormal": bool(caption_scores.gold_abnormal[index]),
                "predicted_abnormal": bool(caption_scores.predicted_abnormal[index]),
                "problems": problems.get(image.image_id, 0), "caption": hypotheses[index],
            })
        for index, case in cases.iterrows():
            names = ranked[index] + [""] * (5 - len(ranked[index]))
            case_rows.append({"model": name, "case_id": case.case_id, "pathology": case.pathology,
                              "frequency": case.frequency, "final_diagnosis": case.final_diagnosis,
                              **{f"diagnosis_{k + 1}": names[k] for k in range(5)},
                              "top1": bool(top1[index]), "top5": bool(top5[index])})

    summary = pd.DataFrame(summary_rows)
    per_image, per_case = pd.DataFrame(image_rows), pd.DataFrame(case_rows)
    per_pathology = (per_case.groupby(["model", "pathology", "frequency"])
                     .agg(cases=("case_id", "count"), top1=("top1", "mean"), top5=("top5", "mean")).reset_index())
    localisation_by_pathology = (per_image.merge(cases[["case_id", "pathology"]], on="case_id")
                                 .groupby(["model", "pathology"]).agg(gold_boxes=("n_gold", "sum"), tp30=("tp30", "sum"))
                                 .reset_index())
    per_pathology = per_pathology.merge(localisation_by_pathology, on=["model", "pathology"], how="left")

    out = ctx.out("evaluation")
    with atomic_directory(out) as staging:
        write_tables(staging, {"summary.csv": summary, "per_image.csv": per_image, "per_case.csv": per_case,
                               "per_pathology.csv": per_pathology})
        write_json(staging / "judges.json", {
            "caption_keywords": extractor.name, "diagnosis": judge.name,
            "caption_judge_failures": getattr(extractor, "failures", 0), "diagnosis_judge_failures": getattr(judge, "failures", 0),
            "meteor": "nltk METEOR with exact, Porter-stem and study-lexicon synonym matching (no WordNet)",
            "bootstrap": f"percentile, {p.bootstrap_resamples} resamples of cases, {p.confidence:.0%}",
        })
    write_table(ctx.out("plots/pr_iou30.csv"), pd.DataFrame({"recall": np.linspace(0, 1, 101), **curves}))
    frequency_rows = [{"group": g, **{f"{m}.{metric}": results[m][g][metric] for m in model_names
                                      for metric in ("map30", "top1", "clinical_f1")}} for g in scored_groups]
    write_table(ctx.out("plots/by_frequency.csv"), pd.DataFrame(frequency_rows))
    metrics = {name: {metric: results[name]["all"][metric] for metric in (*LOCALISATION, *CAPTIONING, *DIAGNOSIS)}
               for name in model_names}
    metrics["by_frequency"] = {name: {g: {m: results[name][g][m] for m in ("map30", "top1", "top5", "clinical_f1")}
                                      for g in scored_groups if g != "all"} for name in model_names}
    metrics["cases"] = {g: int(len(c)) for g, c in group_cases.items()}
    metrics["frequency_by"] = info.get("frequency_by", "cases")
    metrics["empty_groups"] = empty_groups
    metrics["judges"] = {"caption_keywords": extractor.name, "diagnosis": judge.name}
    metrics["scoreless"] = {name: scoreless[name] for name in model_names}
    if {"normative", "random_boxes"} <= set(model_names):
        metrics["normative_beats_random_map30"] = bool(results["normative"]["all"]["map30"] > results["random_boxes"]["all"]["map30"])
    write_json(ctx.out("metrics/evaluate.json"), metrics)
    write_claims(ctx, paper_claims(metrics))
    ctx.log_artifact(out / "summary.csv")
    for name in model_names:
        r = results[name]["all"]
        print(f"nova-evaluate {name}: mAP@30 {r['map30']:.3f}  BLEU-4 {r['bleu4']:.2f}  clinical F1 {r['clinical_f1']:.3f}  "
              f"Top-1 {r['top1']:.3f}  Top-5 {r['top5']:.3f}")
    # Every model's metrics on all cases ("<model>.<metric>") and per frequency ("<model>.rare.<metric>").
    return {f"{name}{'' if group == 'all' else '.' + group}.{metric}": value
            for name in model_names for group in scored_groups for metric, value in results[name][group].items()
            if np.isfinite(value)}


def paper_claims(metrics: dict) -> list[Claim]:
    """What the smoke run tests: the normative detector localises above chance; rare pathologies are scored apart."""
    claims = []
    if "normative_beats_random_map30" in metrics:
        claims.append(Claim(
            id="normative_beats_random_boxes",
            claim="A normative detector fitted on healthy slices only localises anomalies better than random boxes (mAP@30).",
            source="NOVA: localisation task, mAP@30 as the headline metric (study note)",
            measured={"normative_map30": metrics["normative"]["map30"], "random_boxes_map30": metrics["random_boxes"]["map30"]},
            comparison="normative mAP@30 > random boxes mAP@30",
            holds=metrics["normative_beats_random_map30"],
        ))
    if metrics.get("frequency_by", "cases") != "cases":
        return claims  # pathology categories: no common/rare split to claim anything about
    frequency = metrics["by_frequency"]
    first = next(iter(frequency))
    reported = all(metrics["cases"].get(g, 0) > 0 for g in ("common", "rare"))
    claims.append(Claim(
        id="rare_pathologies_reported_apart",
        claim="Scores on rare pathologies are reported apart from common ones, as the benchmark's long tail demands.",
        source="NOVA: benchmark design, rare versus common pathologies (study note)",
        measured={"common_cases": metrics["cases"].get("common", 0), "rare_cases": metrics["cases"].get("rare", 0),
                  **{f"{first}_map30_{g}": frequency[first][g]["map30"] for g in ("common", "rare") if g in frequency[first]}},
        comparison="both groups have cases and scores of their own (an empty group is named, not scored)",
        holds=reported,
    ))
    return claims


if __name__ == "__main__":
    run_stage(evaluate)
