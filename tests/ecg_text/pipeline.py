"""ecg_text's row of the shared end-to-end tests (tests/pipeline_rows.py): tiny params and output checks."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.ecg_text.tiny import TINY
from tests.pipeline_rows import StudyRow


def check_ecg_text(data: Path) -> None:
    manifest = pd.read_csv(data / "interim" / "ingest" / "manifest.csv")
    assert set(manifest.dataset) == {"pretrain", "ptbxl", "cpsc", "csn", "dicom"}
    zero = pd.read_csv(data / "evaluation" / "zero_shot.csv")
    assert set(zero.model) == {"merl", "kmerl", "kmerl_no_entity", "kmerl_no_lead_mask"}
    assert set(zero.dataset) == {"ptbxl", "cpsc", "csn"} and {"all_12", "lead_I", "random_3"} <= set(zero.leads)
    probe = pd.read_csv(data / "evaluation" / "linear_probe.csv")
    assert set(probe.fraction) == {0.01, 0.1, 1.0}
    claims = json.loads((data / "metrics" / "claims.json").read_text())["claims"]
    assert {"zero_shot_kmerl_at_least_merl", "partial_leads_kmerl_loses_less", "ablation_entity_loss"} <= set(claims)
    html = (data / "report" / "index.html").read_text()
    assert "data:image/png;base64," in html and "published" in html.lower()


ROW = StudyRow(TINY, check_ecg_text)
