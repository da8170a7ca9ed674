"""ct_fairness-evaluate: per-case scores of the saved models, gaps by the paper's formula, the synthetic truth
beside them, and the same bytes on a rerun."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from stages.common.params import ParamsError, validate_step
from stages.ct_fairness.evaluate import EvaluateParams, evaluate
from stages.ct_fairness.model import load_network, predict_labels
from stages.ct_fairness.organs import ORGANS
from tests.ct_fairness.cases import EXPERIMENTS, TINY, TRUTH_EXPERIMENTS, VARIABLES, file_digests
from tests.helpers import repo_params, run_step, with_overrides


@pytest.mark.parametrize("levels", [[0.05, 0.05], [0.05, 1.5]])
def test_significance_levels_are_two_probabilities(levels):
    with pytest.raises(ParamsError, match=r"ct_fairness.evaluate.significance: "):
        validate_step("ct_fairness", "evaluate", EvaluateParams, with_overrides(repo_params(), {"ct_fairness.evaluate.significance": levels}))


def test_per_case_scores_are_those_of_the_fold_models(tiny_study):
    """One test case re-segmented with both of its fold's saved models; Dice counted by hand."""
    data = tiny_study.data
    per_case = pd.read_csv(data / "evaluation" / "per_case.csv", dtype={"case": str})
    assert set(per_case.experiment) == EXPERIMENTS
    splits = json.loads((data / "interim" / "splits" / "splits.json").read_text())
    experiment = next(e for e in splits["experiments"] if e["variable"] == "dataset")
    fold = experiment["folds"][1]
    case = fold["test"]["amos"][0]
    cases = pd.read_csv(data / "interim" / "preprocessed" / "cases.csv", dtype={"case": str}).set_index("case")
    with np.load(data / "interim" / "preprocessed" / cases.loc[case, "path"]) as arrays:
        image, truth = torch.from_numpy(arrays["image"]), arrays["label"][0]
    patch = tuple(TINY["ct_fairness.train.network.patch"])
    for train_group in experiment["groups"]:
        network, _, _ = load_network(data / "models" / "dataset" / experiment["name"] / f"fold1_{train_group}.pt", torch.device("cpu"))
        prediction = predict_labels(network, image, patch, 0.25, 4).numpy()
        rows = per_case[(per_case.case == case) & (per_case.train_group == train_group)].set_index("organ")
        assert len(rows) == len(ORGANS) and set(rows.test_group) == {"amos"} and set(rows.fold) == {1}
        for index, organ in enumerate(ORGANS):
            p, t = prediction == index + 1, truth == index + 1
            expected = 2 * (p & t).sum() / (p.sum() + t.sum()) if t.any() else np.nan
            assert rows.loc[organ, "dice"] == pytest.approx(expected, nan_ok=True)
    # every fold's test cases, each under both of the fold's models, every organ
    blocks = {e["name"]: e["block_size"] for e in splits["experiments"]}
    assert len(per_case) == sum(5 * 2 * b * 2 * len(ORGANS) for b in blocks.values())


def test_gaps_follow_the_formula_over_pooled_folds(tiny_study):
    per_case = pd.read_csv(tiny_study.data / "evaluation" / "per_case.csv", dtype={"case": str})
    gaps = pd.read_csv(tiny_study.data / "evaluation" / "gaps.csv")
    dice = gaps[gaps.metric == "dice"]
    assert len(dice) == len(EXPERIMENTS) * len(ORGANS) * 2
    checked = 0
    for row in dice.itertuples():
        block = per_case[(per_case.experiment == row.experiment) & (per_case.organ == row.organ) & (per_case.test_group == row.test_group)]
        same = block[block.train_group == row.test_group].dice.dropna()
        other = block[block.train_group != row.test_group].dice.dropna()
        if len(same) < 2 or same.mean() + other.mean() == 0 or (same.std() == 0 and other.std() == 0):
            continue
        assert row.gap_percent == pytest.approx(100 * (other.mean() - same.mean()) / ((same.mean() + other.mean()) / 2))
        assert row.p_value == pytest.approx(stats.ttest_ind(same, other, equal_var=False).pvalue)
        paired = block.pivot_table(index="case", columns="train_group", values="dice").dropna()
        difference = paired[row.other_group] - paired[row.test_group]
        if (difference != 0).sum() >= 2:
            assert row.p_paired == pytest.approx(stats.wilcoxon(difference).pvalue)
        checked += 1
    assert checked >= 3
    summary = json.loads((tiny_study.data / "metrics" / "evaluate.json").read_text())
    same_group = per_case[per_case.test_group == per_case.train_group]
    assert summary["mean_dice"] == pytest.approx(same_group.groupby("organ").dice.mean().to_dict())
    for variable in VARIABLES:
        assert summary["mean_abs_gap_percent"][variable] == pytest.approx(dice[dice.variable == variable].gap_percent.abs().mean())


