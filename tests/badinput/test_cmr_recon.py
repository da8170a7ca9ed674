"""cmr_recon's rows of the bad-input catalogue (issue 19 item 16).

The tiny tree follows CMRxRecon2024's public description (the challenge's README and its
``loadFun.py``/``Evaluation`` code): ``MultiCoil/<Folder>/TrainingSet/FullSample/Pxxx/<modality>.mat``,
MATLAB v7.3 files (HDF5 with a 512-byte MATLAB userblock) holding ``kspace_full`` as a
``{real, imag}`` single-precision compound, MATLAB shape ``(nx, ny, nc, nz, nt)`` so h5py reads
``(nt, nz, nc, ny, nx)``; BlackBlood has no time axis. It is written with h5py here, not by the
study's own writer.
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from stages.cmr_recon.ingest import ingest
from tests.badinput.harness import Corruption, StudyIngest, check, make_baseline

SUBJECTS = ("P001", "P002", "P003", "P004")
CINE_SHAPE = (2, 1, 2, 32, 24)        # (nt, nz, nc, ny, nx) as h5py reads MATLAB's (nx, ny, nc, nz, nt)
BLACKBLOOD_SHAPE = (1, 2, 32, 24)     # (nz, nc, ny, nx)
SINGLE = np.dtype([("real", "<f4"), ("imag", "<f4")])
MATLAB_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."


def full_sample(root: Path, subject: str, modality: str) -> Path:
    folder = {"cine_sax": "Cine", "blackblood": "BlackBlood"}[modality]
    return root / "MultiCoil" / folder / "TrainingSet" / "FullSample" / subject / f"{modality}.mat"


def write_v73(path: Path, values: np.ndarray | None = None, shape: tuple[int, ...] | None = None,
              dtype: np.dtype = SINGLE, key: str = "kspace_full", **dataset_options) -> Path:
    """A MATLAB v7.3 file: HDF5 with the 512-byte userblock MATLAB writes, the text header in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as handle:
        if values is None:
            dataset = handle.create_dataset(key, shape=shape, dtype=dtype, chunks=True, **dataset_options)
        else:
            dataset = handle.create_dataset(key, data=values, **dataset_options)
        dataset.attrs["MATLAB_class"] = np.bytes_("single")
    with open(path, "r+b") as handle:
        handle.write(MATLAB_HEADER.ljust(116) + b"\x00" * 8 + b"\x00\x02IM")
    return path


def compound(kspace: np.ndarray, dtype: np.dtype = SINGLE) -> np.ndarray:
    out = np.empty(kspace.shape, dtype)
    out["real"], out["imag"] = kspace.real, kspace.imag
    return out


def kspace_of(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)


def write_tiny_tree(root: Path) -> None:
    for index, subject in enumerate(SUBJECTS):
        write_v73(full_sample(root, subject, "cine_sax"), compound(kspace_of(CINE_SHAPE, index)))
        write_v73(full_sample(root, subject, "blackblood"), compound(kspace_of(BLACKBLOOD_SHAPE, 10 + index)))


INGEST = StudyIngest(step=ingest, source_key="cmr_recon.ingest.source", write_source=write_tiny_tree,
                     overrides={"cmr_recon.ingest.validation_subjects": 1, "cmr_recon.ingest.held_out_modalities": []},
                     id_columns=("path",))
TARGET = "P002/cine_sax.mat"


def target(root: Path) -> Path:
    return full_sample(root, "P002", "cine_sax")


def replace_kspace(values: np.ndarray | None = None, **options):
    def corrupt(root: Path) -> None:
        path = target(root)
        path.unlink()
        write_v73(path, values, **options)
    return corrupt


def with_value(value: complex, part: str = "real"):
    def corrupt(root: Path) -> None:
        kspace = compound(kspace_of(CINE_SHAPE, 1))
        kspace[part][1, 0, 1, 5, 7] = value
        replace_kspace(kspace)(root)
    return corrupt


