import h5py
import numpy as np
import pytest

from stages.cmr_recon.io import (
    find_full_sample_files,
    full_sample_path,
    parse_undersampled_name,
    read_kspace,
    read_mask,
    scan_kspace,
    undersampled_paths,
    write_kspace,
    write_mask,
)
from stages.common.io import FormatError


def random_kspace(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)


def test_round_trip_in_matlab_layout(tmp_path):
    kspace = random_kspace((3, 2, 4, 10, 12))
    path = write_kspace(tmp_path / "cine_sax.mat", kspace)
    with h5py.File(path, "r") as handle:  # h5py order: reversed MATLAB (nx, ny, nc, nz, nt)
        assert handle["kspace_full"].shape == (3, 2, 4, 10, 12)
        assert handle["kspace_full"].dtype.names == ("real", "imag")
    np.testing.assert_array_equal(read_kspace(path), kspace)


def test_blackblood_without_time_axis_and_compressed_kus(tmp_path):
    kspace = random_kspace((2, 4, 10, 12))
    kspace[..., ::2] = 0
    path = write_kspace(tmp_path / "blackblood_kus_Uniform4.mat", kspace, key="kus")
    with h5py.File(path, "r") as handle:
        assert handle["kus"].compression == "gzip"
    np.testing.assert_array_equal(read_kspace(path, key="kus"), kspace)


@pytest.mark.parametrize("array, problem", [
    (np.zeros((2, 3, 4, 5, 6), np.float32), "real-valued"),
    (np.zeros((3, 4, 5), np.complex64), "3 axes"),
    (np.full((1, 1, 2, 4, 4), np.nan, np.complex64), "NaN or Inf"),
])
def test_bad_arrays_are_named(tmp_path, array, problem):
    from stages.common.io import write_mat

    path = write_mat(tmp_path / "bad.mat", {"kspace_full": array})
    with pytest.raises(FormatError, match=problem) as caught:
        read_kspace(path)
    assert "bad.mat" in str(caught.value)


def test_truncated_and_non_hdf5_files(tmp_path):
    path = write_kspace(tmp_path / "t.mat", random_kspace((3, 1, 2, 32, 32)))
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(FormatError, match="t.mat"):
        read_kspace(path)
    (tmp_path / "text.mat").write_text("MATLAB 5.0 MAT-file")
    with pytest.raises(FormatError, match="not a readable MATLAB v7.3"):
        read_kspace(tmp_path / "text.mat")


def test_mask_must_fit_its_kspace(tmp_path):
    mask = np.zeros((3, 10, 12), bool)
    mask[:, :, ::2] = True
    path = write_mask(tmp_path / "m.mat", mask)
    np.testing.assert_array_equal(read_mask(path, (3, 2, 4, 10, 12)), mask)
    with pytest.raises(FormatError, match=r"does not fit k-space"):
        read_mask(path, (3, 2, 4, 10, 14))


def test_challenge_naming(tmp_path):
    assert full_sample_path(tmp_path, "P001", "T1map").relative_to(tmp_path).as_posix() == "MultiCoil/Mapping/TrainingSet/FullSample/P001/T1map.mat"
    kus, mask = undersampled_paths(tmp_path, "P002", "cine_sax", "ktGaussian", 8)
    assert kus.relative_to(tmp_path).as_posix() == "MultiCoil/Cine/ValidationSet/UnderSample_Task2/P002/cine_sax_kus_ktGaussian8.mat"
    assert mask.name == "cine_sax_mask_ktGaussian8.mat" and "Mask_Task2" in mask.parts
    assert undersampled_paths(tmp_path, "P002", "cine_sax", "Uniform", 4)[0].parent.parent.name == "UnderSample_Task1"
    assert parse_undersampled_name("cine_lax_kus_Uniform10.mat") == {"modality": "cine_lax", "kind": "kus", "pattern": "Uniform", "acceleration": 10}
    assert parse_undersampled_name("cine_lax.mat") is None


