"""Readers of the official TIP layout, against fixtures written as the official loaders describe the files.

The fixtures follow siyi-wind/TIP at commit b0fe25d (datasets/ImagingAndTabularDataset.py,
configs/dataset/*.yaml): ``torch.save`` of a list of absolute image paths and of the labels, a
headerless CSV parsed with ``float()`` per cell, ``field_lengths`` a saved list, cardiac images
read as ``np.load(path[:-4] + '.npy')`` (HWC in [0, 1]), DVM PNGs as ``read_image(path) / 255``.
"""
import csv

import numpy as np
import pytest
import torch
from PIL import Image

from stages.common.badinput import BadInputError
from stages.common.io import FormatError
from stages.tab_image import io


def official_parse(path):
    """ImagingAndTabularDataset.read_and_parse_csv."""
    with open(path) as handle:
        return [[float(c) for c in row] for row in csv.reader(handle)]


@pytest.fixture()
def cardiac_folder(tmp_path):
    rng = np.random.default_rng(3)
    lengths = [3, 2, 1, 1]
    torch.save(torch.tensor(lengths), tmp_path / "tabular_lengths_reordered.pt")  # a tensor, not a list
    rows = [[2.0, 0.0, -0.25, 1.5], [0.0, 1.0, 0.125, -2.0]]
    with open(tmp_path / "cardiac_features_train.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    paths = []
    for index in range(2):
        image = rng.random((10, 10, 3)).astype(np.float32)
        np.save(tmp_path / f"sub{index}.npy", image)
        paths.append(str(tmp_path / f"sub{index}.png"))  # the list names .png; the loader reads .npy
    torch.save(paths, tmp_path / "cardiac_train_paths_imaging.pt")
    torch.save(torch.tensor([1, 0]), tmp_path / "cardiac_labels_CAD_train.pt")
    return tmp_path, rows, lengths


def test_official_cardiac_files_read_as_the_loader_reads_them(cardiac_folder):
    folder, rows, lengths = cardiac_folder
    field_lengths = io.read_field_lengths(folder / "tabular_lengths_reordered.pt")
    assert field_lengths.tolist() == lengths
    cells = io.read_table_rows(folder / "cardiac_features_train.csv")
    parsed = np.stack([io.parse_row(r, field_lengths, folder, i) for i, r in enumerate(cells)])
    assert np.array_equal(parsed, np.array(official_parse(folder / "cardiac_features_train.csv")))
    assert io.read_labels(folder / "cardiac_labels_CAD_train.pt").tolist() == [1, 0]
    listed = io.read_image_paths(folder / "cardiac_train_paths_imaging.pt")
    image = io.read_image(io.image_file(folder, listed[1], "npy"), "npy", npy_max=1.0)
    reference = torch.from_numpy(np.load(listed[1][:-4] + ".npy")).float().permute(2, 0, 1).numpy()  # convert_to_ts_01
    assert image.shape == (3, 10, 10) and np.allclose(image, reference)


def test_dvm_png_reads_as_read_image_over_255(tmp_path):
    pixels = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3) * 4
    Image.fromarray(pixels).save(tmp_path / "car.png")
    image = io.read_image(tmp_path / "car.png", "png", npy_max=255)
    assert image.shape == (3, 4, 5) and np.allclose(image, np.transpose(pixels, (2, 0, 1)) / 255.0)
    np.save(tmp_path / "car.npy", pixels.astype(np.float32) * 2)  # DVM arrays: clip to 0..255, then / 255
    assert np.allclose(io.read_image(tmp_path / "car.npy", "npy", 255), np.clip(np.transpose(pixels, (2, 0, 1)) * 2.0, 0, 255) / 255)


def test_writers_round_trip_through_the_readers(tmp_path):
    lengths = np.array([4, 1, 1])
    table = np.array([[3.0, 0.1234567, -5.5], [0.0, 2.0, 1e-3]])
    io.write_table_csv(tmp_path / "t.csv", table, lengths)
    assert (tmp_path / "t.csv").read_text().splitlines()[0] == "3.0,0.123457,-5.5"
    back = np.stack([io.parse_row(r, lengths, tmp_path, i) for i, r in enumerate(io.read_table_rows(tmp_path / "t.csv"))])
    assert np.allclose(back, table, rtol=1e-5)


@pytest.mark.parametrize("cells, message", [
    (["3.0", "0.0", "0.1", "0.2"], "row 7, column 0: category code '3.0' is outside 0..2"),
    (["1.5", "0.0", "0.1", "0.2"], "row 7, column 0: category code"),
    (["1.0", "0.0", "abc", "0.2"], "row 7, column 2: 'abc' is not a number"),
    (["1.0", "0.0", "nan", "0.2"], "row 7, column 2: 'nan' is not a finite number"),
    (["1.0", "0.0", "0.1"], "row 7: 3 columns, field_lengths has 4"),
])
def test_bad_cells_name_the_file_row_and_column(cells, message, tmp_path):
    with pytest.raises(BadInputError, match=message.replace("(", r"\(").replace(".", r"\.")):
        io.parse_row(cells, np.array([3, 2, 1, 1]), tmp_path / "t.csv", 7)


def test_bad_field_lengths_and_missing_files_are_format_errors(tmp_path):
    torch.save([1, 3, 2], tmp_path / "lengths.pt")
    with pytest.raises(FormatError, match="categorical columns .* must come first"):
        io.read_field_lengths(tmp_path / "lengths.pt")
    (tmp_path / "junk.pt").write_bytes(b"not torch")
    with pytest.raises(FormatError, match="junk.pt: not a readable torch.save file"):
        io.read_labels(tmp_path / "junk.pt")
    with pytest.raises(FormatError, match="missing.npy: file not found"):
        io.read_image(tmp_path / "missing.npy", "npy", 1.0)