def test_synthetic_truth_and_examples(tiny_study):
    truth = pd.read_csv(tiny_study.data / "evaluation" / "truth_vs_measured.csv")
    assert len(truth) == len(TRUTH_EXPERIMENTS) * len(ORGANS)
    sex = truth[(truth.experiment == "sex_totalsegmentator") & (truth.organ == "liver")].iloc[0]
    generator = pd.read_csv(tiny_study.data / "interim" / "ingest" / "synthetic_truth.csv")
    effects = tiny_study.contexts["ct_fairness-ingest"].params.effects
    assert set(generator[generator.sex == "F"].volume_scale_liver) == {effects.female_volume_scale["liver"]}
    assert sex.true_volume_change_percent == pytest.approx(100 * (1 / effects.female_volume_scale["liver"] - 1))
    assert sex.expected_gap == "none"                     # the liver is a null control under sex and age
    kidney = truth[(truth.experiment == "sex_totalsegmentator") & (truth.organ == "kidney_right")].iloc[0]
    assert kidney.expected_gap == "negative"
    with np.load(tiny_study.data / "evaluation" / "examples.npz") as examples:
        keys = {name.rsplit("/", 1)[0] for name in examples.files}
        assert keys == {f"{e}/{g}" for e, gs in (("sex_totalsegmentator", "FM"), ("age_totalsegmentator", ("young", "old")),
                                                   ("dataset_both", ("amos", "totalsegmentator")),
                                                   ("placebo_totalsegmentator", "AB")) for g in gs}
        assert examples["dataset_both/amos/image"].shape == examples["dataset_both/amos/truth"].shape == (24, 20)
    logged = tiny_study.metrics["ct_fairness-evaluate"]
    assert logged["mean_abs_gap.dataset"] == pytest.approx(json.loads(
        (tiny_study.data / "metrics" / "evaluate.json").read_text())["mean_abs_gap_percent"]["dataset"])


def test_a_rerun_writes_the_same_bytes(tiny_study, tmp_path):
    data = tmp_path / "data" / "ct_fairness"
    for folder in ("interim", "models"):
        shutil.copytree(tiny_study.data / folder, data / folder)
    run_step(evaluate, tmp_path, TINY)
    for folder in ("evaluation", "plots"):
        assert file_digests(data / folder) == file_digests(tiny_study.data / folder), folder
    assert (data / "metrics" / "evaluate.json").read_bytes() == (tiny_study.data / "metrics" / "evaluate.json").read_bytes()


def test_missed_organs_get_the_worst_case_hd95_and_are_counted(tiny_study):
    """Issue 18 item 2: an organ in the truth but not predicted scores the image diagonal (mm), never NaN,
    and each gap cell counts the misses of both models."""
    data = tiny_study.data
    per_case = pd.read_csv(data / "evaluation" / "per_case.csv", dtype={"case": str})
    grid = json.loads((data / "interim" / "preprocessed" / "preprocess.json").read_text())
    diagonal = float(np.linalg.norm(np.array(grid["shape"]) * np.array(grid["spacing_mm"])))
    present = per_case[per_case.dice.notna()]
    assert present.hd95.notna().all()
    missed = per_case[per_case.missed]
    assert len(missed) and (missed.dice == 0).all()     # 4 training steps: the tiny models miss organs
    np.testing.assert_allclose(missed.hd95, diagonal)
    gaps = pd.read_csv(data / "evaluation" / "gaps.csv")
    hd95 = gaps[gaps.metric == "hd95"]
    assert hd95.n_missed_same.sum() + hd95.n_missed_other.sum() == len(missed)


