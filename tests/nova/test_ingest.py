"""nova-ingest: bad input named by file, row or case (fatal by default, quarantined with skip), the
synthetic and real sources, the params checks, and byte-identical outputs on a rerun."""
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from stages.common.badinput import BadInputError
from stages.common.io import FormatError
from stages.common.params import ParamsError
from stages.nova.dataset import read_csv_layout, read_parquet_layout, write_nova_parquet_embedded
from stages.nova.ingest import frequency_labels, ingest, validate_slice
from stages.nova.synthetic import generate_benchmark, write_benchmark
from tests.helpers import copy_project, run_module, run_step, set_params, step_context
from tests.nova.tiny import TINY, file_hashes

SMALL_REAL = {"nova.ingest.healthy_slices": 3, "nova.ingest.image_size": 64}


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
    write_nova_parquet_embedded(tmp_path / "embedded.parquet", generate_benchmark(3, 64, seed=5, max_scans_per_case=2))
    table = pq.read_table(tmp_path / "embedded.parquet").to_pylist()
    table[0]["bbox_gold"]["x"] = table[0]["bbox_gold"]["x"] + [1.0]
    pd.DataFrame(table).to_parquet(tmp_path / "nova-v1.parquet")
    benchmark = read_parquet_layout(tmp_path / "nova-v1.parquet")
    with pytest.raises(BadInputError, match=r"nova-v1.parquet row 0 bbox_gold: parallel lists have different lengths"):
        validate_slice(benchmark.slices[0], benchmark)


def test_frequency_labels():
    labels = frequency_labels(pd.Series(["a", "b", "a", "c", "a", "c"]), rare_max_cases=1)
    assert labels.tolist() == ["common", "rare", "common", "common", "common", "common"]


def test_stage_is_fatal_by_default_and_leaves_no_manifest(tmp_path, source):
    broken = sorted((source / "images").iterdir())[-1]
    broken.write_bytes(b"\x89PNG truncated")
    project = copy_project(tmp_path / "project")
    set_params(project, {**SMALL_REAL, "nova.ingest.source": str(source)})
    failed = run_module(project, "stages.nova.ingest")
    assert failed.returncode == 1
    assert "error: nova-ingest:" in failed.stderr and broken.name in failed.stderr and "not a readable PNG" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert not (project / "data" / "nova" / "interim" / "ingest").exists()


def test_skip_quarantines_the_slice_and_keeps_the_rest(tmp_path, source):
    broken = sorted((source / "images").iterdir())[-1]
    broken.write_bytes(b"\x89PNG truncated")
    root = tmp_path / "root"  # the source lies outside it, as a real data set would
    ctx, metrics = run_step(ingest, root, {**SMALL_REAL, "nova.ingest.source": str(source), "common.on_bad_input": "skip"})
    out = root / "data" / "nova" / "interim" / "ingest"
    quarantine = json.loads((out / "quarantine.json").read_text())
    assert quarantine["count"] == 1 and broken.name in quarantine["entries"][0]["problem"]
    manifest = pd.read_csv(out / "manifest.csv")
    assert broken.stem not in set(manifest.image_id) and len(manifest) == len(list((source / "images").iterdir())) - 1
    assert metrics["slices"] == len(manifest) and ctx.tracker.metrics["quarantined"] == 1
    info = json.loads((out / "dataset.json").read_text())
    # The CSV layout's slices stay in the real source folder, which later stages list as a dep.
    assert info["layout"] == "csv" and info["root"] == str(source / "images") and info["source"] == str(source)
    raw = root / "data" / "nova" / "raw"
    assert json.loads((raw / "benchmark" / "SOURCE.json").read_text()) == {"source": str(source)}
    assert sorted(p.name for p in (raw / "benchmark").iterdir()) == ["SOURCE.json"]  # nothing synthesised for a real source
    assert json.loads((raw / "healthy" / "SOURCE.json").read_text()) == {"healthy_source": "synthetic"}
    assert (raw / "healthy" / "healthy.csv").is_file()


def test_a_real_source_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(BadInputError, match=r"nova.ingest.source: .*nowhere does not exist"):
        run_step(ingest, tmp_path, {**SMALL_REAL, "nova.ingest.source": str(tmp_path / "nowhere")})


def test_synthetic_csv_layout_reads_the_slices_from_raw(tmp_path):
    run_step(ingest, tmp_path, {**TINY, "nova.ingest.cases": 3, "nova.ingest.healthy_slices": 3, "nova.ingest.layout": "csv"})
    out = tmp_path / "data" / "nova" / "interim" / "ingest"
    info = json.loads((out / "dataset.json").read_text())
    assert info == {"root": "data/nova/raw/benchmark/images", "healthy_root": "data/nova/raw/healthy",
                    "source": "synthetic", "layout": "csv", "frequency_by": "cases", "groups": ["common", "rare"]}
    assert not (out / "images").exists()
    assert json.loads((tmp_path / "data/nova/raw/benchmark/SOURCE.json").read_text()) == {"source": "synthetic"}


@pytest.mark.parametrize("key, value, message", [
    ("layout", "xml", r"nova.ingest.layout: Input should be 'auto', 'csv' or 'parquet'"),
    ("normal_slice_fraction", 1.5, r"nova.ingest.normal_slice_fraction: Input should be less than or equal to 1"),
    ("healthy_slices", 1, r"nova.ingest.healthy_slices: Input should be greater than or equal to 2"),
    ("image_size", 8, r"nova.ingest.image_size: Input should be greater than or equal to 16"),
])
def test_bad_params_name_the_key_before_anything_runs(tmp_path, key, value, message):
    with pytest.raises(ParamsError, match=message):
        step_context(ingest, tmp_path, {f"nova.ingest.{key}": value})
    assert not (tmp_path / "data").exists()


def test_synthetic_outputs_are_byte_identical_on_a_rerun(tiny_run, tiny_rerun):
    for folder in ("raw", "interim"):
        first = file_hashes(tiny_run.data / folder)
        assert first and first == file_hashes(tiny_rerun.data / folder), folder
    assert tiny_run.metrics("ingest")["cases"] == TINY["nova.ingest.cases"]
    info = json.loads((tiny_run.data / "interim" / "ingest" / "dataset.json").read_text())
    assert info["layout"] == "parquet" and info["root"] == "data/nova/interim/ingest/images"
