"""ct_fairness's rows of the bad-input catalogue (issue 19 item 16).

The tiny tree follows the two releases' public descriptions, written with nibabel here (not by the
study's synthetic writer): TotalSegmentator v2 (``meta.csv``, ``;``-separated image_id;age;gender;
institute;study_type;split, and ``sNNNN/ct.nii.gz`` with ``sNNNN/segmentations/<organ>.nii.gz`` binary
masks) and AMOS 2022 (``labeled_data_meta_0000_0599.csv`` with amos_id, "Patient's Sex" M/F and
"Patient's Age" as DICOM age strings like ``046Y``, ``imagesTr/amos_NNNN.nii.gz`` and
``labelsTr/amos_NNNN.nii.gz`` with the AMOS label ids: 1 spleen, 2 right kidney, 3 left kidney,
6 liver, 10 pancreas, ...).

The harness sets one source path; ct_fairness's source is a mapping, so the TotalSegmentator tree
is the source root itself and the AMOS tree lies in its ``amos/`` folder, reached by the relative
path ``../source/amos`` from the project (the TotalSegmentator lister only reads folders holding
``ct.nii.gz``).
"""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from stages.ct_fairness.ingest import ingest
from tests.badinput.harness import Corruption, StudyIngest, check, make_baseline

SHAPE = (12, 10, 8)
SPACING = (10.0, 10.0, 12.0)
TS_CASES = ("s0001", "s0002", "s0003", "s0004")
AMOS_CASES = ("amos_0001", "amos_0002", "amos_0003", "amos_0004")
ORGAN_BOXES = {"liver": (slice(1, 5), slice(2, 7), slice(2, 6)), "kidney_right": (slice(6, 8), slice(2, 4), slice(3, 5)),
               "kidney_left": (slice(9, 11), slice(2, 4), slice(3, 5)), "pancreas": (slice(6, 10), slice(5, 7), slice(4, 5))}
AMOS_IDS = {"liver": 6, "kidney_right": 2, "kidney_left": 3, "pancreas": 10}
AMOS_META = "labeled_data_meta_0000_0599.csv"


def affine(spacing=SPACING) -> np.ndarray:
    return np.diag([*spacing, 1.0])


def ct_volume(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.normal(40.0, 10.0, SHAPE).astype(np.int16)
    image[0, :, :] = -1000
    return image


def save(array: np.ndarray, path: Path, spacing=SPACING) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine(spacing)), str(path))


def write_tiny_tree(root: Path) -> None:
    rows = ["image_id;age;gender;institute;study_type;split"]
    for index, case in enumerate(TS_CASES):
        save(ct_volume(index), root / case / "ct.nii.gz")
        for organ, box in ORGAN_BOXES.items():
            mask = np.zeros(SHAPE, np.uint8)
            mask[box] = 1
            save(mask, root / case / "segmentations" / f"{organ}.nii.gz")
        rows.append(f"{case};{[30, 72, 35, 80][index]};{'fm'[index % 2]};A;ct abdomen;train")
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    amos = root / "amos"
    meta = []
    for index, case in enumerate(AMOS_CASES):
        save(ct_volume(10 + index), amos / "imagesTr" / f"{case}.nii.gz")
        label = np.zeros(SHAPE, np.uint8)
        for organ, box in ORGAN_BOXES.items():
            label[box] = AMOS_IDS[organ]
        label[11, 8, 7] = 1                                             # spleen: mapped to background
        save(label, amos / "labelsTr" / f"{case}.nii.gz")
        meta.append({"amos_id": str(index + 1), "Patient's Birth Date": "", "Patient's Age": f"{[28, 70, 33, 77][index]:03d}Y",
                     "Patient's Sex": "FM"[index % 2], "Site": "x"})
    pd.DataFrame(meta).to_csv(amos / AMOS_META, index=False)


INGEST = StudyIngest(step=ingest, source_key="ct_fairness.ingest.source.totalsegmentator", write_source=write_tiny_tree,
                     overrides={"ct_fairness.ingest.source.amos": "../source/amos"}, id_columns=("dataset", "case"))


def ts(case: str = "s0002", name: str = "ct.nii.gz"):
    return lambda root: root / case / name


def amos_image(root: Path) -> Path:
    return root / "amos" / "imagesTr" / "amos_0003.nii.gz"


def amos_label(root: Path) -> Path:
    return root / "amos" / "labelsTr" / "amos_0003.nii.gz"


def replace(where, array_of):
    def corrupt(root: Path) -> None:
        path = where(root)
        old = nib.load(str(path))
        array = array_of(np.asarray(old.dataobj))
        nib.save(nib.Nifti1Image(array, old.affine), str(path))
    return corrupt


