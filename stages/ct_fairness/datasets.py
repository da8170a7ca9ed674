"""Reading (and, for the synthetic default, writing) the two dataset styles from NIfTI.

TotalSegmentator style::

    <root>/meta.csv                         ';'-separated: image_id;age;gender;institute;study_type;...
    <root>/s0001/ct.nii.gz
    <root>/s0001/segmentations/<organ>.nii.gz   one 0/1 mask per structure (liver.nii.gz, kidney_right.nii.gz, ...)
      or <root>/s0001/label.nii.gz               one merged map (the authors' relabelling, ids from params)

AMOS style::

    <root>/labeled_data_meta_0000_0599.csv  amos_id, "Patient's Sex" (M/F), "Patient's Age" ('046Y'), ...
    <root>/imagesTr/amos_0001.nii.gz  <root>/labelsTr/amos_0001.nii.gz   (and imagesVa/labelsVa)

Every case comes back on RAS axes (the affine's closest canonical orientation) with its voxel
spacing, its label map already in the organ table of :mod:`stages.ct_fairness.organs`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from stages.common.badinput import BadInputError
from stages.common.io import FormatError, read_nifti, read_table, stored_nifti_spacing, write_nifti
from stages.common.paths import resolve_inside
from stages.ct_fairness.metadata import amos_case_id
from stages.ct_fairness.organs import ORGANS, amos_to_organ_table, map_labels, merge_binary_masks, merged_to_organ_table

TOTALSEG = "totalsegmentator"
AMOS = "amos"
DATASET_STYLES = (TOTALSEG, AMOS)
DatasetName = Literal["totalsegmentator", "amos"]
TOTALSEG_META = "meta.csv"
AMOS_META = "labeled_data_meta_0000_0599.csv"
AMOS_SPLITS = (("imagesTr", "labelsTr"), ("imagesVa", "labelsVa"))
TOTALSEG_MERGED_FILE = "label.nii.gz"
AMOS_SEX, AMOS_AGE = "Patient's Sex", "Patient's Age"
# TotalSegmentator's file names for the extra structures the phantom draws (AMOS name -> file stem).
TOTALSEG_NAMES = {"postcava": "inferior_vena_cava"}


@dataclass(frozen=True)
class CaseRecord:
    """One case found on disk and in the metadata; paths relative to the dataset root."""

    case: str
    dataset: str
    image: str
    label: str
    label_style: str  # per_organ | merged | amos
    age: object
    sex: object
    site: str = ""


@dataclass(frozen=True)
class CaseVolumes:
    image: np.ndarray      # HU, float32, RAS
    label: np.ndarray      # organ-table ids, uint8, RAS
    spacing: tuple[float, float, float]


def match_metadata_to_files(metadata_ids: list[str], file_ids: list[str], meta_name: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(cases with both metadata and files, sorted; [(case, problem)] for the rest and for duplicates)."""
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for case in metadata_ids:
        if case in seen:
            problems.append((case, f"listed more than once in {meta_name}"))
        seen.add(case)
    files = set(file_ids)
    duplicated = {case for case, _ in problems}
    problems += [(case, f"listed in {meta_name} but has no image/label files") for case in sorted(seen - files)]
    problems += [(case, f"has image/label files but no row in {meta_name}") for case in sorted(files - seen)]
    paired = sorted((seen & files) - duplicated)
    return paired, problems


def list_totalsegmentator(root: Path) -> tuple[list[CaseRecord], list[tuple[str, str]]]:
    """Cases of a TotalSegmentator-style folder and the problems found while pairing them."""
    meta = read_table(root / TOTALSEG_META, ("image_id", "age", "gender"), sep=";", dtype=str, keep_default_na=False)
    rows = {str(r["image_id"]).strip(): r for r in meta.to_dict("records")}
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "ct.nii.gz").exists())
    paired, problems = match_metadata_to_files([str(v).strip() for v in meta["image_id"]], folders, TOTALSEG_META)
    records = []
    for case in paired:
        folder = root / case
        if (folder / "segmentations").is_dir():
            label, style = f"{case}/segmentations", "per_organ"
        elif (folder / TOTALSEG_MERGED_FILE).is_file():
            label, style = f"{case}/{TOTALSEG_MERGED_FILE}", "merged"
        else:
            problems.append((case, f"has ct.nii.gz but neither segmentations/ nor {TOTALSEG_MERGED_FILE}"))
            continue
        row = rows[case]
        records.append(CaseRecord(case, TOTALSEG, f"{case}/ct.nii.gz", label, style, _blank_to_none(row["age"]),
                                  _blank_to_none(row["gender"]), str(row.get("institute", ""))))
    return records, problems


