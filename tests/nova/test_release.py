"""NOVA's current parquet release (``data/nova-v1.parquet`` + PNG files), the ``auto`` layout's
fallback, scan ids, conflicting case rows and escaping paths (issue 17 item 1, issue 19 items 6, 8).

The fixture is written here with pyarrow straight from the release's described schema
(``filename, case_id, scan_id, caption_text, image_path, meta{clinical_history, final_diagnosis},
width, height, bboxes[{x, y, width, height, source}]``), not through nova's own writer.
"""
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from stages.common.badinput import BadInputError
from stages.common.io import FormatError
from stages.nova.dataset import read_benchmark, write_nova_parquet_embedded
from stages.nova.ingest import ingest, validate_slice
from stages.nova.synthetic import generate_benchmark
from tests.helpers import run_step
from tests.nova.release import SCHEMA, release_rows, write_release

SMALL = {"nova.ingest.healthy_slices": 3, "nova.ingest.image_size": 64}


def test_current_release_is_read_with_gold_and_rater_boxes(tmp_path):
    benchmark = read_benchmark(write_release(tmp_path / "nova", release_rows()))
    assert benchmark.layout == "parquet" and [s.filename for s in benchmark.slices] == [r["filename"] for r in release_rows()]
    first = benchmark.slices[0]
    assert first.caption == "Axial FLAIR: a lesion." and first.scan_id == 2
    assert [box for _, box in first.gold] == [[10.0, 5.0, 8.0, 6.0]]
    assert [(r, box) for _, r, box in first.raters] == [(1, [11.0, 6.0, 7.0, 5.0]), (2, [9.0, 4.0, 9.0, 7.0])]
    assert first.image_file == (tmp_path / "nova" / "images" / "case0007_002.png").resolve()
    assert benchmark.cases["case0012"]["final_diagnosis"] == "Meningioma"
    assert len(benchmark.slices[2].gold) == 2 and benchmark.slices[1].gold == []


def test_ingest_of_the_current_release_end_to_end(tmp_path):
    source = write_release(tmp_path / "nova", release_rows())
    root = tmp_path / "root"
    _, metrics = run_step(ingest, root, {**SMALL, "nova.ingest.source": str(source)})
    out = root / "data" / "nova" / "interim" / "ingest"
    manifest = pd.read_csv(out / "manifest.csv", dtype={"image_id": str})
    assert manifest.image_id.tolist() == ["case0007_002", "case0007_005", "case0012_001"]
    assert manifest.scan_id.tolist() == [2, 5, 1] and manifest.n_gold.tolist() == [1, 0, 2]
    assert manifest.caption.tolist()[0] == "Axial FLAIR: a lesion."
    boxes = pd.read_csv(out / "boxes.csv")
    assert sorted(boxes.source.unique()) == ["gold", "rater1", "rater2"] and len(boxes) == 5
    assert metrics["slices"] == 3 and metrics["cases"] == 2 and metrics["gold_boxes"] == 3
    assert json.loads((out / "dataset.json").read_text())["layout"] == "parquet"
    for image_id in manifest.image_id:  # the PNGs are copied into the ingest output, pixels unchanged
        np.testing.assert_array_equal(np.asarray(Image.open(out / "images" / f"{image_id}.png")),
                                      np.asarray(Image.open(source / "images" / f"{image_id}.png")))


def test_the_older_embedded_image_parquet_is_still_read(tmp_path):
    cases = generate_benchmark(2, 48, seed=1, max_scans_per_case=2)
    write_nova_parquet_embedded(tmp_path / "nova-v1.parquet", cases)
    benchmark = read_benchmark(tmp_path)
    assert benchmark.layout == "parquet" and len(benchmark.slices) == sum(len(c.slices) for c in cases)
    assert all(s.image_bytes for s in benchmark.slices)
    assert [s.scan_id for s in benchmark.slices] == [s.scan_id for c in cases for s in c.slices]


