"""The three layout readers against fixtures written with nibabel from the layouts' public descriptions, and bad input."""
import json

import numpy as np
import pytest

from stages.common.badinput import BadInputError
from stages.ms_lesion.layouts import find_cases, load_case
from tests.ms_lesion.cases import longitudinal_fixture, msseg2_fixture, nnunet_fixture, save


def test_nnunet_dataset_reads_as_one_scan_fed_twice(tmp_path):
    cases = find_cases(nnunet_fixture(tmp_path, 2), "nnunet", "crosssectional")
    assert [c.subject for c in cases] == ["MS_000", "MS_001"] and not cases[0].longitudinal
    loaded = load_case(cases[0])
    assert loaded.scans.shape == (2, 12, 12, 10) and np.array_equal(loaded.scans[0], loaded.scans[1])
    assert loaded.labels["all_t1"].sum() == 27 and np.array_equal(loaded.labels["all_t1"], loaded.labels["all_t2"])
    assert not loaded.labels["new"].any() and not loaded.labels["vanishing"].any()


def test_nnunet_dataset_json_must_match(tmp_path):
    root = nnunet_fixture(tmp_path, 2)
    info = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**info, "numTraining": 3}))
    with pytest.raises(BadInputError, match="numTraining is 3 but 2"):
        find_cases(root, "nnunet", "crosssectional")
    (root / "dataset.json").write_text(json.dumps({k: v for k, v in info.items() if k != "file_ending"}))
    with pytest.raises(BadInputError, match="file_ending"):
        find_cases(root, "nnunet", "crosssectional")


@pytest.mark.parametrize("coregistered", [True, False])
def test_msseg2_subjects_have_two_scans_and_a_new_lesion_label(tmp_path, coregistered):
    cases = find_cases(msseg2_fixture(tmp_path, 2, coregistered), "msseg2", "msseg2")
    assert [c.subject for c in cases] == ["013", "014"] and cases[0].longitudinal
    assert (cases[0].brain_mask is not None) == coregistered
    loaded = load_case(cases[0])
    assert set(loaded.labels) == {"new"} and loaded.labels["new"].sum() == 27
    assert loaded.spacing == pytest.approx((0.5, 0.75, 0.75))


def test_longitudinal_tree_derives_new_and_vanishing(tmp_path):
    loaded = load_case(find_cases(longitudinal_fixture(tmp_path, 1), "longitudinal", "longitudinal")[0])
    assert loaded.labels["new"].sum() == 27 and loaded.labels["vanishing"].sum() == 27
    assert not (loaded.labels["new"] & loaded.labels["all_t1"]).any()
    assert not (loaded.labels["vanishing"] & loaded.labels["all_t2"]).any()


def test_time_points_of_different_shapes(tmp_path):
    root = msseg2_fixture(tmp_path, 1)
    save(root / "013" / "flair_time02_on_middle_space.nii.gz", np.zeros((12, 12, 9), np.float32), (0.5, 0.75, 0.75))
    with pytest.raises(BadInputError, match=r"subject 013: .*flair_time02_on_middle_space.nii.gz: shape \(12, 12, 9\) differs"):
        load_case(find_cases(root, "msseg2", "msseg2")[0])


def test_time_points_of_different_spacings(tmp_path):
    root = longitudinal_fixture(tmp_path, 1)
    save(root / "sub0" / "time02" / "flair.nii.gz", np.zeros((12, 12, 10), np.float32), (1.0, 1.0, 2.0))
    with pytest.raises(BadInputError, match="subject sub0: .*time02/flair.nii.gz: spacing"):
        load_case(find_cases(root, "longitudinal", "longitudinal")[0])


def test_label_values_outside_zero_one(tmp_path):
    root = nnunet_fixture(tmp_path, 1)
    save(root / "labelsTr" / "MS_000.nii.gz", np.full((12, 12, 10), 2, np.uint8))
    with pytest.raises(BadInputError, match=r"subject MS_000: .*MS_000.nii.gz: label values outside \{0, 1\}: \[2\]"):
        load_case(find_cases(root, "nnunet", "crosssectional")[0])


def test_missing_time_point(tmp_path):
    root = msseg2_fixture(tmp_path, 1)
    (root / "013" / "flair_time02_on_middle_space.nii.gz").unlink()
    with pytest.raises(BadInputError, match="subject 013: .*flair_time02_on_middle_space.nii.gz: time point .* missing"):
        find_cases(root, "msseg2", "msseg2")
    tree = longitudinal_fixture(tmp_path / "tree", 1)
    for file in (tree / "sub0" / "time02").iterdir():
        file.unlink()
    (tree / "sub0" / "time02").rmdir()
    with pytest.raises(BadInputError, match="subject sub0: .*1 time point folder"):
        find_cases(tree, "longitudinal", "longitudinal")


def test_label_without_its_image(tmp_path):
    root = nnunet_fixture(tmp_path, 1)
    save(root / "labelsTr" / "MS_009.nii.gz", np.zeros((12, 12, 10), np.uint8))
    with pytest.raises(BadInputError, match="subject MS_009: .*a label map without its image"):
        find_cases(root, "nnunet", "crosssectional")
    tree = longitudinal_fixture(tmp_path / "tree", 1)
    (tree / "sub0" / "time01" / "flair.nii.gz").unlink()
    with pytest.raises(BadInputError, match="subject sub0: .*time01/lesions.nii.gz: a label map without its image"):
        find_cases(tree, "longitudinal", "longitudinal")


def test_nan_intensities(tmp_path):
    root = longitudinal_fixture(tmp_path, 1)
    image = np.zeros((12, 12, 10), np.float32)
    image[3, 3, 3] = np.nan
    save(root / "sub0" / "time01" / "flair.nii.gz", image)
    with pytest.raises(BadInputError, match="subject sub0: .*time01/flair.nii.gz: 1 NaN or infinite"):
        load_case(find_cases(root, "longitudinal", "longitudinal")[0])
