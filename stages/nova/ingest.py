"""nova-ingest: read NOVA (or first synthesise a NOVA-like benchmark), validate every slice, write the manifest.

With ``source: synthetic`` a benchmark built from the MNI152 template is first written under
``data/nova/raw/benchmark`` in both of NOVA's layouts (CSVs + PNG slices, and the parquet), and
healthy training slices under ``data/nova/raw/healthy``; either way the benchmark is then read
through :func:`stages.nova.dataset.read_benchmark`, the reader used for real data.

Per slice: the PNG must decode, every box must have a positive size and lie inside the image,
and its case must have a clinical history and a final diagnosis. A failure names the file,
row or case; it stops the stage (``on_bad_input: fatal``) or quarantines the slice (``skip``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from stages.common.atomic import atomic_directory, write_json, write_text
from stages.common.badinput import BadInputError
from stages.common.io import read_png, read_table, write_png, write_table
from stages.common.params import StrictModel
from stages.common.paths import portable_path, resolve_inside
from stages.common.runtime import progress
from stages.common.stage import run_stage
from stages.common.validation import validate_manifest
from stages.nova.boxes import box_problems
from stages.nova.catalogue import normalise_diagnosis
from stages.nova.dataset import RawBenchmark, decode_slice, read_benchmark
from stages.nova.judges import SynonymJudge

STUDY = "nova"


class IngestParams(StrictModel):
    source: str = "synthetic"           # or a NOVA folder (CSV layout and/or parquet) or the parquet file
    layout: str = "auto"                # auto (parquet when present) | csv | parquet
    healthy_source: str = "synthetic"   # or a folder of healthy PNG slices with healthy.csv
    cases: int = 40
    image_size: int = 160
    max_scans_per_case: int = 3
    normal_slice_fraction: float = 0.15
    healthy_slices: int = 64
    frequency_exponent: float = 1.1
    rare_max_cases: int = 1


def diagnosis_groups(final_diagnoses: pd.Series, judge: SynonymJudge) -> pd.Series:
    """A key per case naming its pathology: the catalogue id when the diagnosis resolves, else its normalised text."""
    return final_diagnoses.map(lambda text: judge.resolve(text) or normalise_diagnosis(text) or "unknown")


def frequency_labels(case_keys: pd.Series, rare_max_cases: int) -> pd.Series:
    """``rare`` for pathologies with at most ``rare_max_cases`` cases in the benchmark, else ``common``."""
    counts = case_keys.map(case_keys.value_counts())
    return pd.Series(np.where(counts <= rare_max_cases, "rare", "common"), index=case_keys.index)


def validate_slice(record, benchmark: RawBenchmark) -> tuple[np.ndarray, dict]:
    """Decode and check one slice; raise BadInputError/FormatError naming the file, row or case."""
    if record.problem:
        raise BadInputError(record.problem)
    case = benchmark.cases.get(record.case_id)
    if case is None:
        raise BadInputError(f"{record.where}: slice {record.filename}: case {record.case_id!r} has no row in the case metadata")
    for field_name in ("clinical_history", "final_diagnosis"):
        if not case[field_name]:
            raise BadInputError(f"{case['where']}: case {record.case_id!r} has no {field_name}")
    pixels = decode_slice(record)
    height, width = pixels.shape
    for where, box in record.gold:
        problems = box_problems([box], width, height)
        if problems:
            raise BadInputError(f"{where}: slice {record.filename}: {problems[0].replace('box 0 ', 'box ')}")
    for where, _, box in record.raters:
        problems = box_problems([box], width, height)
        if problems:
            raise BadInputError(f"{where}: slice {record.filename}: rater {problems[0].replace('box 0 ', 'box ')}")
    return pixels, case


def manifest_expectations() -> list[tuple[str, dict]]:
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
        ("expect_column_values_to_be_in_set", {"column": "frequency", "value_set": ["common", "rare"]}),
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


def main() -> None:
    with run_stage(STUDY, "ingest", IngestParams) as ctx:
        p = ctx.params
        raw = ctx.data / "raw"
        if p.source == "synthetic" or p.healthy_source == "synthetic":
            from stages.nova.synthetic import generate_benchmark, generate_healthy, write_benchmark, write_healthy

            with atomic_directory(raw) as staging:
                if p.source == "synthetic":
                    cases = generate_benchmark(p.cases, p.image_size, ctx.common.seed, p.max_scans_per_case,
                                               p.normal_slice_fraction, frequency_exponent=p.frequency_exponent)
                    write_benchmark(staging / "benchmark", cases)
                else:
                    write_text(staging / "SOURCE.txt", f"{Path(p.source).expanduser().resolve()}\n")
                if p.healthy_source == "synthetic":
                    write_healthy(staging / "healthy", generate_healthy(p.healthy_slices, p.image_size, ctx.common.seed))
        else:
            with atomic_directory(raw) as staging:
                write_text(staging / "SOURCE.txt", f"{Path(p.source).expanduser().resolve()}\n")
        source = raw / "benchmark" if p.source == "synthetic" else Path(p.source).expanduser().resolve()
        healthy_root = raw / "healthy" if p.healthy_source == "synthetic" else Path(p.healthy_source).expanduser().resolve()
        if not source.exists():
            raise BadInputError(f"nova.ingest.source: {source} does not exist")
        benchmark = read_benchmark(source, p.layout)
        for where, filename in benchmark.orphan_boxes:
            with ctx.quarantine.guard(where):
                raise BadInputError(f"{where}: box for {filename}, which captions.csv does not list")

        out = ctx.data / "interim" / "ingest"
        with atomic_directory(out) as staging:
            if benchmark.layout == "parquet":
                images_root = staging / "images"
                dataset_root_final = out / "images"
            else:
                dataset_root_final = benchmark.root / "images" if (benchmark.root / "images").is_dir() else benchmark.root
            rows, box_rows = [], []
            for record in progress(benchmark.slices, "validating slices", len(benchmark.slices)):
                with ctx.quarantine.guard(record.where or record.filename) as outcome:
                    pixels, case = validate_slice(record, benchmark)
                if not outcome.ok:
                    continue
                image_id = Path(record.filename).stem
                if benchmark.layout == "parquet":
                    write_png(resolve_inside(images_root, record.filename, "image filename"), pixels)
                path = record.filename
                height, width = pixels.shape
                gold = [box for _, box in record.gold]
                inside, positive = box_flags(gold + [box for _, _, box in record.raters], width, height)
                rows.append({
                    "image_id": image_id, "filename": record.filename, "path": path, "case_id": record.case_id,
                    "scan_id": record.scan_id, "width": width, "height": height, "caption": record.caption,
                    "clinical_history": case["clinical_history"], "final_diagnosis": case["final_diagnosis"],
                    "n_gold": len(gold), "n_rater": len(record.raters), "image_present": True,
                    "boxes_inside": inside, "boxes_positive": positive,
                    "has_history": bool(case["clinical_history"]), "has_diagnosis": bool(case["final_diagnosis"]),
                })
                box_rows += [{"image_id": image_id, "source": "gold", "x": b[0], "y": b[1], "width": b[2], "height": b[3]} for b in gold]
                box_rows += [{"image_id": image_id, "source": f"rater{r}", "x": b[0], "y": b[1], "width": b[2], "height": b[3]}
                             for _, r, b in record.raters]
            if not rows:
                raise BadInputError(f"{source}: no usable slice (all {len(benchmark.slices)} were quarantined)")
            manifest = pd.DataFrame(rows)
            judge = SynonymJudge()
            cases_table = manifest.drop_duplicates("case_id")[["case_id", "final_diagnosis"]].copy()
            cases_table["pathology"] = diagnosis_groups(cases_table["final_diagnosis"], judge).to_numpy()
            cases_table["frequency"] = frequency_labels(cases_table["pathology"], p.rare_max_cases).to_numpy()
            manifest = manifest.merge(cases_table[["case_id", "pathology", "frequency"]], on="case_id", how="left")
            healthy = read_healthy(healthy_root, ctx.quarantine)
            validation_result = ctx.data / "interim" / "manifest_validation.json"
            try:
                validate_manifest(manifest, "nova_manifest", manifest_expectations(), validation_result)
            finally:
                if validation_result.exists():
                    ctx.log_artifact(validation_result)
            write_table(staging / "manifest.csv", manifest)
            write_table(staging / "boxes.csv", pd.DataFrame(box_rows, columns=["image_id", "source", "x", "y", "width", "height"]))
            write_table(staging / "healthy.csv", healthy)
            write_json(staging / "dataset.json", {
                "root": portable_path(dataset_root_final, ctx.root), "healthy_root": portable_path(healthy_root, ctx.root),
                "source": p.source if p.source != "synthetic" else "synthetic", "layout": benchmark.layout,
            })
            ctx.save_quarantine(staging / "quarantine.json")
        ctx.log_artifact(out / "manifest.csv")
        counts = manifest.drop_duplicates("case_id")["frequency"].value_counts().to_dict()
        ctx.log_metrics({"slices": len(manifest), "cases": manifest.case_id.nunique(),
                         "gold_boxes": int(manifest.n_gold.sum()), "slices_without_box": int((manifest.n_gold == 0).sum()),
                         "pathologies": manifest.pathology.nunique(), "healthy_slices": len(healthy),
                         **{f"cases_{k}": v for k, v in counts.items()}})
        print(f"nova-ingest: {len(manifest)} slices, {manifest.case_id.nunique()} cases, layout {benchmark.layout}, "
              f"{len(ctx.quarantine.entries)} quarantined")


if __name__ == "__main__":
    main()
