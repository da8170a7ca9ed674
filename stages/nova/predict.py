"""nova-predict: run every configured model on every case through the one adapter interface.

Models: ``normative`` (the healthy-slice detector, the structured captioner, the retrieval
diagnoser), ``random_boxes`` (chance level) and, when ``openai_compatible.enabled``, an
OpenAI-compatible chat endpoint. Its answers are cached under ``data/nova/cache/answers``
(outside DVC's outputs, so a rerun sends no request it already sent). A problem with one answer
leaves that output empty and is recorded; it never stops the run.
"""
from __future__ import annotations

import time
from typing import Literal

from stages.common.atomic import atomic_directory, write_json
from stages.common.badinput import BadInputError
from stages.common.params import StrictModel
from stages.common.runtime import progress
from stages.common.stage import run_stage
from stages.nova.dataset import Manifest, load_manifest, read_manifest_slice
from stages.nova.models import CaseInput, NormativeBaseline, OpenAICompatibleModel, RandomBoxesModel, SliceInput
from stages.nova.openai_client import ChatClient, EndpointConfig
from stages.nova.train_normative import load_model

STUDY = "nova"


class EndpointParams(EndpointConfig):
    enabled: bool = False
    model: str = "Qwen/Qwen2.5-VL-72B-Instruct"
    diagnosis_findings: Literal["predicted", "gold"] = "predicted"


class PredictParams(StrictModel):
    models: list[Literal["normative", "random_boxes"]] = ["normative", "random_boxes"]
    min_area: int = 8
    max_boxes: int = 5
    random_max_boxes: int = 3
    openai_compatible: EndpointParams = EndpointParams()


def case_inputs(manifest: Manifest) -> list[CaseInput]:
    """The benchmark as the models see it: one input per case, slices in scan order."""
    cases = []
    for case_id, rows in manifest.images.sort_values(["case_id", "image_id"]).groupby("case_id", sort=True):
        slices = [SliceInput(row.image_id, read_manifest_slice(manifest, row.path), manifest.image_path(row.path))
                  for row in rows.itertuples()]
        cases.append(CaseInput(str(case_id), str(rows.clinical_history.iloc[0]), slices, list(rows.caption)))
    return cases


def build_models(ctx) -> list:
    p = ctx.params
    models = []
    for name in p.models:
        if name == "normative":
            models.append(NormativeBaseline(load_model(ctx.data / "models"), p.min_area, p.max_boxes))
        else:
            models.append(RandomBoxesModel(ctx.common.seed, p.random_max_boxes))
    if p.openai_compatible.enabled:
        if not p.openai_compatible.base_url:
            raise BadInputError("nova.predict.openai_compatible.base_url: empty; set the endpoint (e.g. http://127.0.0.1:8000/v1)")
        client = ChatClient(p.openai_compatible, ctx.data / "cache" / "answers")
        models.append(OpenAICompatibleModel(client, p.openai_compatible.diagnosis_findings))
    return models


def main() -> None:
    with run_stage(STUDY, "predict", PredictParams) as ctx:
        manifest = load_manifest(ctx.data, ctx.root)
        cases = case_inputs(manifest)
        models = build_models(ctx)
        out = ctx.data / "predictions"
        summary, seconds_per_model, client_stats = {}, {}, {}
        with atomic_directory(out) as staging:
            for model in models:
                started = time.perf_counter()
                predictions = [model.predict_case(case) for case in progress(cases, f"predicting ({model.name})", len(cases))]
                seconds = time.perf_counter() - started
                problems = [p for case in predictions for p in case.problems + [q for s in case.slices for q in s.problems]]
                client = getattr(model, "client", None)
                if client is not None and client.stats.unusable:
                    raise BadInputError(f"nova.predict.openai_compatible: every request to {client.config.base_url} failed; "
                                        f"first problem: {problems[0] if problems else 'unknown'}")
                stats = client.stats.as_dict() if client is not None else {}
                seconds_per_model[model.name] = seconds
                client_stats[model.name] = stats
                summary[model.name] = {"cases": len(predictions), "slices": sum(len(c.slices) for c in predictions),
                                       "problems": len(problems), "problem_examples": problems[:10]}
                write_json(staging / f"{model.name}.json", {"model": model.name, "cases": [c.to_json() for c in predictions]})
            write_json(staging / "summary.json", summary)
        # Timings and request counts go to MLflow only: the outputs stay byte-identical for a seed,
        # whether the answers came from the endpoint or from the cache.
        for name, values in summary.items():
            ctx.log_metrics({f"{name}.seconds": seconds_per_model[name], f"{name}.problems": values["problems"],
                             **{f"{name}.client.{k}": v for k, v in client_stats[name].items()}})
        ctx.log_artifact(out / "summary.json")
        print("nova-predict: " + ", ".join(f"{k} {v['slices']} slices in {seconds_per_model[k]:.1f} s, {v['problems']} problems"
                                            + (f", {client_stats[k]}" if client_stats[k] else "") for k, v in summary.items()))


if __name__ == "__main__":
    main()
