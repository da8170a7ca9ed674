"""The paper's group design: two groups per variable, five folds, equal single-group training sets.

Each group is shuffled and cut into ``folds`` blocks of ``floor(min(|G1|, |G2|) / folds)`` cases.
Fold f tests on block f of both groups (balanced) and trains one model on the other blocks of
G1 only and one on the other blocks of G2 only (equal sizes).
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stages.common.badinput import BadInputError

VARIABLES = ("sex", "age", "dataset", "placebo")
SEX_GROUPS = ("F", "M")
AGE_GROUPS = ("young", "old")
PLACEBO_GROUPS = ("A", "B")   # ours: a placebo experiment on shuffled group labels (issue 18 item 9)


class GroupTooSmallError(BadInputError):
    """A group has fewer cases than folds; the message gives every group's size."""


@dataclass(frozen=True)
class Fold:
    index: int
    test: dict[str, list[str]]
    train: dict[str, list[str]]


@dataclass(frozen=True)
class Experiment:
    """One group variable within one dataset (or across datasets for ``dataset``)."""

    name: str
    variable: str
    dataset: str
    groups: tuple[str, str]
    block_size: int
    group_sizes: dict[str, int]
    folds: list[Fold]


def age_group(age: float, young_max: float, old_min: float) -> str | None:
    """``young`` (age <= young_max), ``old`` (age >= old_min), or None in between."""
    if age <= young_max:
        return "young"
    if age >= old_min:
        return "old"
    return None


def group_labels(cases: pd.DataFrame, variable: str, young_max: float, old_min: float) -> pd.Series:
    """Each case's group for ``variable`` (None where the case belongs to neither group)."""
    if variable == "sex":
        return cases["sex"].astype(object)
    if variable == "age":
        return cases["age"].map(lambda a: age_group(float(a), young_max, old_min)).astype(object)
    if variable == "dataset":
        return cases["dataset"].astype(object)
    raise ValueError(f"unknown group variable {variable!r}; known: {VARIABLES}")


