"""Shared inputs of the ms_lesion tests (not a test module): tiny params and fixture writers.

``TINY`` is also the study's row of the shared end-to-end test (``pipeline.py``). The fixture
writers use nibabel and json directly, from the layouts' public descriptions (nnU-Net v2's
dataset_format.md, MSSEG-2's file names as CoactSeg's preprocessing reads them), not the study's
own writers.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

# 5 subjects per dataset at 6 mm, 4 iterations of a 4/8-channel UNet: the whole study in seconds.
TINY: dict[str, Any] = {
    "ms_lesion.ingest.subjects": 5,
    "ms_lesion.ingest.spacing_mm": {"crosssectional": 6.0, "msseg2": 6.0, "longitudinal": 5.0},
    "ms_lesion.ingest.radius_mm": [9.0, 14.0],
    "ms_lesion.preprocess.spacing_mm": 6.0,
    "ms_lesion.preprocess.shape": [28, 36, 28],
    "ms_lesion.preprocess.validation_subjects": 1,
    "ms_lesion.preprocess.test_subjects": 2,
    "ms_lesion.train.network.channels": [4, 8],
    "ms_lesion.train.network.strides": [2],
    "ms_lesion.train.patch": [16, 16, 16],
    "ms_lesion.train.iterations": 4,
    "ms_lesion.train.batch_size": 2,
    "ms_lesion.evaluate.window": [32, 40, 32],
    "ms_lesion.evaluate.bootstrap_samples": 100,
}
MODELS = ("union", "union_unconstrained", "crosssectional", "msseg2", "longitudinal")


def save(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> Path:
    """A NIfTI file written by nibabel alone (independent of stages.common.io)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array), np.diag([*spacing, 1.0])), str(path))
    return path


def blob_volume(shape=(12, 12, 10), lesion=(slice(4, 7), slice(4, 7), slice(3, 6)), value=1.0) -> tuple[np.ndarray, np.ndarray]:
    image = np.full(shape, 0.5, np.float32)
    label = np.zeros(shape, np.uint8)
    label[lesion] = 1
    image[label > 0] = value + 1.0
    return image, label


def nnunet_fixture(root: Path, cases: int = 2) -> Path:
    """nnU-Net v2 raw dataset: dataset.json with channel_names/labels/numTraining/file_ending, imagesTr/labelsTr."""
    for index in range(cases):
        image, label = blob_volume()
        save(root / "imagesTr" / f"MS_{index:03d}_0000.nii.gz", image)
        save(root / "labelsTr" / f"MS_{index:03d}.nii.gz", label)
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "FLAIR"}, "labels": {"background": 0, "lesion": 1},
                                                   "numTraining": cases, "file_ending": ".nii.gz"}))
    return root


def msseg2_fixture(root: Path, subjects: int = 2, coregistered: bool = True) -> Path:
    """MSSEG-2 training folders: flair_time0{1,2}[_on_middle_space].nii.gz, ground_truth.nii.gz, BET mask."""
    suffix = "_on_middle_space" if coregistered else ""
    for index in range(subjects):
        folder = root / f"{index + 13:03d}"
        first, _ = blob_volume()
        second, new = blob_volume(lesion=(slice(2, 5), slice(7, 10), slice(2, 5)))
        save(folder / f"flair_time01{suffix}.nii.gz", first, (0.5, 0.75, 0.75))
        save(folder / f"flair_time02{suffix}.nii.gz", second, (0.5, 0.75, 0.75))
        save(folder / "ground_truth.nii.gz", new, (0.5, 0.75, 0.75))
        if coregistered:
            save(folder / "flair_time01_on_middle_space_bet_mask.nii.gz", np.ones_like(new), (0.5, 0.75, 0.75))
    return root


def longitudinal_fixture(root: Path, subjects: int = 2) -> Path:
    """<subject>/<time point>/flair.nii.gz + lesions.nii.gz (our layout), lesion A persists, B vanishes, C is new."""
    for index in range(subjects):
        shape = (12, 12, 10)
        a = (slice(1, 4), slice(1, 4), slice(1, 4))
        b = (slice(7, 10), slice(1, 4), slice(1, 4))
        c = (slice(1, 4), slice(7, 10), slice(5, 8))
        first, second = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
        first[a] = first[b] = 1
        second[a] = second[c] = 1
        for point, label in (("time01", first), ("time02", second)):
            save(root / f"sub{index}" / point / "flair.nii.gz", 0.5 + label.astype(np.float32))
            save(root / f"sub{index}" / point / "lesions.nii.gz", label)
    return root
