"""GRPO training in-process on a tiny random model: plain GRPO settings reach TRL, the log and the model are written."""
import json

import pandas as pd
import pytest

from stages.med_reasoning.evaluate import late_effective_query_ratio, paired_difference
from stages.med_reasoning.train import effective_query_ratio, letter_reward, parsed, variant_ids
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


def test_grpo_writes_the_model_and_the_per_step_log(study):
    data, trained, *_ = study
    ctx, metrics = trained["mixed"]
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


def test_evaluate_scores_every_model_on_every_held_out_question(study):
    data, _, (ctx, metrics), *_ = study
    predictions = pd.read_csv(data / "evaluation/predictions.csv", keep_default_na=False)
    trained = TINY["med_reasoning.train.variants"]
    assert predictions.groupby("model").size().to_dict() == {m: 12 for m in ("base", *trained)}  # 6 in domain + 6 ood
    accuracy = pd.read_csv(data / "evaluation/accuracy.csv")
    assert set(accuracy.group) == {"in_domain", "out_of_domain", "ood_more_options", "ood_unseen_templates"}
    assert ((accuracy.ci_low <= accuracy.accuracy) & (accuracy.accuracy <= accuracy.ci_high)).all()
    base_in = predictions[(predictions.model == "base") & (predictions.set == "test_in")]
    row = accuracy[(accuracy.model == "base") & (accuracy.group == "in_domain")].iloc[0]
    assert row.accuracy == pytest.approx(base_in.correct.astype(str).eq("True").mean())
    claims = json.loads((data / "metrics/claims.json").read_text())["claims"]
    assert set(claims) == {"rl_beats_base_in_domain", "rl_beats_base_out_of_domain", "short_questions_saturate_early",
                           "informative_questions_help_more", "every_difficulty_subset_beats_base"}
    untested = claims["every_difficulty_subset_beats_base"]  # hard is not in TINY's train.variants
    assert untested["holds"] is False and untested["measured"]["tested"] == "no" and "['hard']" in untested["measured"]["reason"]
    assert "tested" not in claims["informative_questions_help_more"]["measured"]  # long and short were trained
    html = (data / "report/index.html").read_text()
    assert html.index("Claims") < html.index("Accuracy") and "Published" in html and "data:image/png;base64," in html


def test_paired_difference_and_late_ratio_by_hand():
    predictions = pd.DataFrame({"model": ["base"] * 4 + ["mixed"] * 4, "group": ["g"] * 8, "id": list("abcd") * 2,
                                "correct": [1, 0, 0, 0, 1, 1, 0, 1]})
    difference, (low, high) = paired_difference(predictions, "mixed", "g", 500, 0.95, 0)
    assert difference == pytest.approx(0.5) and 0 <= low <= 0.5 <= high <= 1.0
    log = pd.DataFrame({"step": [1, 2, 3, 4], "effective_query_ratio": [1.0, 0.5, 0.25, 0.0]})
    assert late_effective_query_ratio(log) == pytest.approx(0.125)


def test_bootstrap_interval_matches_the_normal_approximation():
    import numpy as np

    from stages.med_reasoning.evaluate import mean_interval

    values = (np.random.default_rng(0).random(2000) < 0.3).astype(float)
    low, high = mean_interval(values, 2000, 0.95, 0)
    half = 1.96 * np.sqrt(values.mean() * (1 - values.mean()) / values.size)
    assert low == pytest.approx(values.mean() - half, abs=0.004) and high == pytest.approx(values.mean() + half, abs=0.004)


def test_a_missing_subset_is_a_clear_error():
    from stages.common.badinput import BadInputError

    manifest = pd.DataFrame({"id": list("ab"), "split": ["train"] * 2, "subset": ["medqa", "pubmedqa"]})
    bins = pd.DataFrame({"id": list("ab"), "bin": ["easy", "hard"]})
    with pytest.raises(BadInputError, match=r"train@long: the training set has no 'long' subset \(subsets: \['medqa', 'pubmedqa'\]\)"):
        variant_ids(manifest, bins, "long")
    assert variant_ids(manifest, bins, "mixed") == ["b"]  # one question per bin: mixed takes 0 easy + 1 hard


def test_a_variant_left_out_of_train_variants_is_marked_untrained(study):
    data, trained, *_ = study
    _, metrics = trained["hard"]
    assert metrics == {"trained": 0.0} and not list((data / "models/rl/hard").glob("seed*"))
    summary = json.loads((data / "metrics/train_hard.json").read_text())
    assert summary["trained"] is False and "train.variants" in summary["reason"]
