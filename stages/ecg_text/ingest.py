"""ecg_text-ingest: find (or first synthesise) PTB-XL-style WFDB sets and DICOM ECGs, read each, validate a manifest.

A source folder holds one sub-folder per data set, each with ``<set>_database.csv`` (PTB-XL's
columns: ecg_id, patient_id, report, scp_codes, strat_fold, filename_hr) and the WFDB records it
names, and optionally ``dicom/`` with DICOM 12-lead ECGs (report text from their annotations),
which join the pre-training corpus. ``pretrain`` is the pre-training corpus; every other set is a
downstream set. With ``source: synthetic`` the study first writes such a folder from the
parametric beat model (and pydicom's real ``waveform_ecg.dcm``), then reads it the same way.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from stages.common.badinput import BadInputError
from stages.common.ingest import materialise_source, save_ingest
from stages.common.params import StrictModel
from stages.common.paths import portable_path
from stages.common.runtime import progress
from stages.common.stage import Metrics, StageContext, run_stage
from stages.ecg_text import synthetic
from stages.ecg_text.io import (
    CANONICAL_LEADS,
    dicom_report_text,
    parse_scp_codes,
    ptbxl_split,
    read_ecg,
    read_ptbxl_table,
    write_wfdb,
)

PRETRAIN = "pretrain"
DICOM_FOLDER = "dicom"


class IngestParams(StrictModel):
    source: str                              # "synthetic" or a folder of <set>/<set>_database.csv + records
    pretrain_records: int = Field(ge=8)      # synthetic corpus size
    downstream_records: int = Field(ge=20)   # per synthetic downstream set
    downstream_sets: list[str] = Field(min_length=1)
    condition_probability: float = Field(gt=0, lt=1)
    negation_probability: float = Field(ge=0, le=1)
    irrelevant_probability: float = Field(ge=0, le=1)
    noise_mv: float = Field(ge=0)
    test_fraction: float = Field(gt=0, lt=1)   # synthetic strat_fold 10 share (PTB-XL: about 1/10)
    val_fraction: float = Field(gt=0, lt=1)    # synthetic strat_fold 9 share
    include_pydicom_ecg: bool                  # pydicom's waveform_ecg.dcm joins the synthetic corpus
    record_fs: float = Field(gt=0)             # synthetic records' rate (PTB-XL's records500)
    duration_s: float = Field(gt=0)            # required length; shorter records are bad input
    sampling_rates: list[float] = Field(min_length=1)   # accepted record rates; others are bad input

    @model_validator(mode="after")
    def consistent(self) -> IngestParams:
        unknown = sorted(set(self.downstream_sets) - set(synthetic.DOWNSTREAM_CODES))
        if unknown:
            raise ValueError(f"downstream_sets: unknown {unknown}; synthetic sets: {sorted(synthetic.DOWNSTREAM_CODES)}")
        if self.test_fraction + self.val_fraction >= 0.9:
            raise ValueError("test_fraction + val_fraction must leave at least 10% for training")
        if self.record_fs not in self.sampling_rates:
            raise ValueError(f"record_fs {self.record_fs} is not among sampling_rates {self.sampling_rates}")
        return self


def table_path(root: Path, dataset: str) -> Path:
    return root / dataset / f"{dataset}_database.csv"


def synthetic_folds(count: int, test_fraction: float, val_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """strat_fold per record: 10 (test) and 9 (val) in the given shares, else 1-8."""
    draw = rng.random(count)
    return np.where(draw < test_fraction, 10, np.where(draw < test_fraction + val_fraction, 9, rng.integers(1, 9, count)))


def write_synthetic_set(root: Path, dataset: str, count: int, p: IngestParams, rng: np.random.Generator) -> None:
    folds = synthetic_folds(count, p.test_fraction, p.val_fraction, rng)
    rows = []
    for index in progress(range(count), f"synthesising {dataset}", count):
        conditions = synthetic.draw_conditions(p.condition_probability, rng)
        signal = synthetic.synthesise_ecg(conditions, p.record_fs, p.duration_s, p.noise_mv, rng)
        name = f"{index + 1:05d}_hr"
        write_wfdb(root / dataset / "records", name, signal, p.record_fs, list(CANONICAL_LEADS))
        codes = {} if dataset == PRETRAIN else synthetic.downstream_codes(dataset, conditions)
        rows.append({"ecg_id": index + 1, "patient_id": int(rng.integers(1, 10 * count)),
                     "report": synthetic.write_report(conditions, p.negation_probability, p.irrelevant_probability, rng),
                     "scp_codes": repr(codes), "strat_fold": int(folds[index]), "filename_hr": f"records/{name}",
                     "conditions": ";".join(sorted(conditions))})
    pd.DataFrame(rows).to_csv(table_path(root, dataset), index=False)


def write_synthetic_source(root: Path, p: IngestParams, seed: int) -> None:
    rng = np.random.default_rng(seed)
    write_synthetic_set(root, PRETRAIN, p.pretrain_records, p, rng)
    for dataset in p.downstream_sets:
        write_synthetic_set(root, dataset, p.downstream_records, p, rng)
    if p.include_pydicom_ecg:
        from pydicom.data import get_testdata_file

        (root / DICOM_FOLDER).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(get_testdata_file("waveform_ecg.dcm", download=False), root / DICOM_FOLDER / "waveform_ecg.dcm")


def check_record(path: Path, p: IngestParams) -> tuple[np.ndarray, float, list[str]]:
    signal, fs, leads = read_ecg(path)
    if fs not in p.sampling_rates:
        raise BadInputError(f"{path}: sampling rate {fs:g} Hz is not among the accepted {p.sampling_rates}")
    duration = signal.shape[1] / fs
    if duration + 1e-9 < p.duration_s:
        raise BadInputError(f"{path}: record is {duration:.2f} s long; {p.duration_s:g} s required")
    return signal, fs, leads


def manifest_row(record_id: str, dataset: str, split: str, path: Path, root: Path, signal: np.ndarray, fs: float,
                 leads: list[str], report: str, codes: dict[str, float], patient: object) -> dict:
    return {"record_id": record_id, "dataset": dataset, "role": "pretrain" if dataset in (PRETRAIN, DICOM_FOLDER) else "downstream",
            "split": split, "path": path.relative_to(root).as_posix(), "patient_id": str(patient), "fs": fs,
            "samples": signal.shape[1], "duration_s": round(signal.shape[1] / fs, 6), "n_leads": len(leads),
            "leads": " ".join(leads), "lead_set": " ".join(sorted(leads)), "finite": bool(np.isfinite(signal).all()),
            "max_abs_mv": round(float(np.nanmax(np.abs(signal))), 4), "report": report,
            "has_report": bool(report.strip()), "codes": ";".join(sorted(k for k, v in codes.items() if v > 0))}


def read_table_rows(root: Path, dataset: str, p: IngestParams, ctx: StageContext[IngestParams]) -> list[dict]:
    table_file = table_path(root, dataset)
    table = read_ptbxl_table(table_file)
    rows = []
    for _, entry in progress(table.iterrows(), f"reading {dataset}", len(table)):
        record_id = f"{dataset}/{entry['ecg_id']}"
        with ctx.quarantine.guard(record_id) as outcome:
            header = root / dataset / f"{entry['filename_hr']}.hea"
            report = str(entry["report"]).strip()
            if not report:
                raise BadInputError(f"{table_file}: row ecg_id={entry['ecg_id']}: the report is missing")
            codes = parse_scp_codes(entry["scp_codes"], table_file, entry["ecg_id"])
            signal, fs, leads = check_record(header, p)
            split = ptbxl_split(int(entry["strat_fold"]))
        if outcome.ok:
            rows.append(manifest_row(record_id, dataset, split, header, root, signal, fs, leads, report, codes, entry["patient_id"]))
    return rows


def read_dicom_rows(root: Path, p: IngestParams, ctx: StageContext[IngestParams]) -> list[dict]:
    rows = []
    for path in sorted((root / DICOM_FOLDER).glob("*.dcm")):
        record_id = f"{DICOM_FOLDER}/{path.stem}"
        with ctx.quarantine.guard(record_id) as outcome:
            signal, fs, leads = check_record(path, p)
            report = dicom_report_text(path)
        if outcome.ok:
            rows.append(manifest_row(record_id, DICOM_FOLDER, "train", path, root, signal, fs, leads, report, {}, "dicom"))
    return rows


def manifest_expectations(p: IngestParams) -> list[tuple[str, dict]]:
    return [
        ("expect_column_values_to_be_in_set", {"column": "fs", "value_set": list(p.sampling_rates)}),
        ("expect_column_values_to_be_between", {"column": "duration_s", "min_value": p.duration_s}),
        ("expect_column_values_to_be_in_set", {"column": "n_leads", "value_set": [len(CANONICAL_LEADS)]}),
        # the 12 standard leads by name, in any file order (MIMIC-IV-ECG stores aVF before aVL)
        ("expect_column_values_to_be_in_set", {"column": "lead_set", "value_set": [" ".join(sorted(CANONICAL_LEADS))]}),
        ("expect_column_values_to_be_in_set", {"column": "finite", "value_set": [True]}),
        ("expect_column_values_to_be_in_set", {"column": "has_report", "value_set": [True]}),
        ("expect_column_values_to_be_in_set", {"column": "split", "value_set": ["train", "val", "test"]}),
        ("expect_column_values_to_be_unique", {"column": "record_id"}),
        ("expect_column_values_to_not_be_null", {"column": "report"}),
    ]


def ingest(ctx: StageContext[IngestParams]) -> Metrics:
    p = ctx.params
    root = materialise_source(ctx, p.source, lambda staging: write_synthetic_source(staging, p, ctx.common.seed))
    datasets = sorted(path.parent.name for path in root.glob("*/*_database.csv") if path.name == f"{path.parent.name}_database.csv")
    if PRETRAIN not in datasets:
        raise BadInputError(f"{root}: no {PRETRAIN}/{PRETRAIN}_database.csv (the pre-training corpus)")
    if len(datasets) < 2:
        raise BadInputError(f"{root}: no downstream set (<set>/<set>_database.csv) beside {PRETRAIN}")
    rows = [row for dataset in datasets for row in read_table_rows(root, dataset, p, ctx)] + read_dicom_rows(root, p, ctx)
    if not rows:
        raise BadInputError(f"{root}: every record was quarantined")
    manifest = pd.DataFrame(rows)
    save_ingest(ctx, manifest, "ecg_text_manifest", manifest_expectations(p),
                {"root": portable_path(root, ctx.root), "source": p.source, "datasets": datasets,
                 "lead_order": list(CANONICAL_LEADS)})
    counts = manifest.groupby("dataset").size().to_dict()
    return {"records": len(manifest), **{f"records_{k}": v for k, v in counts.items()}}


if __name__ == "__main__":
    run_stage(ingest)