def test_unresolved_or_unlearned_organs_are_a_claim_that_does_not_hold(tiny_study):
    """Issue 18 item 3 on the tiny run (16 mm grid, 4 training steps): the organ checks recomputed from
    cases.csv and per_case.csv, the claim false exactly when some organ is warned about, the report warns."""
    data = tiny_study.data
    cases = pd.read_csv(data / "interim" / "preprocessed" / "cases.csv", dtype={"case": str})
    per_case = pd.read_csv(data / "evaluation" / "per_case.csv", dtype={"case": str})
    checks = pd.read_csv(data / "evaluation" / "organ_checks.csv", keep_default_na=False, na_values=[""]).set_index("organ")
    params = tiny_study.contexts["ct_fairness-evaluate"].params
    same = per_case[per_case.test_group == per_case.train_group].groupby("organ").dice.mean()
    for organ in ORGANS:
        median = cases[f"preprocessed_voxels_{organ}"].median()
        assert checks.loc[organ, "median_preprocessed_voxels"] == median
        assert checks.loc[organ, "below_voxel_floor"] == (median < params.min_organ_voxels)
        assert checks.loc[organ, "near_zero_dice"] == (same[organ] < params.near_zero_dice)
    warned = checks.below_voxel_floor | checks.near_zero_dice
    assert warned.any()                                   # the tiny models have not learned every organ
    claims = json.loads((data / "metrics" / "claims.json").read_text())["claims"]
    assert claims["every_organ_resolved_and_learned"]["holds"] is False
    html = (data / "report" / "index.html").read_text()
    assert "every_organ_resolved_and_learned" in html and all(organ in html for organ in checks.index[warned])
    gaps = pd.read_csv(data / "evaluation" / "gaps.csv")
    dice = gaps[gaps.metric == "dice"]
    np.testing.assert_array_equal(dice.low_dice, ~((dice.mean_same + dice.mean_other) / 2 >= params.min_reliable_dice))


def test_significance_is_marked_by_the_bh_corrected_paired_test(tiny_study):
    """Issue 18 item 4: BH over every paired p of the run (Dice and HD95 rows together), by hand; marks follow it;
    the paper's Welch mark is kept in its own column."""
    gaps = pd.read_csv(tiny_study.data / "evaluation" / "gaps.csv", keep_default_na=False, na_values=[""])
    finite = gaps.p_paired.notna()
    p = gaps.p_paired[finite].to_numpy()
    order = np.argsort(p)
    ranked = p[order] * len(p) / np.arange(1, len(p) + 1)
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1, np.minimum.accumulate(ranked[::-1])[::-1])
    np.testing.assert_allclose(gaps.p_paired_corrected[finite], adjusted)
    levels = tiny_study.contexts["ct_fairness-evaluate"].params.significance
    expected = ["**" if q <= min(levels) else "*" if q <= max(levels) else "" for q in gaps.p_paired_corrected.fillna(1)]
    assert gaps.significance.fillna("").tolist() == expected
    welch = ["**" if q <= min(levels) else "*" if q <= max(levels) else "" for q in gaps.p_value.fillna(1)]
    assert gaps.significance_welch.fillna("").tolist() == welch
    html = (tiny_study.data / "report" / "index.html").read_text()
    assert "Welch p (paper&#x27;s)" in html or "Welch p (paper's)" in html


def test_volume_diversity_fit_uses_one_point_per_training_group(tiny_study):
    """Issue 18 item 5 on the tiny run: 6 points per organ (2 groups x 3 experiments), not one per fold model (30)."""
    data = tiny_study.data
    diversity = pd.read_csv(data / "evaluation" / "volume_diversity.csv")
    fits = pd.read_csv(data / "evaluation" / "volume_diversity_fit.csv").set_index("organ")
    per_case = pd.read_csv(data / "evaluation" / "per_case.csv", dtype={"case": str})
    for organ in ORGANS:
        points = diversity[diversity.organ == organ]
        assert len(points) == 2 * len(EXPERIMENTS)
        keep = points.dice.notna() & points.volume_sd_ml.notna()
        x, y = points.volume_sd_ml[keep], points.dice[keep]
        if keep.sum() >= 3 and x.nunique() > 1 and y.nunique() > 1:
            assert fits.loc[organ, "pearson_r"] == pytest.approx(stats.pearsonr(x, y).statistic)
    liver = diversity[(diversity.organ == "liver") & (diversity.experiment == "dataset_both") & (diversity.train_group == "amos")].iloc[0]
    rows = per_case[(per_case.experiment == "dataset_both") & (per_case.train_group == "amos") & (per_case.organ == "liver")]
    assert liver.dice == pytest.approx(rows.dice.mean()) and liver.n_models == 5


def test_training_sizes_are_printed_beside_the_comparison(tiny_study):
    """Issue 18 item 6: every experiment's models train on one common size, written beside the comparison."""
    data = tiny_study.data
    splits = json.loads((data / "interim" / "splits" / "splits.json").read_text())
    models = pd.concat([pd.read_csv(data / "models" / v / "models.csv", dtype={"train_cases": str}) for v in VARIABLES])
    counted = {e: int(n) for e, n in models.assign(n=models.train_cases.str.split().str.len()).groupby("experiment").n.max().items()}
    summary = json.loads((data / "metrics" / "evaluate.json").read_text())
    assert summary["training_cases_per_model"] == counted == {e["name"]: 4 for e in splits["experiments"]}
    claims = json.loads((data / "metrics" / "claims.json").read_text())["claims"]
    assert claims["population_gap_rivals_dataset_gap"]["measured"]["train_cases_dataset_both"] == 4
    html = (data / "report" / "index.html").read_text()
    assert "training cases per model: " in html and all(f"{e} 4" in html for e in counted)


