"""The OpenAI-compatible adapter against a local stub server (127.0.0.1, in a thread; no real network)."""
import json

import numpy as np
import pytest
from PIL import Image

from stages.nova.boxes import answer_to_pixel_xywh
from stages.nova.metrics import localisation_metrics
from stages.nova.models import CaseInput, OpenAICompatibleModel, SliceInput
from stages.nova.openai_client import (
    AnswerParseError,
    ChatClient,
    EndpointConfig,
    EndpointError,
    parse_boxes,
    parse_caption,
    parse_diagnoses,
    parse_yes_no,
)
from tests.nova.openai_stub import GOOD_CAPTION, running_stub


@pytest.fixture()
def stub():
    with running_stub() as server:
        yield server


def client_for(stub, tmp_path, **overrides) -> ChatClient:
    config = dict(base_url=stub.url, model="stub-vl", api_key_env="", temperature=0.1, max_tokens=512,
                  token_limit_key="max_tokens", timeout_s=2.0, max_retries=2, backoff_s=0.01)
    config.update(overrides)
    return ChatClient(EndpointConfig(**config), tmp_path / "cache")


def one_case(tmp_path) -> CaseInput:
    pixels = np.zeros((240, 480), dtype=np.uint8)
    pixels[60:120, 48:144] = 200
    path = tmp_path / "case0001_001.png"
    Image.fromarray(pixels).save(path)
    return CaseInput("case0001", "45-year-old with seizures.", [SliceInput("case0001_001", pixels / 255.0, path)])


def test_adapter_parses_boxes_caption_and_diagnoses(stub, tmp_path, monkeypatch):
    monkeypatch.setenv("NOVA_TEST_KEY", "secret")
    model = OpenAICompatibleModel(client_for(stub, tmp_path, api_key_env="NOVA_TEST_KEY"), "predicted")
    prediction = model.predict_case(one_case(tmp_path))
    item = prediction.slices[0]
    np.testing.assert_allclose(item.boxes, [[48, 60, 96, 60]])  # [250,100,500,300]/1000 of 240 x 480
    np.testing.assert_allclose(item.scores, [0.8])
    assert item.caption == GOOD_CAPTION and not item.problems and not prediction.problems
    assert prediction.diagnoses == ["GBM", "Lymphoma", "Abscess", "Metastasis", "Tumefactive MS"]
    assert len(stub.requests) == 3 and {r["path"] for r in stub.requests} == {"/v1/chat/completions"}
    first = stub.requests[0]
    assert first["auth"] == "Bearer secret" and first["body"]["model"] == "stub-vl" and first["body"]["temperature"] == 0.1
    assert first["body"]["messages"][1]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    # the diagnosis request carries the history and the model's own caption as findings
    assert "45-year-old with seizures." in stub.requests[2]["body"]["messages"][1]["content"]
    assert GOOD_CAPTION in stub.requests[2]["body"]["messages"][1]["content"]


def test_second_run_is_served_from_the_cache(stub, tmp_path):
    case = one_case(tmp_path)
    first = OpenAICompatibleModel(client_for(stub, tmp_path), "predicted").predict_case(case)
    assert len(stub.requests) == 3
    client = client_for(stub, tmp_path)
    again = OpenAICompatibleModel(client, "predicted").predict_case(case)
    assert len(stub.requests) == 3, "a rerun must send no request"
    assert client.stats.cache_hits == 3 and client.stats.requests == 0
    assert again.to_json() == first.to_json()


def test_timeout_is_retried(stub, tmp_path):
    stub.script = [("delay", 1.0)]
    client = client_for(stub, tmp_path, timeout_s=0.3)
    answer = client.complete([{"role": "user", "content": "Describe the findings"}])
    assert answer == GOOD_CAPTION
    assert client.stats.retries == 1 and client.stats.requests == 2 and client.stats.successes == 1
    assert not client.stats.unusable


def test_server_errors_are_retried_then_reported_as_empty_prediction(stub, tmp_path):
    stub.script = [("status", 503)] * 20
    client = client_for(stub, tmp_path, max_retries=2)
    with pytest.raises(EndpointError, match="no answer after 3 attempt"):
        client.complete([{"role": "user", "content": "x"}])
    assert len(stub.requests) == 3 and client.stats.unusable  # what makes nova-predict fail the stage
    prediction = OpenAICompatibleModel(client, "predicted").predict_case(one_case(tmp_path))
    item = prediction.slices[0]
    assert item.boxes.shape == (0, 4) and item.caption == "" and prediction.diagnoses == []
    assert any("endpoint error" in p for p in item.problems) and prediction.problems


def test_client_errors_are_not_retried(stub, tmp_path):
    stub.script = [("status", 400)]
    client = client_for(stub, tmp_path, max_retries=3)
    with pytest.raises(EndpointError, match="HTTP 400"):
        client.complete([{"role": "user", "content": "x"}])
    assert len(stub.requests) == 1


