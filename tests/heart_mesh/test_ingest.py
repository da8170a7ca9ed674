"""heart_mesh-ingest in-process: the synthetic cohort in the official layout, and bad input (fatal or quarantined)."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import trimesh

from stages.common.badinput import BadInputError
from stages.heart_mesh.formats import hdf5_path, read_hdf5_sequence
from stages.heart_mesh.ingest import ingest
from stages.heart_mesh.synthetic import expected_lv
from tests.heart_mesh.tiny import TINY
from tests.helpers import run_step

DATA = "data/heart_mesh"


def test_synthetic_ingest_writes_the_official_layout_and_a_valid_manifest(tmp_path):
    ctx, metrics = run_step(ingest, tmp_path, TINY)
    data = tmp_path / DATA
    manifest = pd.read_csv(data / "interim/ingest/manifest.csv", dtype={"subject": str})
    assert metrics["subjects"] == 18 and (manifest.split == "train").sum() == 8
    assert manifest.loc[manifest.split == "train", "disease"].eq(0).all()  # the normative model trains on healthy hearts
    assert manifest.loc[manifest.split == "val", "disease"].sum() == 4
    first = manifest.iloc[0]
    sequence = read_hdf5_sequence(data / "raw" / first.path)
    assert first.path == f"{first.subject}/image_space_pipemesh/preprossed_vtk.hdf5"
    assert sequence.vertices.shape == (4, 3 * 42, 3)
    template = np.load(data / "interim/ingest/template.npz")
    assert np.bincount(template["component"]).tolist() == [42, 42, 42]
    lv = trimesh.Trimesh(sequence.vertices[0][:42], template["faces"][:80], process=False)
    assert lv.is_watertight and first.lv_edv_ml == pytest.approx(lv.volume / 1000, rel=1e-6)
    healthy = manifest[manifest.disease == 0]
    expected = np.array([expected_lv(r.Age, r.Sex, r.Weight, r.Height) for r in healthy.itertuples()])
    # the generator's condition effect survives the meshing: measured EDV tracks the noise-free EDV
    assert np.corrcoef(expected[:, 0], healthy.lv_edv_ml)[0, 1] > 0.7
    assert json.loads((data / "interim/manifest_validation.json").read_text())["success"] is True
    assert ctx.tracker.metrics["quarantined"] == 0


def test_vtk_format_gives_the_same_manifest(tmp_path):
    run_step(ingest, tmp_path / "h5", TINY)
    run_step(ingest, tmp_path / "vtk", {**TINY, "heart_mesh.ingest.mesh_format": "vtk"})
    columns = ["subject", "lv_edv_ml", "lv_ef", "vertices", "faces"]
    h5 = pd.read_csv(tmp_path / "h5" / DATA / "interim/ingest/manifest.csv")[columns]
    vtk = pd.read_csv(tmp_path / "vtk" / DATA / "interim/ingest/manifest.csv")[columns]
    pd.testing.assert_frame_equal(h5, vtk, rtol=1e-5)


@pytest.fixture()
def broken_source(tmp_path):
    """A real-layout source: the synthetic raw folder copied out and damaged three ways."""
    run_step(ingest, tmp_path / "made", TINY)
    source = tmp_path / "source"
    shutil.copytree(tmp_path / "made" / DATA / "raw", source)
    manifest = pd.read_csv(tmp_path / "made" / DATA / "interim/ingest/manifest.csv", dtype={"subject": str})
    no_mesh, wrong_faces = manifest.subject.iloc[1], manifest.subject.iloc[2]
    shutil.rmtree(source / no_mesh)
    path = hdf5_path(source, wrong_faces)
    import h5py
    with h5py.File(path, "r+") as f:
        faces = np.array(f["heart_f"])
        del f["heart_f"]
        f["heart_f"] = faces[:, ::-1]  # same shape, another face order: not the template's topology
    orphan = hdf5_path(source, "9999999")
    orphan.parent.mkdir(parents=True)
    shutil.copy(hdf5_path(source, manifest.subject.iloc[0]), orphan)
    return source, no_mesh, wrong_faces


def test_bad_subjects_are_fatal_by_default(broken_source, tmp_path):
    source, no_mesh, wrong_faces = broken_source
    with pytest.raises(BadInputError, match="subject 9999999: .* has no row in mesh_train.csv"):
        run_step(ingest, tmp_path / "run", {**TINY, "heart_mesh.ingest.source": str(source)})
    assert not (tmp_path / "run" / DATA / "interim/ingest").exists()


def test_skip_quarantines_each_bad_subject_by_name(broken_source, tmp_path):
    source, no_mesh, wrong_faces = broken_source
    ctx, metrics = run_step(ingest, tmp_path / "run", {**TINY, "heart_mesh.ingest.source": str(source),
                                                       "common.on_bad_input": "skip"})
    quarantine = json.loads((tmp_path / "run" / DATA / "interim/ingest/quarantine.json").read_text())
    problems = {entry["item"]: entry["problem"] for entry in quarantine["entries"]}
    assert set(problems) == {"9999999", no_mesh, wrong_faces}
    assert "mesh file not found" in problems[no_mesh] and "preprossed_vtk.hdf5" in problems[no_mesh]
    assert "faces differ" in problems[wrong_faces]
    assert metrics["subjects"] == 16


def test_an_lv_component_the_template_lacks_is_refused(tmp_path):
    with pytest.raises(BadInputError, match="lv_component: 5, but the meshes .* have 3 connected components"):
        run_step(ingest, tmp_path, {**TINY, "heart_mesh.ingest.lv_component": 5})
