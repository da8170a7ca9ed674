"""Readers of MeshHeart's layout against fixtures written from the public description, not by our writers.

The HDF5 fixture follows the official loader (MengyunQ/MeshHeart data/dataloader.py: ``heart_v``
``[T, N, 3]``, ``heart_f`` ``[T, F, 3]``, ``heart_e`` ``[T, E, 2]`` read with ``np.array(f[key])``);
the CSV follows its ``csv.DictReader`` columns; the VTK fixture is a legacy ASCII UNSTRUCTURED_GRID of triangles (cell type 5)
typed by hand from the VTK file-format specification.
"""
import csv

import h5py
import numpy as np
import pytest
import trimesh

from stages.common.io import FormatError
from stages.heart_mesh.formats import (
    MeshSequence,
    edges_from_faces,
    read_covariates,
    read_hdf5_sequence,
    read_vtk_sequence,
    write_hdf5_sequence,
)

TETRA_V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
TETRA_F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])


def official_hdf5(path, vertices, faces, edges, **drop):
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = len(vertices)
    with h5py.File(path, "w") as f:
        for key, value in (("heart_v", vertices), ("heart_f", np.repeat(faces[None], frames, 0)),
                           ("heart_e", np.repeat(edges[None], frames, 0))):
            if key not in drop:
                f.create_dataset(key, data=value)


def test_hdf5_reader_matches_the_official_loader(tmp_path):
    vertices = np.stack([TETRA_V * (1 + 0.1 * t) for t in range(3)])
    edges = np.array(trimesh.Trimesh(TETRA_V, TETRA_F).edges_unique)
    path = tmp_path / "1/image_space_pipemesh/preprossed_vtk.hdf5"
    official_hdf5(path, vertices, TETRA_F, edges)
    sequence = read_hdf5_sequence(path)
    with h5py.File(path, "r") as f:  # what the official loader hands the model
        official = [np.array(f[k]) for k in ("heart_v", "heart_f", "heart_e")]
    np.testing.assert_array_equal(sequence.vertices, official[0])
    np.testing.assert_array_equal(sequence.faces, official[1][0])
    np.testing.assert_array_equal(sequence.edges, official[2][0])


def test_hdf5_writer_round_trips_and_is_byte_stable(tmp_path):
    sequence = MeshSequence(np.stack([TETRA_V, TETRA_V * 2]), TETRA_F, edges_from_faces(TETRA_F))
    first, second = write_hdf5_sequence(tmp_path / "a.hdf5", sequence), write_hdf5_sequence(tmp_path / "b.hdf5", sequence)
    assert first.read_bytes() == second.read_bytes()
    with h5py.File(first, "r") as f:
        assert f["heart_f"].shape == (2, 4, 3) and f["heart_e"].shape == (2, 6, 2)


@pytest.mark.parametrize("problem, match", [
    ("missing", "missing dataset.*heart_e"),
    ("nan", "non-finite coordinate \\(frame 1, vertex 2\\)"),
    ("index", "heart_f indexes vertex 7 but frames have 4 vertices"),
    ("frames", "heart_f of frame 1 differs"),
])
def test_hdf5_problems_name_the_file_and_the_problem(tmp_path, problem, match):
    vertices, faces = np.stack([TETRA_V, TETRA_V]), TETRA_F.copy()
    edges = edges_from_faces(TETRA_F)
    path = tmp_path / "bad.hdf5"
    if problem == "nan":
        vertices[1, 2, 0] = np.nan
    if problem == "index":
        faces[0, 0] = 7
    if problem == "frames":
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as f:
            f["heart_v"], f["heart_e"] = vertices, np.repeat(edges[None], 2, 0)
            f["heart_f"] = np.stack([faces, faces[::-1]])
    else:
        official_hdf5(path, vertices, faces, edges, **({"heart_e": 1} if problem == "missing" else {}))
    with pytest.raises(FormatError, match=match) as raised:
        read_hdf5_sequence(path)
    assert "bad.hdf5" in str(raised.value)


def test_edges_from_faces_match_trimesh():
    sphere = trimesh.creation.icosphere(subdivisions=1)
    np.testing.assert_array_equal(edges_from_faces(sphere.faces), np.unique(np.sort(sphere.edges_unique, axis=1), axis=0))


def test_csv_reader_reads_the_official_columns(tmp_path):
    path = tmp_path / "mesh_train.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["Unnamed: 0", "Age", "Sex", "Weight", "Height"])
        writer.writeheader()
        writer.writerow({"Unnamed: 0": "1000123", "Age": "63", "Sex": "1", "Weight": "80.4", "Height": "178"})
        writer.writerow({"Unnamed: 0": "0012", "Age": "51.5", "Sex": "0.0", "Weight": "61", "Height": "160.2"})
    table = read_covariates(path)
    assert list(table.subject) == ["1000123", "0012"]  # ids stay strings (leading zeros kept)
    assert table.loc[0, ["Age", "Sex", "Weight", "Height"]].tolist() == [63.0, 1.0, 80.4, 178.0]


def test_unparseable_covariate_names_row_subject_and_column(tmp_path):
    path = tmp_path / "mesh_val.csv"
    path.write_text("Unnamed: 0,Age,Sex,Weight,Height\n5,60,1,80,170\n6,sixty,0,70,165\n")
    with pytest.raises(FormatError, match=r"mesh_val.csv: row 3 \(subject 6\): Age 'sixty' is not a number"):
        read_covariates(path)


LEGACY_VTK = """# vtk DataFile Version 3.0
frame {t}
ASCII
DATASET UNSTRUCTURED_GRID
POINTS 4 float
0 0 0
{s} 0 0
0 {s} 0
0 0 {s}
CELLS 4 16
3 0 2 1
3 0 1 3
3 0 3 2
3 1 2 3
CELL_TYPES 4
5
5
5
5
"""


def test_vtk_folder_reader_reads_hand_written_legacy_files(tmp_path):
    folder = tmp_path / "1/vtk"
    folder.mkdir(parents=True)
    for t, scale in enumerate((1.0, 0.8, 0.9)):
        (folder / f"frame_{t:02d}.vtk").write_text(LEGACY_VTK.format(t=t, s=scale))
    sequence = read_vtk_sequence(folder)
    assert sequence.vertices.shape == (3, 4, 3)
    np.testing.assert_allclose(sequence.vertices[1], TETRA_V * 0.8)
    np.testing.assert_array_equal(sequence.faces, TETRA_F)
    assert len(sequence.edges) == 6
    (folder / "frame_03.vtk").write_text(LEGACY_VTK.format(t=3, s=1).replace("3 1 2 3", "3 1 3 2"))
    with pytest.raises(FormatError, match="frame_03.vtk: faces differ"):
        read_vtk_sequence(folder)


def test_legacy_polydata_is_refused_with_the_reason(tmp_path):
    folder = tmp_path / "vtk"
    folder.mkdir()
    text = LEGACY_VTK.format(t=0, s=1).replace("UNSTRUCTURED_GRID", "POLYDATA").replace("CELLS", "POLYGONS")
    (folder / "frame_00.vtk").write_text(text.split("CELL_TYPES")[0])
    with pytest.raises(FormatError, match="frame_00.vtk: legacy VTK POLYDATA"):
        read_vtk_sequence(folder)