def test_unparseable_answers_become_empty_predictions_and_are_reported(tmp_path):
    with running_stub(answer=lambda body: "Sorry, I cannot analyse medical images.") as server:
        prediction = OpenAICompatibleModel(client_for(server, tmp_path), "predicted").predict_case(one_case(tmp_path))
    item = prediction.slices[0]
    assert item.boxes.shape == (0, 4) and item.scores is None
    assert any("unparseable answer" in p and "boxes" in p for p in item.problems)
    assert prediction.diagnoses == [] and "unparseable answer" in prediction.problems[0]
    metrics = localisation_metrics({"case0001_001": np.array([[48, 60, 96, 60]])},
                                   {"case0001_001": (item.boxes, item.scores)})
    assert metrics["map30"] == 0.0 and metrics["fnr50"] == 1.0


def test_parsers():
    assert parse_boxes("[[10, 20, 30, 40], [0, 0, 1000, 1000]]") == ([[10, 20, 30, 40], [0, 0, 1000, 1000]], None)
    assert parse_boxes('{"boxes": [{"bbox": [1, 2, 3, 4], "score": 0.5}]}') == ([[1, 2, 3, 4]], [0.5])
    assert parse_boxes("No abnormality: []") == ([], None)
    with pytest.raises(AnswerParseError, match="four numbers"):
        parse_boxes('[{"box_2d": [1, 2, 3]}]')
    with pytest.raises(AnswerParseError, match="no JSON"):
        parse_boxes("the lesion is in the left frontal lobe")
    assert parse_diagnoses("1. Glioblastoma\n2) Lymphoma\n- Abscess\nSome prose") == ["Glioblastoma", "Lymphoma", "Abscess"]
    assert parse_diagnoses('["a", "b", "c", "d", "e", "f"]') == ["a", "b", "c", "d", "e"]
    assert parse_caption('```\n"Axial  T2 image."\n```') == "Axial T2 image."
    assert parse_yes_no("Yes, they are synonyms.") is True and parse_yes_no("no") is False
    with pytest.raises(AnswerParseError):
        parse_yes_no("Possibly.")


def test_llm_judges_through_the_stub(tmp_path):
    from stages.nova.judges import LLMJudge, LLMKeywordExtractor

    def judge_answer(body):
        text = body["messages"][-1]["content"]
        if text.startswith("Extract"):
            return '{"keywords": ["Axial", "T2-weighted", "hyperintense lesion", "frontal"]}'
        return "Yes." if "GBM" in text else "No, different diseases."

    with running_stub(answer=judge_answer) as server:
        judge = LLMJudge(client_for(server, tmp_path))
        assert judge.match("GBM", "Glioblastoma") and not judge.match("Meningioma", "Glioblastoma")
        assert not judge.match("", "Glioblastoma") and judge.failures == 0
        keywords = LLMKeywordExtractor(client_for(server, tmp_path)).extract("Axial T2-weighted image ...")
        assert keywords.modality == {"axial", "t2", "weighted"}
        assert keywords.clinical == {"hyperintense lesion", "frontal"}
        server.answer = lambda body: "maybe"
        confused = LLMJudge(client_for(server, tmp_path / "other"))
        assert not confused.match("Lymphoma", "Glioblastoma") and confused.failures == 1


# --------------------------------------------------------------------------- issue 17 items 4 and 6
MESSAGES = [{"role": "user", "content": "Describe the findings"}]


def test_the_cache_is_keyed_on_the_endpoint_and_the_generation_settings(tmp_path):
    with running_stub(answer=lambda body: "from the first server") as first, \
            running_stub(answer=lambda body: "from the second server") as second:
        assert client_for(first, tmp_path).complete(MESSAGES) == "from the first server"
        moved = client_for(second, tmp_path)  # same model name, same cache folder, another server
        assert moved.complete(MESSAGES) == "from the second server" and moved.stats.cache_hits == 0
        for change in ({"temperature": 0.7}, {"max_tokens": 64}, {"token_limit_key": "max_completion_tokens"}):
            other = client_for(first, tmp_path, **change)
            other.complete(MESSAGES)
            assert other.stats.cache_hits == 0 and other.stats.requests == 1, change
        again = client_for(first, tmp_path)
        assert again.complete(MESSAGES) == "from the first server" and again.stats.cache_hits == 1
        stored = [p.read_text() for p in (tmp_path / "cache").rglob("*.json")]
        assert any(first.url in text for text in stored) and any(second.url in text for text in stored)


def test_max_tokens_or_max_completion_tokens_come_from_params(stub, tmp_path):
    client_for(stub, tmp_path, max_tokens=2048).complete(MESSAGES)
    client_for(stub, tmp_path / "b", max_tokens=1000, token_limit_key="max_completion_tokens").complete(MESSAGES)
    first, second = (r["body"] for r in stub.requests)
    assert first["max_tokens"] == 2048 and "max_completion_tokens" not in first
    assert second["max_completion_tokens"] == 1000 and "max_tokens" not in second


