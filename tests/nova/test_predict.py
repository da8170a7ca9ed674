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
    ({"nova.predict.models": ["normative", "normative"]}, r"nova.predict: Value error, models: \['normative'\] listed more"),
    ({"nova.predict.models": []}, r"nova.predict: Value error, models: empty and openai_compatible is not enabled"),
    ({"nova.predict.models": ["gpt"]}, r"nova.predict.models.0: Input should be 'normative' or 'random_boxes'"),
    ({"nova.predict.openai_compatible.timeout_s": 0}, r"nova.predict.openai_compatible.timeout_s: Input should be greater than 0"),
])
def test_bad_params_name_the_key(tmp_path, overrides, message):
    with pytest.raises(ParamsError, match=message):
        step_context(predict, tmp_path, overrides)
