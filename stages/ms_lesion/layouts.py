"""The three on-disk layouts the study reads, each with what it holds (time points, label types).

- ``msseg2``: MSSEG-2 (MICCAI 2021 new-lesion challenge) training folders, one per subject:
  ``flair_time01_on_middle_space.nii.gz``, ``flair_time02_on_middle_space.nii.gz`` (co-registered,
  as CoactSeg's preprocessing reads them) or the plain ``flair_time01.nii.gz`` /
  ``flair_time02.nii.gz`` of the challenge FAQ, the consensus new-lesion mask ``ground_truth.nii.gz``,
  and optionally the BET brain mask ``flair_time01_on_middle_space_bet_mask.nii.gz`` (CoactSeg uses
  the time-01 mask for both scans).
- ``nnunet``: an nnU-Net v2 raw dataset: ``dataset.json`` (``channel_names``, ``labels``,
  ``numTraining``, ``file_ending``), ``imagesTr/<case>_0000.nii.gz`` and ``labelsTr/<case>.nii.gz``;
  cross-sectional, all-lesion labels.
- ``longitudinal`` (our naming; ISBI 2015 in spirit, its own naming was not checked):
  ``<subject>/<time point>/flair.nii.gz`` and ``lesions.nii.gz`` (all lesions) at exactly two time
  points, optional ``brain_mask.nii.gz``; new and vanishing truth follow from the two label maps.

Each reader returns :class:`Case` records and raises :class:`BadInputError` naming the subject
and file for a missing time point, a label without its image, time points of different shapes
or spacings, label values outside {0, 1}, or NaN intensities.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stages.common.badinput import BadInputError
from stages.common.io import read_nifti, write_nifti

LABEL_KINDS = ("all_t1", "all_t2", "new", "vanishing")
MSSEG2_COREGISTERED = ("flair_time01_on_middle_space.nii.gz", "flair_time02_on_middle_space.nii.gz")
MSSEG2_PLAIN = ("flair_time01.nii.gz", "flair_time02.nii.gz")
MSSEG2_LABEL = "ground_truth.nii.gz"
MSSEG2_BRAIN = "flair_time01_on_middle_space_bet_mask.nii.gz"
NNUNET_CHANNEL = "_0000"
LONGITUDINAL_IMAGE, LONGITUDINAL_LABEL, LONGITUDINAL_BRAIN = "flair.nii.gz", "lesions.nii.gz", "brain_mask.nii.gz"


@dataclass(frozen=True)
class Case:
    """One subject of one dataset: its scans (one or two time points), labels and brain mask, as paths."""

    dataset: str
    layout: str
    subject: str
    scans: tuple[Path, ...]                         # (t1,) cross-sectional or (t1, t2)
    labels: dict[str, Path] = field(default_factory=dict)   # label kind -> file; derived kinds are absent
    derived: tuple[str, ...] = ()                   # label kinds that follow from the stored ones
    brain_mask: Path | None = None

    @property
    def longitudinal(self) -> bool:
        return len(self.scans) == 2

    def label_kinds(self) -> set[str]:
        return set(self.labels) | set(self.derived)


@dataclass(frozen=True)
class LoadedCase:
    """A case's arrays after every check: scans ``(T, x, y, z)``, labels as bool, spacing in mm."""

    case: Case
    scans: np.ndarray
    labels: dict[str, np.ndarray]
    brain_mask: np.ndarray | None
    spacing: tuple[float, float, float]
    affine: np.ndarray


# --------------------------------------------------------------------------- readers
def _require(path: Path, subject: str, what: str) -> Path:
    if not path.is_file():
        raise BadInputError(f"subject {subject}: {path}: {what} missing")
    return path


def read_msseg2(root: Path, dataset: str = "msseg2") -> list[Case]:
    """One case per subject folder holding MSSEG-2 files (co-registered names preferred)."""
    cases = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        names = MSSEG2_COREGISTERED if (folder / MSSEG2_COREGISTERED[0]).exists() or (folder / MSSEG2_COREGISTERED[1]).exists() else MSSEG2_PLAIN
        present = [(folder / n).is_file() for n in names]
        label = folder / MSSEG2_LABEL
        if not any(present) and not label.exists():
            continue  # not a subject folder
        if not any(present):
            raise BadInputError(f"subject {folder.name}: {label}: a label map without its images ({names[0]}, {names[1]})")
        scans = tuple(_require(folder / n, folder.name, "time point (MSSEG-2 needs both)") for n in names)
        brain = folder / MSSEG2_BRAIN
        cases.append(Case(dataset, "msseg2", folder.name, scans, {"new": _require(label, folder.name, "new-lesion label")},
                          brain_mask=brain if brain.is_file() else None))
    return cases


