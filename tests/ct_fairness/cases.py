"""Shared inputs of the ct_fairness tests (not a test module): tiny params, small cases, damaged datasets.

``TINY`` is the same as the study's row of the shared end-to-end test (``tests/test_pipelines.py``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from stages.common.io import write_nifti
from stages.common.params import FULL_OVERRIDES_KEY
from stages.ct_fairness.datasets import AMOS_META
from stages.ct_fairness.phantom import Effects, Scanner
from stages.ct_fairness.synthetic import write_synthetic_datasets
from stages.ct_fairness.train import TrainParams
from tests.helpers import repo_params, with_overrides

VARIABLES = ("sex", "age", "dataset", "placebo")

# 10 cases per dataset at 12-16 mm, U-Nets of 4/8 channels trained for 4 steps: the whole study in seconds.
TINY: dict[str, Any] = {
    "ct_fairness.ingest.cases_per_dataset": 10,
    "ct_fairness.ingest.age_ranges": [[20, 40], [65, 88]],
    "ct_fairness.ingest.age_weights": [0.5, 0.5],
    "ct_fairness.ingest.scanners.totalsegmentator.spacing": [12.0, 12.0, 12.0],
    "ct_fairness.ingest.scanners.amos.spacing": [10.0, 10.0, 14.0],
    "ct_fairness.preprocess.spacing_mm": [16.0, 16.0, 16.0],
    "ct_fairness.preprocess.shape": [24, 20, 16],
    "ct_fairness.train.network.channels": [4, 8],
    "ct_fairness.train.network.strides": [2],
    "ct_fairness.train.network.patch": [16, 16, 16],
    "ct_fairness.train.iterations": 4,
    "ct_fairness.train.log_every": 2,
}
EXPERIMENTS = {"sex_totalsegmentator", "age_totalsegmentator", "dataset_both", "placebo_totalsegmentator"}
TRUTH_EXPERIMENTS = EXPERIMENTS - {"placebo_totalsegmentator"}   # the placebo has no synthetic truth to compare


def step_section(step: str) -> dict[str, Any]:
    """The smoke-scale section ``ct_fairness.<step>`` of the project's params.yaml."""
    section = dict(repo_params()["ct_fairness"][step])
    section.pop(FULL_OVERRIDES_KEY, None)
    return section


def train_params(changes: dict[str, Any] | None = None) -> TrainParams:
    """The project's smoke train params with ``{"network.channels": [4, 8], "iterations": 6, ...}`` applied."""
    return TrainParams.model_validate(with_overrides(step_section("train"), changes or {}))


TINY_NETWORK = {"network.channels": [4, 8], "network.strides": [2], "network.patch": [16, 16, 12]}


def blob_case(path: Path, rng: np.random.Generator) -> None:
    """A preprocessed-style case: one bright 5 x 5 x 5 box (label 1) in a dim 16 x 16 x 12 volume."""
    image = rng.normal(0.2, 0.02, (1, 16, 16, 12)).astype(np.float32)
    label = np.zeros((1, 16, 16, 12), dtype=np.uint8)
    x, y = rng.integers(3, 9, 2)
    label[0, x:x + 5, y:y + 5, 3:8] = 1
    image[label > 0] = 0.8
    np.savez(path, image=image, label=label)


def blob_cases(folder: Path, count: int = 3) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        paths.append(str(folder / f"c{index}.npz"))
        blob_case(Path(paths[-1]), rng)
    return paths


def damaged_datasets(folder: Path) -> dict[str, str]:
    """Four cases per dataset in the real formats, then one problem per listed case; returns the source mapping."""
    scanner = Scanner(spacing=(12.0, 12.0, 12.0), fov_mm=(336.0, 252.0, 224.0))
    write_synthetic_datasets(folder, 4, {"totalsegmentator": scanner, "amos": scanner}, Effects(), [(20, 40), (65, 88)], [0.5, 0.5], 0)
    ts, amos = folder / "totalsegmentator", folder / "amos"
    kidney = ts / "s0002" / "segmentations" / "kidney_left.nii.gz"
    write_nifti(kidney, np.zeros((5, 5, 5), dtype=np.uint8), spacing=(12.0, 12.0, 12.0))          # shape mismatch
    with open(ts / "meta.csv", "a") as handle:
        handle.write("s0009;50;f;A;ct;train\n")                                                   # metadata without files
    label = nib.load(str(amos / "labelsTr" / "amos_0003.nii.gz"))
    values = np.asarray(label.dataobj).copy()
    values[0, 0, 0] = 17
    nib.save(nib.Nifti1Image(values, label.affine), str(amos / "labelsTr" / "amos_0003.nii.gz"))  # unknown label value
    meta = pd.read_csv(amos / AMOS_META, dtype=str, keep_default_na=False)
    meta.loc[meta.amos_id == "4", "Patient's Age"] = "unknown"
    meta.to_csv(amos / AMOS_META, index=False)                                                     # unparseable age
    return {"totalsegmentator": str(ts), "amos": str(amos)}


def file_digests(folder: Path) -> dict[str, str]:
    """md5 of every file under ``folder``, by relative path."""
    import hashlib

    return {path.relative_to(folder).as_posix(): hashlib.md5(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}
