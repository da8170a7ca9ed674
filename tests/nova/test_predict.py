"""nova-predict in-process: every configured model, the stub endpoint with its answer cache, params checks."""
import json
import shutil

import pytest

from stages.common.badinput import BadInputError
from stages.common.params import ParamsError
from stages.nova.predict import predict
from tests.helpers import run_step, step_context
from tests.nova.openai_stub import endpoint_params, running_stub
from tests.nova.tiny import TINY, file_hashes


@pytest.fixture()
def predict_root(tiny_run, tmp_path):
    """A root holding what nova-predict reads (ingest and the detector) from the tiny run."""
    for folder in ("raw", "interim", "models"):
        shutil.copytree(tiny_run.data / folder, tmp_path / "data" / "nova" / folder)
    return tmp_path


def test_every_model_predicts_every_slice(tiny_run, tiny_rerun):
    summary = json.loads((tiny_run.data / "predictions" / "summary.json").read_text())
    slices = tiny_run.metrics("ingest")["slices"]
    assert set(summary) == {"normative", "random_boxes"}
    assert all(v["slices"] == slices and v["problems"] == 0 for v in summary.values())
    normative = json.loads((tiny_run.data / "predictions" / "normative.json").read_text())
    assert len(normative["cases"]) == TINY["nova.ingest.cases"] and all(len(c["diagnoses"]) == 5 for c in normative["cases"])
    assert tiny_run.metrics("predict")["normative.seconds"] > 0  # timings: MLflow only
    assert "seconds" not in (tiny_run.data / "predictions" / "summary.json").read_text()
    assert file_hashes(tiny_run.data / "predictions") == file_hashes(tiny_rerun.data / "predictions")
    assert list((tiny_run.data / "answers" / "predict").iterdir()) == []  # declared, empty while the endpoint is off


def test_the_endpoint_model_runs_through_the_stub_and_its_answers_are_cached(predict_root, tiny_run):
    with running_stub() as stub:
        overrides = {**TINY, **endpoint_params(stub)}
        ctx, metrics = run_step(predict, predict_root, overrides)
        slices, cases = tiny_run.metrics("ingest")["slices"], TINY["nova.ingest.cases"]
        assert len(stub.requests) == metrics["openai_compatible.client.requests"] == 2 * slices + cases
        summary = json.loads((predict_root / "data/nova/predictions/summary.json").read_text())
        assert summary["openai_compatible"] == {"cases": cases, "slices": slices, "problems": 0, "problem_examples": []}
        recorded = json.loads((predict_root / "data/nova/predictions/openai_compatible.json").read_text())
        assert (recorded["endpoint"], recorded["endpoint_model"]) == (stub.url, "Qwen/Qwen2.5-VL-72B-Instruct")
        cache = predict_root / "data" / "nova" / "answers" / "predict"  # a persistent output
        assert len(list(cache.rglob("*.json"))) == len(stub.requests)
        first = file_hashes(predict_root / "data" / "nova" / "predictions")

        _, again = run_step(predict, predict_root, overrides)
        assert len(stub.requests) == 2 * slices + cases, "a rerun sends no request it already sent"
        assert again["openai_compatible.client.cache_hits"] == 2 * slices + cases
        assert file_hashes(predict_root / "data" / "nova" / "predictions") == first
    # the other models' outputs are those of the run without the endpoint
    for name in ("normative.json", "random_boxes.json"):
        assert first[name] == file_hashes(tiny_run.data / "predictions")[name]


def test_an_endpoint_that_never_answers_fails_the_stage(predict_root):
    with running_stub() as stub:
        stub.script = [("status", 400)] * 1000
        with pytest.raises(BadInputError, match="every request to .* failed; first problem: .*HTTP 400"):
            run_step(predict, predict_root, {**TINY, **endpoint_params(stub)})
    assert not (predict_root / "data" / "nova" / "predictions").exists()