def test_find_full_sample_files_keys_subjects_by_set_and_lists_unknown_modalities(tmp_path):
    write_kspace(full_sample_path(tmp_path, "P001", "cine_sax"), random_kspace((3, 1, 2, 16, 16)))
    write_kspace(full_sample_path(tmp_path, "P001", "cine_sax", dataset_set="ValidationSet"), random_kspace((3, 1, 2, 16, 16)))
    kus, _ = undersampled_paths(tmp_path, "P001", "cine_sax", "Uniform", 4)
    write_kspace(kus, random_kspace((3, 1, 2, 16, 16)), key="kus")
    write_kspace(tmp_path / "other" / "P009" / "T2map.mat", random_kspace((3, 1, 2, 16, 16)))
    write_kspace(tmp_path / "other" / "P009" / "lge.mat", random_kspace((3, 1, 2, 16, 16)))
    listing = find_full_sample_files(tmp_path)
    assert [(f.subject_key, f.modality) for f in listing.files] == [
        ("TrainingSet/P001", "cine_sax"), ("ValidationSet/P001", "cine_sax"), ("P009", "T2map")]
    assert [entry["path"] for entry in listing.skipped] == ["other/P009/lge.mat"]
    assert "unknown modality name 'lge'" in listing.skipped[0]["reason"]
    assert listing.undersampled == [kus]


def test_find_full_sample_files_follows_symlinked_folders_so_the_reader_sees_them(tmp_path):
    outside = tmp_path / "outside" / "P007"
    write_kspace(outside / "cine_sax.mat", random_kspace((3, 1, 2, 16, 16)))
    root = tmp_path / "root"
    root.mkdir()
    (root / "P007").symlink_to(outside, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)  # a loop ends
    listing = find_full_sample_files(root)
    assert [(f.subject, f.modality) for f in listing.files] == [("P007", "cine_sax")]


def write_compound(path, shape, fill=None):
    """A v7.3-style file declaring ``shape`` (h5py order) with a real/imag compound, chunked and sparse."""
    dtype = np.dtype([("real", "<f4"), ("imag", "<f4")])
    with h5py.File(path, "w") as handle:
        dataset = handle.create_dataset("kspace_full", shape=shape, dtype=dtype, chunks=True)
        if fill is not None:
            dataset[...] = fill
    return path


def test_scan_kspace_matches_the_full_read_and_refuses_by_name(tmp_path, monkeypatch):
    kspace = random_kspace((3, 2, 4, 16, 20), seed=3)
    path = write_kspace(tmp_path / "cine_sax.mat", kspace)
    summary = scan_kspace(path)
    assert summary.shape == (3, 2, 4, 16, 20)
    assert summary.max_abs == pytest.approx(float(np.abs(kspace.astype(np.complex128)).max()), rel=1e-6)
    bomb = write_compound(tmp_path / "bomb.mat", (12, 10, 10, 4000, 4000))  # 1.2 TB declared, a few KB on disk
    assert bomb.stat().st_size < 100_000
    with pytest.raises(FormatError, match=r"bomb.mat.*\(12, 10, 10, 4000, 4000\).*max_input_bytes"):
        scan_kspace(bomb)
    monkeypatch.setattr("stages.common.io._max_input_bytes", 1000)
    with pytest.raises(FormatError, match="over the limit"):
        scan_kspace(path)
    monkeypatch.undo()
    with pytest.raises(FormatError, match=r"empty.mat.*zero-length axis"):
        scan_kspace(write_compound(tmp_path / "empty.mat", (3, 0, 4, 16, 16)))
    zeros = np.zeros((2, 1, 2, 16, 16), np.complex64)
    with pytest.raises(FormatError, match=r"zeros.mat.*all zero"):
        scan_kspace(write_kspace(tmp_path / "zeros.mat", zeros))
    bad = kspace.copy()
    bad[2, 1, 0, 3, 3] = np.inf
    with pytest.raises(FormatError, match=r"inf.mat.*1 NaN or Inf"):
        scan_kspace(write_kspace(tmp_path / "inf.mat", bad))
    from stages.common.io import write_mat

    with pytest.raises(FormatError, match="real-valued"):
        scan_kspace(write_mat(tmp_path / "real.mat", {"kspace_full": np.ones((2, 1, 2, 16, 16), np.float32)}))


def test_read_kspace_refuses_a_zero_length_axis(tmp_path):
    with pytest.raises(FormatError, match=r"e.mat.*zero-length axis"):
        read_kspace(write_compound(tmp_path / "e.mat", (3, 1, 0, 16, 16)))