def blackblood_with_time(root: Path) -> None:
    path = full_sample(root, "P002", "blackblood")
    path.unlink()
    write_v73(path, compound(kspace_of(CINE_SHAPE, 2)))


def truncate(root: Path) -> None:
    path = target(root)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_bytes(content: bytes):
    def corrupt(root: Path) -> None:
        target(root).write_bytes(content)
    return corrupt


def matlab_v5(root: Path) -> None:
    from scipy.io import savemat

    target(root).unlink()
    savemat(target(root), {"kspace_full": kspace_of(CINE_SHAPE, 1)})


def symlink_file_outside(root: Path) -> None:
    outside = root.parent / "elsewhere" / "cine_sax.mat"
    outside.parent.mkdir(exist_ok=True)
    os.replace(target(root), outside)
    target(root).symlink_to(outside)


def symlink_subject_outside(root: Path) -> None:
    subject = target(root).parent
    outside = root.parent / "elsewhere" / "P002"
    outside.parent.mkdir(exist_ok=True)
    os.replace(subject, outside)
    subject.symlink_to(outside, target_is_directory=True)


def dangling_symlink(root: Path) -> None:
    target(root).unlink()
    target(root).symlink_to(root / "no-such-file.mat")


def symlink_inside(root: Path) -> None:
    inside = root / "store" / "P002_cine_sax.mat"
    inside.parent.mkdir()
    os.replace(target(root), inside)
    target(root).symlink_to(inside)


def duplicate_subject(root: Path) -> None:
    copy = root / "MultiCoil" / "Cine" / "TrainingSet" / "FullSample" / "again" / "P002" / "cine_sax.mat"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(target(root).read_bytes())


def a_group_not_an_array(root: Path) -> None:
    target(root).unlink()
    with h5py.File(target(root), "w") as handle:
        handle.create_group("kspace_full").create_dataset("real", data=np.ones(4))


def unknown_modality(root: Path) -> None:
    target(root).with_name("cine_sa.mat").write_bytes(target(root).read_bytes())


def rename_subject(name: str):
    def corrupt(root: Path) -> None:
        subject = target(root).parent
        subject.rename(subject.with_name(name))
        blackblood = full_sample(root, "P002", "blackblood").parent
        blackblood.rename(blackblood.with_name(name))
    return corrupt


def remove_all(root: Path) -> None:
    for path in root.rglob("*.mat"):
        path.unlink()


def everything(corrupt_one):
    """Apply a per-file damage to every FullSample file."""
    def corrupt(root: Path) -> None:
        for path in sorted(root.rglob("*.mat")):
            corrupt_one(path)
    return corrupt


def directory_named_mat(root: Path) -> None:
    target(root).unlink()
    target(root).mkdir()


def only_undersampled(root: Path) -> None:
    remove_all(root)
    kus = root / "MultiCoil" / "Cine" / "ValidationSet" / "UnderSample_Task1" / "P001" / "cine_sax_kus_Uniform4.mat"
    write_v73(kus, compound(kspace_of(CINE_SHAPE, 3)), key="kus")


