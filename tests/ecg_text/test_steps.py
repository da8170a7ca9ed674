"""ecg_text's steps in-process: ingest (synthetic and a real-format folder, bad input), then the training chain."""
import json

import numpy as np
import pandas as pd
import pytest

from stages.common.badinput import BadInputError
from stages.common.io import FormatError
from stages.ecg_text.ingest import ingest
from stages.ecg_text.io import CANONICAL_LEADS, write_wfdb
from stages.ecg_text.synthetic import synthesise_ecg
from tests.ecg_text.tiny import TINY
from tests.helpers import run_step


def write_source(root, reports):
    """A PTB-XL-layout folder: pretrain/ and ptbxl/ with a database CSV each and 500 Hz records."""
    rng = np.random.default_rng(5)
    for dataset in ("pretrain", "ptbxl"):
        rows = []
        for index, report in enumerate(reports, start=1):
            write_wfdb(root / dataset / "records500" / "00000", f"{index:05d}_hr",
                       synthesise_ecg(set(), 500.0, 10.0, 0.01, rng), 500.0, list(CANONICAL_LEADS))
            rows.append({"ecg_id": index, "patient_id": 100 + index, "report": report,
                         "scp_codes": "{'NORM': 100.0, 'SR': 0.0}", "strat_fold": 10 if index == 1 else 1,
                         "filename_hr": f"records500/00000/{index:05d}_hr"})
        pd.DataFrame(rows).to_csv(root / dataset / f"{dataset}_database.csv", index=False)
    return root


def test_synthetic_ingest_reads_every_set_and_the_pydicom_ecg(tmp_path):
    _, metrics = run_step(ingest, tmp_path, TINY)
    folder = tmp_path / "data" / "ecg_text" / "interim" / "ingest"
    manifest = pd.read_csv(folder / "manifest.csv")
    assert metrics["records"] == 24 * 4 + 1
    assert set(manifest.dataset) == {"pretrain", "ptbxl", "cpsc", "csn", "dicom"}
    dicom = manifest[manifest.dataset == "dicom"].iloc[0]
    assert dicom.fs == 1000 and dicom.samples == 10000 and dicom.report == "RITMO SINUSALE. ECG NORMALE"
    assert (manifest.leads == " ".join(CANONICAL_LEADS)).all() and manifest.finite.all()
    ptbxl = pd.read_csv(tmp_path / "data" / "ecg_text" / "raw" / "ptbxl" / "ptbxl_database.csv")
    codes = {c for text in manifest[manifest.dataset == "ptbxl"].codes.dropna() for c in text.split(";")}
    assert codes <= {"NORM", "IMI", "ASMI", "CLBBB", "AFIB", "INVT", "STACH"} and len(ptbxl) == 24
    assert json.loads((folder / "quarantine.json").read_text())["count"] == 0


@pytest.fixture()
def broken_source(tmp_path):
    root = write_source(tmp_path / "source", ["sinus rhythm. normal ecg.", "sinus rhythm.", ""])
    data = root / "ptbxl" / "records500" / "00000" / "00002_hr.dat"
    data.write_bytes(data.read_bytes()[:1000])
    return root


def test_bad_records_are_fatal_by_default_and_name_the_record(tmp_path, broken_source):
    with pytest.raises((FormatError, BadInputError), match=r"pretrain_database.csv: row ecg_id=3: the report is missing"):
        run_step(ingest, tmp_path, {"ecg_text.ingest.source": str(broken_source)})
    assert not (tmp_path / "data" / "ecg_text" / "interim" / "ingest").exists()


def test_bad_records_are_quarantined_under_skip(tmp_path, broken_source):
    run_step(ingest, tmp_path, {"ecg_text.ingest.source": str(broken_source), "common.on_bad_input": "skip"})
    folder = tmp_path / "data" / "ecg_text" / "interim" / "ingest"
    quarantine = json.loads((folder / "quarantine.json").read_text())
    problems = {entry["item"]: entry["problem"] for entry in quarantine["entries"]}
    assert set(problems) == {"pretrain/3", "ptbxl/2", "ptbxl/3"}
    assert "report is missing" in problems["pretrain/3"] and "truncated" in problems["ptbxl/2"]
    manifest = pd.read_csv(folder / "manifest.csv")
    assert sorted(manifest.record_id) == ["pretrain/1", "pretrain/2", "ptbxl/1"]
    assert manifest.set_index("record_id").loc["ptbxl/1", "split"] == "test"


def test_a_record_without_all_twelve_leads_fails_the_suite_naming_the_expectation(tmp_path):
    from stages.common.validation import ManifestValidationError

    root = write_source(tmp_path / "source", ["sinus rhythm."])
    eleven = [lead for lead in CANONICAL_LEADS if lead != "aVF"]
    write_wfdb(root / "ptbxl" / "records500" / "00000", "00001_hr", np.zeros((11, 5000)), 500.0, eleven)
    with pytest.raises(ManifestValidationError, match="n_leads"):
        run_step(ingest, tmp_path, {"ecg_text.ingest.source": str(root)})


def test_short_record_is_bad_input(tmp_path):
    root = write_source(tmp_path / "source", ["sinus rhythm."])
    write_wfdb(root / "ptbxl" / "records500" / "00000", "00001_hr", np.zeros((12, 2500)), 500.0, list(CANONICAL_LEADS))
    with pytest.raises(BadInputError, match="00001_hr.hea: record is 5.00 s long; 10 s required"):
        run_step(ingest, tmp_path, {"ecg_text.ingest.source": str(root)})
