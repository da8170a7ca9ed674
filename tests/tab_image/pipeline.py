"""tab_image's row of the shared end-to-end tests (tests/pipeline_rows.py): tiny params and output checks."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.pipeline_rows import StudyRow
from tests.tab_image.tiny import TINY


def check_tab_image(data: Path) -> None:
    manifest = pd.read_csv(data / "interim" / "ingest" / "manifest.csv")
    assert len(manifest) == 2 * (60 + 20 + 40) and set(manifest.task) == {"cars", "cardiac"}
    assert len(list((data / "interim" / "missing_mask").glob("*.npy"))) == 2 * 4 * 2 * 3
    for method in ("tip", "mmcl", "tip_no_itm", "tip_no_mtr"):
        assert {p.name for p in (data / "models" / method).iterdir()} == {"cars.pt", "cardiac.pt"}
    missing = pd.read_csv(data / "evaluation" / "missing.csv")
    assert set(missing.method) == {"tip", "mmcl", "tip_no_itm", "tip_no_mtr", "concat"}
    assert set(missing.strategy) == {"random_values", "random_features", "most_important", "least_important"}
    claims = json.loads((data / "metrics" / "claims.json").read_text())["claims"]
    assert set(claims) == {"tip_best_at_full_data", "tip_degrades_more_gently", "tip_advantage_largest_for_most_important"}
    assert (data / "plots" / "cars_most_important.csv").exists()
    html = (data / "report" / "index.html").read_text()
    assert "data:image/png;base64," in html and "Claims" in html and "mean/mode" in html


ROW = StudyRow(TINY, check_tab_image)
