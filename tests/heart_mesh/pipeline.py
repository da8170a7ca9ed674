"""heart_mesh's row of the shared end-to-end tests (tests/pipeline_rows.py): tiny params and output checks."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.heart_mesh.tiny import TINY
from tests.pipeline_rows import StudyRow


def check_heart_mesh(data: Path) -> None:
    manifest = pd.read_csv(data / "interim" / "ingest" / "manifest.csv")
    assert len(manifest) == 18 and set(manifest.split) == {"train", "val"}
    summary = json.loads((data / "metrics" / "evaluate.json").read_text())
    assert set(summary["reconstruction"]) == {"meshheart", "pca", "vae"}
    assert "delta_auc" in summary["latent_delta_our_definition"]
    claims = json.loads((data / "metrics" / "claims.json").read_text())["claims"]
    assert {"reconstruction_beats_pca", "reconstruction_beats_vae", "generation_follows_conditions",
            "latent_delta_higher_in_disease", "latent_features_classify_disease"} <= set(claims)
    per_subject = pd.read_csv(data / "evaluation" / "per_subject.csv")
    assert len(per_subject) == 3 * 10
    html = (data / "report" / "index.html").read_text()
    assert html.count("data:image/png;base64,") >= 6 and "our definition" in html


ROW = StudyRow(TINY, check_heart_mesh)
