"""ct_fairness-ingest: find (or first synthesise) the TotalSegmentator- and AMOS-style datasets, read every case, validate.

With ``source: synthetic`` both datasets are first written in their real formats under
``data/ct_fairness/raw`` (with the synthetic truth beside them); either way every case is
then read through :func:`stages.ct_fairness.datasets.read_case`, the reader used for real data.
The manifest has one row per case: dataset, age, sex, spacing, shape, organ volumes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from stages.ct_fairness.datasets import AMOS, DATASET_STYLES, TOTALSEG, CaseRecord, list_amos, list_totalsegmentator, read_case
from stages.ct_fairness.metadata import parse_age, parse_sex
from stages.ct_fairness.organs import NUM_CLASSES, ORGANS, TOTALSEG_MERGED_DEFAULT, organ_volumes_ml
from stages.ct_fairness.phantom import Effects, Scanner
from stages.ct_fairness.synthetic import TRUTH_CSV, write_synthetic_datasets
from stages.common.atomic import atomic_directory, write_json, write_text
from stages.common.badinput import BadInputError
from stages.common.io import write_table
from stages.common.params import StrictModel
from stages.common.paths import portable_path
from stages.common.runtime import progress
from stages.common.stage import run_stage
from stages.common.validation import validate_manifest

STUDY = "ct_fairness"
DatasetName = Literal["totalsegmentator", "amos"]


class IngestParams(StrictModel):
    source: Literal["synthetic"] | dict[DatasetName, str] = "synthetic"
    cases_per_dataset: int = 24
    age_ranges: list[tuple[int, int]] = [(20, 40), (41, 64), (65, 88)]
    age_weights: list[float] = [0.42, 0.16, 0.42]
    scanners: dict[DatasetName, Scanner] = {
        TOTALSEG: Scanner(),
        AMOS: Scanner(spacing=(6.0, 6.0, 9.0), fov_mm=(348.0, 264.0, 207.0), noise_hu=30.0, offset_hu=30.0,
                      blur_mm=5.0, enhancement=0.75),
    }
    effects: Effects = Effects()
    totalseg_merged_labels: dict[str, int] = TOTALSEG_MERGED_DEFAULT
    amos_max_ct_id: int = 500
    age_limits: tuple[float, float] = (0.0, 120.0)


def checked_effects(effects: Effects) -> Effects:
    """The configured effects, refused when an organ of the table has no value."""
    for name in ("female_volume_scale", "female_hu_shift", "old_volume_scale", "old_hu_shift"):
        missing = sorted(set(ORGANS) - set(getattr(effects, name)))
        if missing:
            raise BadInputError(f"ct_fairness.ingest.effects.{name}: missing organ(s) {missing}")
    return effects


def manifest_row(record: CaseRecord, age: float, sex: str, volumes, label_shape: tuple[int, ...]) -> dict:
    """One manifest row: identity, demographics, geometry (RAS), label facts and organ volumes (ml)."""
    labels = np.unique(volumes.label)
    row = {
        "case": record.case, "dataset": record.dataset, "age": age, "sex": sex, "site": record.site,
        "image_path": record.image, "label_path": record.label, "label_style": record.label_style,
        **{f"spacing_{a}": s for a, s in zip("xyz", volumes.spacing)},
        **{f"shape_{a}": int(n) for a, n in zip("xyz", volumes.image.shape)},
        **{f"label_shape_{a}": int(n) for a, n in zip("xyz", label_shape)},
        "label_max": int(labels.max()), "label_values": " ".join(str(int(v)) for v in labels),
        "hu_min": float(volumes.image.min()), "hu_max": float(volumes.image.max()),
    }
    row["shapes_equal"] = tuple(volumes.image.shape) == tuple(label_shape)
    row.update({f"volume_ml_{organ}": value for organ, value in organ_volumes_ml(volumes.label, volumes.spacing).items()})
    return row


def manifest_expectations(age_limits: tuple[float, float], datasets: list[str]) -> list[tuple[str, dict]]:
    """The Great Expectations suite every manifest must pass before any training."""
    spacing = [("expect_column_values_to_be_between", {"column": f"spacing_{a}", "min_value": 0, "strict_min": True}) for a in "xyz"]
    shapes = [("expect_column_values_to_be_between", {"column": f"shape_{a}", "min_value": 1}) for a in "xyz"]
    volumes = [("expect_column_values_to_be_between", {"column": f"volume_ml_{o}", "min_value": 0}) for o in ORGANS]
    return [
        ("expect_column_values_to_be_between", {"column": "age", "min_value": age_limits[0], "max_value": age_limits[1]}),
        ("expect_column_values_to_not_be_null", {"column": "age"}),
        ("expect_column_values_to_be_in_set", {"column": "sex", "value_set": ["F", "M"]}),
        ("expect_column_values_to_be_in_set", {"column": "dataset", "value_set": list(datasets)}),
        ("expect_column_values_to_be_between", {"column": "label_max", "min_value": 0, "max_value": NUM_CLASSES - 1}),
        ("expect_column_values_to_be_in_set", {"column": "shapes_equal", "value_set": [True]}),
        ("expect_column_values_to_be_unique", {"column": "case"}),
        ("expect_column_values_to_be_between", {"column": "hu_min", "min_value": -3072}),
        *spacing, *shapes, *volumes,
    ]


def dataset_roots(params: IngestParams, raw: Path) -> dict[str, Path]:
    if params.source == "synthetic":
        return {name: raw / name for name in DATASET_STYLES}
    roots = {}
    for name, folder in params.source.items():
        path = Path(folder).expanduser().resolve()
        if not path.is_dir():
            raise BadInputError(f"ct_fairness.ingest.source.{name}: {path} is not a folder")
        roots[name] = path
    return roots


def main() -> None:
    with run_stage(STUDY, "ingest", IngestParams) as ctx:
        p = ctx.params
        raw, out = ctx.data / "raw", ctx.data / "interim" / "ingest"
        with atomic_directory(raw) as staging:
            if p.source == "synthetic":
                scanners = {name: p.scanners[name] for name in DATASET_STYLES}
                write_synthetic_datasets(staging, p.cases_per_dataset, scanners, checked_effects(p.effects),
                                         p.age_ranges, p.age_weights, ctx.common.seed)
            else:
                write_text(staging / "SOURCE.txt", "".join(f"{k}: {v}\n" for k, v in sorted(p.source.items())))
        roots = dataset_roots(p, raw)
        records: list[CaseRecord] = []
        for name, root in roots.items():
            found, problems = list_totalsegmentator(root) if name == TOTALSEG else list_amos(root, p.amos_max_ct_id)
            for case, problem in problems:
                with ctx.quarantine.guard(f"{name}/{case}"):
                    raise BadInputError(f"{name} case {case}: {problem}")
            records += found
        rows = []
        for record in progress(records, "reading cases", len(records)):
            with ctx.quarantine.guard(f"{record.dataset}/{record.case}") as outcome:
                try:
                    age, sex = parse_age(record.age), parse_sex(record.sex)
                except ValueError as error:
                    raise BadInputError(f"{record.dataset} case {record.case}: {error}") from error
                volumes = read_case(roots[record.dataset], record, p.totalseg_merged_labels)
            if outcome.ok:
                rows.append(manifest_row(record, age, sex, volumes, volumes.label.shape))
        if not rows:
            raise BadInputError(f"no usable cases in {', '.join(str(r) for r in roots.values())}")
        manifest = pd.DataFrame(rows).sort_values(["dataset", "case"], kind="stable").reset_index(drop=True)
        validation_result = ctx.data / "interim" / "manifest_validation.json"
        try:
            validate_manifest(manifest, "ct_fairness_manifest", manifest_expectations(p.age_limits, list(roots)), validation_result)
        finally:
            if validation_result.exists():
                ctx.log_artifact(validation_result)
        truth = raw / TRUTH_CSV
        with atomic_directory(out) as staging:
            write_table(staging / "manifest.csv", manifest)
            write_json(staging / "datasets.json", {
                "roots": {name: portable_path(root, ctx.root) for name, root in roots.items()},
                "source": "synthetic" if p.source == "synthetic" else "real",
                "truth": portable_path(truth, ctx.root) if truth.exists() else None,
                "totalseg_merged_labels": p.totalseg_merged_labels,
            })
            ctx.save_quarantine(staging / "quarantine.json")
        ctx.log_artifact(out / "manifest.csv")
        counts = manifest.groupby(["dataset", "sex"]).size()
        ctx.log_metrics({"cases": len(manifest), **{f"cases_{d}_{s}": int(n) for (d, s), n in counts.items()}})


if __name__ == "__main__":
    main()
