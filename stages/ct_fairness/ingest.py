"""ct_fairness-ingest: find (or first synthesise) the TotalSegmentator- and AMOS-style datasets, read every case, validate.

With ``source: {totalsegmentator: synthetic, amos: synthetic}`` both datasets are first written in
their real formats under ``data/ct_fairness/raw`` (with the synthetic truth beside them); either
way every case is then read through :func:`stages.ct_fairness.datasets.read_case`, the reader used
for real data. The manifest has one row per case: dataset, age, sex, spacing, shape, organ
volumes. ``interim/ingest/`` holds the manifest, ``dataset.json`` (where each dataset's files
are), the synthetic truth table when there is one, and the quarantine list.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BeforeValidator, Field, field_validator, model_validator

from stages.common.atomic import atomic_directory
from stages.common.badinput import BadInputError
from stages.common.ingest import save_ingest, write_provenance
from stages.common.params import StrictModel
from stages.common.paths import portable_path
from stages.common.pipeline import SYNTHETIC
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.ct_fairness.datasets import (
    AMOS_META,
    DATASET_STYLES,
    TOTALSEG,
    TOTALSEG_META,
    CaseRecord,
    DatasetName,
    list_amos,
    list_totalsegmentator,
    read_case,
)
from stages.ct_fairness.metadata import parse_age, parse_sex
from stages.ct_fairness.organs import NUM_CLASSES, ORGANS, merged_to_organ_table, organ_volumes_ml
from stages.ct_fairness.phantom import Effects, Scanner
from stages.ct_fairness.synthetic import TRUTH_CSV, write_synthetic_datasets

SEXES = ("F", "M")
EFFECT_TABLES = ("female_volume_scale", "female_hu_shift", "old_volume_scale", "old_hu_shift")


def every_field_given(kind: type) -> BeforeValidator:
    """Refuse a mapping that leaves out a field of the dataclass ``kind``.

    :class:`Scanner` and :class:`Effects` keep defaults for direct use in code; in params.yaml
    every value must be written out, so a forgotten key is an error, not a silent default.
    """
    names = [f.name for f in fields(kind)]

    def check(value: Any) -> Any:
        if isinstance(value, Mapping):
            missing = [name for name in names if name not in value]
            if missing:
                raise ValueError(f"missing key(s) {missing}")
        return value

    return BeforeValidator(check)


ScannerParams = Annotated[Scanner, every_field_given(Scanner)]
EffectsParams = Annotated[Effects, every_field_given(Effects)]


class SourceParams(StrictModel):
    """Where each dataset comes from: ``synthetic`` (written first, in the real format) or its folder."""

    totalsegmentator: str
    amos: str

    @model_validator(mode="after")
    def both_or_neither(self) -> SourceParams:
        values = {name: getattr(self, name) for name in DATASET_STYLES}
        if len({value == SYNTHETIC for value in values.values()}) > 1:
            raise ValueError(f"give both datasets as {SYNTHETIC} or both as folders (got {values})")
        return self


class IngestParams(StrictModel):
    source: SourceParams
    cases_per_dataset: int = Field(ge=1)
    age_ranges: list[tuple[int, int]] = Field(min_length=1)
    age_weights: list[float] = Field(min_length=1)
    scanners: dict[DatasetName, ScannerParams]
    effects: EffectsParams
    totalseg_merged_labels: dict[str, int]
    amos_max_ct_id: int = Field(ge=1)
    age_limits: tuple[float, float]

    @field_validator("scanners")
    @classmethod
    def both_scanners(cls, scanners: dict[str, Scanner]) -> dict[str, Scanner]:
        missing = [name for name in DATASET_STYLES if name not in scanners]
        if missing:
            raise ValueError(f"missing scanner(s) for {missing}")
        for name, scanner in scanners.items():
            if min(scanner.spacing) <= 0 or min(scanner.fov_mm) <= 0:
                raise ValueError(f"{name}: spacing and fov_mm must be positive (got {scanner.spacing}, {scanner.fov_mm})")
            if scanner.noise_hu < 0 or scanner.blur_mm < 0 or scanner.enhancement < 0:
                raise ValueError(f"{name}: noise_hu, blur_mm and enhancement must not be negative")
        return scanners

    @field_validator("effects")
    @classmethod
    def checked_effects(cls, effects: Effects) -> Effects:
        """Every organ of the table has a value in each effect table, and nothing else does."""
        for name in EFFECT_TABLES:
            table = getattr(effects, name)
            missing, unknown = sorted(set(ORGANS) - set(table)), sorted(set(table) - set(ORGANS))
            if missing or unknown:
                raise ValueError(f"{name}: " + "; ".join(
                    part for part in (f"missing organ(s) {missing}" if missing else "",
                                      f"unknown organ(s) {unknown}; known: {list(ORGANS)}" if unknown else "") if part))
        for name in ("female_volume_scale", "old_volume_scale"):
            if any(v <= 0 for v in getattr(effects, name).values()):
                raise ValueError(f"{name}: volume scales must be positive")
        for name in ("visceral_fat_fraction", "subcutaneous_fat_mm"):
            missing = sorted(set(SEXES) - set(getattr(effects, name)))
            if missing:
                raise ValueError(f"{name}: missing value(s) for {missing}")
        if effects.old_reference_age <= effects.ageing_onset:
            raise ValueError(f"old_reference_age ({effects.old_reference_age}) must be above ageing_onset ({effects.ageing_onset})")
        return effects

    @field_validator("totalseg_merged_labels")
    @classmethod
    def known_merged_labels(cls, labels: dict[str, int]) -> dict[str, int]:
        merged_to_organ_table(labels)  # raises naming unknown organs or clashing ids
        return labels

    @model_validator(mode="after")
    def consistent_ages(self) -> IngestParams:
        low, high = self.age_limits
        if not low < high:
            raise ValueError(f"age_limits: the lower limit must be below the upper one (got {self.age_limits})")
        if len(self.age_weights) != len(self.age_ranges):
            raise ValueError(f"age_weights: give one weight per age range ({len(self.age_ranges)}), got {len(self.age_weights)}")
        if any(w < 0 for w in self.age_weights) or sum(self.age_weights) <= 0:
            raise ValueError(f"age_weights: weights must not be negative and must not all be zero (got {self.age_weights})")
        for first, last in self.age_ranges:
            if not low <= first <= last <= high:
                raise ValueError(f"age_ranges: [{first}, {last}] must be ordered and inside age_limits {list(self.age_limits)}")
        return self


def manifest_row(record: CaseRecord, age: float, sex: str, volumes, label_shape: tuple[int, ...]) -> dict:
    """One manifest row: identity, demographics, geometry (RAS), label facts and organ volumes (ml)."""
    labels = np.unique(volumes.label)
    row = {
        "case": record.case, "dataset": record.dataset, "age": age, "sex": sex, "site": record.site,
        "image_path": record.image, "label_path": record.label, "label_style": record.label_style,
        **{f"spacing_{a}": s for a, s in zip("xyz", volumes.spacing, strict=True)},
        **{f"shape_{a}": int(n) for a, n in zip("xyz", volumes.image.shape, strict=True)},
        **{f"label_shape_{a}": int(n) for a, n in zip("xyz", label_shape, strict=True)},
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
        ("expect_column_values_to_be_in_set", {"column": "sex", "value_set": list(SEXES)}),
        ("expect_column_values_to_be_in_set", {"column": "dataset", "value_set": list(datasets)}),
        ("expect_column_values_to_be_between", {"column": "label_max", "min_value": 0, "max_value": NUM_CLASSES - 1}),
        ("expect_column_values_to_be_in_set", {"column": "shapes_equal", "value_set": [True]}),
        ("expect_column_values_to_be_unique", {"column": "case"}),
        ("expect_column_values_to_be_between", {"column": "hu_min", "min_value": -3072}),
        *spacing, *shapes, *volumes,
    ]


def real_sources(ctx: StageContext[IngestParams]) -> dict[str, Path | None]:
    """Each dataset's real folder, or None for all of them when synthetic (the params allow no mix)."""
    sources = {name: ctx.source(getattr(ctx.params.source, name), f"source.{name}") for name in DATASET_STYLES}
    for name, path in sources.items():
        if path is not None and not path.is_dir():
            raise BadInputError(f"ct_fairness.ingest.source.{name}: {path} is not a folder")
    return sources


