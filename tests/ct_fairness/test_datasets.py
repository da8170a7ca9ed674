"""Reading both dataset styles from NIfTI: label maps, RAS orientation, pairing metadata with files, bad cases."""
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from stages.common.badinput import BadInputError
from stages.common.io import write_nifti
from stages.ct_fairness.datasets import (
    AMOS_META,
    CaseRecord,
    list_amos,
    list_totalsegmentator,
    read_case,
    write_amos_case,
    write_totalsegmentator_case,
)
from stages.ct_fairness.organs import TOTALSEG_MERGED_DEFAULT

SHAPE = (6, 5, 4)
SPACING = (1.5, 2.0, 3.0)
STRUCTURES = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 6: "liver", 10: "pancreas"}


def anatomy(seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(-1000, 1000, SHAPE).astype(np.int16)
    amos = np.zeros(SHAPE, dtype=np.uint8)
    amos[0:2, 0:2, :] = 6       # liver
    amos[3, 1, 1:3] = 2         # right kidney
    amos[4, 3, 0] = 3           # left kidney
    amos[5, 4, 3] = 10          # pancreas
    amos[2, 4, 2] = 1           # spleen -> background
    expected = np.zeros(SHAPE, dtype=np.uint8)
    expected[amos == 6], expected[amos == 2], expected[amos == 3], expected[amos == 10] = 1, 2, 3, 4
    return image, amos, expected


def write_meta(root, ids, ages=None, sexes=None):
    rows = [{"image_id": i, "age": (ages or {}).get(i, 50), "gender": (sexes or {}).get(i, "f"), "institute": "A",
             "study_type": "ct"} for i in ids]
    pd.DataFrame(rows).to_csv(root / "meta.csv", sep=";", index=False)


def test_totalsegmentator_per_organ_and_merged_cases_read_back(tmp_path):
    image, amos, expected = anatomy()
    write_totalsegmentator_case(tmp_path, "s0001", image, amos, SPACING, STRUCTURES)
    write_nifti(tmp_path / "s0002" / "ct.nii.gz", image, spacing=SPACING)
    merged_ids = {0: 0, 6: TOTALSEG_MERGED_DEFAULT["liver"], 2: TOTALSEG_MERGED_DEFAULT["kidney_right"],
                  3: TOTALSEG_MERGED_DEFAULT["kidney_left"], 10: TOTALSEG_MERGED_DEFAULT["pancreas"], 1: 0}
    write_nifti(tmp_path / "s0002" / "label.nii.gz", np.vectorize(merged_ids.get)(amos).astype(np.uint8), spacing=SPACING)
    write_meta(tmp_path, ["s0001", "s0002"], ages={"s0002": 71}, sexes={"s0002": "m"})
    assert (tmp_path / "s0001" / "segmentations" / "spleen.nii.gz").exists()
    records, problems = list_totalsegmentator(tmp_path)
    assert problems == []
    assert [(r.case, r.label_style, str(r.age), r.sex) for r in records] == [("s0001", "per_organ", "50", "f"), ("s0002", "merged", "71", "m")]
    for record in records:
        volumes = read_case(tmp_path, record, TOTALSEG_MERGED_DEFAULT)
        assert np.array_equal(volumes.label, expected)
        assert np.array_equal(volumes.image, image.astype(np.float32))
        assert volumes.spacing == pytest.approx(SPACING)


def test_amos_case_stored_lps_comes_back_ras(tmp_path):
    image, amos, expected = anatomy(1)
    write_amos_case(tmp_path, "amos_0007", image, amos, SPACING)
    stored = nib.load(str(tmp_path / "imagesTr" / "amos_0007.nii.gz"))
    assert nib.aff2axcodes(stored.affine) == ("L", "P", "S")
    pd.DataFrame([{"amos_id": 7, "Patient's Sex": "M", "Patient's Age": "046Y"}]).to_csv(tmp_path / AMOS_META, index=False)
    records, problems = list_amos(tmp_path, 500)
    assert problems == [] and records[0].case == "amos_0007" and records[0].age == "046Y"
    volumes = read_case(tmp_path, records[0], {})
    assert np.array_equal(volumes.label, expected)
    assert np.array_equal(volumes.image, image.astype(np.float32))
    assert volumes.spacing == pytest.approx(SPACING)


def test_pairing_names_cases_without_files_or_metadata(tmp_path):
    image, amos, _ = anatomy()
    ts, am = tmp_path / "ts", tmp_path / "amos"
    for case in ("s0001", "s0004"):
        write_totalsegmentator_case(ts, case, image, amos, SPACING, STRUCTURES)
    write_nifti(ts / "s0005" / "ct.nii.gz", image, spacing=SPACING)           # no labels at all
    write_meta(ts, ["s0001", "s0003", "s0005"])
    records, problems = list_totalsegmentator(ts)
    assert [r.case for r in records] == ["s0001"]
    assert dict(problems) == {"s0003": "listed in meta.csv but has no image/label files",
                              "s0004": "has image/label files but no row in meta.csv",
                              "s0005": "has ct.nii.gz but neither segmentations/ nor label.nii.gz"}
    for case in ("amos_0001", "amos_0002", "amos_0600"):
        write_amos_case(am, case, image, amos, SPACING)
    (am / "labelsTr" / "amos_0002.nii.gz").unlink()
    pd.DataFrame([{"amos_id": i, "Patient's Sex": "F", "Patient's Age": "030Y"} for i in (1, 2, 3, 600)]).to_csv(am / AMOS_META, index=False)
    records, problems = list_amos(am, 500)
    assert [r.case for r in records] == ["amos_0001"]                           # 600 is MRI, left out
    problems = dict(problems)
    assert set(problems) == {"amos_0002", "amos_0003"}
    assert "has no label" in problems["amos_0002"] and "no image/label files" in problems["amos_0003"]


def record(case, label, style="amos"):
    return CaseRecord(case, "amos", f"imagesTr/{case}.nii.gz", label, style, "046Y", "M")


def test_bad_cases_raise_errors_naming_the_case(tmp_path):
    image, amos, _ = anatomy()
    write_nifti(tmp_path / "imagesTr" / "amos_0001.nii.gz", image, spacing=SPACING)
    write_nifti(tmp_path / "labelsTr" / "amos_0001.nii.gz", amos[:, :, :3], spacing=SPACING)
    with pytest.raises(BadInputError, match=r"amos case amos_0001: image shape \(6, 5, 4\) differs from label shape \(6, 5, 3\)"):
        read_case(tmp_path, record("amos_0001", "labelsTr/amos_0001.nii.gz"), {})

    unknown = amos.copy()
    unknown[0, 0, 0] = 17
    write_nifti(tmp_path / "imagesTr" / "amos_0002.nii.gz", image, spacing=SPACING)
    write_nifti(tmp_path / "labelsTr" / "amos_0002.nii.gz", unknown, spacing=SPACING)
    with pytest.raises(BadInputError, match=r"amos case amos_0002: unknown label value\(s\) \[17\]"):
        read_case(tmp_path, record("amos_0002", "labelsTr/amos_0002.nii.gz"), {})

    flat = nib.Nifti1Image(image, np.diag([*SPACING, 1.0]))
    flat.header["pixdim"][1:4] = [0.0, 2.0, 3.0]
    nib.save(flat, str(tmp_path / "imagesTr" / "amos_0003.nii.gz"))
    write_nifti(tmp_path / "labelsTr" / "amos_0003.nii.gz", amos, spacing=SPACING)
    with pytest.raises(BadInputError, match=r"amos case amos_0003: .*non-positive voxel spacing"):
        read_case(tmp_path, record("amos_0003", "labelsTr/amos_0003.nii.gz"), {})

    with pytest.raises(BadInputError, match="amos case amos_0004: .*file not found"):
        read_case(tmp_path, record("amos_0004", "labelsTr/amos_0004.nii.gz"), {})
    escaping = CaseRecord("amos_0005", "amos", "../../etc/passwd", "labelsTr/amos_0005.nii.gz", "amos", "046Y", "M")
    with pytest.raises(BadInputError, match="amos case amos_0005: .*outside"):
        read_case(tmp_path, escaping, {})
