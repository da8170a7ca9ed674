"""ms_lesion's row of the shared end-to-end tests (tests/pipeline_rows.py): tiny params and output checks."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.ms_lesion.cases import MODELS, TINY
from tests.pipeline_rows import StudyRow


def check_ms_lesion(data: Path) -> None:
    manifest = pd.read_csv(data / "interim" / "ingest" / "manifest.csv")
    assert len(manifest) == 15 and manifest.groupby("dataset").size().to_dict() == {"crosssectional": 5, "longitudinal": 5, "msseg2": 5}
    assert json.loads((data / "interim" / "ingest" / "quarantine.json").read_text())["count"] == 0
    splits = pd.read_csv(data / "interim" / "splits" / "splits.csv")
    assert splits.groupby("split").size().to_dict() == {"test": 6, "train": 6, "val": 3}
    for model in MODELS:
        assert (data / "models" / model / "model.pt").is_file()
        assert json.loads((data / "metrics" / f"train_{model}.json").read_text())["iterations"] == 4
    scores = pd.read_csv(data / "evaluation" / "per_case.csv")
    assert set(scores.model) == set(MODELS) and {"all", "new", "vanishing", "temporal"} <= set(scores.task)
    summary = json.loads((data / "metrics" / "evaluate.json").read_text())
    assert set(summary["pooled_test"]) == set(MODELS)
    claims = json.loads((data / "metrics" / "claims.json").read_text())["claims"]
    assert set(claims) == {"union_beats_per_dataset_covered", "union_beats_per_dataset_lacking",
                           "constraints_raise_new_vanishing_and_consistency", "vanishing_lesions_segmented"}
    html = (data / "report" / "index.html").read_text()
    assert "data:image/png;base64," in html and "Constraint ablation" in html


ROW = StudyRow(TINY, check_ms_lesion)
