"""nova-evaluate in-process: every metric with intervals and the common/rare split, LLM judges through the stub."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from stages.common.params import ParamsError
from stages.nova.evaluate import evaluate
from tests.helpers import run_step, step_context
from tests.nova.openai_stub import endpoint_params, running_stub
from tests.nova.tiny import METRICS, TINY, file_hashes


def test_every_metric_with_intervals_and_the_frequency_split(tiny_run):
    metrics = json.loads((tiny_run.data / "metrics" / "evaluate.json").read_text())
    for model in ("normative", "random_boxes"):
        assert all(np.isfinite(metrics[model][m]) for m in METRICS), model
        assert set(metrics["by_frequency"][model]) == {"common", "rare"}
    assert metrics["cases"]["all"] == TINY["nova.ingest.cases"] == metrics["cases"]["common"] + metrics["cases"]["rare"]
    assert metrics["normative_beats_random_map30"] is True
    summary = pd.read_csv(tiny_run.data / "evaluation" / "summary.csv")
    assert set(summary.group) == {"all", "common", "rare"} and (summary.low <= summary.value + 1e-9).all()
    assert (summary.value <= summary.high + 1e-9).all()
    logged = tiny_run.metrics("evaluate")
    assert logged["normative.map30"] == pytest.approx(metrics["normative"]["map30"])
    assert logged["random_boxes.rare.top1"] == pytest.approx(metrics["by_frequency"]["random_boxes"]["rare"]["top1"])


def test_the_outputs_are_byte_stable(tiny_run, tiny_rerun):
    for folder in ("evaluation", "plots", "metrics"):
        assert file_hashes(tiny_run.data / folder) == file_hashes(tiny_rerun.data / folder), folder


def test_llm_judges_ask_the_endpoint_and_are_named(tiny_run, tmp_path):
    for folder in ("interim", "predictions"):
        shutil.copytree(tiny_run.data / folder, tmp_path / "data" / "nova" / folder)
    with running_stub(answer=lambda body: "yes" if body["messages"][-1]["content"].startswith("Gold") else
                      '{"keywords": ["hyperintense", "axial"]}') as stub:
        overrides = {**TINY, **endpoint_params(stub, "nova.evaluate.judge_endpoint", enable=False),
                     "nova.evaluate.caption_judge": "openai_compatible", "nova.evaluate.diagnosis_judge": "openai_compatible"}
        run_step(evaluate, tmp_path, overrides)
        assert stub.requests and len(list((tmp_path / "data/nova/answers/evaluate").rglob("*.json"))) == len(stub.requests)
    judges = json.loads((tmp_path / "data" / "nova" / "evaluation" / "judges.json").read_text())
    assert judges["diagnosis"].startswith("LLM judge") and judges["caption_keywords"].startswith("LLM keyword")
    metrics = json.loads((tmp_path / "data" / "nova" / "metrics" / "evaluate.json").read_text())
    assert metrics["normative"]["top1"] == 1.0  # the stub says every name matches


def test_the_re_implementations_ranked_judge_one_call_per_case(tiny_run, tmp_path):
    for folder in ("interim", "predictions"):
        shutil.copytree(tiny_run.data / folder, tmp_path / "data" / "nova" / folder)

    def ranked(body):
        text = body["messages"][-1]["content"]
        assert "ignore differences in specificity and etiology" in text and "\n5. " in text
        return '{"top1": false, "top5": true}'

    with running_stub(answer=ranked) as stub:
        overrides = {**TINY, **endpoint_params(stub, "nova.evaluate.judge_endpoint", enable=False),
                     "nova.evaluate.diagnosis_judge": "openai_compatible_ranked"}
        run_step(evaluate, tmp_path, overrides)
        models = json.loads((tiny_run.data / "predictions" / "summary.json").read_text())
        assert len(stub.requests) == len(models) * TINY["nova.ingest.cases"]  # one call per case and model
    metrics = json.loads((tmp_path / "data" / "nova" / "metrics" / "evaluate.json").read_text())
    assert metrics["normative"]["top1"] == 0.0 and metrics["normative"]["top5"] == 1.0
    assert metrics["judges"]["diagnosis"].startswith("LLM ranked judge")


@pytest.mark.parametrize("overrides, message", [
    ({"nova.evaluate.diagnosis_judge": "openai_compatible"},
     r"nova.evaluate: Value error, judge_endpoint: base_url is empty, but an openai_compatible judge is configured"),
    ({"nova.evaluate.confidence": 95}, r"nova.evaluate.confidence: Input should be less than 1"),
    ({"nova.evaluate.caption_judge": "gpt"}, r"nova.evaluate.caption_judge: Input should be 'lexicon' or 'openai_compatible'"),
])
def test_bad_params_name_the_key(tmp_path, overrides, message):
    with pytest.raises(ParamsError, match=message):
        step_context(evaluate, tmp_path, overrides)