def find_records(ctx: StageContext[IngestParams], roots: Mapping[str, Path]) -> list[CaseRecord]:
    """Every case whose metadata and files pair up; the ones that do not go through the quarantine."""
    records: list[CaseRecord] = []
    for name, root in roots.items():
        found, problems = list_totalsegmentator(root) if name == TOTALSEG else list_amos(root, ctx.params.amos_max_ct_id)
        for case, problem in problems:
            with ctx.quarantine.guard(f"{name}/{case}"):
                raise BadInputError(f"{name} case {case}: {problem}")
        records += found
    return records


def check_age(record: CaseRecord, age: float, limits: tuple[float, float]) -> None:
    """A per-case check (inside the quarantine guard): the age lies within ``age_limits``, naming the metadata file."""
    low, high = limits
    if not low <= age <= high:
        meta = TOTALSEG_META if record.dataset == TOTALSEG else AMOS_META
        raise BadInputError(f"{record.dataset} case {record.case}: age {age:g} in {meta} is outside "
                            f"ct_fairness.ingest.age_limits [{low:g}, {high:g}]")


def read_manifest(ctx: StageContext[IngestParams], roots: Mapping[str, Path], records: list[CaseRecord]) -> pd.DataFrame:
    rows = []
    for record in progress(records, "reading cases", len(records)):
        with ctx.quarantine.guard(f"{record.dataset}/{record.case}") as outcome:
            try:
                age, sex = parse_age(record.age), parse_sex(record.sex)
            except ValueError as error:
                raise BadInputError(f"{record.dataset} case {record.case}: {error}") from error
            check_age(record, age, ctx.params.age_limits)
            volumes = read_case(roots[record.dataset], record, ctx.params.totalseg_merged_labels)
        if outcome.ok:
            rows.append(manifest_row(record, age, sex, volumes, volumes.label.shape))
    if not rows:
        raise BadInputError(f"no usable cases in {', '.join(str(r) for r in roots.values())}")
    return pd.DataFrame(rows).sort_values(["dataset", "case"], kind="stable").reset_index(drop=True)


