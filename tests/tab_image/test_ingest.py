"""tab_image-ingest in-process: the synthetic layout, the validated manifest, and bad input (fatal or quarantined)."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from stages.common.badinput import BadInputError
from stages.tab_image import io
from stages.tab_image.dataset import load_task
from stages.tab_image.ingest import IngestParams, ingest, write_synthetic_task
from tests.helpers import copy_project, repo_params, run_module, run_step, set_params, with_overrides
from tests.tab_image.tiny import TINY


def params() -> IngestParams:
    section = with_overrides(repo_params(), TINY)["tab_image"]["ingest"]
    return IngestParams.model_validate({k: v for k, v in section.items() if k != "full"})


@pytest.fixture()
def real_source(tmp_path):
    """A source folder in the official layout, written by the synthetic writer, then damaged per test."""
    source = tmp_path / "tip_data"
    p = params()
    rng = np.random.default_rng(5)
    for name, task in p.tasks.items():
        write_synthetic_task(source / name, task, p, rng)
    return source, {**TINY, "tab_image.ingest.source": str(source)}


def test_synthetic_ingest_writes_the_official_layout_and_a_validated_manifest(tmp_path):
    ctx, metrics = run_step(ingest, tmp_path, TINY)
    data = tmp_path / "data" / "tab_image"
    manifest = pd.read_csv(data / "interim/ingest/manifest.csv")
    assert metrics["rows"] == len(manifest) == 2 * (60 + 20 + 40)
    assert json.loads((data / "interim/manifest_validation.json").read_text())["success"] is True
    cars = load_task(data / "interim/ingest", "cars")
    assert cars.images.shape == (120, 3, 12, 12) and cars.field_lengths.tolist() == [2, 2, 4, 1, 1, 1, 1, 1, 1]
    assert set(np.unique(cars.labels)) == set(range(8))
    cardiac = load_task(data / "interim/ingest", "cardiac")
    assert set(np.unique(cardiac.labels)) == {0, 1}
    assert (data / "raw/cardiac/images/train/00000.npy").exists() and not (data / "raw/cardiac/images/train/00000.png").exists()
    # The arrays equal what the raw files hold, read independently.
    raw = np.loadtxt(data / "raw/cars/cars_features_test.csv", delimiter=",")
    assert np.allclose(cars.part("test").table, raw)
    assert torch.load(data / "raw/cars/cars_labels_val.pt") == cars.part("val").labels.tolist()
    assert ctx.tracker.metrics["quarantined"] == 0


def test_a_bad_category_code_is_fatal_and_leaves_no_ingest(real_source, tmp_path):
    source, overrides = real_source
    table = source / "cars/cars_features_train.csv"
    lines = table.read_text().splitlines()
    lines[4] = "5.0" + lines[4][3:]
    table.write_text("\n".join(lines) + "\n")
    project = copy_project(tmp_path / "project")
    set_params(project, overrides)
    result = run_module(project, "stages.tab_image.ingest")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "cars_features_train.csv: row 4, column 0: category code '5.0' is outside 0..1" in result.stderr
    assert not (project / "data/tab_image/interim/ingest").exists()


def test_skip_quarantines_bad_rows_and_keeps_the_rest(real_source, tmp_path):
    source, overrides = real_source
    (source / "cardiac/images/val/00003.npy").unlink()
    table = source / "cars/cars_features_test.csv"
    lines = table.read_text().splitlines()
    cells = lines[2].split(",")
    cells[5] = "high"
    lines[2] = ",".join(cells)
    table.write_text("\n".join(lines) + "\n")
    ctx, metrics = run_step(ingest, tmp_path, {**overrides, "common.on_bad_input": "skip"})
    quarantine = json.loads((tmp_path / "data/tab_image/interim/ingest/quarantine.json").read_text())
    assert sorted(e["item"] for e in quarantine["entries"]) == ["cardiac/val/row 3", "cars/test/row 2"]
    assert "column 5: 'high' is not a number" in quarantine["entries"][1]["problem"] + quarantine["entries"][0]["problem"]
    manifest = pd.read_csv(tmp_path / "data/tab_image/interim/ingest/manifest.csv")
    assert metrics["rows"] == 240 - 2
    assert not ((manifest.task == "cars") & (manifest.split == "test") & (manifest.row == 2)).any()


def test_row_count_and_field_length_mismatches_name_the_files(real_source, tmp_path):
    source, overrides = real_source
    io.write_pt(source / "cars/cars_labels_val.pt", [0] * 19)
    with pytest.raises(BadInputError, match=r"cars_features_val.csv: 20 rows, but cars_labels_val.pt has 19 labels"):
        run_step(ingest, tmp_path, overrides)
    io.write_pt(source / "cars/cars_labels_val.pt", [0] * 20)
    io.write_pt(source / "cardiac/tabular_lengths.pt", [2, 2, 4, 1, 1])
    with pytest.raises(BadInputError, match=r"tabular_lengths.pt: 5 field lengths, but cardiac_features_train.csv has 9 columns"):
        run_step(ingest, tmp_path, overrides)
