"""ms_lesion-ingest: find (or first synthesise) the three MS datasets, read and check every case, write the manifest.

With a ``synthetic`` source a dataset is first written in its real layout under
``data/ms_lesion/raw/<dataset>``, together with ``raw/synthetic_truth/`` (every label of every
subject and each lesion's fate, which the layouts themselves do not all carry); either way the
cases are then read through :mod:`stages.ms_lesion.layouts`, the readers used for real data.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from stages.common.atomic import atomic_directory, write_json
from stages.common.badinput import BadInputError
from stages.common.ingest import save_ingest, write_provenance
from stages.common.io import write_nifti, write_table
from stages.common.params import StrictModel
from stages.common.paths import portable_path
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.ms_lesion import layouts, synthetic

# Each dataset's layout and what its labels cover (the study note's datasets A, B and C).
DATASET_LAYOUTS = {"crosssectional": "nnunet", "msseg2": "msseg2", "longitudinal": "longitudinal"}
TRUTH_FOLDER = "synthetic_truth"


class StyleParams(StrictModel):
    gamma: float = Field(gt=0)
    scale: float = Field(gt=0)
    bias: float = Field(ge=0, lt=1)
    noise: float = Field(ge=0)
    lesion_contrast: float = Field(gt=0)


class LesionCounts(StrictModel):
    persistent: tuple[int, int]
    new: tuple[int, int]
    vanishing: tuple[int, int]


class IngestParams(StrictModel):
    source: dict[str, str]               # per dataset: "synthetic" or the folder holding its layout
    subjects: int = Field(ge=3)          # synthetic subjects per dataset
    spacing_mm: dict[str, float]         # synthetic voxel size per dataset (ours)
    styles: dict[str, StyleParams]       # synthetic contrast style per dataset (ours)
    lesions: LesionCounts                # synthetic lesions per subject, [low, high] per fate (ours)
    radius_mm: tuple[float, float]       # synthetic lesion semi-axes (ours)

    @model_validator(mode="after")
    def every_dataset(self) -> IngestParams:
        for key in ("source", "spacing_mm", "styles"):
            names = set(getattr(self, key))
            if names != set(DATASET_LAYOUTS):
                raise ValueError(f"{key}: needs exactly the datasets {sorted(DATASET_LAYOUTS)}, got {sorted(names)}")
        if not 0 < self.radius_mm[0] <= self.radius_mm[1]:
            raise ValueError(f"radius_mm: expected 0 < low <= high, got {self.radius_mm}")
        return self


def lesion_counts(params: LesionCounts, longitudinal: bool, rng: np.random.Generator) -> dict[str, int]:
    counts = {fate: int(rng.integers(low, high + 1)) for fate, (low, high) in params.model_dump().items()}
    if not longitudinal:  # one scan: every lesion is simply present
        counts = {"persistent": counts["persistent"] + counts["new"], "new": 0, "vanishing": 0}
    return counts


def write_synthetic_dataset(raw: Path, dataset: str, params: IngestParams, seed: int) -> list[dict]:
    """Write one dataset in its layout, plus its full truth under ``raw/synthetic_truth``; returns the lesion fates."""
    layout = DATASET_LAYOUTS[dataset]
    spacing = params.spacing_mm[dataset]
    template = synthetic.load_template(spacing)
    style = synthetic.Style(**params.styles[dataset].model_dump())
    rng = np.random.default_rng([seed, sorted(DATASET_LAYOUTS).index(dataset)])
    voxel = (spacing,) * 3
    root, fates = raw / dataset, []
    radius = tuple(r / spacing for r in params.radius_mm)
    for index in progress(range(params.subjects), f"synthesising {dataset}", params.subjects):
        subject = f"{dataset[:4]}{index + 1:03d}"
        lesions = synthetic.draw_lesions(template, lesion_counts(params.lesions, layout != "nnunet", rng), radius, rng)
        truth = synthetic.lesion_truth(template.t1.shape, lesions, template.brain)
        scan_t1 = synthetic.scan(template, truth.all_t1, style, rng)
        if layout == "nnunet":
            layouts.write_nnunet_case(root, subject, scan_t1, truth.all_t1, voxel)
        else:
            scan_t2 = synthetic.scan(template, truth.all_t2, style, rng)
            if layout == "msseg2":
                layouts.write_msseg2_subject(root, subject, (scan_t1, scan_t2), truth.new, template.brain, voxel)
            else:
                layouts.write_longitudinal_subject(root, subject, (scan_t1, scan_t2), (truth.all_t1, truth.all_t2),
                                                   template.brain, voxel)
        for kind in layouts.LABEL_KINDS:
            write_nifti(raw / TRUTH_FOLDER / dataset / subject / f"{kind}.nii.gz", getattr(truth, kind).astype(np.uint8), voxel)
        fates += [{"dataset": dataset, "subject": subject, "lesion": number, "fate": lesion.fate,
                   "centre": " ".join(f"{c:.1f}" for c in lesion.centre), "radii": " ".join(f"{r:.2f}" for r in lesion.radii)}
                  for number, lesion in enumerate(lesions)]
    if layout == "nnunet":
        write_json(root / "dataset.json", layouts.nnunet_dataset_json(params.subjects))
    return fates


def manifest_row(loaded: layouts.LoadedCase, repo: Path, truth: Path | None) -> dict:
    case = loaded.case
    kinds = case.label_kinds()
    return {
        "dataset": case.dataset, "layout": case.layout, "subject": case.subject,
        "case_id": f"{case.dataset}/{case.subject}", "longitudinal": case.longitudinal,
        "time_points": len(case.scans),
        **{f"has_{kind}": kind in kinds for kind in layouts.LABEL_KINDS},
        "nx": loaded.scans.shape[1], "ny": loaded.scans.shape[2], "nz": loaded.scans.shape[3],
        **{f"spacing_{axis}": s for axis, s in zip("xyz", loaded.spacing)},
        "finite": bool(np.isfinite(loaded.scans).all()),
        "label_values_ok": all(set(np.unique(v).tolist()) <= {False, True} for v in loaded.labels.values()),
        "lesion_voxels_t1": int(loaded.labels["all_t1"].sum()) if "all_t1" in loaded.labels else -1,
        "scan_t1": portable_path(case.scans[0], repo), "scan_t2": portable_path(case.scans[-1], repo),
        **{f"label_{kind}": portable_path(case.labels[kind], repo) if kind in case.labels else "" for kind in layouts.LABEL_KINDS},
        "brain_mask": portable_path(case.brain_mask, repo) if case.brain_mask else "",
        "truth": portable_path(truth, repo) if truth is not None and truth.is_dir() else "",
    }


def manifest_expectations() -> list[tuple[str, dict]]:
    return [
        ("expect_column_values_to_be_in_set", {"column": "finite", "value_set": [True]}),
        ("expect_column_values_to_be_in_set", {"column": "label_values_ok", "value_set": [True]}),
        ("expect_column_values_to_be_in_set", {"column": "dataset", "value_set": sorted(DATASET_LAYOUTS)}),
        ("expect_compound_columns_to_be_unique", {"column_list": ["dataset", "subject"]}),
        ("expect_column_values_to_be_between", {"column": "spacing_x", "min_value": 0.1, "max_value": 10.0}),
        ("expect_column_values_to_be_between", {"column": "spacing_y", "min_value": 0.1, "max_value": 10.0}),
        ("expect_column_values_to_be_between", {"column": "spacing_z", "min_value": 0.1, "max_value": 10.0}),
        ("expect_column_values_to_be_between", {"column": "nx", "min_value": 8}),
        ("expect_column_values_to_be_between", {"column": "ny", "min_value": 8}),
        ("expect_column_values_to_be_between", {"column": "nz", "min_value": 8}),
        # time points per layout: cross-sectional nnU-Net has one, MSSEG-2 and the tree have two
        ("expect_column_pair_values_to_be_in_set", {"column_A": "layout", "column_B": "time_points",
                                                    "value_pairs_set": [("nnunet", 1), ("msseg2", 2), ("longitudinal", 2)]}),
    ]


def ingest(ctx: StageContext[IngestParams]) -> Metrics:
    p = ctx.params
    real = {name: ctx.source(value, f"source.{name}") for name, value in p.source.items()}
    fates: list[dict] = []
    with atomic_directory(ctx.out("raw")) as staging:
        for dataset in sorted(DATASET_LAYOUTS):
            if real[dataset] is None:
                fates += write_synthetic_dataset(staging, dataset, p, ctx.common.seed)
        write_provenance(staging, real, ctx.root)
        if fates:
            write_table(staging / TRUTH_FOLDER / "lesions.csv", pd.DataFrame(fates))
    raw = ctx.out("raw")
    rows = []
    for dataset, layout in sorted(DATASET_LAYOUTS.items()):
        root = real[dataset] or raw / dataset
        cases = layouts.find_cases(root, layout, dataset)
        if not cases:
            raise BadInputError(f"{dataset}: {root}: no {layout} cases found")
        for case in progress(cases, f"reading {dataset}", len(cases)):
            with ctx.quarantine.guard(f"{dataset}/{case.subject}") as outcome:
                loaded = layouts.load_case(case)
            if outcome.ok:
                truth = raw / TRUTH_FOLDER / dataset / case.subject if real[dataset] is None else None
                rows.append(manifest_row(loaded, ctx.root, truth))
    manifest = pd.DataFrame(rows)
    if manifest.empty:
        raise BadInputError("ms_lesion: every case was quarantined; nothing to train on")
    save_ingest(ctx, manifest, "ms_lesion_manifest", manifest_expectations(),
                {"datasets": {d: {"layout": DATASET_LAYOUTS[d], "source": p.source[d]} for d in sorted(DATASET_LAYOUTS)}})
    return {"cases": len(manifest), **{f"cases_{d}": int((manifest.dataset == d).sum()) for d in sorted(DATASET_LAYOUTS)}}


if __name__ == "__main__":
    run_stage(ingest)
