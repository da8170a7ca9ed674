"""ct_fairness-preprocess: params checked with the key named, cases on the common grid, splits that match the
paper's design, and a group too small for five folds stopping the stage with every group's size."""
import json

import numpy as np
import pandas as pd
import pytest

from stages.common.badinput import BadInputError
from stages.common.params import ParamsError, validate_step
from stages.ct_fairness.folds import GroupTooSmallError
from stages.ct_fairness.ingest import ingest
from stages.ct_fairness.organs import ORGANS
from stages.ct_fairness.preprocess import PreprocessParams, preprocess
from tests.ct_fairness.cases import EXPERIMENTS, TINY
from tests.helpers import repo_params, run_module, run_step, set_params, with_overrides


@pytest.mark.parametrize("overrides, message", [
    ({"ct_fairness.preprocess.age_bins": {"young_max": 70.0, "old_min": 65.0}},
     r"ct_fairness.preprocess.age_bins: .*young_max 70.0 must be below old_min 65.0"),
    ({"ct_fairness.preprocess.group_datasets": ["totalsegmentator", "kits"]}, r"ct_fairness.preprocess.group_datasets.1: "),
    ({"ct_fairness.preprocess.window_hu": [250.0, -175.0]}, r"ct_fairness.preprocess: .*window_hu: the lower bound"),
    ({"ct_fairness.preprocess.folds": 1}, r"ct_fairness.preprocess.folds: "),
])
def test_bad_params_fail_naming_the_key(overrides, message):
    with pytest.raises(ParamsError, match=message):
        validate_step("ct_fairness", "preprocess", PreprocessParams, with_overrides(repo_params(), overrides))


def test_a_bad_value_stops_the_stage_before_any_run_opens(project_copy):
    set_params(project_copy, {"ct_fairness.preprocess.age_bins.young_max": 70.0})
    result = run_module(project_copy, "stages.ct_fairness.preprocess")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: ct_fairness-preprocess: params.yaml: ct_fairness.preprocess.age_bins: " in result.stderr
    assert not (project_copy / "mlruns").exists()


def test_every_case_is_on_the_common_grid_with_its_organs(tiny_study):
    folder = tiny_study.data / "interim" / "preprocessed"
    cases = pd.read_csv(folder / "cases.csv", dtype={"case": str})
    manifest = pd.read_csv(tiny_study.data / "interim" / "ingest" / "manifest.csv", dtype={"case": str})
    assert sorted(cases.case) == sorted(manifest.case)
    assert json.loads((folder / "preprocess.json").read_text())["spacing_mm"] == [16.0, 16.0, 16.0]
    for row in cases.itertuples():
        with np.load(folder / row.path) as arrays:
            image, label = arrays["image"], arrays["label"]
        assert image.shape == label.shape == (1, 24, 20, 16) and image.dtype == np.float32 and label.dtype == np.uint8
        assert 0.0 <= image.min() and image.max() <= 1.0                 # the CT window maps to [0, 1]
        assert set(np.unique(label)) <= {0, 1, 2, 3, 4}
        assert [int((label == i + 1).sum()) for i in range(len(ORGANS))] == [getattr(row, f"preprocessed_voxels_{o}") for o in ORGANS]
        assert (label == 1).sum() > 0                                     # the liver survives the body crop


def test_splits_follow_the_design(tiny_study):
    """Per fold: balanced test blocks, equal single-group training sets, no case in both; groups from the manifest."""
    splits = json.loads((tiny_study.data / "interim" / "splits" / "splits.json").read_text())
    folds = pd.read_csv(tiny_study.data / "interim" / "splits" / "folds.csv", dtype={"case": str})
    manifest = pd.read_csv(tiny_study.data / "interim" / "ingest" / "manifest.csv", dtype={"case": str}).set_index("case")
    assert {e["name"] for e in splits["experiments"]} == set(folds.experiment) == EXPERIMENTS
    for experiment in splits["experiments"]:
        rows = folds[folds.experiment == experiment["name"]]
        for (_fold, role, group), members in rows.groupby(["fold", "role", "group"]).case:
            assert len(members) == experiment["block_size"] * (1 if role == "test" else 4)
            if experiment["variable"] == "sex":
                assert set(manifest.loc[members, "sex"]) == {group}
            elif experiment["variable"] == "age":
                ages = manifest.loc[members, "age"]
                assert (ages <= 40).all() if group == "young" else (ages >= 65).all()
            elif experiment["variable"] == "placebo":
                assert set(manifest.loc[members, "dataset"]) == {experiment["dataset"]} and group in ("A", "B")
            else:
                assert set(manifest.loc[members, "dataset"]) == {group}
        for _fold, block in rows.groupby("fold"):
            assert set(block[block.role == "test"].case).isdisjoint(block[block.role == "train"].case)
    metrics = tiny_study.metrics["ct_fairness-preprocess"]
    # common_training_size: the cross-dataset models (10 + 10 cases, own block 2) train on the sex/age block of 1
    assert metrics["cases"] == 20 and metrics["experiments"] == 4 and metrics["block_size.dataset_both"] == 1
    assert {e["block_size"] for e in splits["experiments"]} == {1}


def test_a_group_too_small_for_the_folds_names_every_size(tmp_path):
    small = {**TINY, "ct_fairness.ingest.cases_per_dataset": 4}
    run_step(ingest, tmp_path, small)
    with pytest.raises(GroupTooSmallError, match=r"experiment sex_totalsegmentator: a group is too small for 5 folds "
                                                 r"\(group sizes F=2, M=2; each group needs at least 5 cases\)"):
        run_step(preprocess, tmp_path, small)
    assert not (tmp_path / "data" / "ct_fairness" / "interim" / "splits").exists()
    assert not (tmp_path / "data" / "ct_fairness" / "interim" / "preprocessed").exists()


def test_organ_losses_against_the_native_volume_are_recorded(tiny_study):
    """Issue 18 item 1: cases.csv's organ_loss is 1 - preprocessed ml / native ml, recomputed from the manifest."""
    cases = pd.read_csv(tiny_study.data / "interim" / "preprocessed" / "cases.csv", dtype={"case": str}).set_index("case")
    manifest = pd.read_csv(tiny_study.data / "interim" / "ingest" / "manifest.csv", dtype={"case": str}).set_index("case")
    for organ in ORGANS:
        kept = cases[f"preprocessed_voxels_{organ}"] * 16.0 ** 3 / 1000
        expected = 1 - kept / manifest.loc[cases.index, f"volume_ml_{organ}"]
        np.testing.assert_allclose(cases[f"organ_loss_{organ}"], expected, atol=1e-5)


def test_a_case_losing_an_organ_to_the_crop_is_refused_by_name(tmp_path):
    """A grid too small for the liver (shape 4 x 4 x 4 at 16 mm) stops preprocess naming the case, the organ and the key."""
    run_step(ingest, tmp_path, TINY)
    with pytest.raises(BadInputError, match=r"(totalsegmentator/s\d+|amos/amos_\d+): the crop to preprocess.shape kept \d+ of the liver's "
                                            r"\d+ voxels .* over ct_fairness.preprocess.max_crop_loss 0.05"):
        run_step(preprocess, tmp_path, {**TINY, "ct_fairness.preprocess.shape": [4, 4, 4]})
    assert not (tmp_path / "data" / "ct_fairness" / "interim" / "preprocessed").exists()
