"""The five-fold group design: equal single-group training sets, balanced disjoint test sets."""
import itertools

import numpy as np
import pandas as pd
import pytest

from stages.ct_fairness.folds import (
    GroupTooSmallError,
    age_group,
    build_experiments,
    fold_design,
    group_labels,
    matched_groups,
    placebo_labels,
    split_table,
)


def groups_of(sizes):
    return {name: [f"{name}{i:03d}" for i in range(size)] for name, size in sizes.items()}


@pytest.mark.parametrize("sizes", [{"F": 12, "M": 12}, {"F": 23, "M": 11}, {"young": 5, "old": 9}])
def test_design_properties(sizes):
    groups = groups_of(sizes)
    block, folds = fold_design(groups, 5, np.random.default_rng(0))
    assert block == min(sizes.values()) // 5
    assert len(folds) == 5
    for fold in folds:
        for name in groups:
            assert len(fold.test[name]) == block                       # balanced test set
            assert len(fold.train[name]) == 4 * block                  # equal-size single-group training sets
            assert set(fold.train[name]).isdisjoint(fold.test[name])   # no train/test overlap
            assert set(fold.train[name]) | set(fold.test[name]) <= set(groups[name])
        assert set(fold.test) == set(groups)
    for a, b in itertools.combinations(folds, 2):                      # every fold's test set is disjoint
        for name in groups:
            assert set(a.test[name]).isdisjoint(b.test[name])
    for name in groups:                                                # the blocks cover 5 x block cases of each group
        used = [c for fold in folds for c in fold.test[name]]
        assert len(used) == len(set(used)) == 5 * block
        for fold in folds:
            assert sorted(fold.train[name]) == sorted(c for other in folds if other is not fold for c in other.test[name])


def test_design_is_deterministic_and_independent_of_input_order():
    groups = groups_of({"F": 10, "M": 13})
    reversed_groups = {k: list(reversed(v)) for k, v in groups.items()}
    first = fold_design(groups, 5, np.random.default_rng(7))
    assert first == fold_design(reversed_groups, 5, np.random.default_rng(7))
    assert first != fold_design(groups, 5, np.random.default_rng(8))


def test_too_small_group_names_the_sizes():
    with pytest.raises(GroupTooSmallError, match=r"experiment age_x: .*too small for 5 folds.*young=3, old=12"):
        fold_design(groups_of({"young": 3, "old": 12}), 5, np.random.default_rng(0), what="experiment age_x")


def test_age_bins_leave_the_middle_out():
    assert [age_group(a, 40, 65) for a in (18, 40, 40.5, 64.9, 65, 90)] == ["young", "young", None, None, "old", "old"]


def test_build_experiments_and_split_table():
    rng = np.random.default_rng(0)
    rows = []
    for dataset in ("amos", "totalsegmentator"):
        for i in range(20):
            rows.append({"case": f"{dataset[:2]}{i:02d}", "dataset": dataset, "sex": "FM"[i % 2],
                         "age": [30, 50, 70, 25][i % 4] + float(rng.integers(0, 5))})
    cases = pd.DataFrame(rows)
    experiments = build_experiments(cases, ["totalsegmentator"], True, 5, 40, 65, seed=0)
    assert [e.name for e in experiments] == ["sex_totalsegmentator", "age_totalsegmentator", "dataset_both"]
    sex, age, dataset = experiments
    assert sex.group_sizes == {"F": 10, "M": 10} and sex.block_size == 2
    assert age.group_sizes == {"young": 10, "old": 5} and age.block_size == 1
    assert dataset.groups == ("amos", "totalsegmentator") and dataset.block_size == 4
    labels = group_labels(cases, "age", 40, 65)
    assert set(labels.dropna()) == {"young", "old"} and labels.isna().sum() == 10  # both datasets
    table = split_table(experiments)
    sex_rows = table[table.experiment == "sex_totalsegmentator"]
    assert set(sex_rows.case.str[:2]) == {"to"}                        # within one dataset only
    assert len(sex_rows[(sex_rows.fold == 0) & (sex_rows.role == "test")]) == 4
    with pytest.raises(GroupTooSmallError, match="F=2, M=2"):
        build_experiments(cases.iloc[[0, 1, 2, 3]], ["amos"], False, 5, 40, 65, seed=0)


