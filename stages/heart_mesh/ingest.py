"""heart_mesh-ingest: read (or first synthesise) MeshHeart's layout, check every subject, write a validated manifest.

With ``source: synthetic`` a cohort of fixed-topology hearts (:mod:`stages.heart_mesh.synthetic`)
is first written under ``data/heart_mesh/raw`` in the official layout (split CSVs, per-subject
HDF5, or per-frame VTK with ``mesh_format: vtk``) with ``phenotypes.csv`` beside them; either
way the files are then read through the readers used for real data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from stages.common.badinput import BadInputError
from stages.common.ingest import finish_ingest, ingest_output, materialise_source
from stages.common.io import write_npz, write_table
from stages.common.params import StrictModel
from stages.common.paths import portable_path
from stages.common.pipeline import SYNTHETIC
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.heart_mesh.cohort import (
    PHENOTYPES_FILE,
    Topology,
    is_closed,
    mesh_location,
    read_phenotypes,
    read_sequence,
    read_splits,
    same_topology,
    subjects_with_meshes,
    topology_of,
)
from stages.heart_mesh.formats import (
    ID_COLUMN,
    SPLIT_FILES,
    hdf5_path,
    vtk_folder,
    write_covariates,
    write_hdf5_sequence,
    write_vtk_sequence,
)
from stages.heart_mesh.metrics import ejection_fraction, lv_volume
from stages.heart_mesh.synthetic import make_template, synthetic_cohort

TEMPLATE_FILE = "template.npz"


class IngestParams(StrictModel):
    source: str                                  # "synthetic" or the folder holding mesh_train.csv, mesh_val.csv, <subid>/
    mesh_format: Literal["hdf5", "vtk"]
    surf_type: Literal["all", "sample"]          # official: preprossed_vtk.hdf5 (all) or preprossed_decimate.hdf5 (sample)
    lv_component: int = Field(ge=0)              # connected component (numbered by first vertex) that is the LV cavity
    train_subjects: int = Field(ge=2)
    val_subjects: int = Field(ge=2)
    disease_fraction: float = Field(ge=0, lt=1)
    frames: int = Field(ge=3, le=58)             # the official positional encoding holds 60 tokens (2 are mu, sigma)
    subdivisions: int = Field(ge=1, le=5)
    shape_noise: float = Field(ge=0)
    jitter_mm: float = Field(ge=0)


def write_synthetic_dataset(root: Path, params: IngestParams, seed: int) -> None:
    template = make_template(params.subdivisions)
    splits: dict[str, list[dict]] = {"train": [], "val": []}
    labels = []
    cohort = synthetic_cohort(template, params.train_subjects, params.val_subjects, params.disease_fraction,
                              params.frames, seed, params.shape_noise, params.jitter_mm)
    for split, subject, covariates, sequence, subject_labels in progress(cohort, "synthesising hearts",
                                                                         params.train_subjects + params.val_subjects):
        if params.mesh_format == "hdf5":
            write_hdf5_sequence(hdf5_path(root, subject, params.surf_type), sequence)
        else:
            write_vtk_sequence(vtk_folder(root, subject), sequence)
        splits[split].append({"subject": subject, **covariates})
        labels.append({ID_COLUMN: subject, **subject_labels})
    for split, name in SPLIT_FILES.items():
        write_covariates(root / name, pd.DataFrame(splits[split]))
    write_table(root / PHENOTYPES_FILE, pd.DataFrame(labels))


def lv_summary(sequence, topology: Topology, lv_component: int) -> dict:
    """LV cavity volume per frame (ml, coordinates in mm), ejection fraction, and whether the cavity is closed."""
    vertices = np.flatnonzero(topology.component == lv_component)
    faces = topology.component_faces(lv_component)
    volumes = np.array([lv_volume(frame[vertices], faces) for frame in sequence.vertices]) / 1000.0
    return {"lv_edv_ml": float(volumes.max()), "lv_esv_ml": float(volumes.min()), "lv_ef": ejection_fraction(volumes),
            "lv_closed": is_closed(sequence.vertices[0][vertices], faces)}


def manifest_expectations(frames: int | None) -> list[tuple[str, dict]]:
    one_value = {"min_value": 1, "max_value": 1}
    expectations = [
        ("expect_column_values_to_be_unique", {"column": "subject"}),
        ("expect_column_values_to_be_in_set", {"column": "split", "value_set": ["train", "val"]}),
        ("expect_column_values_to_be_in_set", {"column": "finite", "value_set": [True]}),
        ("expect_column_unique_value_count_to_be_between", {"column": "frames", **one_value}),
        ("expect_column_unique_value_count_to_be_between", {"column": "vertices", **one_value}),
        ("expect_column_unique_value_count_to_be_between", {"column": "faces", **one_value}),
        ("expect_column_values_to_be_between", {"column": "Age", "min_value": 18, "max_value": 100}),
        ("expect_column_values_to_be_in_set", {"column": "Sex", "value_set": [0.0, 1.0]}),
        ("expect_column_values_to_be_between", {"column": "Weight", "min_value": 30, "max_value": 250}),
        ("expect_column_values_to_be_between", {"column": "Height", "min_value": 120, "max_value": 220}),
        ("expect_column_values_to_be_between", {"column": "lv_ef", "min_value": 0.0, "max_value": 1.0}),
    ]
    if frames is not None:
        expectations.append(("expect_column_values_to_be_between", {"column": "frames", "min_value": frames, "max_value": frames}))
    return expectations


def ingest(ctx: StageContext[IngestParams]) -> Metrics:
    p = ctx.params
    root = materialise_source(ctx, p.source, lambda staging: write_synthetic_dataset(staging, p, ctx.common.seed))
    cohort = read_splits(root)
    listed = set(cohort.subject)
    for subject in subjects_with_meshes(root, p.mesh_format):
        if subject not in listed:
            with ctx.quarantine.guard(subject):
                raise BadInputError(f"subject {subject}: {mesh_location(root, subject, p.mesh_format, p.surf_type)} "
                                    f"has no row in {SPLIT_FILES['train']} or {SPLIT_FILES['val']}")
    rows, topology = [], None
    for record in progress(cohort.to_dict("records"), "reading meshes", len(cohort)):
        subject = record["subject"]
        location = mesh_location(root, subject, p.mesh_format, p.surf_type)
        with ctx.quarantine.guard(subject) as outcome:
            sequence = read_sequence(root, subject, p.mesh_format, p.surf_type)
            if topology is None:
                topology = topology_of(sequence)
                if p.lv_component > topology.component.max():
                    raise BadInputError(f"{ctx.study}.{ctx.step}.lv_component: {p.lv_component}, but the meshes of subject "
                                        f"{subject} have {topology.component.max() + 1} connected components")
            same_topology(subject, location, sequence, topology)
        if outcome.ok:
            rows.append({**record, "path": location.relative_to(root).as_posix(),
                         "frames": sequence.vertices.shape[0], "vertices": sequence.vertices.shape[1],
                         "faces": len(sequence.faces), "edges": len(sequence.edges),
                         "finite": bool(np.isfinite(sequence.vertices).all()), **lv_summary(sequence, topology, p.lv_component)})
    if not rows:
        raise BadInputError(f"{root}: no readable subject meshes")
    manifest = pd.DataFrame(rows)
    phenotypes = read_phenotypes(root)
    if phenotypes is not None:
        manifest = manifest.merge(phenotypes, on="subject", how="left", validate="one_to_one")
    with ingest_output(ctx) as staging:
        write_npz(staging / TEMPLATE_FILE, {"faces": topology.faces, "edges": topology.edges, "component": topology.component})
        finish_ingest(ctx, staging, manifest, "heart_mesh_manifest", manifest_expectations(p.frames if p.source == SYNTHETIC else None),
                      {"root": portable_path(root, ctx.root), "source": p.source, "mesh_format": p.mesh_format,
                       "surf_type": p.surf_type, "lv_component": p.lv_component, "phenotypes": phenotypes is not None})
    counts = manifest["split"].value_counts().to_dict()
    return {"subjects": len(manifest), **{f"subjects_{k}": v for k, v in counts.items()},
            "vertices": int(manifest.vertices.iloc[0]), "frames": int(manifest.frames.iloc[0])}


if __name__ == "__main__":
    run_stage(ingest)