def test_a_200_reply_that_is_not_json_is_retried(stub, tmp_path):
    stub.script = [("raw", ("text/html", b"<html><body>502 Bad Gateway (proxy)</body></html>"))]
    client = client_for(stub, tmp_path)
    assert client.complete(MESSAGES) == GOOD_CAPTION
    assert client.stats.retries == 1 and client.stats.requests == 2
    stub.script = [("raw", ("text/html", b"<html>proxy</html>"))] * 5
    with pytest.raises(EndpointError, match=r"not JSON \(starts '<html>proxy</html>'\)"):
        client_for(stub, tmp_path / "b", max_retries=1).complete(MESSAGES)


def test_a_refusal_is_an_empty_answer_with_the_refusal_recorded(stub, tmp_path):
    refusal = {"choices": [{"message": {"role": "assistant", "content": None, "refusal": "I can't help with that."},
                            "finish_reason": "stop"}]}
    stub.script = [("payload", refusal), ("answer", GOOD_CAPTION)]
    model = OpenAICompatibleModel(client_for(stub, tmp_path), "predicted")
    item = model.predict_case(one_case(tmp_path)).slices[0]
    assert item.boxes.shape == (0, 4) and item.caption == GOOD_CAPTION
    assert item.problems == ["case0001_001 boxes: refused: I can't help with that."]
    cached = client_for(stub, tmp_path).complete_answer(stub.requests[0]["body"]["messages"])
    assert cached.text == "" and cached.refusal == "I can't help with that."  # the cache keeps the refusal


def test_finish_reason_length_is_recorded_as_truncated(stub, tmp_path):
    cut = {"choices": [{"message": {"role": "assistant", "content": "Axial FLAIR image shows a hyperintense"},
                        "finish_reason": "length"}]}
    stub.script = [("answer", "[]"), ("payload", cut)]
    item = OpenAICompatibleModel(client_for(stub, tmp_path), "predicted").predict_case(one_case(tmp_path)).slices[0]
    assert item.caption == "Axial FLAIR image shows a hyperintense"
    assert item.problems == ["case0001_001 caption: truncated at the token limit (finish_reason length)"]


def test_retry_after_is_honoured(stub, tmp_path):
    stub.script = [("status", (429, {"Retry-After": "0.6"}))]
    client = client_for(stub, tmp_path, backoff_s=0.01)
    assert client.complete(MESSAGES) == GOOD_CAPTION
    assert stub.times[1] - stub.times[0] >= 0.55  # the back-off alone would have waited 0.01 s


# --------------------------------------------------------------------------- issue 17 item 7
QWEN_ANSWER = '```json\n[\n  {"bbox_2d": [48, 60, 144, 120], "label": "hyperintense lesion"}\n]\n```'


def test_box_answers_as_real_vlms_write_them():
    assert parse_boxes(QWEN_ANSWER) == ([[48, 60, 144, 120]], None)
    assert parse_boxes('{"bbox_2d": [1, 2, 3, 4], "label": "x"}') == ([[1, 2, 3, 4]], None)
    assert parse_boxes("The box is [10, 20, 30, 40].") == ([[10, 20, 30, 40]], None)  # one flat list
    assert parse_boxes('{"objects": [{"bbox_2d": [5, 6, 7, 8], "confidence": 0.9}]}') == ([[5, 6, 7, 8]], [0.9])


@pytest.mark.parametrize("box_format, answer", [
    ("yxyx_1000", [250, 100, 500, 300]),   # ymin, xmin, ymax, xmax on 0-1000 of 240 x 480
    ("xyxy_1000", [100, 250, 300, 500]),   # xmin, ymin, xmax, ymax on 0-1000
    ("xyxy_px", [48, 60, 144, 120]),       # pixels, Qwen2.5-VL
    ("xyxy_px", [144, 120, 48, 60]),       # swapped corners still name the box
])
def test_each_box_format_gives_the_same_pixel_box(box_format, answer):
    np.testing.assert_allclose(answer_to_pixel_xywh([answer], 480, 240, box_format), [[48, 60, 96, 60]])


def test_xyxy_px_is_clipped_to_the_image():
    np.testing.assert_allclose(answer_to_pixel_xywh([[-10, 200, 600, 300]], 480, 240, "xyxy_px"), [[0, 200, 480, 40]])


def test_a_qwen_style_endpoint_with_box_format_xyxy_px(tmp_path):
    def qwen(body):
        text = json.dumps(body["messages"][-1]["content"])
        return QWEN_ANSWER if "Localise" in text else GOOD_CAPTION

    with running_stub(answer=qwen) as server:
        model = OpenAICompatibleModel(client_for(server, tmp_path), "predicted", box_format="xyxy_px")
        item = model.predict_case(one_case(tmp_path)).slices[0]
        assert "bbox_2d" in json.dumps(server.requests[0]["body"]["messages"])  # the prompt asks for Qwen's form
    np.testing.assert_allclose(item.boxes, [[48, 60, 96, 60]])
    assert item.scores is None and not item.problems
