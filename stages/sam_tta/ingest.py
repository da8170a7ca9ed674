"""sam_tta-ingest: read (or first synthesise) the CSV lists of 2-D slices and masks; write a validated manifest.

With ``source: synthetic`` every domain is first written under ``data/sam_tta/raw/<domain>/`` in
the official format (``list.csv`` with ``image,label`` rows; gray domains as 2-D NIfTI, RGB ones as
PNG); either way each list is then read through :mod:`stages.sam_tta.formats`, the reader used for
real data. Roles: ``source`` (pretraining), ``target`` (the adaptation streams), ``medical`` (the
MedSAM-like baseline's fine-tuning set, never a target).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from stages.common.badinput import BadInputError
from stages.common.ingest import materialise_source, save_ingest
from stages.common.io import write_nifti, write_png
from stages.common.params import StrictModel
from stages.common.paths import portable_path, resolve_inside
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.sam_tta import synthetic
from stages.sam_tta.formats import read_list, read_slice
from stages.sam_tta.prompts import MAX_INSTANCES, instance_labels

Role = Literal["source", "target", "medical"]
LIST_HEADER = "image,label"  # the official lists' header (data/BraTS_PED_t2f_2D/*.csv)


class DomainParams(StrictModel):
    list: str = Field(min_length=1)    # the CSV list, relative to the source folder
    role: Role


class DegradationParams(StrictModel):
    contrast: float = Field(gt=0, le=1)   # object-to-surroundings intensity step
    blur: float = Field(ge=0)             # Gaussian sigma in pixels
    gamma: float = Field(gt=0)            # the nonlinear intensity change
    noise: float = Field(ge=0)            # Gaussian noise sd


class IngestParams(StrictModel):
    source: str                           # "synthetic" or the folder the lists' paths start from
    domains: dict[str, DomainParams] = Field(min_length=3)
    image_size: int = Field(ge=32)        # synthetic slices' side
    cases: dict[Role, int]                # synthetic cases per domain, by role
    max_shapes: int = Field(ge=1)         # shapes per source scene at most
    degradation: DegradationParams

    @model_validator(mode="after")
    def consistent(self) -> IngestParams:
        roles = [d.role for d in self.domains.values()]
        for role in ("source", "target", "medical"):
            if role not in roles:
                raise ValueError(f"domains: no domain has role {role!r}")
        if set(self.cases) != {"source", "target", "medical"} or min(self.cases.values()) < 2:
            raise ValueError(f"cases: give at least 2 for each of source, target, medical (got {self.cases})")
        return self


def write_synthetic_domain(folder: Path, domain: str, role: Role, params: IngestParams, rng: np.random.Generator) -> None:
    """``<folder>/<domain>/{image,mask}/<case>`` files and ``list.csv``, in the official format."""
    rgb = domain in synthetic.RGB_DOMAINS
    rows = []
    for index in range(params.cases[role]):
        if domain == "scenes":
            image, labels = synthetic.scene(rng, params.image_size, params.max_shapes)
        else:
            d = params.degradation
            image, labels = synthetic.medical_case(domain, rng, params.image_size, d.contrast, d.blur, d.gamma, d.noise)
        name = f"{domain}_{index:04d}"
        if rgb:
            write_png(folder / domain / "image" / f"{name}.png", np.round(image.transpose(1, 2, 0) * 255).astype(np.uint8))
        else:
            write_nifti(folder / domain / "image" / f"{name}.nii.gz", image[0].astype(np.float32))
        if labels.max() <= 1 and rgb:  # the polyp sets' binary PNG masks
            mask_name = f"{name}.png"
            write_png(folder / domain / "mask" / mask_name, (labels * 255).astype(np.uint8))
        else:  # instance labels 1..N as NIfTI, the repo's multi-instance convention
            mask_name = f"{name}.nii.gz"
            write_nifti(folder / domain / "mask" / mask_name, labels.astype(np.uint8))
        image_name = f"{name}.png" if rgb else f"{name}.nii.gz"
        rows.append(f"image/{image_name},mask/{mask_name}")
    (folder / domain / "list.csv").write_text("\n".join([LIST_HEADER, *rows]) + "\n")


def write_synthetic_dataset(folder: Path, params: IngestParams, seed: int) -> None:
    unknown = sorted(set(params.domains) - set(synthetic.DOMAINS))
    if unknown:
        raise BadInputError(f"sam_tta.ingest.domains: {unknown} have no synthetic generator; known: {list(synthetic.DOMAINS)}")
    for offset, (domain, spec) in enumerate(progress(params.domains.items(), "synthesising domains", len(params.domains))):
        write_synthetic_domain(folder, domain, spec.role, params, np.random.default_rng([seed, offset]))


def manifest_expectations(domains: dict[str, DomainParams]) -> list[tuple[str, dict]]:
    return [
        ("expect_column_values_to_be_in_set", {"column": "domain", "value_set": sorted(domains)}),
        ("expect_column_values_to_be_in_set", {"column": "role", "value_set": ["source", "target", "medical"]}),
        ("expect_column_values_to_be_in_set", {"column": "channels", "value_set": [1, 3]}),
        ("expect_column_values_to_be_between", {"column": "height", "min_value": 16}),
        ("expect_column_values_to_be_between", {"column": "width", "min_value": 16}),
        ("expect_column_values_to_be_between", {"column": "instances", "min_value": 1, "max_value": MAX_INSTANCES}),
        ("expect_column_values_to_be_between", {"column": "foreground_fraction", "min_value": 0.0, "max_value": 0.95,
                                                "strict_min": True}),
        ("expect_compound_columns_to_be_unique", {"column_list": ["domain", "case"]}),
        ("expect_column_values_to_not_be_null", {"column": "image"}),
    ]


def ingest(ctx: StageContext[IngestParams]) -> Metrics:
    p = ctx.params
    dataset_root = materialise_source(ctx, p.source, lambda staging: write_synthetic_dataset(staging, p, ctx.common.seed))
    rows = []
    for domain, spec in p.domains.items():
        csv_path = resolve_inside(dataset_root, spec.list, what=f"sam_tta.ingest.domains.{domain}.list")
        if not csv_path.is_file():
            raise BadInputError(f"sam_tta.ingest.domains.{domain}.list: {csv_path} does not exist")
        entries = read_list(csv_path)
        for entry in progress(entries, f"reading {domain}", len(entries)):
            with ctx.quarantine.guard(f"{portable_path(csv_path, ctx.root)}: row {entry.row}") as outcome:
                case = read_slice(entry, csv_path, require_foreground=True)
            if outcome.ok:
                rows.append({
                    "domain": domain, "role": spec.role, "case": Path(entry.image.name.removesuffix(".gz")).stem,
                    "image": portable_path(entry.image, dataset_root), "mask": portable_path(entry.mask, dataset_root),
                    "height": case.labels.shape[0], "width": case.labels.shape[1], "channels": case.image.shape[0],
                    "instances": len(instance_labels(case.labels)), "foreground_fraction": float((case.labels > 0).mean()),
                })
    manifest = pd.DataFrame(rows)
    if manifest.empty or set(manifest["role"]) != {"source", "target", "medical"}:
        found = sorted(set(manifest["role"])) if not manifest.empty else []
        raise BadInputError(f"{dataset_root}: after reading the lists, roles present are {found}; need source, target, medical")
    save_ingest(ctx, manifest, "sam_tta_manifest", manifest_expectations(p.domains),
                {"root": portable_path(dataset_root, ctx.root), "source": p.source})
    return {"cases": len(manifest), **{f"cases_{k}": int(v) for k, v in manifest["role"].value_counts().items()}}


if __name__ == "__main__":
    run_stage(ingest)
