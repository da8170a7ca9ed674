"""ct_fairness's row of the shared end-to-end tests (tests/pipeline_rows.py): tiny params and output checks."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.ct_fairness.cases import TINY
from tests.pipeline_rows import StudyRow


def check_ct_fairness(data: Path) -> None:
    manifest = pd.read_csv(data / "interim" / "ingest" / "manifest.csv")
    assert len(manifest) == 20 and set(manifest.dataset) == {"totalsegmentator", "amos"}
    assert set(manifest.sex) == {"F", "M"} and manifest.shapes_equal.all()
    assert json.loads((data / "interim" / "ingest" / "quarantine.json").read_text())["count"] == 0
    assert json.loads((data / "raw" / "SOURCE.json").read_text()) == {"totalsegmentator": "synthetic", "amos": "synthetic"}
    folds = pd.read_csv(data / "interim" / "splits" / "folds.csv")
    assert set(folds.experiment) == {"sex_totalsegmentator", "age_totalsegmentator", "dataset_both", "placebo_totalsegmentator"}
    for variable in ("sex", "age", "dataset", "placebo"):
        models = pd.read_csv(data / "models" / variable / "models.csv")
        assert len(models) == 10 and set(models.fold) == set(range(5)) and "seconds" not in models.columns
        summary = json.loads((data / "metrics" / f"train_{variable}.json").read_text())
        assert summary["models"] == 10 and not {"training_seconds", "patches_per_second"} & set(summary)  # timings: MLflow only
        assert list(pd.read_csv(data / "metrics" / f"train_{variable}_loss.csv").step) == [2, 4]
    gaps = pd.read_csv(data / "evaluation" / "gaps.csv")
    assert len(gaps[gaps.metric == "dice"]) == 4 * 4 * 2  # experiments (with the placebo) x organs x test groups
    assert {"gap_percent", "p_value", "significance"} <= set(gaps.columns)
    truth = pd.read_csv(data / "evaluation" / "truth_vs_measured.csv")
    assert len(truth) == 3 * 4 and {"true_volume_change_percent", "expected_gap", "direction_agrees"} <= set(truth.columns)
    summary = json.loads((data / "metrics" / "evaluate.json").read_text())
    assert set(summary["mean_abs_gap_percent"]) == {"sex", "age", "dataset", "placebo"}
    assert set(summary["gap"]["dataset_both"]["liver"]) == {"totalsegmentator", "amos"}
    html = (data / "report" / "index.html").read_text()
    assert "data:image/png;base64," in html and "cross-dataset" in html and "Synthetic truth" in html


ROW = StudyRow(TINY, check_ct_fairness)