def with_value(value: float):
    def change(array: np.ndarray) -> np.ndarray:
        out = array.astype(np.float32)
        out[4, 4, 4] = value
        return out
    return change


def truncate(where):
    def corrupt(root: Path) -> None:
        path = where(root)
        data = gzip.decompress(path.read_bytes())
        path.write_bytes(gzip.compress(data[: len(data) // 2]))
    return corrupt


def write_bytes(where, content: bytes):
    return lambda root: where(root).write_bytes(content)


def with_spacing(where, spacing):
    """Patch pixdim[1:4] of the stored header (bytes 80-92 of NIfTI-1) so the file really says ``spacing``."""
    def corrupt(root: Path) -> None:
        path = where(root)
        data = bytearray(gzip.decompress(path.read_bytes()))
        data[80:92] = np.asarray(spacing, dtype="<f4").tobytes()
        path.write_bytes(gzip.compress(bytes(data)))
    return corrupt


def declared_huge(where):
    def corrupt(root: Path) -> None:
        path = where(root)
        header = nib.Nifti1Header()
        header.set_data_shape((2000, 2000, 2000))
        header.set_data_dtype(np.int16)
        raw = header.binaryblock + b"\x00" * 4 + b"\x00" * 1024
        path.write_bytes(gzip.compress(raw))
    return corrupt


def edit_ts_meta(case: str, column: str, value: str):
    def corrupt(root: Path) -> None:
        meta = pd.read_csv(root / "meta.csv", sep=";", dtype=str, keep_default_na=False)
        meta.loc[meta.image_id == case, column] = value
        meta.to_csv(root / "meta.csv", sep=";", index=False)
    return corrupt


def edit_amos_meta(amos_id: str, column: str, value: str):
    def corrupt(root: Path) -> None:
        meta = pd.read_csv(root / "amos" / AMOS_META, dtype=str, keep_default_na=False)
        meta.loc[meta.amos_id == amos_id, column] = value
        meta.to_csv(root / "amos" / AMOS_META, index=False)
    return corrupt


def append_ts_meta(line: str):
    def corrupt(root: Path) -> None:
        with open(root / "meta.csv", "a") as handle:
            handle.write(line + "\n")
    return corrupt


def copy_case_without_metadata(root: Path) -> None:
    shutil.copytree(root / "s0002", root / "s0007")


def remove(where):
    return lambda root: where(root).unlink()


def drop_ts_meta_column(column: str):
    def corrupt(root: Path) -> None:
        meta = pd.read_csv(root / "meta.csv", sep=";", dtype=str, keep_default_na=False)
        meta.drop(columns=[column]).to_csv(root / "meta.csv", sep=";", index=False)
    return corrupt


def drop_amos_meta_column(column: str):
    def corrupt(root: Path) -> None:
        meta = pd.read_csv(root / "amos" / AMOS_META, dtype=str, keep_default_na=False)
        meta.drop(columns=[column]).to_csv(root / "amos" / AMOS_META, index=False)
    return corrupt


def merged_label_instead(root: Path) -> None:
    """The merged-label layout (authors' relabelling: right kidney 1, left kidney 2, liver 3, pancreas 4)."""
    folder = root / "s0002"
    merged = np.zeros(SHAPE, np.uint8)
    for organ, value in {"kidney_right": 1, "kidney_left": 2, "liver": 3, "pancreas": 4}.items():
        merged[ORGAN_BOXES[organ]] = value
    shutil.rmtree(folder / "segmentations")
    save(merged, folder / "label.nii.gz")


def lps_orientation(root: Path) -> None:
    for path in (amos_image(root), amos_label(root)):
        image = nib.load(str(path))
        flipped = np.asarray(image.dataobj)[::-1, ::-1, :].copy()
        lps = np.diag([-SPACING[0], -SPACING[1], SPACING[2], 1.0])
        lps[:3, 3] = [(SHAPE[0] - 1) * SPACING[0], (SHAPE[1] - 1) * SPACING[1], 0.0]
        nib.save(nib.Nifti1Image(flipped, lps), str(path))


def mri_ids_beside(root: Path) -> None:
    shutil.copy(amos_image(root), root / "amos" / "imagesTr" / "amos_0540.nii.gz")
    shutil.copy(amos_label(root), root / "amos" / "labelsTr" / "amos_0540.nii.gz")


def nnunet_channel_suffix(root: Path) -> None:
    amos_image(root).rename(amos_image(root).with_name("amos_0003_0000.nii.gz"))


CATALOGUE = [
    Corruption("truncated ct.nii.gz", truncate(ts()), "quarantined", "s0002"),
    Corruption("zero-byte ct.nii.gz", write_bytes(ts(), b""), "quarantined", "s0002"),
    Corruption("ct.nii.gz not a NIfTI", write_bytes(ts(), b"not a nifti file at all"), "quarantined", "s0002"),
    Corruption("NaN voxel in a TotalSegmentator CT", replace(ts(), with_value(np.nan)), "quarantined", "NaN"),
    Corruption("Inf voxel in a TotalSegmentator CT", replace(ts(), with_value(np.inf)), "quarantined", "s0002"),
    Corruption("NaN voxel in an AMOS CT", replace(amos_image, with_value(np.nan)), "quarantined", "amos_0003"),
    Corruption("2-D CT", replace(ts(), lambda a: a[:, :, 0]), "quarantined", "s0002"),
    Corruption("organ mask of another shape", replace(ts(name="segmentations/kidney_left.nii.gz"), lambda a: a[:5, :5, :5]),
               "quarantined", "kidney_left.nii.gz"),
    Corruption("organ mask missing", remove(ts(name="segmentations/pancreas.nii.gz")), "quarantined", "s0002"),
    Corruption("zero spacing in the header", with_spacing(ts(), (0.0, 10.0, 12.0)), "quarantined", "s0002"),
    Corruption("negative spacing in the header", with_spacing(ts(), (10.0, -10.0, 12.0)), "quarantined", "s0002"),
    Corruption("header declaring 8e9 voxels", declared_huge(ts()), "quarantined", "s0002"),
    Corruption("AMOS label of another shape", replace(amos_label, lambda a: a[:, :, :4]), "quarantined", "amos_0003"),
    Corruption("unknown AMOS label value", replace(amos_label, lambda a: np.where(a == 1, 17, a).astype(np.uint8)),
               "quarantined", "17"),
    Corruption("truncated AMOS label", truncate(amos_label), "quarantined", "amos_0003"),
    Corruption("AMOS image without its label", remove(amos_label), "quarantined", "amos_0003"),
    Corruption("age 150", edit_ts_meta("s0002", "age", "150"), "quarantined", "age 150"),
    Corruption("negative age", edit_ts_meta("s0002", "age", "-5"), "quarantined", "s0002"),
    Corruption("age not a number", edit_ts_meta("s0002", "age", "old"), "quarantined", "s0002"),
    Corruption("age missing", edit_ts_meta("s0002", "age", ""), "quarantined", "age missing"),
    Corruption("sex unknown", edit_ts_meta("s0002", "gender", "x"), "quarantined", "s0002"),
    Corruption("sex missing", edit_ts_meta("s0002", "gender", ""), "quarantined", "sex missing"),
    Corruption("AMOS age 150Y", edit_amos_meta("3", "Patient's Age", "150Y"), "quarantined", "amos_0003"),
    Corruption("AMOS age unparseable", edit_amos_meta("3", "Patient's Age", "unknown"), "quarantined", "amos_0003"),
    Corruption("AMOS sex unknown", edit_amos_meta("3", "Patient's Sex", "O"), "quarantined", "amos_0003"),
    Corruption("metadata row without files", append_ts_meta("s0009;50;f;A;ct abdomen;train"), "quarantined", "s0009"),
    Corruption("case folder without metadata", copy_case_without_metadata, "quarantined", "s0007"),
    Corruption("meta.csv missing", remove(lambda root: root / "meta.csv"), "refused", "meta.csv"),
    Corruption("meta.csv without the gender column", drop_ts_meta_column("gender"), "refused", "gender"),
    Corruption("AMOS metadata without Patient's Sex", drop_amos_meta_column("Patient's Sex"), "refused", "Patient's Sex"),
    Corruption("merged label.nii.gz instead of per-organ masks", merged_label_instead, "accepted"),
    Corruption("LPS-oriented AMOS case", lps_orientation, "accepted"),
    Corruption("MRI ids (>= 500) beside the CTs", mri_ids_beside, "accepted"),
    Corruption("nnU-Net _0000 channel suffix", nnunet_channel_suffix, "accepted"),
    Corruption("AMOS age as a plain number", edit_amos_meta("3", "Patient's Age", "33"), "accepted"),
    Corruption("sex spelled out", edit_ts_meta("s0002", "gender", "male"), "accepted"),
]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    return make_baseline(INGEST, tmp_path_factory.mktemp("ct_fairness_clean"))


def test_the_clean_tree_reads_every_case(baseline):
    assert sorted(baseline.manifest["case"].astype(str)) == sorted(AMOS_CASES + TS_CASES)


@pytest.mark.parametrize("row", CATALOGUE, ids=lambda row: row.name)
def test_catalogue(row, baseline, tmp_path):
    check(INGEST, row, baseline, tmp_path)