def list_amos(root: Path, max_ct_id: int) -> tuple[list[CaseRecord], list[tuple[str, str]]]:
    """Cases of an AMOS-style folder (CT only: ids below ``max_ct_id``) and the pairing problems."""
    meta = read_table(root / AMOS_META, ("amos_id", AMOS_SEX, AMOS_AGE), dtype=str, keep_default_na=False)
    problems: list[tuple[str, str]] = []
    metadata_ids, rows = [], {}
    for row in meta.to_dict("records"):
        try:
            case = amos_case_id(row["amos_id"])
        except ValueError as error:
            problems.append((str(row["amos_id"]), f"{AMOS_META}: {error}"))
            continue
        if int(case[5:]) >= max_ct_id:
            continue  # AMOS ids from max_ct_id on are MRI
        metadata_ids.append(case)
        rows[case] = row
    found: dict[str, tuple[str, str]] = {}
    for images, labels in AMOS_SPLITS:
        image_files = _amos_files(root / images, max_ct_id)
        label_files = _amos_files(root / labels, max_ct_id)
        for case in sorted(set(image_files) | set(label_files)):
            if case not in label_files:
                problems.append((case, f"image {images}/{image_files[case]} has no label {labels}/{case}.nii.gz"))
            elif case not in image_files:
                problems.append((case, f"label {labels}/{label_files[case]} has no image in {images}/"))
            else:
                found[case] = (f"{images}/{image_files[case]}", f"{labels}/{label_files[case]}")
    incomplete = {case for case, _ in problems}
    paired, pairing = match_metadata_to_files(metadata_ids, [c for c in found if c not in incomplete], AMOS_META)
    problems += [(case, problem) for case, problem in pairing if case not in incomplete]
    records = [CaseRecord(case, AMOS, *found[case], "amos", _blank_to_none(rows[case][AMOS_AGE]),
                          _blank_to_none(rows[case][AMOS_SEX]), str(rows[case].get("Site", ""))) for case in paired]
    return records, problems


def _amos_files(folder: Path, max_ct_id: int) -> dict[str, str]:
    """``{case: file name}`` of the CT cases in one AMOS folder (``amos_0001.nii.gz`` or ``amos_0001_0000.nii.gz``)."""
    if not folder.is_dir():
        return {}
    files = {}
    for path in sorted(folder.glob("amos_*.nii.gz")):
        case = path.name[: -len(".nii.gz")].removesuffix("_0000")
        if case[5:].isdigit() and int(case[5:]) < max_ct_id:
            files[case] = path.name
    return files


def _blank_to_none(value: object) -> object:
    return None if value is None or str(value).strip() in ("", "nan", "NaN", "None") else value


