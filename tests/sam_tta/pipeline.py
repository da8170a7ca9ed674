"""sam_tta's row of the shared end-to-end tests (tests/pipeline_rows.py): tiny params and output checks."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.pipeline_rows import StudyRow
from tests.sam_tta.tiny import TINY


def check_sam_tta(data: Path) -> None:
    manifest = pd.read_csv(data / "interim" / "ingest" / "manifest.csv")
    assert len(manifest) == 12 + 3 * 3 + 4
    per_image = pd.read_csv(data / "evaluation" / "per_image.csv")
    assert set(per_image.prompt) == {"box", "point"} and len(per_image) == 3 * 3 * 2 * 8
    assert per_image[["hd95", "assd"]].max().max() <= 50.0
    summary = json.loads((data / "metrics" / "evaluate.json").read_text())
    assert {"source_only", "sam_tta", "medsam"} <= set(summary["box"]["dice"])
    assert (data / "plots" / "dice_box.csv").exists()
    html = (data / "report" / "index.html").read_text()
    assert "data:image/png;base64," in html and "published" in html.lower()


ROW = StudyRow(TINY, check_sam_tta)