def placebo_labels(cases: pd.DataFrame, rng: np.random.Generator) -> pd.Series:
    """Shuffled group labels: a seeded random half of the cases is ``A``, the rest ``B`` (no real difference)."""
    order = np.argsort(cases["case"].astype(str).to_numpy(), kind="stable")
    labels = np.empty(len(cases), dtype=object)
    chosen = order[rng.permutation(len(order))]
    labels[chosen[: len(cases) // 2]] = PLACEBO_GROUPS[0]
    labels[chosen[len(cases) // 2:]] = PLACEBO_GROUPS[1]
    return pd.Series(labels, index=cases.index, dtype=object)


def matched_groups(groups: dict[str, list[str]], strata: dict[str, str], rng: np.random.Generator) -> dict[str, list[str]]:
    """Both groups subsampled (seeded) to equal counts in every stratum, so their make-up in the other
    variable matches (issue 18 item 7, ours): sex groups matched for age band, age groups for sex."""
    names = list(groups)
    kept: dict[str, list[str]] = {name: [] for name in names}
    for stratum in sorted({strata[c] for members in groups.values() for c in members}):
        members = {name: sorted(c for c in groups[name] if strata[c] == stratum) for name in names}
        count = min(len(m) for m in members.values())
        for name in names:
            kept[name] += [members[name][i] for i in sorted(rng.permutation(len(members[name]))[:count])]
    return kept


def experiment_seed(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def fold_design(groups: dict[str, list[str]], folds: int, rng: np.random.Generator, what: str = "",
                block_size: int | None = None) -> tuple[int, list[Fold]]:
    """(block size, folds) for two groups of case ids, per the module docstring.

    Ids are sorted before shuffling so the design depends only on the ids and the generator.
    ``block_size`` (at most the design's own) makes the blocks smaller, for a common training size.
    """
    if len(groups) != 2:
        raise ValueError(f"the design needs exactly two groups, got {sorted(groups)}")
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    sizes = {name: len(ids) for name, ids in groups.items()}
    block = min(sizes.values()) // folds
    if block < 1:
        listed = ", ".join(f"{name}={size}" for name, size in sizes.items())
        raise GroupTooSmallError(f"{what + ': ' if what else ''}a group is too small for {folds} folds "
                                 f"(group sizes {listed}; each group needs at least {folds} cases)")
    if block_size is not None:
        if not 1 <= block_size <= block:
            raise ValueError(f"block_size {block_size} must be between 1 and the design's {block}")
        block = block_size
    blocks = {}
    for name, ids in groups.items():
        ordered = sorted(ids)
        shuffled = [ordered[i] for i in rng.permutation(len(ordered))]
        blocks[name] = [list(shuffled[b * block:(b + 1) * block]) for b in range(folds)]
    design = []
    for f in range(folds):
        test = {name: blocks[name][f] for name in groups}
        train = {name: [c for b in range(folds) if b != f for c in blocks[name][b]] for name in groups}
        design.append(Fold(f, test, train))
    return block, design


def build_experiments(cases: pd.DataFrame, group_datasets: list[str], cross_dataset: bool, folds: int,
                      young_max: float, old_min: float, seed: int, common_size: bool = False,
                      placebo: bool = False, stratify: bool = False) -> list[Experiment]:
    """Sex and age experiments within each of ``group_datasets``, plus the cross-dataset experiment.

    With ``common_size`` (ours, issue 18 item 6) every experiment uses the smallest experiment's block
    size, so every model trains on the same number of cases and a gap of one experiment is not
    confounded with a larger training set of another (the cross-dataset models would otherwise train on
    the most cases). With ``placebo`` (ours) each of ``group_datasets`` also gets a placebo experiment whose
    groups are shuffled labels (:func:`placebo_labels`): its significant gaps are false positives. With
    ``stratify`` (ours) the sex groups are matched for age band (young / between / old) and the age groups
    for sex (:func:`matched_groups`) before the blocks are cut.
    """
    plans = [(variable, dataset) for dataset in group_datasets for variable in ("sex", "age")]
    if cross_dataset:
        plans.append(("dataset", "both"))
    if placebo:
        plans += [("placebo", dataset) for dataset in group_datasets]
    experiments, plans_groups = [], []
    for variable, dataset in plans:
        subset = cases if dataset == "both" else cases[cases["dataset"] == dataset]
        if variable == "placebo":
            labels = placebo_labels(subset, experiment_seed(seed, f"placebo_labels_{dataset}"))
        else:
            labels = group_labels(subset, variable, young_max, old_min)
        if variable == "placebo":
            names = PLACEBO_GROUPS
        elif variable == "sex":
            names = SEX_GROUPS
        elif variable == "age":
            names = AGE_GROUPS
        else:
            names = tuple(sorted(cases["dataset"].unique()))
            if len(names) != 2:
                raise BadInputError(f"the cross-dataset experiment needs exactly two datasets, found {list(names)}")
        groups = {name: subset.loc[labels == name, "case"].astype(str).tolist() for name in names}
        if stratify and variable in ("sex", "age"):
            bands = subset["age"].map(lambda a: age_group(float(a), young_max, old_min) or "between")
            strata = dict(zip(subset["case"].astype(str), bands if variable == "sex" else subset["sex"], strict=True))
            groups = matched_groups(groups, strata, experiment_seed(seed, f"matched_{variable}_{dataset}"))
        plans_groups.append((variable, dataset, names, groups))
    common = None
    if common_size and plans_groups:
        common = min(fold_design(groups, folds, experiment_seed(seed, f"{variable}_{dataset}"),
                                 what=f"experiment {variable}_{dataset}")[0] for variable, dataset, _, groups in plans_groups)
    for variable, dataset, names, groups in plans_groups:
        name = f"{variable}_{dataset}"
        block, design = fold_design(groups, folds, experiment_seed(seed, name), what=f"experiment {name}", block_size=common)
        experiments.append(Experiment(name, variable, dataset, names, block, {k: len(v) for k, v in groups.items()}, design))
    return experiments


def split_table(experiments: list[Experiment]) -> pd.DataFrame:
    """Long form: one row per (experiment, fold, case, role) with the case's group."""
    rows = []
    for experiment in experiments:
        for fold in experiment.folds:
            for role, members in (("test", fold.test), ("train", fold.train)):
                for group, cases in members.items():
                    rows += [{"experiment": experiment.name, "variable": experiment.variable, "dataset": experiment.dataset,
                              "fold": fold.index, "role": role, "group": group, "case": case} for case in cases]
    return pd.DataFrame(rows, columns=["experiment", "variable", "dataset", "fold", "role", "group", "case"])


def set_makeup(experiments: list[dict], cases: pd.DataFrame) -> pd.DataFrame:
    """Age and sex make-up of every training and test set (issue 18 item 7): one row per (experiment, fold,
    role, group) with its size, women and men, and mean / min / max age. ``experiments`` as in splits.json,
    ``cases`` indexed by case with columns sex and age."""
    rows = []
    for experiment in experiments:
        for fold in experiment["folds"]:
            for role in ("train", "test"):
                for group, members in fold[role].items():
                    chosen = cases.loc[list(members)]
                    ages = chosen["age"].astype(float)
                    rows.append({"experiment": experiment["name"], "fold": fold["index"], "role": role, "group": group,
                                 "n": len(chosen), "n_female": int((chosen["sex"] == "F").sum()),
                                 "n_male": int((chosen["sex"] == "M").sum()), "age_mean": float(ages.mean()),
                                 "age_min": float(ages.min()), "age_max": float(ages.max())})
    return pd.DataFrame(rows)


SPLITS_FILE = "splits.json"


def load_splits(folder: Path) -> dict:
    """``<folder>/splits.json`` as ct_fairness-preprocess wrote it (experiments with their folds)."""
    return json.loads((folder / SPLITS_FILE).read_text())