@pytest.mark.parametrize("overrides, message", [
    ({"nova.predict.openai_compatible.enabled": True},
     r"nova.predict.openai_compatible: Value error, base_url is empty, but the endpoint is enabled"),
    ({"nova.predict.openai_compatible.base_url": "127.0.0.1:8000/v1"},
     r"nova.predict.openai_compatible.base_url: Value error, must start with http:// or https://"),
    ({"nova.predict.models": ["normative", "normative"]}, r"nova.predict: Value error, models / endpoints: \['normative'\] named more than once"),
    ({"nova.predict.models": []}, r"nova.predict: Value error, models: empty, openai_compatible is not enabled and no endpoints are listed"),
    ({"nova.predict.models": ["gpt"]}, r"nova.predict.models.0: Input should be 'normative' or 'random_boxes'"),
    ({"nova.predict.openai_compatible.timeout_s": 0}, r"nova.predict.openai_compatible.timeout_s: Input should be greater than 0"),
])
def test_bad_params_name_the_key(tmp_path, overrides, message):
    with pytest.raises(ParamsError, match=message):
        step_context(predict, tmp_path, overrides)


def test_several_named_endpoints_are_scored_side_by_side(tiny_run, tmp_path, monkeypatch):
    from stages.nova.evaluate import evaluate
    from stages.nova.report import report
    from tests.nova.openai_stub import GOOD_CAPTION

    root = tmp_path / "root"
    for folder in ("interim", "models", "raw"):
        shutil.copytree(tiny_run.data / folder, root / "data" / "nova" / folder)
    monkeypatch.setenv("NOVA_SECRET_KEY", "sk-do-not-print-me")

    def qwen(body):
        text = json.dumps(body["messages"][-1]["content"])
        return '[{"bbox_2d": [10, 10, 40, 40]}]' if "Localise" in text else GOOD_CAPTION if "Describe" in text else \
            '{"diagnosis": "Glioblastoma", "differentials": []}'

    with running_stub() as gpt, running_stub(answer=qwen) as served:
        endpoints = [
            {"name": "gpt-4o", "base_url": gpt.url, "model": "gpt-4o", "api_key_env": "NOVA_SECRET_KEY", "temperature": 0.1,
             "max_tokens": 2048, "token_limit_key": "max_completion_tokens", "timeout_s": 5, "max_retries": 1, "backoff_s": 0.01,
             "diagnosis_findings": "predicted", "box_format": "yxyx_1000"},
            {"name": "qwen2.5-vl-72b", "base_url": served.url, "model": "Qwen/Qwen2.5-VL-72B-Instruct", "api_key_env": "",
             "temperature": 0.1, "max_tokens": 2048, "token_limit_key": "max_tokens", "timeout_s": 5, "max_retries": 1,
             "backoff_s": 0.01, "diagnosis_findings": "predicted", "box_format": "xyxy_px"},
        ]
        overrides = {**TINY, "nova.predict.endpoints": endpoints}
        run_step(predict, root, overrides)
        assert gpt.requests and served.requests
        assert gpt.requests[0]["body"]["max_completion_tokens"] == 2048 and "bbox_2d" in json.dumps(served.requests[0]["body"])
        run_step(evaluate, root, overrides)
        run_step(report, root, overrides)
    summary = json.loads((root / "data/nova/predictions/summary.json").read_text())
    assert set(summary) == {"normative", "random_boxes", "gpt-4o", "qwen2.5-vl-72b"}
    metrics = json.loads((root / "data/nova/metrics/evaluate.json").read_text())
    assert metrics["scoreless"] == {"normative": False, "random_boxes": False, "gpt-4o": False, "qwen2.5-vl-72b": True}
    html = (root / "data/nova/report/index.html").read_text()
    assert f"gpt-4o at {gpt.url}" in html and f"Qwen/Qwen2.5-VL-72B-Instruct at {served.url}" in html
    assert "sk-do-not-print-me" not in html and "NOVA_SECRET_KEY" not in html


def test_an_endpoint_name_used_twice_is_refused(tmp_path):
    endpoint = {"name": "normative", "base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": "", "temperature": 0.1,
                "max_tokens": 16, "token_limit_key": "max_tokens", "timeout_s": 1, "max_retries": 0, "backoff_s": 0,
                "diagnosis_findings": "predicted", "box_format": "yxyx_1000"}
    with pytest.raises(ParamsError, match=r"\['normative'\] named more than once"):
        step_context(predict, tmp_path, {"nova.predict.endpoints": [endpoint]})
