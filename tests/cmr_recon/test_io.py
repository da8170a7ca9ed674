import h5py
import numpy as np
import pytest

from stages.cmr_recon.io import (
    find_full_sample_files,
    full_sample_path,
    parse_undersampled_name,
    read_kspace,
    read_mask,
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


def test_find_full_sample_files_skips_undersampled_folders(tmp_path):
    write_kspace(full_sample_path(tmp_path, "P001", "cine_sax"), random_kspace((3, 1, 2, 16, 16)))
    kus, _ = undersampled_paths(tmp_path, "P001", "cine_sax", "Uniform", 4)
    write_kspace(kus, random_kspace((3, 1, 2, 16, 16)), key="kus")
    write_kspace(tmp_path / "other" / "P009" / "T2map.mat", random_kspace((3, 1, 2, 16, 16)))
    assert [(s, m) for s, m, _ in find_full_sample_files(tmp_path)] == [("P001", "cine_sax"), ("P009", "T2map")]
