"""GRPO training in-process on a tiny random model: plain GRPO settings reach TRL, the log and the model are written."""
import json

import pandas as pd
import pytest

from stages.med_reasoning.difficulty import difficulty
from stages.med_reasoning.ingest import ingest
from stages.med_reasoning.prepare_model import prepare_model
from stages.med_reasoning.train import effective_query_ratio, letter_reward, parsed, train, variant_ids
from tests.helpers import run_step
from tests.med_reasoning.tiny import TINY


def test_reward_functions_take_trl_keyword_columns():
    completions = [[{"role": "assistant", "content": "Answer: B"}], [{"role": "assistant", "content": "Cardiomegaly"}]]
    assert letter_reward(completions, answer=["B", "B"], letters=["ABCD", "ABCD"], prompts=None) == [1.0, 0.0]
    assert parsed(completions, letters=["ABCD", "ABCD"]) == [1.0, 0.0]
    assert effective_query_ratio(0.25) == 0.75


def test_variants_have_equal_sizes_and_mixed_takes_both_bins():
    manifest = pd.DataFrame({"id": list("abcdefgh"), "split": ["train"] * 8, "subset": ["long"] * 4 + ["short"] * 4})
    bins = pd.DataFrame({"id": list("abcdefgh"), "bin": ["easy", "hard"] * 4})
    chosen = {v: variant_ids(manifest, bins, v) for v in ("long", "short", "easy", "hard", "mixed")}
    assert chosen["long"] == list("abcd") and chosen["easy"] == list("aceg")
    assert {len(ids) for ids in chosen.values()} == {4}
    assert set(chosen["mixed"]) == {"a", "c", "b", "d"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("med_reasoning")
    for step in (ingest, prepare_model, difficulty):
        run_step(step, root, TINY)
    ctx, metrics = run_step(train, root, TINY, item="mixed")
    return root / "data" / "med_reasoning", ctx, metrics


def test_grpo_writes_the_model_and_the_per_step_log(trained):
    data, ctx, metrics = trained
    log = pd.read_csv(data / "metrics/train_mixed.csv")
    assert list(log.step) == [1, 2] and set(log.seed) == {0}
    assert log.kl.notna().all()  # TRL logs the KL only when beta > 0 (a reference model is kept)
    assert ((log.effective_query_ratio >= 0) & (log.effective_query_ratio <= 1)).all()
    assert ((log.parse_rate >= 0) & (log.parse_rate <= 1)).all() and (log.completion_length <= 3).all()
    assert (data / "models/rl/mixed/seed0/model.safetensors").is_file()
    summary = json.loads((data / "metrics/train_mixed.json").read_text())
    assert summary["loss_type"] == "grpo" and summary["beta"] == 0.001 and summary["questions"] == 4
    assert metrics["grpo_steps_per_second"] > 0 and "seed0.effective_query_ratio" in ctx.tracker.metrics
    assert not list((data / ".scratch").rglob("*.*"))
