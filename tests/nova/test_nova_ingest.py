"""Bad input at ingest: clear messages naming the file, row or case; fatal by default, quarantined with skip."""
import json
import os
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from stages.common.badinput import BadInputError
from stages.common.io import FormatError
from stages.nova.dataset import read_csv_layout, read_parquet_layout
from stages.nova.ingest import frequency_labels, validate_slice
from stages.nova.synthetic import generate_benchmark, write_benchmark
from tests.conftest import set_params


@pytest.fixture(scope="module")
def benchmark_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nova_source")
    write_benchmark(folder, generate_benchmark(3, 64, seed=5, max_scans_per_case=2))
    return folder


@pytest.fixture()
def source(benchmark_folder, tmp_path):
    """A writable copy of the small benchmark, CSV layout only."""
    target = tmp_path / "source"
    (target / "images").mkdir(parents=True)
    for file in benchmark_folder.glob("*.csv"):
        (target / file.name).write_bytes(file.read_bytes())
    for file in (benchmark_folder / "images").iterdir():
        (target / "images" / file.name).write_bytes(file.read_bytes())
    return target


def validate_all(folder):
    benchmark = read_csv_layout(folder)
    for record in benchmark.slices:
        validate_slice(record, benchmark)


def test_clean_source_validates(source):
    validate_all(source)


def test_missing_png_names_the_file(source):
    first = sorted((source / "images").iterdir())[0]
    first.unlink()
    with pytest.raises(FormatError, match=f"{first.name}: file not found"):
        validate_all(source)


def test_unreadable_png_names_the_file(source):
    first = sorted((source / "images").iterdir())[0]
    first.write_bytes(b"not a png at all")
    with pytest.raises(FormatError, match=f"{first.name}: not a readable PNG"):
        validate_all(source)


@pytest.mark.parametrize("change, problem", [({"x": 60.0, "width": 30.0}, "outside the 64x64 image"),
                                             ({"height": 0.0}, "non-positive size")])
def test_bad_gold_box_names_the_row_and_slice(source, change, problem):
    table = pd.read_csv(source / "bboxes_gold.csv")
    for column, value in change.items():
        table.loc[0, column] = value
    table.to_csv(source / "bboxes_gold.csv", index=False)
    with pytest.raises(BadInputError, match=f"bboxes_gold.csv line 2: slice {table.filename[0]}: box .*{problem}"):
        validate_all(source)


def test_missing_columns_name_the_file_and_columns(source):
    pd.read_csv(source / "captions.csv").drop(columns=["caption"]).to_csv(source / "captions.csv", index=False)
    with pytest.raises(FormatError, match=r"captions.csv: missing column\(s\) caption"):
        read_csv_layout(source)


def test_case_without_metadata_names_the_case(source):
    metadata = pd.read_csv(source / "case_metadata.csv")
    metadata.iloc[1:].to_csv(source / "case_metadata.csv", index=False)
    with pytest.raises(BadInputError, match=f"case '{metadata.case_id[0]}' has no row in the case metadata"):
        validate_all(source)
    metadata.loc[1, "clinical_history"] = ""
    metadata.to_csv(source / "case_metadata.csv", index=False)
    with pytest.raises(BadInputError, match=f"case_metadata.csv line 3: case '{metadata.case_id[1]}' has no clinical_history"):
        validate_all(source)


def test_parquet_with_unequal_parallel_lists_is_reported(benchmark_folder, tmp_path):
    table = pq.read_table(benchmark_folder / "nova-v1.parquet").to_pylist()
    table[0]["bbox_gold"]["x"] = table[0]["bbox_gold"]["x"] + [1.0]
    pd.DataFrame(table).to_parquet(tmp_path / "nova-v1.parquet")
    benchmark = read_parquet_layout(tmp_path / "nova-v1.parquet")
    with pytest.raises(BadInputError, match=r"nova-v1.parquet row 0 bbox_gold: parallel lists have different lengths"):
        validate_slice(benchmark.slices[0], benchmark)


def test_frequency_labels():
    labels = frequency_labels(pd.Series(["a", "b", "a", "c", "a", "c"]), rare_max_cases=1)
    assert labels.tolist() == ["common", "rare", "common", "common", "common", "common"]


def run_ingest(root):
    env = {**os.environ, "MEDREPRO_NO_PROGRESS": "1", "GX_ANALYTICS_ENABLED": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "stages.nova.ingest"], cwd=root, env=env, capture_output=True, text=True)


def test_stage_is_fatal_by_default_and_quarantines_with_skip(project_copy, source):
    broken = sorted((source / "images").iterdir())[-1]
    broken.write_bytes(b"\x89PNG truncated")
    set_params(project_copy, {"nova.ingest.source": str(source), "nova.ingest.healthy_slices": 3,
                              "nova.ingest.image_size": 64})
    failed = run_ingest(project_copy)
    assert failed.returncode == 1
    assert "error: nova-ingest:" in failed.stderr and broken.name in failed.stderr and "not a readable PNG" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert not (project_copy / "data" / "nova" / "interim" / "ingest").exists()

    set_params(project_copy, {"common.on_bad_input": "skip"})
    skipped = run_ingest(project_copy)
    assert skipped.returncode == 0, skipped.stderr[-2000:]
    out = project_copy / "data" / "nova" / "interim" / "ingest"
    quarantine = json.loads((out / "quarantine.json").read_text())
    assert quarantine["count"] == 1 and broken.name in quarantine["entries"][0]["problem"]
    manifest = pd.read_csv(out / "manifest.csv")
    assert broken.stem not in set(manifest.image_id) and len(manifest) == len(list((source / "images").iterdir())) - 1
    assert json.loads((out / "dataset.json").read_text())["layout"] == "csv"
