"""nova-ingest: read NOVA (or first synthesise a NOVA-like benchmark), validate every slice, write the manifest.

With ``source: synthetic`` a benchmark built from the MNI152 template is first written under
``data/nova/raw/benchmark`` in both of NOVA's layouts (CSVs + PNG slices, and the parquet), and
with ``healthy_source: synthetic`` healthy training slices under ``data/nova/raw/healthy``;
either way the benchmark is then read through :func:`stages.nova.dataset.read_benchmark`, the
reader used for real data. Each of the two raw folders holds a ``SOURCE.json`` saying where its
data came from (so both exist, and later stages can depend on exactly the one they read).

Per slice: the PNG must decode, every box must have a positive size and lie inside the image,
and its case must have a clinical history and a final diagnosis. A failure names the file,
row or case; it stops the stage (``on_bad_input: fatal``) or quarantines the slice (``skip``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from stages.common.atomic import atomic_directory
from stages.common.badinput import BadInputError
from stages.common.ingest import finish_ingest, ingest_output, write_provenance
from stages.common.io import read_png, read_table, write_png
from stages.common.params import StrictModel
from stages.common.paths import portable_path, resolve_inside
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.nova.boxes import box_problems
from stages.nova.catalogue import CATEGORIES, normalise_diagnosis, pathology_category
from stages.nova.dataset import BENCHMARK_FOLDER, HEALTHY_FOLDER, RawBenchmark, decode_slice, read_benchmark
from stages.nova.judges import SynonymJudge


class IngestParams(StrictModel):
    source: str = Field(min_length=1)          # "synthetic", or a NOVA folder (CSV layout and/or parquet) or the parquet file
    layout: Literal["auto", "csv", "parquet"]  # auto: the parquet when there is one
    healthy_source: str = Field(min_length=1)  # "synthetic", or a folder of healthy PNG slices with healthy.csv
    cases: int = Field(ge=1)                   # synthetic only, like the four below
    image_size: int = Field(ge=16, le=8192)    # the manifest suite accepts 16-8192 px
    max_scans_per_case: int = Field(ge=1)
    normal_slice_fraction: float = Field(ge=0, le=1)
    healthy_slices: int = Field(ge=2)          # train_normative needs one to calibrate and one to fit
    frequency_exponent: float = Field(ge=0)
    rare_max_cases: int = Field(ge=0)          # pathologies with at most this many cases are "rare"
    frequency_by: Literal["cases", "category"]  # groups: common/rare by case count, or pathology category (ours)


def diagnosis_groups(final_diagnoses: pd.Series, judge: SynonymJudge) -> pd.Series:
    """A key per case naming its pathology: the catalogue id when the diagnosis resolves, else its normalised text."""
    return final_diagnoses.map(lambda text: judge.resolve(text) or normalise_diagnosis(text) or "unknown")


def frequency_labels(case_keys: pd.Series, rare_max_cases: int) -> pd.Series:
    """``rare`` for pathologies with at most ``rare_max_cases`` cases in the benchmark, else ``common``."""
    counts = case_keys.map(case_keys.value_counts())
    return pd.Series(np.where(counts <= rare_max_cases, "rare", "common"), index=case_keys.index)


CASE_GROUPS = ("common", "rare")


def group_labels(frequency_by: str) -> tuple[str, ...]:
    """The groups results are broken down by, in report order."""
    return CASE_GROUPS if frequency_by == "cases" else CATEGORIES


def validate_slice(record, benchmark: RawBenchmark) -> tuple[np.ndarray, dict]:
    """Decode and check one slice; raise BadInputError/FormatError naming the file, row or case."""
    if record.problem:
        raise BadInputError(record.problem)
    case = benchmark.cases.get(record.case_id)
    if case is None:
        raise BadInputError(f"{record.where}: slice {record.filename}: case {record.case_id!r} has no row in the case metadata")
    if case.get("problem"):
        raise BadInputError(f"slice {record.filename}: {case['problem']}")
    for field_name in ("clinical_history", "final_diagnosis"):
        if not case[field_name]:
            raise BadInputError(f"{case['where']}: case {record.case_id!r} has no {field_name}")
    pixels = decode_slice(record)
    height, width = pixels.shape
    declared = record.declared_size
    if (declared[0] is not None and declared[0] != width) or (declared[1] is not None and declared[1] != height):
        raise BadInputError(f"{record.where}: slice {record.filename}: declares {declared[0]}x{declared[1]} px "
                            f"(width x height), the PNG is {width}x{height}")
    for where, box in record.gold:
        problems = box_problems([box], width, height)
        if problems:
            raise BadInputError(f"{where}: slice {record.filename}: {problems[0].replace('box 0 ', 'box ')}")
    for where, _, box in record.raters:
        problems = box_problems([box], width, height)
        if problems:
            raise BadInputError(f"{where}: slice {record.filename}: rater {problems[0].replace('box 0 ', 'box ')}")
    return pixels, case


def manifest_expectations(groups: tuple[str, ...] = CASE_GROUPS) -> list[tuple[str, dict]]:
    return [
        ("expect_column_values_to_be_unique", {"column": "image_id"}),
        ("expect_column_values_to_not_be_null", {"column": "case_id"}),
        ("expect_column_values_to_be_in_set", {"column": "image_present", "value_set": [True]}),
        ("expect_column_values_to_be_in_set", {"column": "boxes_inside", "value_set": [True]}),
        ("expect_column_values_to_be_in_set", {"column": "boxes_positive", "value_set": [True]}),
        ("expect_column_values_to_be_in_set", {"column": "has_history", "value_set": [True]}),
        ("expect_column_values_to_be_in_set", {"column": "has_diagnosis", "value_set": [True]}),
        ("expect_column_values_to_be_between", {"column": "width", "min_value": 16, "max_value": 8192}),
        ("expect_column_values_to_be_between", {"column": "height", "min_value": 16, "max_value": 8192}),
        ("expect_column_values_to_be_between", {"column": "n_gold", "min_value": 0, "max_value": 100}),
        ("expect_column_values_to_be_in_set", {"column": "frequency", "value_set": list(groups)}),
    ]


def box_flags(boxes: list[list[float]], width: int, height: int) -> tuple[bool, bool]:
    """(all inside the image, all of positive size) for the manifest's own checks."""
    array = np.asarray(boxes, dtype=float).reshape(-1, 4)
    positive = bool(np.all((array[:, 2] > 0) & (array[:, 3] > 0)))
    inside = bool(np.all((array[:, 0] >= -0.5) & (array[:, 1] >= -0.5) & (array[:, 0] + array[:, 2] <= width + 0.5)
                         & (array[:, 1] + array[:, 3] <= height + 0.5)))
    return inside, positive


