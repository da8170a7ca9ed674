"""grounding's row of the shared end-to-end tests (tests/pipeline_rows.py): tiny params and output checks."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.grounding.tiny import TINY
from tests.pipeline_rows import StudyRow


def check_grounding(data: Path) -> None:
    queries = pd.read_csv(data / "interim" / "ingest" / "queries.csv")
    assert set(queries.split) == {"train", "validate", "test"}
    for variant in ("descriptions", "names", "descriptions_fraction"):
        assert (data / "models" / variant / "model.pt").exists()
    scores = pd.read_csv(data / "evaluation" / "scores.csv")
    assert {"seen", "unseen"} <= set(scores.subset)
    claims = json.loads((data / "metrics" / "claims.json").read_text())
    assert len(claims["claims"]) == 4
    assert (data / "plots" / "map_by_fraction.csv").exists()
    html = (data / "report" / "index.html").read_text()
    assert "data:image/png;base64," in html and "published" in html


ROW = StudyRow(TINY, check_grounding)
