"""med_reasoning's row of the shared end-to-end tests (tests/pipeline_rows.py): tiny params and output checks."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from stages.med_reasoning.variants import VARIANTS
from tests.med_reasoning.tiny import TINY
from tests.pipeline_rows import StudyRow


def check_med_reasoning(data: Path) -> None:
    manifest = pd.read_csv(data / "interim/ingest/manifest.csv")
    assert set(manifest.split) == {"train", "test_in", "test_ood"}
    trained = TINY["med_reasoning.train.variants"]
    for variant in VARIANTS:
        log = pd.read_csv(data / f"metrics/train_{variant}.csv")
        if variant in trained:
            assert (data / f"models/rl/{variant}/seed0/config.json").is_file() and len(log) == 2
        else:
            assert (data / f"models/rl/{variant}/not_trained.json").is_file() and log.empty
    accuracy = pd.read_csv(data / "evaluation/accuracy.csv")
    assert {"base", *trained} == set(accuracy.model)
    assert "rl_minus_base.in_domain" in json.loads((data / "metrics/evaluate.json").read_text())
    html = (data / "report/index.html").read_text()
    assert "data:image/png;base64," in html and "published" in html.lower()


ROW = StudyRow(TINY, check_med_reasoning)