def read_healthy(folder: Path, quarantine) -> pd.DataFrame:
    """The healthy slices' table (filename, plane, sequence), each PNG checked."""
    table = read_table(folder / "healthy.csv", ("filename",), dtype={"filename": str}, keep_default_na=False)
    rows = []
    for line, row in enumerate(table.to_dict("records"), start=2):
        with quarantine.guard(f"healthy.csv line {line}") as outcome:
            pixels = read_png(resolve_inside(folder, row["filename"], "healthy filename"))
        if outcome.ok:
            rows.append({"filename": row["filename"], "plane": row.get("plane") or "unknown",
                         "sequence": row.get("sequence") or "all", "height": pixels.shape[0], "width": pixels.shape[1]})
    if not rows:
        raise BadInputError(f"{folder / 'healthy.csv'}: no readable healthy slice")
    return pd.DataFrame(rows)


def write_raw(ctx: StageContext[IngestParams], real_source: Path | None, real_healthy: Path | None) -> None:
    """``raw/benchmark`` and ``raw/healthy``: the synthetic data where a source is synthetic, and their SOURCE.json."""
    p = ctx.params
    with atomic_directory(ctx.out("raw")) as staging:
        benchmark, healthy = staging / BENCHMARK_FOLDER, staging / HEALTHY_FOLDER
        if real_source is None or real_healthy is None:
            from stages.nova.synthetic import generate_benchmark, generate_healthy, write_benchmark, write_healthy

            if real_source is None:
                write_benchmark(benchmark, generate_benchmark(p.cases, p.image_size, ctx.common.seed, p.max_scans_per_case,
                                                              p.normal_slice_fraction, frequency_exponent=p.frequency_exponent))
            if real_healthy is None:
                write_healthy(healthy, generate_healthy(p.healthy_slices, p.image_size, ctx.common.seed))
        write_provenance(benchmark, {"source": real_source}, ctx.root)
        write_provenance(healthy, {"healthy_source": real_healthy}, ctx.root)


def slice_rows(image_id: str, record, case: dict, width: int, height: int) -> tuple[dict, list[dict]]:
    """The manifest row of one validated slice and its rows of boxes.csv (gold, then each rater's)."""
    gold = [box for _, box in record.gold]
    inside, positive = box_flags(gold + [box for _, _, box in record.raters], width, height)
    row = {
        "image_id": image_id, "filename": record.filename, "path": record.filename, "case_id": record.case_id,
        "scan_id": record.scan_id, "width": width, "height": height, "caption": record.caption,
        "clinical_history": case["clinical_history"], "final_diagnosis": case["final_diagnosis"],
        "n_gold": len(gold), "n_rater": len(record.raters), "image_present": True,
        "boxes_inside": inside, "boxes_positive": positive,
        "has_history": bool(case["clinical_history"]), "has_diagnosis": bool(case["final_diagnosis"]),
    }
    boxes = [{"image_id": image_id, "source": "gold", "x": b[0], "y": b[1], "width": b[2], "height": b[3]} for b in gold]
    boxes += [{"image_id": image_id, "source": f"rater{r}", "x": b[0], "y": b[1], "width": b[2], "height": b[3]}
              for _, r, b in record.raters]
    return row, boxes


