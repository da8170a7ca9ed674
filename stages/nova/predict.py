"""nova-predict: run every configured model on every case through the one adapter interface.

Models: ``normative`` (the healthy-slice detector, the structured captioner, the retrieval
diagnoser), ``random_boxes`` (chance level) and, when ``openai_compatible.enabled``, an
OpenAI-compatible chat endpoint. Its answers are cached in ``data/nova/answers/predict``, a
persistent output (``persist: true``: DVC keeps it when the stage reruns, and versions it, so a
rerun, a forced one included, or a collaborator after ``dvc pull``, sends no request already
sent; an interrupted run keeps the answers it got). The predictions are the same bytes whether
an answer came from the endpoint or from the cache. A problem with one answer leaves that output
empty and is recorded; it never stops the run, unless every request failed.
"""
from __future__ import annotations

import time
from typing import Literal

from pydantic import Field, model_validator

from stages.common.atomic import atomic_directory, write_json
from stages.common.badinput import BadInputError
from stages.common.params import StrictModel
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.nova.dataset import Manifest, declared_source, load_manifest, read_manifest_slice
from stages.nova.models import CaseInput, NormativeBaseline, OpenAICompatibleModel, RandomBoxesModel, SliceInput
from stages.nova.normative import MODEL_FILE, load_model
from stages.nova.openai_client import ChatClient, EndpointConfig

ANSWER_CACHE = "answers/predict"  # under data/nova; empty while the endpoint is disabled


class EndpointParams(EndpointConfig):
    enabled: bool
    diagnosis_findings: Literal["predicted", "gold"]  # what the diagnosis request is given as findings
    box_format: Literal["yxyx_1000", "xyxy_1000", "xyxy_px"]  # how this model writes boxes (Qwen2.5-VL: xyxy_px)

    @model_validator(mode="after")
    def url_when_enabled(self) -> EndpointParams:
        if self.enabled:
            self.require_url("the endpoint is enabled")
        return self


class NamedEndpointParams(EndpointConfig):
    """One more endpoint scored side by side (``nova.predict.endpoints``), under its own model name."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # e.g. gpt-4o, qwen2.5-vl-72b
    diagnosis_findings: Literal["predicted", "gold"]
    box_format: Literal["yxyx_1000", "xyxy_1000", "xyxy_px"]

    @model_validator(mode="after")
    def url_given(self) -> NamedEndpointParams:
        self.require_url(f"endpoint {self.name!r} is listed")
        return self


class PredictParams(StrictModel):
    models: list[Literal["normative", "random_boxes"]]
    min_area: int = Field(ge=1)             # pixels (at the detector's size) of a region that becomes a box
    max_boxes: int = Field(ge=1)
    random_max_boxes: int = Field(ge=1)
    openai_compatible: EndpointParams
    endpoints: list[NamedEndpointParams]    # more endpoints, each scored under its name (may be empty)

    @property
    def model_names(self) -> list[str]:
        return [*self.models, *(["openai_compatible"] if self.openai_compatible.enabled else []), *(e.name for e in self.endpoints)]

    @model_validator(mode="after")
    def some_distinct_models(self) -> PredictParams:
        names = [*self.models, "openai_compatible", *(e.name for e in self.endpoints)]
        repeated = sorted({m for m in names if names.count(m) > 1})
        if repeated:
            raise ValueError(f"models / endpoints: {repeated} named more than once")
        if not self.model_names:
            raise ValueError("models: empty, openai_compatible is not enabled and no endpoints are listed: there is nothing to score")
        return self


def case_inputs(manifest: Manifest) -> list[CaseInput]:
    """The benchmark as the models see it: one input per case, slices in scan order."""
    cases = []
    for case_id, rows in manifest.images.sort_values(["case_id", "image_id"]).groupby("case_id", sort=True):
        slices = [SliceInput(row.image_id, read_manifest_slice(manifest, row.path), manifest.image_path(row.path))
                  for row in rows.itertuples()]
        cases.append(CaseInput(str(case_id), str(rows.clinical_history.iloc[0]), slices, list(rows.caption)))
    return cases


def build_models(ctx: StageContext[PredictParams]) -> list:
    p = ctx.params
    models = []
    for name in p.models:
        if name == "normative":
            models.append(NormativeBaseline(load_model(ctx.dep(f"models/{MODEL_FILE}")), p.min_area, p.max_boxes))
        else:
            models.append(RandomBoxesModel(ctx.common.seed, p.random_max_boxes))
    if p.openai_compatible.enabled:
        client = ChatClient(p.openai_compatible, ctx.out(ANSWER_CACHE))
        models.append(OpenAICompatibleModel(client, p.openai_compatible.diagnosis_findings, p.openai_compatible.box_format))
    for endpoint in p.endpoints:  # one cache for all: its keys hold the endpoint and the model
        client = ChatClient(endpoint, ctx.out(ANSWER_CACHE))
        models.append(OpenAICompatibleModel(client, endpoint.diagnosis_findings, endpoint.box_format, name=endpoint.name))
    return models


def predict(ctx: StageContext[PredictParams]) -> Metrics:
    manifest = load_manifest(ctx.dep("interim/ingest"), ctx.root)
    declared_source(ctx, manifest.root, "the benchmark slices")
    cases = case_inputs(manifest)
    ctx.out(ANSWER_CACHE).mkdir(parents=True, exist_ok=True)  # a declared output, also while unused
    models = build_models(ctx)
    out = ctx.out("predictions")
    summary, seconds_per_model, client_stats = {}, {}, {}
    with atomic_directory(out) as staging:
        for model in models:
            started = time.perf_counter()
            predictions = [model.predict_case(case) for case in progress(cases, f"predicting ({model.name})", len(cases))]
            seconds = time.perf_counter() - started
            problems = [p for case in predictions for p in case.problems + [q for s in case.slices for q in s.problems]]
            client = getattr(model, "client", None)
            if client is not None and client.stats.unusable:
                raise BadInputError(f"nova.predict ({model.name}): every request to {client.config.base_url} failed; "
                                    f"first problem: {problems[0] if problems else 'unknown'}")
            seconds_per_model[model.name] = seconds
            client_stats[model.name] = client.stats.as_dict() if client is not None else {}
            summary[model.name] = {"cases": len(predictions), "slices": sum(len(c.slices) for c in predictions),
                                   "problems": len(problems), "problem_examples": problems[:10]}
            # where the answers came from: the endpoint and its model (never the key); identical from the cache
            source = {"endpoint": client.endpoint, "endpoint_model": client.config.model} if client is not None else {}
            write_json(staging / f"{model.name}.json", {"model": model.name, **source, "cases": [c.to_json() for c in predictions]})
        write_json(staging / "summary.json", summary)
    ctx.log_artifact(out / "summary.json")
    print("nova-predict: " + ", ".join(f"{k} {v['slices']} slices in {seconds_per_model[k]:.1f} s, {v['problems']} problems"
                                        + (f", {client_stats[k]}" if client_stats[k] else "") for k, v in summary.items()))
    # Timings and request counts go to MLflow only: the outputs stay byte-identical for a seed,
    # whether the answers came from the endpoint or from the cache.
    metrics: Metrics = {}
    for name, values in summary.items():
        metrics.update({f"{name}.seconds": seconds_per_model[name], f"{name}.problems": values["problems"],
                        f"{name}.slices_per_second": values["slices"] / seconds_per_model[name] if seconds_per_model[name] else 0.0,
                        **{f"{name}.client.{k}": v for k, v in client_stats[name].items()}})
    return metrics


if __name__ == "__main__":
    run_stage(predict)