def test_auto_falls_back_to_the_csvs_when_the_parquet_matches_no_schema(tmp_path):
    cases = generate_benchmark(2, 48, seed=1, max_scans_per_case=1)
    from stages.nova.dataset import write_nova_csv_layout

    write_nova_csv_layout(tmp_path, cases)
    pd.DataFrame({"something": [1, 2]}).to_parquet(tmp_path / "notes.parquet")
    assert read_benchmark(tmp_path).layout == "csv"
    (tmp_path / "captions.csv").unlink()
    with pytest.raises(FormatError, match=r"notes.parquet: columns match neither NOVA parquet schema.*caption_text"):
        read_benchmark(tmp_path)


def test_scan_id_comes_from_the_column_or_the_file_name_never_the_row_index(tmp_path):
    rows = release_rows()
    rows[0]["scan_id"] = None
    rows[2]["scan_id"] = None
    benchmark = read_benchmark(write_release(tmp_path, rows))
    assert [s.scan_id for s in benchmark.slices] == [2, 5, 1]  # row indices would be 0 and 2
    cases = generate_benchmark(2, 48, seed=1, max_scans_per_case=2)
    write_nova_parquet_embedded(tmp_path / "old" / "nova-v1.parquet", cases)
    table = pq.read_table(tmp_path / "old" / "nova-v1.parquet").drop(["scan_id"])
    pq.write_table(table, tmp_path / "old" / "nova-v1.parquet")
    assert [s.scan_id for s in read_benchmark(tmp_path / "old").slices] == [s.scan_id for c in cases for s in c.slices]


def test_a_declared_size_that_differs_from_the_png_is_named(tmp_path):
    rows = release_rows()
    rows[1]["width"] = 480
    benchmark = read_benchmark(write_release(tmp_path, rows))
    with pytest.raises(BadInputError, match=r"nova-v1.parquet row 1: slice case0007_005.png: declares 480x40 px .* PNG is 48x40"):
        validate_slice(benchmark.slices[1], benchmark)


def test_conflicting_case_rows_are_refused_by_name(tmp_path):
    rows = release_rows()
    rows[1]["meta"] = {"clinical_history": rows[0]["meta"]["clinical_history"], "final_diagnosis": "Lymphoma"}
    benchmark = read_benchmark(write_release(tmp_path / "p", rows))
    with pytest.raises(BadInputError, match=r"case 'case0007' has conflicting final_diagnosis rows: 'Lymphoma' here, "
                                            r"'Glioblastoma' at nova-v1.parquet row 0"):
        validate_slice(benchmark.slices[0], benchmark)
    # the CSV layout's case_metadata.csv, and the skip mode: every slice of the case is quarantined, the rest kept
    from stages.nova.dataset import write_nova_csv_layout

    cases = generate_benchmark(3, 48, seed=2, max_scans_per_case=1)
    source = tmp_path / "csv"
    write_nova_csv_layout(source, cases)
    metadata = pd.read_csv(source / "case_metadata.csv")
    duplicate = metadata.iloc[[0]].assign(final_diagnosis="Something else entirely")
    pd.concat([metadata, duplicate]).to_csv(source / "case_metadata.csv", index=False)
    with pytest.raises(BadInputError, match=rf"case_metadata.csv line 5: case '{metadata.case_id[0]}' has conflicting"):
        run_step(ingest, tmp_path / "fatal", {**SMALL, "nova.ingest.source": str(source)})
    assert not (tmp_path / "fatal" / "data" / "nova" / "interim" / "ingest").exists()
    run_step(ingest, tmp_path / "skip", {**SMALL, "nova.ingest.source": str(source), "common.on_bad_input": "skip"})
    out = tmp_path / "skip" / "data" / "nova" / "interim" / "ingest"
    quarantine = json.loads((out / "quarantine.json").read_text())
    assert quarantine["count"] == 1 and "conflicting final_diagnosis" in quarantine["entries"][0]["problem"]
    assert set(pd.read_csv(out / "manifest.csv").case_id) == {c.case_id for c in cases[1:]}