def to_ras(array: np.ndarray, affine: np.ndarray, spacing: tuple[float, ...]) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Reorder/flip axes to the closest canonical RAS orientation of ``affine``; spacing follows."""
    import nibabel as nib

    orientation = nib.orientations.io_orientation(affine)
    transform = nib.orientations.ornt_transform(orientation, nib.orientations.axcodes2ornt("RAS"))
    reoriented = nib.orientations.apply_orientation(array, transform)
    ras_spacing = [0.0, 0.0, 0.0]
    for axis, (target, _) in enumerate(transform):
        ras_spacing[int(target)] = float(spacing[axis])
    return np.ascontiguousarray(reoriented), tuple(ras_spacing)  # type: ignore[return-value]


def stored_spacing(path: Path) -> tuple[float, ...]:
    """Voxel spacing exactly as the NIfTI header stores it (see ``stored_nifti_spacing``)."""
    return stored_nifti_spacing(path)


def _read_checked(where: str, path: Path, name: str, dtype=np.float32):
    """read_nifti after refusing a non-positive stored spacing (named by case and file)."""
    spacing = stored_spacing(path)
    if any(not np.isfinite(s) or s <= 0 for s in spacing):
        raise BadInputError(f"{where}: non-positive voxel spacing {spacing} in {name}")
    return read_nifti(path, dtype=dtype)


def read_case(root: Path, record: CaseRecord, merged_ids: Mapping[str, int]) -> CaseVolumes:
    """Image and organ-table label map of one case; any problem is a BadInputError naming the case."""
    where = f"{record.dataset} case {record.case}"
    try:
        image, affine, spacing = _read_checked(where, resolve_inside(root, record.image, f"{where} image path"), record.image)
        if image.ndim != 3:
            raise BadInputError(f"{where}: image {record.image} is {image.ndim}-D, expected 3-D")
        if record.label_style == "per_organ":
            folder = resolve_inside(root, record.label, f"{where} label folder")
            masks = {}
            for organ in ORGANS:
                mask = _read_checked(where, folder / f"{organ}.nii.gz", f"{record.label}/{organ}.nii.gz", None)[0]
                _check_shape(where, image.shape, mask.shape, f"{record.label}/{organ}.nii.gz")
                masks[organ] = mask
            label = merge_binary_masks(masks)
        else:
            raw = _read_checked(where, resolve_inside(root, record.label, f"{where} label path"), record.label, None)[0]
            _check_shape(where, image.shape, raw.shape, record.label)
            mapping = amos_to_organ_table() if record.label_style == "amos" else merged_to_organ_table(merged_ids)
            label = map_labels(raw, mapping)
    except FormatError as error:
        raise BadInputError(f"{where}: {error}") from error
    except BadInputError:
        raise
    except ValueError as error:
        raise BadInputError(f"{where}: {error} ({record.label})") from error
    image, ras_spacing = to_ras(image.astype(np.float32), affine, spacing)
    label, _ = to_ras(label, affine, spacing)
    return CaseVolumes(image, label, ras_spacing)


def _check_shape(where: str, image_shape: tuple[int, ...], label_shape: tuple[int, ...], label_name: str) -> None:
    if tuple(image_shape) != tuple(label_shape):
        raise BadInputError(f"{where}: image shape {tuple(image_shape)} differs from label shape {tuple(label_shape)} ({label_name})")


def lps_affine(spacing: tuple[float, float, float], shape: tuple[int, ...]) -> np.ndarray:
    """An LPS-oriented affine (as many scanners write) for a volume centred on the origin."""
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = [(shape[0] - 1) / 2 * spacing[0], (shape[1] - 1) / 2 * spacing[1], -(shape[2] - 1) / 2 * spacing[2]]
    return affine


def ras_affine(spacing: tuple[float, float, float], shape: tuple[int, ...]) -> np.ndarray:
    affine = np.diag([spacing[0], spacing[1], spacing[2], 1.0])
    affine[:3, 3] = [-(n - 1) / 2 * s for n, s in zip(shape[:3], spacing, strict=True)]
    return affine


def write_totalsegmentator_case(root: Path, case: str, image_ras: np.ndarray, amos_label_ras: np.ndarray,
                                spacing: tuple[float, float, float], structures: Mapping[int, str]) -> None:
    """``<case>/ct.nii.gz`` (int16, RAS) and one 0/1 mask per structure under ``<case>/segmentations``."""
    affine = ras_affine(spacing, image_ras.shape)
    write_nifti(root / case / "ct.nii.gz", image_ras.astype(np.int16), affine=affine)
    for amos_id, name in structures.items():
        mask = (amos_label_ras == amos_id).astype(np.uint8)
        write_nifti(root / case / "segmentations" / f"{TOTALSEG_NAMES.get(name, name)}.nii.gz", mask, affine=affine)


def write_amos_case(root: Path, case: str, image_ras: np.ndarray, amos_label_ras: np.ndarray,
                    spacing: tuple[float, float, float]) -> None:
    """``imagesTr/<case>.nii.gz`` and ``labelsTr/<case>.nii.gz`` stored in LPS order, as AMOS's scanners write."""
    affine = lps_affine(spacing, image_ras.shape)
    write_nifti(root / "imagesTr" / f"{case}.nii.gz", image_ras[::-1, ::-1].astype(np.int16), affine=affine)
    write_nifti(root / "labelsTr" / f"{case}.nii.gz", amos_label_ras[::-1, ::-1].astype(np.uint8), affine=affine)