def label_frequencies(manifest: pd.DataFrame, rare_max_cases: int, frequency_by: str = "cases") -> pd.DataFrame:
    """The manifest with each case's ``pathology`` key, its ``category`` and its group ``frequency``:
    common or rare by case count (``frequency_by: cases``), or the category (``category``)."""
    cases_table = manifest.drop_duplicates("case_id")[["case_id", "final_diagnosis"]].copy()
    cases_table["pathology"] = diagnosis_groups(cases_table["final_diagnosis"], SynonymJudge()).to_numpy()
    cases_table["category"] = cases_table["final_diagnosis"].map(pathology_category).to_numpy()
    if frequency_by == "cases":
        cases_table["frequency"] = frequency_labels(cases_table["pathology"], rare_max_cases).to_numpy()
    else:
        cases_table["frequency"] = cases_table["category"]
    return manifest.merge(cases_table[["case_id", "pathology", "category", "frequency"]], on="case_id", how="left")


def ingest(ctx: StageContext[IngestParams]) -> Metrics:
    p = ctx.params
    real_source = ctx.source(p.source, "source")
    real_healthy = ctx.source(p.healthy_source, "healthy_source")
    write_raw(ctx, real_source, real_healthy)
    source = real_source or ctx.out("raw") / BENCHMARK_FOLDER
    healthy_root = real_healthy or ctx.out("raw") / HEALTHY_FOLDER
    benchmark = read_benchmark(source, p.layout)
    for where, filename in benchmark.orphan_boxes:
        with ctx.quarantine.guard(where):
            raise BadInputError(f"{where}: box for {filename}, which captions.csv does not list")

    out = ctx.out("interim/ingest")
    with ingest_output(ctx) as staging:
        # The parquet's slices become PNGs in the ingest output; the CSV layout's stay where they are.
        if benchmark.layout == "parquet":
            dataset_root = out / "images"
        else:
            dataset_root = benchmark.root / "images" if (benchmark.root / "images").is_dir() else benchmark.root
        rows, box_rows, seen = [], [], {}
        for record in progress(benchmark.slices, "validating slices", len(benchmark.slices)):
            with ctx.quarantine.guard(record.where or record.filename) as outcome:
                image_id = Path(record.filename).stem
                if image_id in seen:
                    raise BadInputError(f"{record.where}: slice {record.filename}: a second row for image {image_id!r} "
                                        f"(first at {seen[image_id]})")
                pixels, case = validate_slice(record, benchmark)
                if benchmark.layout == "parquet":
                    write_png(resolve_inside(staging / "images", record.filename, "image filename"), pixels)
            if not outcome.ok:
                continue
            seen[image_id] = record.where
            height, width = pixels.shape
            row, boxes = slice_rows(image_id, record, case, width, height)
            rows.append(row)
            box_rows += boxes
        if not rows:
            ctx.require_survivors(0, "slice")  # names the saved quarantine list (issue 19 item 3)
            raise BadInputError(f"{source}: no slice to ingest")
        manifest = label_frequencies(pd.DataFrame(rows), p.rare_max_cases, p.frequency_by)
        healthy = read_healthy(healthy_root, ctx.quarantine)
        finish_ingest(ctx, staging, manifest, "nova_manifest", manifest_expectations(group_labels(p.frequency_by)), {
            "root": portable_path(dataset_root, ctx.root), "healthy_root": portable_path(healthy_root, ctx.root),
            "source": p.source, "layout": benchmark.layout,
            "frequency_by": p.frequency_by, "groups": list(group_labels(p.frequency_by)),
        }, tables={"boxes.csv": pd.DataFrame(box_rows, columns=["image_id", "source", "x", "y", "width", "height"]),
                   "healthy.csv": healthy})
    counts = manifest.drop_duplicates("case_id")["frequency"].value_counts().to_dict()
    print(f"nova-ingest: {len(manifest)} slices, {manifest.case_id.nunique()} cases, layout {benchmark.layout}, "
          f"{len(ctx.quarantine.entries)} quarantined")
    return {"slices": len(manifest), "cases": manifest.case_id.nunique(), "gold_boxes": int(manifest.n_gold.sum()),
            "slices_without_box": int((manifest.n_gold == 0).sum()), "pathologies": manifest.pathology.nunique(),
            "healthy_slices": len(healthy), **{f"cases_{k}": v for k, v in counts.items()}}


if __name__ == "__main__":
    run_stage(ingest)