def test_an_identical_duplicate_case_row_is_accepted(tmp_path):
    from stages.nova.dataset import write_nova_csv_layout

    write_nova_csv_layout(tmp_path, generate_benchmark(2, 48, seed=2, max_scans_per_case=1))
    metadata = pd.read_csv(tmp_path / "case_metadata.csv")
    pd.concat([metadata, metadata.iloc[[0]]]).to_csv(tmp_path / "case_metadata.csv", index=False)
    benchmark = read_benchmark(tmp_path)
    for record in benchmark.slices:
        validate_slice(record, benchmark)


@pytest.mark.parametrize("layout", ["csv", "parquet"])
@pytest.mark.parametrize("escape", ["../outside.png", "symlink"])
def test_an_escaping_path_is_quarantined_per_slice_in_skip_mode(tmp_path, layout, escape):
    outside = tmp_path / "outside.png"
    Image.fromarray(np.zeros((40, 48), dtype=np.uint8)).save(outside)
    if layout == "parquet":
        source = write_release(tmp_path / "nova", release_rows())
        rows = release_rows()
        if escape == "symlink":
            (source / "images" / "case0007_005.png").unlink()
            (source / "images" / "case0007_005.png").symlink_to(outside)
        else:
            rows[1]["image_path"] = "../outside.png"
            pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), source / "data" / "nova-v1.parquet")
        named = "case0007_005"
    else:
        from stages.nova.dataset import write_nova_csv_layout

        source = tmp_path / "nova"
        cases = generate_benchmark(3, 48, seed=2, max_scans_per_case=1)
        write_nova_csv_layout(source, cases)
        captions = pd.read_csv(source / "captions.csv")
        named = captions.filename[1]
        if escape == "symlink":
            (source / "images" / named).unlink()
            (source / "images" / named).symlink_to(outside)
        else:
            gold = pd.read_csv(source / "bboxes_gold.csv")
            gold.loc[gold.filename == named, "filename"] = "../../outside.png"
            gold.to_csv(source / "bboxes_gold.csv", index=False)
            captions.loc[1, "filename"] = "../../outside.png"
            captions.to_csv(source / "captions.csv", index=False)
            named = "outside.png"
    with pytest.raises(BadInputError, match=r"resolves to .*outside"):
        run_step(ingest, tmp_path / "fatal", {**SMALL, "nova.ingest.source": str(source)})
    run_step(ingest, tmp_path / "skip", {**SMALL, "nova.ingest.source": str(source), "common.on_bad_input": "skip"})
    out = tmp_path / "skip" / "data" / "nova" / "interim" / "ingest"
    quarantine = json.loads((out / "quarantine.json").read_text())
    assert quarantine["count"] == 1
    problem = quarantine["entries"][0]["problem"]
    assert str(outside) in problem and "outside" in problem and named.split(".")[0] in problem
    assert len(pd.read_csv(out / "manifest.csv")) == 2


def test_a_second_row_for_the_same_slice_is_quarantined(tmp_path):
    rows = release_rows()
    source = write_release(tmp_path / "nova", rows + [rows[0]])
    with pytest.raises(BadInputError, match=r"nova-v1.parquet row 3: slice case0007_002.png: a second row .*first at nova-v1.parquet row 0"):
        run_step(ingest, tmp_path / "fatal", {**SMALL, "nova.ingest.source": str(source)})
    run_step(ingest, tmp_path / "skip", {**SMALL, "nova.ingest.source": str(source), "common.on_bad_input": "skip"})
    manifest = pd.read_csv(tmp_path / "skip" / "data" / "nova" / "interim" / "ingest" / "manifest.csv")
    assert len(manifest) == 3