def read_nnunet_dataset_json(root: Path) -> dict:
    path = _require(root / "dataset.json", root.name, "nnU-Net dataset.json")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BadInputError(f"{path}: not valid JSON ({error})") from error
    for key in ("channel_names", "labels", "numTraining", "file_ending"):
        if key not in info:
            raise BadInputError(f"{path}: key {key!r} missing (nnU-Net v2 dataset.json)")
    if len(info["channel_names"]) != 1:
        raise BadInputError(f"{path}: channel_names: expected one FLAIR channel, got {info['channel_names']}")
    if sorted(int(v) for v in info["labels"].values()) != [0, 1]:
        raise BadInputError(f"{path}: labels: expected background 0 and lesion 1, got {info['labels']}")
    return info


def read_nnunet(root: Path, dataset: str = "nnunet") -> list[Case]:
    """Cases of an nnU-Net v2 raw dataset (imagesTr/labelsTr), cross-sectional with all-lesion labels."""
    info = read_nnunet_dataset_json(root)
    ending = info["file_ending"]
    images, labels = root / "imagesTr", root / "labelsTr"
    image_ids = {p.name[: -len(NNUNET_CHANNEL + ending)] for p in images.glob(f"*{NNUNET_CHANNEL}{ending}")} if images.is_dir() else set()
    label_ids = {p.name[: -len(ending)] for p in labels.glob(f"*{ending}")} if labels.is_dir() else set()
    for orphan in sorted(label_ids - image_ids):
        raise BadInputError(f"subject {orphan}: {labels / (orphan + ending)}: a label map without its image")
    cases = []
    for case_id in sorted(image_ids):
        label = _require(labels / f"{case_id}{ending}", case_id, "label (every nnU-Net training image needs one)")
        cases.append(Case(dataset, "nnunet", case_id, (images / f"{case_id}{NNUNET_CHANNEL}{ending}",), {"all_t1": label},
                          derived=("all_t2", "new", "vanishing")))  # one scan fed twice: t2 = t1, nothing new or gone
    if len(cases) != int(info["numTraining"]):
        raise BadInputError(f"{root / 'dataset.json'}: numTraining is {info['numTraining']} but {len(cases)} images are in imagesTr")
    return cases


def read_longitudinal(root: Path, dataset: str = "longitudinal") -> list[Case]:
    """Cases of the subject/time-point tree: two time points, all-lesion labels at both."""
    cases = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        points = sorted(p for p in folder.iterdir() if p.is_dir())
        for point in points:
            if (point / LONGITUDINAL_LABEL).is_file() and not (point / LONGITUDINAL_IMAGE).is_file():
                raise BadInputError(f"subject {folder.name}: {point / LONGITUDINAL_LABEL}: a label map without its image")
        if len(points) != 2:
            raise BadInputError(f"subject {folder.name}: {folder}: {len(points)} time point folder(s); this layout needs exactly 2")
        scans = tuple(_require(p / LONGITUDINAL_IMAGE, folder.name, "time point image") for p in points)
        labels = {kind: _require(p / LONGITUDINAL_LABEL, folder.name, "all-lesion label") for kind, p in zip(("all_t1", "all_t2"), points)}
        brain = points[0] / LONGITUDINAL_BRAIN
        cases.append(Case(dataset, "longitudinal", folder.name, scans, labels, derived=("new", "vanishing"),
                          brain_mask=brain if brain.is_file() else None))
    return cases


READERS: dict[str, Callable[[Path, str], list[Case]]] = {"msseg2": read_msseg2, "nnunet": read_nnunet, "longitudinal": read_longitudinal}


def find_cases(root: Path, layout: str, dataset: str) -> list[Case]:
    if not root.is_dir():
        raise BadInputError(f"{dataset}: {root} is not a folder")
    return READERS[layout](root, dataset)