CATALOGUE = [
    Corruption("truncated .mat", truncate, "quarantined", TARGET),
    Corruption("zero-byte .mat", write_bytes(b""), "quarantined", TARGET),
    Corruption("text file named .mat", write_bytes(b"<html>not found</html>"), "quarantined", TARGET),
    Corruption("MATLAB v5 file, not v7.3", matlab_v5, "quarantined", TARGET),
    Corruption("variable kspace_full missing", replace_kspace(compound(kspace_of(CINE_SHAPE, 1)), key="kspace"),
               "quarantined", "kspace_full"),
    Corruption("kspace_full a group", a_group_not_an_array, "quarantined", TARGET),
    Corruption("real-valued k-space", replace_kspace(np.ones(CINE_SHAPE, np.float32)), "quarantined", "real-valued"),
    Corruption("compound with other fields", replace_kspace(
        np.zeros(CINE_SHAPE, np.dtype([("re", "<f4"), ("im", "<f4")]))), "quarantined", TARGET),
    Corruption("three axes", replace_kspace(compound(kspace_of((2, 32, 24), 1))), "quarantined", "axes"),
    Corruption("six axes", replace_kspace(compound(kspace_of((1, 2, 1, 2, 32, 24), 1))), "quarantined", "axes"),
    Corruption("zero-length axis", replace_kspace(shape=(2, 0, 2, 32, 24)), "quarantined", "zero-length"),
    Corruption("NaN in the real part", with_value(np.nan), "quarantined", "NaN"),
    Corruption("NaN in the imaginary part", with_value(np.nan, "imag"), "quarantined", "NaN"),
    Corruption("Inf value", with_value(np.inf), "quarantined", "Inf"),
    Corruption("all-zero k-space", replace_kspace(np.zeros(CINE_SHAPE, SINGLE)), "quarantined", "all zero"),
    Corruption("1.3 TB declared in a few KB", replace_kspace(shape=(12, 10, 10, 4000, 4000)),
               "quarantined", "max_input_bytes"),
    Corruption("8 x 8 matrix", replace_kspace(compound(kspace_of((2, 1, 2, 8, 8), 1))), "quarantined", "matrix"),
    Corruption("BlackBlood with a time axis", blackblood_with_time, "quarantined", "BlackBlood"),
    Corruption("cine without a time axis", replace_kspace(compound(kspace_of(BLACKBLOOD_SHAPE, 1))),
               "quarantined", TARGET),
    Corruption("file symlinked outside the root", symlink_file_outside, "quarantined", TARGET),
    Corruption("subject folder symlinked outside the root", symlink_subject_outside, "quarantined", TARGET),
    Corruption("dangling symlink", dangling_symlink, "quarantined", TARGET),
    Corruption("duplicate (set, subject, modality)", duplicate_subject, "quarantined", "duplicate"),
    Corruption("a folder named cine_sax.mat", directory_named_mat, "quarantined", TARGET),
    Corruption("no FullSample files at all", remove_all, "refused", "no FullSample"),
    Corruption("only undersampled files", only_undersampled, "refused", "no FullSample"),
    Corruption("every file all zero", everything(lambda path: write_v73(path, shape=CINE_SHAPE)), "refused", "all zero"),
    Corruption("every file zero bytes", everything(lambda path: path.write_bytes(b"")), "refused", ".mat"),
    Corruption("unknown modality name beside the data (listed as skipped)", unknown_modality, "accepted"),
    Corruption("symlink inside the root", symlink_inside, "accepted"),
    Corruption("unicode subject name", rename_subject("P002_Müller"), "accepted"),
    Corruption("double precision", replace_kspace(compound(kspace_of(CINE_SHAPE, 1),
                                                           np.dtype([("real", "<f8"), ("imag", "<f8")]))), "accepted"),
    Corruption("big-endian single", replace_kspace(compound(kspace_of(CINE_SHAPE, 1),
                                                            np.dtype([("real", ">f4"), ("imag", ">f4")]))), "accepted"),
    Corruption("fields stored imag first", replace_kspace(compound(kspace_of(CINE_SHAPE, 1),
                                                                   np.dtype([("imag", "<f4"), ("real", "<f4")]))), "accepted"),
    Corruption("gzip-compressed chunks", replace_kspace(compound(kspace_of(CINE_SHAPE, 1)), compression="gzip"), "accepted"),
    Corruption("the smallest allowed matrix, 16 x 16", replace_kspace(compound(kspace_of((2, 1, 2, 16, 16), 1))), "accepted"),
]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    return make_baseline(INGEST, tmp_path_factory.mktemp("cmr_recon_clean"))


def test_the_clean_tree_reads_every_file(baseline):
    assert len(baseline.manifest) == 2 * len(SUBJECTS)
    assert set(baseline.manifest["subject"]) == set(SUBJECTS)


@pytest.mark.parametrize("row", CATALOGUE, ids=lambda row: row.name)
def test_catalogue(row, baseline, tmp_path):
    check(INGEST, row, baseline, tmp_path)