def test_pathology_categories_of_real_diagnoses():
    from stages.nova.catalogue import pathology_category

    expected = {"Glioblastoma, IDH-wildtype": "neoplastic", "Pilocytic astrocytoma": "neoplastic",
                "Cerebral metastases from lung carcinoma": "neoplastic", "Acute ischaemic stroke": "vascular",
                "Dural arteriovenous fistula": "vascular", "Cerebral venous sinus thrombosis": "vascular",
                "Toxoplasmosis": "infectious", "Herpes simplex encephalitis": "infectious",
                "Anti-NMDA receptor autoimmune encephalitis": "inflammatory / demyelinating",
                "Neuromyelitis optica spectrum disorder": "inflammatory / demyelinating",
                "Osmotic demyelination syndrome": "metabolic / toxic / degenerative",
                "Posterior reversible encephalopathy syndrome (PRES)": "metabolic / toxic / degenerative",
                "Arachnoid cyst": "developmental / cystic", "Grey matter heterotopia": "developmental / cystic",
                "Diffuse axonal injury": "traumatic", "Lhermitte-Duclos disease": "other"}
    assert {name: pathology_category(name) for name in expected} == expected


def test_the_current_release_end_to_end_with_an_empty_group_and_by_category(tmp_path):
    """ingest -> train_normative -> predict -> evaluate -> report on the current parquet: one case per
    pathology, so common/rare leaves "common" empty (named, not NaN); by category the groups have cases."""
    from tests.nova.tiny import run_steps

    source = write_release(tmp_path / "nova", release_rows())
    overrides = {**SMALL, "nova.ingest.source": str(source), "nova.train_normative.size": 32,
                 "nova.train_normative.bank_size": 500, "nova.evaluate.bootstrap_resamples": 5, "nova.report.examples": 1}
    run_steps(tmp_path / "by_cases", overrides)
    data = tmp_path / "by_cases" / "data" / "nova"
    metrics = json.loads((data / "metrics" / "evaluate.json").read_text())
    assert metrics["cases"] == {"all": 2, "common": 0, "rare": 2} and metrics["empty_groups"] == ["common"]
    assert all(set(groups) == {"rare"} for groups in metrics["by_frequency"].values())  # no NaN "common" entry
    summary = pd.read_csv(data / "evaluation" / "summary.csv")
    assert set(summary.group) == {"all", "rare"}
    html = (data / "report" / "index.html").read_text()
    assert "common: 0 cases (empty)" in html and "No case falls in the common group" in html
    assert "frequency_by: category" in html  # the lopsided split is flagged

    run_steps(tmp_path / "by_category", {**overrides, "nova.ingest.frequency_by": "category"})
    data = tmp_path / "by_category" / "data" / "nova"
    manifest = pd.read_csv(data / "interim" / "ingest" / "manifest.csv")
    assert dict(zip(manifest.case_id, manifest.frequency, strict=True)) == {"case0007": "neoplastic", "case0012": "neoplastic"}
    metrics = json.loads((data / "metrics" / "evaluate.json").read_text())
    assert metrics["cases"]["neoplastic"] == 2 and "vascular" in metrics["empty_groups"]
    assert set(pd.read_csv(data / "evaluation" / "summary.csv").group) == {"all", "neoplastic"}


def test_an_embedded_image_declaring_a_huge_size_is_refused_before_decoding(tmp_path):
    import struct
    import zlib

    cases = generate_benchmark(1, 48, seed=1, max_scans_per_case=1)
    write_nova_parquet_embedded(tmp_path / "nova-v1.parquet", cases)
    table = pq.read_table(tmp_path / "nova-v1.parquet").to_pylist()
    data = bytearray(table[0]["image"]["bytes"])
    ihdr = bytearray(data[12:29])
    ihdr[4:12] = struct.pack(">II", 100_000, 100_000)
    data[12:29], data[29:33] = ihdr, struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    table[0]["image"]["bytes"] = bytes(data)
    pq.write_table(pa.Table.from_pylist(table, schema=pq.read_schema(tmp_path / "nova-v1.parquet")), tmp_path / "nova-v1.parquet")
    benchmark = read_benchmark(tmp_path)
    with pytest.raises(FormatError, match=r"nova-v1.parquet row 0 image .*100000"):
        validate_slice(benchmark.slices[0], benchmark)