# --------------------------------------------------------------------------- loading with checks
def load_case(case: Case) -> LoadedCase:
    """Read a case's files and check them; errors name the subject and the file."""
    arrays, reference = [], None
    for path in case.scans:
        data, affine, spacing = read_nifti(path, finite=False)  # checked below, with the subject named
        if data.ndim != 3:
            raise BadInputError(f"subject {case.subject}: {path}: expected a 3-D image, got shape {data.shape}")
        if not np.isfinite(data).all():
            raise BadInputError(f"subject {case.subject}: {path}: {int((~np.isfinite(data)).sum())} NaN or infinite intensities")
        reference = reference or (path, data.shape, spacing, affine)
        _same_grid(case.subject, reference, path, data.shape, spacing)
        arrays.append(data)
    labels = {}
    for kind, path in case.labels.items():
        labels[kind], spacing = read_binary(path, case.subject)
        _same_grid(case.subject, reference, path, labels[kind].shape, spacing)
    brain = None
    if case.brain_mask is not None:
        brain, spacing = read_binary(case.brain_mask, case.subject)
        _same_grid(case.subject, reference, case.brain_mask, brain.shape, spacing)
    if case.layout == "nnunet":
        labels = {"all_t1": labels["all_t1"], "all_t2": labels["all_t1"].copy(),
                  "new": np.zeros_like(labels["all_t1"]), "vanishing": np.zeros_like(labels["all_t1"])}
    elif case.layout == "longitudinal":
        labels["new"] = labels["all_t2"] & ~labels["all_t1"]
        labels["vanishing"] = labels["all_t1"] & ~labels["all_t2"]
    scans = np.stack(arrays) if len(arrays) == 2 else np.stack([arrays[0], arrays[0]])
    return LoadedCase(case, scans.astype(np.float32), labels, brain, tuple(float(s) for s in reference[2]), reference[3])


def read_binary(path: Path, subject: str) -> tuple[np.ndarray, tuple[float, ...]]:
    """A mask file as bool, and its spacing; values other than 0 and 1 are bad input."""
    data, _, spacing = read_nifti(path, dtype=None)
    values = np.unique(data)
    stray = [v for v in values.tolist() if v not in (0, 1)]
    if stray:
        raise BadInputError(f"subject {subject}: {path}: label values outside {{0, 1}}: {stray[:5]}")
    return data.astype(bool), spacing


def _same_grid(subject: str, reference: tuple, path: Path, shape: tuple, spacing: tuple) -> None:
    first, first_shape, first_spacing, _ = reference
    if tuple(shape) != tuple(first_shape):
        raise BadInputError(f"subject {subject}: {path}: shape {tuple(shape)} differs from {first.name} {tuple(first_shape)}")
    if not np.allclose(spacing, first_spacing, rtol=1e-4):
        raise BadInputError(f"subject {subject}: {path}: spacing {tuple(spacing)} differs from {first.name} {tuple(first_spacing)}")


# --------------------------------------------------------------------------- writers (the synthetic default)
def _mask(array: np.ndarray) -> np.ndarray:
    return np.asarray(array).astype(np.uint8)


def write_msseg2_subject(root: Path, subject: str, scans: tuple[np.ndarray, np.ndarray], new: np.ndarray,
                         brain: np.ndarray, spacing: tuple[float, ...]) -> None:
    folder = root / subject
    for name, image in zip(MSSEG2_COREGISTERED, scans):
        write_nifti(folder / name, image.astype(np.float32), spacing)
    write_nifti(folder / MSSEG2_LABEL, _mask(new), spacing)
    write_nifti(folder / MSSEG2_BRAIN, _mask(brain), spacing)


def write_nnunet_case(root: Path, case_id: str, image: np.ndarray, label: np.ndarray, spacing: tuple[float, ...]) -> None:
    write_nifti(root / "imagesTr" / f"{case_id}{NNUNET_CHANNEL}.nii.gz", image.astype(np.float32), spacing)
    write_nifti(root / "labelsTr" / f"{case_id}.nii.gz", _mask(label), spacing)


def nnunet_dataset_json(cases: int) -> dict:
    return {"channel_names": {"0": "FLAIR"}, "labels": {"background": 0, "lesion": 1}, "numTraining": cases,
            "file_ending": ".nii.gz", "name": "synthetic MS lesions (medrepro)"}


def write_longitudinal_subject(root: Path, subject: str, scans: tuple[np.ndarray, np.ndarray],
                               labels: tuple[np.ndarray, np.ndarray], brain: np.ndarray, spacing: tuple[float, ...]) -> None:
    for index, (image, label) in enumerate(zip(scans, labels)):
        point = root / subject / f"time{index + 1:02d}"
        write_nifti(point / LONGITUDINAL_IMAGE, image.astype(np.float32), spacing)
        write_nifti(point / LONGITUDINAL_LABEL, _mask(label), spacing)
        if index == 0:
            write_nifti(point / LONGITUDINAL_BRAIN, _mask(brain), spacing)


def iter_kinds(case: Case) -> Iterator[str]:
    yield from (kind for kind in LABEL_KINDS if kind in case.label_kinds())
