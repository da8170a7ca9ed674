"""Reading a MeshHeart data root: split CSVs, per-subject mesh files, optional phenotypes, one topology."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stages.common.badinput import BadInputError
from stages.common.io import FormatError
from stages.heart_mesh.formats import (
    ID_COLUMN,
    MESH_FOLDER,
    SPLIT_FILES,
    VTK_FOLDER,
    MeshSequence,
    hdf5_path,
    read_covariates,
    read_hdf5_sequence,
    read_vtk_sequence,
    vtk_folder,
)

PHENOTYPES_FILE = "phenotypes.csv"  # ours: optional, id column "Unnamed: 0", numeric columns (disease, deviation, ...)


def mesh_location(root: Path, subject: str, mesh_format: str, surf_type: str) -> Path:
    return hdf5_path(root, subject, surf_type) if mesh_format == "hdf5" else vtk_folder(root, subject)


def read_sequence(root: Path, subject: str, mesh_format: str, surf_type: str) -> MeshSequence:
    """One subject's sequence; any problem is a BadInputError naming the subject and the file."""
    location = mesh_location(root, subject, mesh_format, surf_type)
    try:
        return read_hdf5_sequence(location) if mesh_format == "hdf5" else read_vtk_sequence(location)
    except FormatError as error:
        raise BadInputError(f"subject {subject}: {error}") from error


def read_splits(root: Path) -> pd.DataFrame:
    """Both split CSVs, one row per subject with its split; a subject in both is an error."""
    tables = []
    for split, name in SPLIT_FILES.items():
        table = read_covariates(Path(root) / name)
        tables.append(table.assign(split=split))
    cohort = pd.concat(tables, ignore_index=True)
    twice = sorted(set(cohort.subject[cohort.subject.duplicated()]))
    if twice:
        raise BadInputError(f"{root}: subject(s) {twice} are in both {SPLIT_FILES['train']} and {SPLIT_FILES['val']}")
    return cohort


def subjects_with_meshes(root: Path, mesh_format: str) -> list[str]:
    """Subject folders that hold a mesh folder of the chosen format."""
    inner = MESH_FOLDER if mesh_format == "hdf5" else VTK_FOLDER
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and (p / inner).is_dir())


def read_phenotypes(root: Path) -> pd.DataFrame | None:
    """``phenotypes.csv`` beside the split CSVs, if present: ``subject`` plus numeric columns."""
    path = Path(root) / PHENOTYPES_FILE
    if not path.exists():
        return None
    table = pd.read_csv(path, dtype={ID_COLUMN: str})
    if ID_COLUMN not in table.columns:
        raise FormatError(path, f"missing column {ID_COLUMN}")
    table = table.rename(columns={ID_COLUMN: "subject"})
    for column in table.columns.drop(["subject", "disease_kind"], errors="ignore"):
        values = pd.to_numeric(table[column], errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise FormatError(path, f"row {row + 2} (subject {table.subject.iloc[row]}): {column} is not a number")
        table[column] = values
    return table


@dataclass(frozen=True)
class Topology:
    faces: np.ndarray
    edges: np.ndarray
    component: np.ndarray  # (N,) connected component of each vertex, numbered by first vertex

    def component_faces(self, index: int) -> np.ndarray:
        """Faces of one component, re-indexed into that component's vertices."""
        vertices = np.flatnonzero(self.component == index)
        mapping = np.full(len(self.component), -1)
        mapping[vertices] = np.arange(len(vertices))
        keep = (self.component[self.faces] == index).all(axis=1)
        return mapping[self.faces[keep]]


# trimesh (about 1 s to import) is imported in the two functions below, which only ingest calls;
# train, evaluate and report read the cohort through this module without it.
def topology_of(sequence: MeshSequence) -> Topology:
    import trimesh

    labels = trimesh.graph.connected_component_labels(sequence.edges, node_count=sequence.vertices.shape[1])
    _, first = np.unique(labels, return_index=True)
    renumber = np.empty(labels.max() + 1, dtype=np.int64)
    renumber[labels[np.sort(first)]] = np.arange(len(first))
    return Topology(sequence.faces, sequence.edges, renumber[labels])


def same_topology(subject: str, location: Path, sequence: MeshSequence, reference: Topology) -> None:
    """Every subject must share the template's faces: the decoder reuses them."""
    if sequence.faces.shape != reference.faces.shape or not (sequence.faces == reference.faces).all():
        raise BadInputError(f"subject {subject}: {location}: faces differ from the first subject's "
                            f"({sequence.faces.shape[0]} vs {reference.faces.shape[0]}); the model needs one fixed topology")
    if sequence.vertices.shape[1] != len(reference.component):
        raise BadInputError(f"subject {subject}: {location}: {sequence.vertices.shape[1]} vertices, "
                            f"the first subject has {len(reference.component)}")


def is_closed(vertices: np.ndarray, faces: np.ndarray) -> bool:
    import trimesh

    return bool(trimesh.Trimesh(vertices, faces, process=False).is_watertight)