def ingest(ctx: StageContext[IngestParams]) -> Metrics:
    p = ctx.params
    sources = real_sources(ctx)
    synthetic = all(path is None for path in sources.values())
    truth = None
    with atomic_directory(ctx.out("raw")) as staging:
        if synthetic:
            truth = write_synthetic_datasets(staging, p.cases_per_dataset, {name: p.scanners[name] for name in DATASET_STYLES},
                                             p.effects, p.age_ranges, p.age_weights, ctx.common.seed)
        write_provenance(staging, sources, ctx.root)
    roots = {name: path or ctx.out("raw") / name for name, path in sources.items()}
    manifest = read_manifest(ctx, roots, find_records(ctx, roots))
    info = {
        "roots": {name: portable_path(root, ctx.root) for name, root in roots.items()},
        "source": SYNTHETIC if synthetic else "real",
        "truth": TRUTH_CSV if truth is not None else None,  # beside manifest.csv
        "totalseg_merged_labels": p.totalseg_merged_labels,
    }
    save_ingest(ctx, manifest, "ct_fairness_manifest", manifest_expectations(p.age_limits, list(roots)), info,
                {TRUTH_CSV: truth} if truth is not None else None)
    counts = manifest.groupby(["dataset", "sex"]).size()
    return {"cases": len(manifest), **{f"cases_{d}_{s}": int(n) for (d, s), n in counts.items()}}


if __name__ == "__main__":
    run_stage(ingest)
