import h5py
import numpy as np
import pytest

from stages.common.io import (
    FormatError,
    read_dicom_series,
    read_mat,
    read_nifti,
    read_png,
    read_table,
    write_mat,
    write_nifti,
    write_png,
)


def test_mat_v73_round_trip_complex_and_matlab_layout(tmp_path):
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(2, 3, 4, 5)) + 1j * rng.normal(size=(2, 3, 4, 5))).astype(np.complex64)
    path = write_mat(tmp_path / "k.mat", {"kspace_full": array, "mask": np.ones((4, 5), bool)})
    header = path.read_bytes()[:128]
    assert header.startswith(b"MATLAB 7.3 MAT-file") and header[124:128] == b"\x00\x02IM"
    with h5py.File(path, "r") as handle:  # independent reader: raw HDF5 as MATLAB writes it
        raw = handle["kspace_full"]
        assert raw.dtype.names == ("real", "imag")
        assert raw.attrs["MATLAB_class"] == b"single"
        np.testing.assert_array_equal(raw["real"][()], array.real)
    back = read_mat(path, "kspace_full")
    assert back.dtype == np.complex64
    np.testing.assert_array_equal(back, array)
    assert read_mat(path, "mask").dtype == np.uint8


def test_mat_reads_a_file_written_by_plain_h5py_like_matlab(tmp_path):
    compound = np.dtype([("real", "<f8"), ("imag", "<f8")])
    data = np.zeros((3, 2), dtype=compound)
    data["real"], data["imag"] = 1.5, -2.0
    with h5py.File(tmp_path / "m.mat", "w") as handle:
        handle["kspace_full"] = data
    assert read_mat(tmp_path / "m.mat", "kspace_full")[0, 0] == 1.5 - 2j


@pytest.mark.parametrize("content, problem", [(b"not hdf5 at all", "not a readable MATLAB v7.3"), (None, "truncated|not a readable")])
def test_mat_bad_files_are_named(tmp_path, content, problem):
    path = tmp_path / "bad.mat"
    if content is None:
        write_mat(path, {"x": np.zeros((64, 64), np.float32)})
        path.write_bytes(path.read_bytes()[:700])
    else:
        path.write_bytes(content)
    with pytest.raises(FormatError, match=problem) as caught:
        read_mat(path, "x")
    assert str(path) in str(caught.value)


def test_mat_missing_variable_lists_what_is_there(tmp_path):
    write_mat(tmp_path / "m.mat", {"kus": np.zeros((2, 2), np.complex64)})
    with pytest.raises(FormatError, match=r"'kspace_full' missing \(variables present: kus\)"):
        read_mat(tmp_path / "m.mat", "kspace_full")


def test_nifti_round_trip_with_spacing(tmp_path):
    volume = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    write_nifti(tmp_path / "v.nii.gz", volume, spacing=(1.5, 0.8, 3.0))
    data, affine, spacing = read_nifti(tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(data, volume)
    assert spacing == pytest.approx((1.5, 0.8, 3.0))
    assert affine[0, 0] == pytest.approx(1.5)


def test_dicom_series_is_sorted_and_rescaled(tmp_path):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    series = generate_uid()
    for index, z in enumerate([10.0, 4.0, 7.0]):  # written out of order
        meta = FileMetaDataset()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        ds = Dataset()
        ds.file_meta = meta
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Rows, ds.Columns = 2, 3
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.ImagePositionPatient = [0.0, 0.0, z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.7, 0.9]
        ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
        ds.PixelData = np.full((2, 3), int(z), dtype=np.uint16).tobytes()
        ds.save_as(tmp_path / f"slice{index}.dcm", enforce_file_format=True)
    volume, spacing = read_dicom_series(tmp_path)
    assert volume.shape == (3, 2, 3)
    np.testing.assert_allclose(volume[:, 0, 0], [4 * 2 - 1024, 7 * 2 - 1024, 10 * 2 - 1024])
    assert spacing == pytest.approx((3.0, 0.7, 0.9))


def test_png_round_trip_and_bad_png(tmp_path):
    image = (np.arange(20).reshape(4, 5) * 10).astype(np.uint8)
    write_png(tmp_path / "a.png", image)
    np.testing.assert_array_equal(read_png(tmp_path / "a.png"), image)
    (tmp_path / "b.png").write_bytes(b"garbage")
    with pytest.raises(FormatError, match="b.png: not a readable PNG"):
        read_png(tmp_path / "b.png")


def test_table_missing_columns_are_named(tmp_path):
    (tmp_path / "t.csv").write_text("case,age\n1,40\n")
    assert list(read_table(tmp_path / "t.csv", ("case",)).columns) == ["case", "age"]
    with pytest.raises(FormatError, match="missing column\\(s\\) sex"):
        read_table(tmp_path / "t.csv", ("case", "sex"))


def test_nifti_with_non_positive_spacing_is_refused(tmp_path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.float32), np.eye(4)), str(tmp_path / "bad.nii"))
    raw = bytearray((tmp_path / "bad.nii").read_bytes())
    raw[76 + 8 : 76 + 16] = np.array([0.0, -2.0], "<f4").tobytes()  # pixdim[2], pixdim[3] in the NIfTI-1 header
    (tmp_path / "bad.nii").write_bytes(bytes(raw))
    with pytest.raises(FormatError, match=r"bad.nii: non-positive voxel spacing \(1.0, 0.0, -2.0\)"):
        read_nifti(tmp_path / "bad.nii")


