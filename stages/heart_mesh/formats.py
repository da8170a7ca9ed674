"""MeshHeart's data layout (the official loader, ``data/dataloader.py``) and per-frame VTK meshes.

- ``mesh_train.csv`` / ``mesh_val.csv``: subject id in column ``Unnamed: 0``, then ``Age``,
  ``Sex``, ``Weight``, ``Height`` (the loader reads them with ``csv.DictReader`` and ``float``).
- ``<subid>/image_space_pipemesh/preprossed_vtk.hdf5`` (``preprossed_decimate.hdf5`` for the
  decimated meshes; the official spelling) holding ``heart_v [T, N, 3]`` float,
  ``heart_f [T, F, 3]`` and ``heart_e [T, E, 2]`` integer.
- Ours: a folder of per-frame VTK meshes, ``<subid>/vtk/*.vtk`` (legacy UNSTRUCTURED_GRID) or ``*.vtu``
  in name order, read through meshio (which does not read legacy POLYDATA: refused with that reason);
  faces come from the file, edges from the faces.

Every reader raises :class:`FormatError` naming the file and the problem.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from stages.common.atomic import atomic_path
from stages.common.io import FormatError

SPLIT_FILES = {"train": "mesh_train.csv", "val": "mesh_val.csv"}
ID_COLUMN = "Unnamed: 0"
COVARIATES = ("Age", "Sex", "Weight", "Height")
MESH_FOLDER = "image_space_pipemesh"
HDF5_NAMES = {"all": "preprossed_vtk.hdf5", "sample": "preprossed_decimate.hdf5"}
VTK_FOLDER = "vtk"
KEYS = ("heart_v", "heart_f", "heart_e")


@dataclass(frozen=True)
class MeshSequence:
    """One subject's mesh sequence: ``vertices (T, N, 3)`` float32, ``faces (F, 3)``, ``edges (E, 2)`` int64."""

    vertices: np.ndarray
    faces: np.ndarray
    edges: np.ndarray


def hdf5_path(root: Path, subject: str, surf_type: str = "all") -> Path:
    return Path(root) / subject / MESH_FOLDER / HDF5_NAMES[surf_type]


def vtk_folder(root: Path, subject: str) -> Path:
    return Path(root) / subject / VTK_FOLDER


def edges_from_faces(faces: np.ndarray) -> np.ndarray:
    """Each undirected edge of a triangle mesh once, ``(E, 2)`` with ``i < j``, sorted."""
    faces = np.asarray(faces, dtype=np.int64)
    pairs = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return np.unique(np.sort(pairs, axis=1), axis=0)


def read_covariates(path: Path) -> pd.DataFrame:
    """A split CSV as ``subject, Age, Sex, Weight, Height``; an unparseable value names its row and column."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, "file not found")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as error:
        raise FormatError(path, f"not a readable CSV ({error})") from error
    missing = [c for c in (ID_COLUMN, *COVARIATES) if c not in table.columns]
    if missing:
        raise FormatError(path, f"missing column(s) {', '.join(missing)}; present: {', '.join(table.columns)}")
    subjects = table[ID_COLUMN].str.strip()
    if (subjects == "").any():
        raise FormatError(path, f"row {int(np.flatnonzero(subjects == '')[0]) + 2}: empty subject id")
    duplicated = sorted(set(subjects[subjects.duplicated()]))
    if duplicated:
        raise FormatError(path, f"subject id(s) listed twice: {duplicated}")
    out = pd.DataFrame({"subject": subjects})
    for column in COVARIATES:
        values = pd.to_numeric(table[column].str.strip(), errors="coerce")
        bad = values.isna() | ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise FormatError(path, f"row {row + 2} (subject {subjects.iloc[row]}): {column} {table[column].iloc[row]!r} "
                                    "is not a number")
        out[column] = values.astype(float)
    return out


def write_covariates(path: Path, table: pd.DataFrame) -> Path:
    """Write ``subject, Age, Sex, Weight, Height`` with the official ``Unnamed: 0`` header."""
    renamed = table[["subject", *COVARIATES]].rename(columns={"subject": ID_COLUMN})
    with atomic_path(path) as temporary:
        renamed.to_csv(temporary, index=False)
    return Path(path)


def _check_sequence(path: Path, vertices: np.ndarray, faces: np.ndarray, edges: np.ndarray) -> None:
    if vertices.ndim != 3 or vertices.shape[-1] != 3:
        raise FormatError(path, f"heart_v must be [T, N, 3], got {list(vertices.shape)}")
    if not np.isfinite(vertices).all():
        frame, vertex = np.argwhere(~np.isfinite(vertices).all(axis=-1))[0]
        raise FormatError(path, f"heart_v has a non-finite coordinate (frame {frame}, vertex {vertex})")
    vertex_count = vertices.shape[1]
    for name, array, width in (("heart_f", faces, 3), ("heart_e", edges, 2)):
        if array.ndim != 2 or array.shape[1] != width:
            raise FormatError(path, f"{name} must be [{'F' if width == 3 else 'E'}, {width}] per frame, got {list(array.shape)}")
        if array.size and (array.min() < 0 or array.max() >= vertex_count):
            raise FormatError(path, f"{name} indexes vertex {int(array.max())} but frames have {vertex_count} vertices")


def _one_topology(path: Path, name: str, per_frame: np.ndarray) -> np.ndarray:
    """Fixed topology: every frame must carry the same faces (edges); the first frame's are returned."""
    if per_frame.ndim == 2:
        return per_frame
    if per_frame.ndim != 3:
        raise FormatError(path, f"{name} must be [T, *, *], got {list(per_frame.shape)}")
    if not (per_frame == per_frame[:1]).all():
        frame = int(np.flatnonzero((per_frame != per_frame[:1]).any(axis=(1, 2)))[0])
        raise FormatError(path, f"{name} of frame {frame} differs from frame 0 (the model needs a fixed topology)")
    return per_frame[0]