def test_common_size_gives_every_experiment_the_smallest_block():
    """Issue 18 item 6: 48 cases per dataset, 6 women per dataset: the cross-dataset experiment would train
    on 4 blocks of 9 (36 cases), the sex one on 4 of 1 (4); with common_size every model trains on 4 cases."""
    rows = [{"case": f"{d}{i:02d}", "dataset": d, "sex": "F" if i < 6 else "M", "age": 30 if i % 2 else 70}
            for d in ("amos", "ts") for i in range(48)]
    cases = pd.DataFrame(rows)
    own = {e.name: e.block_size for e in build_experiments(cases, ["ts"], True, 5, 40, 65, 0)}
    assert own == {"sex_ts": 1, "age_ts": 4, "dataset_both": 9}
    common = build_experiments(cases, ["ts"], True, 5, 40, 65, 0, common_size=True)
    assert {e.name: e.block_size for e in common} == {"sex_ts": 1, "age_ts": 1, "dataset_both": 1}
    for experiment in common:
        for fold in experiment.folds:
            assert all(len(members) == 4 for members in fold.train.values())
            assert all(len(members) == 1 for members in fold.test.values())


def test_placebo_labels_are_a_seeded_random_half():
    cases = pd.DataFrame({"case": [f"s{i:02d}" for i in range(11)]})
    labels = placebo_labels(cases, np.random.default_rng(3))
    assert (labels == "A").sum() == 5 and (labels == "B").sum() == 6
    assert labels.equals(placebo_labels(cases.iloc[::-1], np.random.default_rng(3)).loc[cases.index])   # order-free
    assert not labels.equals(placebo_labels(cases, np.random.default_rng(4)))
    rows = pd.DataFrame({"case": [f"s{i:02d}" for i in range(20)], "dataset": "ts", "sex": ["F", "M"] * 10, "age": [30, 70] * 10})
    placebo = [e for e in build_experiments(rows, ["ts"], False, 5, 40, 65, 0, placebo=True) if e.variable == "placebo"]
    assert [(e.name, e.groups, e.block_size) for e in placebo] == [("placebo_ts", ("A", "B"), 2)]


def test_stratified_groups_match_the_other_variable():
    """Issue 18 item 7: with stratify the sex groups are matched for age band. Women aged 30/50/70 in turn (5 young,
    5 between, 4 old) and men 4 young, 12 old: by hand, 4 young + 4 old each; without it every case stays."""
    rows = [{"case": f"s{i:02d}", "dataset": "ts", "sex": "F" if i < 14 else "M",
             "age": [30, 50, 70][i % 3] if i < 14 else [30, 70, 70, 70][i % 4]} for i in range(30)]
    cases = pd.DataFrame(rows)
    plain = {e.variable: e for e in build_experiments(cases, ["ts"], False, 5, 40, 65, 0)}
    assert plain["sex"].group_sizes == {"F": 14, "M": 16}
    matched = {e.variable: e for e in build_experiments(cases, ["ts"], False, 5, 40, 65, 0, stratify=True)}
    assert matched["sex"].group_sizes == {"F": 8, "M": 8}
    bands = {r["case"]: "young" if r["age"] <= 40 else "old" if r["age"] >= 65 else "between" for r in rows}
    groups = {g: [r["case"] for r in rows if r["sex"] == g] for g in "FM"}
    kept = matched_groups(groups, bands, np.random.default_rng(0))
    for group in "FM":
        assert sorted(bands[c] for c in kept[group]) == ["old"] * 4 + ["young"] * 4
    # age groups matched for sex: young = 5 F + 4 M, old = 4 F + 12 M -> 4 F + 4 M each
    assert matched["age"].group_sizes == {"young": 8, "old": 8}
