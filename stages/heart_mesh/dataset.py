"""The ingest output as arrays: manifest, template topology, sequences and conditions, coordinate scaling."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stages.common.io import read_table
from stages.common.paths import from_portable
from stages.heart_mesh.cohort import Topology, read_sequence
from stages.heart_mesh.conditions import condition_matrix

MANIFEST_COLUMNS = ("subject", "split", "path", "Age", "Sex", "Weight", "Height", "frames", "vertices", "lv_edv_ml", "lv_ef")


@dataclass(frozen=True)
class Cohort:
    manifest: pd.DataFrame
    root: Path
    info: dict
    faces: np.ndarray
    edges: np.ndarray
    component: np.ndarray

    def split(self, name: str) -> pd.DataFrame:
        return self.manifest[self.manifest.split == name].reset_index(drop=True)

    def lv_vertices(self) -> np.ndarray:
        return np.flatnonzero(self.component == self.info["lv_component"])

    def lv_faces(self) -> np.ndarray:
        """The LV cavity's faces, indexed into :meth:`lv_vertices`."""
        return Topology(self.faces, self.edges, self.component).component_faces(self.info["lv_component"])


def load_cohort(folder: Path, repo: Path) -> Cohort:
    manifest = read_table(folder / "manifest.csv", MANIFEST_COLUMNS, dtype={"subject": str})
    info = json.loads((folder / "dataset.json").read_text())
    template = np.load(folder / "template.npz")
    return Cohort(manifest, from_portable(info["root"], repo), info, template["faces"], template["edges"], template["component"])


def load_sequences(cohort: Cohort, rows: pd.DataFrame) -> np.ndarray:
    """Vertices ``[S, T, N, 3]`` of the given manifest rows, read through the ingest's readers."""
    return np.stack([read_sequence(cohort.root, subject, cohort.info["mesh_format"], cohort.info["surf_type"]).vertices
                     for subject in rows.subject])


def conditions(rows: pd.DataFrame) -> np.ndarray:
    """The official 10-value condition of each row, ``[S, 10]``."""
    return condition_matrix(rows.Age, rows.Sex, rows.Weight, rows.Height)


@dataclass(frozen=True)
class CoordinateScaling:
    """Ours: coordinates centred on the training mean and scaled into [-0.5, 0.5] (the official code's
    ``+ 0.5`` in its loss suggests unit-range inputs; its normalisation code is missing)."""

    centre: np.ndarray
    scale: float

    @classmethod
    def fit(cls, training: np.ndarray) -> CoordinateScaling:
        centre = training.reshape(-1, 3).mean(axis=0)
        return cls(centre.astype(np.float32), float(np.abs(training - centre).max() / 0.5))

    def forward(self, vertices: np.ndarray) -> np.ndarray:
        return ((vertices - self.centre) / self.scale).astype(np.float32)

    def inverse(self, normalised: np.ndarray) -> np.ndarray:
        return (normalised * self.scale + self.centre).astype(np.float32)

    def state(self) -> dict:
        return {"centre": self.centre.tolist(), "scale": self.scale}

    @classmethod
    def from_state(cls, state: dict) -> CoordinateScaling:
        return cls(np.asarray(state["centre"], dtype=np.float32), float(state["scale"]))