def test_age_and_sex_make_up_of_every_set(tiny_study):
    """Issue 18 item 7: each (experiment, fold, role, group) set's size, sexes and ages, recounted from the manifest."""
    data = tiny_study.data
    makeup = pd.read_csv(data / "evaluation" / "set_makeup.csv")
    folds = pd.read_csv(data / "interim" / "splits" / "folds.csv", dtype={"case": str})
    manifest = pd.read_csv(data / "interim" / "ingest" / "manifest.csv", dtype={"case": str}).set_index("case")
    assert len(makeup) == len(folds.groupby(["experiment", "fold", "role", "group"]))
    for row in makeup.itertuples():
        members = folds[(folds.experiment == row.experiment) & (folds.fold == row.fold) & (folds.role == row.role) & (folds.group == row.group)]
        chosen = manifest.loc[members.case]
        assert (row.n, row.n_female, row.n_male) == (len(chosen), (chosen.sex == "F").sum(), (chosen.sex == "M").sum())
        assert (row.age_mean, row.age_min, row.age_max) == pytest.approx((chosen.age.mean(), chosen.age.min(), chosen.age.max()))
    assert "<h2>Age and sex make-up of the training and test sets</h2>" in (data / "report" / "index.html").read_text()


def test_planted_and_null_cells_and_the_placebo_are_claims(tiny_study):
    """Issue 18 item 9: each truth cell judged by the corrected paired test (recomputed here from gaps.csv), the
    planted and null claims count them, and the placebo's false-positive rate is over its Dice tests."""
    data = tiny_study.data
    truth = pd.read_csv(data / "evaluation" / "truth_vs_measured.csv")
    gaps = pd.read_csv(data / "evaluation" / "gaps.csv").set_index(["experiment", "organ", "test_group", "metric"])
    for row in truth.itertuples():
        measured = [gaps.loc[(row.experiment, row.organ, g, "dice")] for g in (row.first_group, row.second_group)]
        significant = [m.p_paired_corrected <= 0.05 for m in measured]
        if row.expected_gap == "negative":
            expected = any(s and m.gap_percent < 0 for s, m in zip(significant, measured, strict=True)) and not any(
                s and m.gap_percent > 0 for s, m in zip(significant, measured, strict=True))
        else:
            expected = not any(significant)
        assert row.control_holds == expected
    # null controls: the liver under sex and age (the pancreas under sex too, unless the sex groups differ in age)
    assert (truth.expected_gap == "none").sum() >= 2
    claims = json.loads((data / "metrics" / "claims.json").read_text())["claims"]
    for kind, expected_gap in (("planted", "negative"), ("null", "none")):
        cells = truth[truth.expected_gap == expected_gap]
        measured = claims[f"synthetic_{kind}_cells_hold"]["measured"]
        assert (measured["cells"], measured["cells_holding"]) == (len(cells), cells.control_holds.sum())
    placebo = gaps.xs("dice", level="metric").loc["placebo_totalsegmentator"]
    significant = int((placebo.p_paired_corrected <= 0.05).sum())
    measured = claims["placebo_false_positive_rate"]["measured"]
    assert measured["tests"] == placebo.p_paired_corrected.notna().sum() and measured["significant"] == significant
    assert claims["placebo_false_positive_rate"]["holds"] == (measured["false_positive_rate"] <= 0.05)


def test_scores_are_averaged_over_seed_replicates_before_the_gaps():
    """Issue 18 item 8: two replicates' scores of one case become their mean (missed if either missed)."""
    from stages.ct_fairness.evaluate import replicate_means

    base = {"experiment": "e", "variable": "sex", "dataset": "d", "fold": 0, "case": "c1", "test_group": "F",
            "train_group": "F", "organ": "liver"}
    per_case = pd.DataFrame([{**base, "replicate": 0, "dice": 0.6, "hd95": 4.0, "missed": False},
                             {**base, "replicate": 1, "dice": 0.0, "hd95": 90.0, "missed": True}])
    means = replicate_means(per_case)
    assert len(means) == 1 and means.dice.iloc[0] == pytest.approx(0.3) and means.hd95.iloc[0] == pytest.approx(47.0)
    assert bool(means.missed.iloc[0]) and "replicate" not in means.columns
    assert replicate_means(per_case.iloc[:1]).dice.tolist() == [0.6]