def read_hdf5_sequence(path: Path) -> MeshSequence:
    """Read ``heart_v``, ``heart_f``, ``heart_e`` as the official loader does, and check them."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, "mesh file not found")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise FormatError(path, f"not a readable HDF5 file ({error})") from error
    with handle:
        missing = [key for key in KEYS if key not in handle]
        if missing:
            raise FormatError(path, f"missing dataset(s) {', '.join(missing)}; present: {', '.join(handle.keys()) or 'none'}")
        vertices = np.asarray(handle["heart_v"], dtype=np.float32)
        faces_t = np.asarray(handle["heart_f"], dtype=np.int64)
        edges_t = np.asarray(handle["heart_e"], dtype=np.int64)
    if vertices.ndim == 3 and faces_t.ndim == 3 and faces_t.shape[0] != vertices.shape[0]:
        raise FormatError(path, f"heart_f has {faces_t.shape[0]} frames, heart_v {vertices.shape[0]}")
    faces, edges = _one_topology(path, "heart_f", faces_t), _one_topology(path, "heart_e", edges_t)
    _check_sequence(path, vertices, faces, edges)
    return MeshSequence(vertices, faces, edges)


def write_hdf5_sequence(path: Path, sequence: MeshSequence) -> Path:
    """The official layout: faces and edges repeated per frame, as the loader expects ``[T, *, *]``."""
    frames = sequence.vertices.shape[0]
    with atomic_path(path) as temporary:
        # no time stamps in the file, so equal meshes give equal bytes
        with h5py.File(temporary, "w", track_order=False) as handle:
            for key, array, dtype in (("heart_v", sequence.vertices, np.float32),
                                      ("heart_f", np.broadcast_to(sequence.faces, (frames, *sequence.faces.shape)), np.int64),
                                      ("heart_e", np.broadcast_to(sequence.edges, (frames, *sequence.edges.shape)), np.int64)):
                handle.create_dataset(key, data=np.ascontiguousarray(array, dtype=dtype), track_times=False)
    return Path(path)


def read_vtk_sequence(folder: Path) -> MeshSequence:
    """Per-frame VTK (legacy UNSTRUCTURED_GRID or XML .vtu) triangle meshes in name order, through meshio."""
    import meshio

    folder = Path(folder)
    files = sorted(p for p in folder.glob("*.vt[ku]")) if folder.is_dir() else []
    if not files:
        raise FormatError(folder, "no per-frame .vtk/.vtu mesh files found")
    frames, faces = [], None
    for file in files:
        if file.suffix == ".vtk" and b"POLYDATA" in file.read_bytes()[:512]:
            raise FormatError(file, "legacy VTK POLYDATA: meshio reads only UNSTRUCTURED_GRID legacy files and .vtu; "
                                    "convert it (e.g. pyvista: mesh.cast_to_unstructured_grid().save(...))")
        try:
            mesh = meshio.read(file)
        except (Exception, SystemExit) as error:  # meshio exits on some unsupported legacy files
            raise FormatError(file, f"not a readable VTK mesh ({error})") from error
        triangles = [block.data for block in mesh.cells if block.type == "triangle"]
        if not triangles:
            raise FormatError(file, "no triangle cells")
        frame_faces = np.concatenate(triangles).astype(np.int64)
        if faces is None:
            faces = frame_faces
        elif frame_faces.shape != faces.shape or not (frame_faces == faces).all():
            raise FormatError(file, f"faces differ from {files[0].name} (the model needs a fixed topology)")
        points = np.asarray(mesh.points, dtype=np.float32)
        if frames and points.shape != frames[0].shape:
            raise FormatError(file, f"{points.shape[0]} vertices, but {files[0].name} has {frames[0].shape[0]}")
        frames.append(points[:, :3] if points.shape[1] >= 3 else points)
    vertices = np.stack(frames)
    edges = edges_from_faces(faces)
    _check_sequence(folder, vertices, faces, edges)
    return MeshSequence(vertices, faces, edges)


def write_vtk_sequence(folder: Path, sequence: MeshSequence) -> None:
    """Write each frame as ``frame_XX.vtk`` (legacy ASCII, meshio writes an unstructured grid of triangles)."""
    import meshio

    folder.mkdir(parents=True, exist_ok=True)
    for index, points in enumerate(sequence.vertices):
        meshio.write(folder / f"frame_{index:02d}.vtk", meshio.Mesh(points, [("triangle", sequence.faces)]), binary=False)
