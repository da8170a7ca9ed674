"""cmr_recon's row of the shared end-to-end tests (tests/pipeline_rows.py): tiny params and output checks."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.cmr_recon.tiny import TINY
from tests.pipeline_rows import StudyRow


def check_cmr_recon(data: Path) -> None:
    manifest = pd.read_csv(data / "interim" / "ingest" / "manifest.csv")
    assert len(manifest) == 9 and set(manifest.split) == {"train", "val", "unused"}
    undersampled = pd.read_csv(data / "interim" / "undersampled" / "undersampled.csv")
    assert len(undersampled) == 3 * 2  # 3 validation files x 2 settings
    assert (undersampled.effective_acceleration < undersampled.acceleration).all()
    summary = json.loads((data / "metrics" / "evaluate.json").read_text())
    for protocol in ("validation", "test", "fastmri"):
        assert set(summary[protocol]) == {"zero_filled", "sense", "learned"}
    per_cell = pd.read_csv(data / "evaluation" / "per_cell.csv")
    assert set(per_cell.modality) == {"cine_sax", "T1map", "blackblood"}
    assert (data / "plots" / "psnr_Uniform.csv").exists()
    submission = data / "submission"  # run4Ranking's img4ranking per method, one file per undersampled file
    for method in ("ground_truth", "zero_filled", "sense", "learned"):
        assert len(list((submission / method / "MultiCoil").rglob("*_kus_*.mat"))) == len(undersampled)
    html = (data / "report" / "index.html").read_text()
    assert "data:image/png;base64," in html and "held out" in html and "published" in html.lower()


ROW = StudyRow(TINY, check_cmr_recon)
