"""The list reader against fixtures built from the official format (not from our generator).

Format facts from JianghaoWu/SAM-TTA: ``data/BraTS_PED_t2f_2D/test.csv`` has the header
``image,label`` and rows ``image/BraTS-PED-00117-000-t2f_0075.nii.gz,mask/BraTS-PED-...``
relative to the dataset root; ``datasets/NII_test.py`` reads 2-D NIfTI slices (a 3-D one keeps
``image[0]``), min-max normalises the image and splits the mask into its distinct non-zero values.
Polyp sets (CVC-ColonDB, Kvasir-SEG) ship RGB images and 0/255 masks, often saved as RGB.
"""
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from stages.common.badinput import BadInputError
from stages.sam_tta.formats import read_list, read_slice

CASE = "BraTS-PED-00117-000-t2f_0075.nii.gz"


def official_nifti_dataset(root: Path, image: np.ndarray, mask: np.ndarray, name: str = CASE) -> Path:
    (root / "image").mkdir(parents=True, exist_ok=True)
    (root / "mask").mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image, np.eye(4)), str(root / "image" / name))
    nib.save(nib.Nifti1Image(mask, np.eye(4)), str(root / "mask" / name))
    csv = root / "test.csv"
    csv.write_text(f"image,label\nimage/{name},mask/{name}\n")
    return csv


def test_brats_like_list_reads_as_the_official_loader(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.uniform(20, 900, (48, 40)).astype(np.float32)   # raw MR intensities
    mask = np.zeros((48, 40), np.float64)
    mask[10:20, 5:15] = 1.0
    mask[30:40, 20:30] = 2.0                                     # two instances
    csv = official_nifti_dataset(tmp_path, image, mask)
    (row,) = read_list(csv)
    case = read_slice(row, csv, require_foreground=True)
    expected = (image - image.min()) / (image.max() - image.min())
    np.testing.assert_allclose(case.image[0], expected, rtol=1e-6, atol=1e-6)
    assert case.image.shape == (1, 48, 40)
    assert sorted(np.unique(case.labels)) == [0, 1, 2]
    np.testing.assert_array_equal(case.labels == 1, mask == 1.0)


def test_three_d_slice_keeps_its_first_plane(tmp_path):
    volume = np.stack([np.arange(30 * 20, dtype=np.float32).reshape(30, 20), np.zeros((30, 20), np.float32)])
    mask = np.zeros((30, 20), np.uint8)
    mask[3:6, 3:6] = 1
    csv = official_nifti_dataset(tmp_path, volume, mask)
    case = read_slice(read_list(csv)[0], csv, require_foreground=True)
    np.testing.assert_allclose(case.image[0], volume[0] / volume[0].max(), atol=1e-6)


def test_polyp_png_with_rgb_mask(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rgb = rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)
    truth = np.zeros((36, 44), bool)
    truth[8:20, 10:30] = True
    mask = np.where(truth[..., None], 255, 0).astype(np.uint8).repeat(3, axis=-1)
    mask[7, 10:30] = 90                                          # anti-aliased edge below half: background
    Image.fromarray(rgb).save(tmp_path / "images" / "1.png")
    Image.fromarray(mask).save(tmp_path / "masks" / "1.png")
    csv = tmp_path / "list.csv"
    csv.write_text("image_path,mask_path\nimages/1.png,masks/1.png\n")
    case = read_slice(read_list(csv)[0], csv, require_foreground=True)
    assert case.image.shape == (3, 36, 44)
    np.testing.assert_allclose(case.image, (rgb.transpose(2, 0, 1) - rgb.min()) / (rgb.max() - rgb.min()), atol=1e-6)
    np.testing.assert_array_equal(case.labels.astype(bool), truth)


@pytest.mark.parametrize("problem, build, message", [
    ("shape", lambda r: official_nifti_dataset(r, np.ones((8, 8), np.float32) * np.arange(8), np.ones((8, 9), np.uint8)),
     "but mask"),
    ("empty", lambda r: official_nifti_dataset(r, np.arange(64, dtype=np.float32).reshape(8, 8), np.zeros((8, 8), np.uint8)),
     "no foreground"),
    ("nan", lambda r: official_nifti_dataset(r, np.where(np.eye(8) > 0, np.nan, 1.0).astype(np.float32), np.eye(8, dtype=np.uint8)),
     "NaN/Inf"),
    ("channels", lambda r: official_nifti_dataset(r, np.random.default_rng(0).random((4, 16, 16)).astype(np.float32).transpose(1, 2, 0),
                                                  np.eye(16, dtype=np.uint8)), "channels"),
])
def test_bad_rows_name_the_row_and_the_file(tmp_path, problem, build, message):
    csv = build(tmp_path)
    with pytest.raises(BadInputError, match=message) as error:
        read_slice(read_list(csv)[0], csv, require_foreground=True)
    assert "row 1" in str(error.value) and str(csv) in str(error.value)


def test_missing_file_is_named(tmp_path):
    csv = tmp_path / "test.csv"
    csv.write_text(f"image,label\nimage/{CASE},mask/{CASE}\n")
    with pytest.raises(BadInputError, match=f"row 1: .*image/{CASE} does not exist"):
        read_slice(read_list(csv)[0], csv, require_foreground=True)