# ------------------------------------------------------------------ declared sizes, empty axes, non-finite values
@pytest.fixture()
def input_limit():
    """Restore the process-wide limit after a test lowers it."""
    from stages.common import io as io_module

    before = io_module.max_input_bytes()
    yield io_module.set_max_input_bytes
    io_module.set_max_input_bytes(before)


def test_mat_declaring_a_huge_array_is_refused_before_reading(tmp_path):
    path = tmp_path / "bomb.mat"
    with h5py.File(path, "w") as handle:  # 1.3 TB declared, nothing written: the file stays a few KB
        handle.create_dataset("kspace", shape=(10, 10, 12, 10, 512, 512, 10), dtype="<c8",
                              chunks=(1, 1, 1, 1, 64, 64, 1), compression="gzip")
    assert path.stat().st_size < 100_000
    with pytest.raises(FormatError) as raised:
        read_mat(path, "kspace")
    message = str(raised.value)
    assert "bomb.mat" in message and "(10, 10, 12, 10, 512, 512, 10)" in message and "max_input_bytes" in message


def test_the_limit_comes_from_the_setting(tmp_path, input_limit):
    path = write_mat(tmp_path / "small.mat", {"kspace": np.ones((4, 8), np.complex64)})
    assert read_mat(path, "kspace").shape == (4, 8)
    input_limit(255)  # 32 complex64 values are 256 bytes
    with pytest.raises(FormatError, match=r"256 B\).*255 B"):
        read_mat(path, "kspace")


def test_mat_with_a_zero_length_axis_is_refused(tmp_path):
    path = tmp_path / "empty.mat"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("kspace", shape=(4, 0, 8), dtype="<f4")
    with pytest.raises(FormatError, match=r"empty\.mat: variable 'kspace' has a zero-length axis, shape \(4, 0, 8\)"):
        read_mat(path, "kspace")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_mat_non_finite_values_are_refused_with_their_position(tmp_path, bad):
    values = np.ones((3, 5), np.complex64)
    values[2, 1] = complex(1.0, bad)
    path = write_mat(tmp_path / "nan.mat", {"kspace": values})
    stored = read_mat(path, "kspace", finite=False)
    assert not np.isfinite(stored).all()
    bad_index = tuple(int(i) for i in np.argwhere(~np.isfinite(stored))[0])
    with pytest.raises(FormatError, match=rf"1 non-finite .* index \({bad_index[0]}, {bad_index[1]}\)"):
        read_mat(path, "kspace")


def test_nifti_declaring_a_billion_voxels_is_refused_before_reading(tmp_path):
    import nibabel as nib

    path = tmp_path / "bomb.nii"
    image = nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4))
    image.to_filename(path)
    header = nib.load(path).header.copy()
    header.set_data_shape((1000, 1000, 1000))
    with open(path, "r+b") as handle:  # keep the 4x4x4 voxels, declare 1000^3 of them
        handle.write(header.binaryblock)
    assert path.stat().st_size < 70_000
    with pytest.raises(FormatError, match=r"bomb\.nii: image declares shape \(1000, 1000, 1000\) \(7\.5 GiB\)"):
        read_nifti(path)


def test_truncated_nifti_names_the_problem(tmp_path, input_limit):
    path = write_nifti(tmp_path / "cut.nii", np.ones((16, 16, 16), np.float32))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(FormatError, match=r"cut\.nii: not a readable NIfTI file, the data may be truncated \(.+\)"):
        read_nifti(path)


def test_nifti_non_finite_voxels_are_refused(tmp_path):
    volume = np.zeros((5, 6, 7), np.float32)
    volume[1, 2, 3] = np.nan
    volume[4, 5, 6] = np.inf
    path = write_nifti(tmp_path / "ct.nii.gz", volume)
    with pytest.raises(FormatError, match=r"ct\.nii\.gz: image holds 2 non-finite .* index \(1, 2, 3\)"):
        read_nifti(path)
    assert np.isnan(read_nifti(path, finite=False)[0][1, 2, 3])


def _png_with_header_only(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [100_000, 70_000])  # past PIL's own bomb limit, and below it but over ours
def test_png_declaring_a_huge_image_is_refused(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_header_only(side, side))
    with pytest.raises(FormatError, match=r"bomb\.png"):
        read_png(path)
