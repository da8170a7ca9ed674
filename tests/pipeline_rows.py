"""The table of the shared end-to-end and reproducibility tests: one row per study.

A row is the study's tiny params (kept beside its own tests, which use them too), a check of its
outputs, and optionally a context manager that yields extra overrides for the run (a stub server).
A new study adds a row here; `tests/test_study_pattern.py` fails until it does.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tests.cmr_recon.tiny import TINY as CMR_TINY
from tests.ct_fairness.cases import TINY as CT_TINY
from tests.nova.openai_stub import endpoint_params, running_stub
from tests.nova.tiny import TINY as NOVA_TINY


@dataclass(frozen=True)
class StudyRow:
    tiny: dict[str, Any]
    check: Callable[[Path], None]
    # Context manager yielding extra overrides (e.g. a local stub server's URL) for the run's duration.
    setup: Callable[[], contextlib.AbstractContextManager[dict[str, Any]]] = field(default=lambda: contextlib.nullcontext({}))


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
    html = (data / "report" / "index.html").read_text()
    assert "data:image/png;base64," in html and "held out" in html and "published" in html.lower()


def check_ct_fairness(data: Path) -> None:
    manifest = pd.read_csv(data / "interim" / "ingest" / "manifest.csv")
    assert len(manifest) == 20 and set(manifest.dataset) == {"totalsegmentator", "amos"}
    assert set(manifest.sex) == {"F", "M"} and manifest.shapes_equal.all()
    assert json.loads((data / "interim" / "ingest" / "quarantine.json").read_text())["count"] == 0
    assert json.loads((data / "raw" / "SOURCE.json").read_text()) == {"totalsegmentator": "synthetic", "amos": "synthetic"}
    folds = pd.read_csv(data / "interim" / "splits" / "folds.csv")
    assert set(folds.experiment) == {"sex_totalsegmentator", "age_totalsegmentator", "dataset_both"}
    for variable in ("sex", "age", "dataset"):
        models = pd.read_csv(data / "models" / variable / "models.csv")
        assert len(models) == 10 and set(models.fold) == set(range(5)) and "seconds" not in models.columns
        summary = json.loads((data / "metrics" / f"train_{variable}.json").read_text())
        assert summary["models"] == 10 and not {"training_seconds", "patches_per_second"} & set(summary)  # timings: MLflow only
        assert list(pd.read_csv(data / "metrics" / f"train_{variable}_loss.csv").step) == [2, 4]
    gaps = pd.read_csv(data / "evaluation" / "gaps.csv")
    assert len(gaps[gaps.metric == "dice"]) == 3 * 4 * 2  # experiments x organs x test groups
    assert {"gap_percent", "p_value", "significance"} <= set(gaps.columns)
    truth = pd.read_csv(data / "evaluation" / "truth_vs_measured.csv")
    assert len(truth) == 3 * 4 and {"true_volume_change_percent", "expected_gap", "direction_agrees"} <= set(truth.columns)
    summary = json.loads((data / "metrics" / "evaluate.json").read_text())
    assert set(summary["mean_abs_gap_percent"]) == {"sex", "age", "dataset"}
    assert set(summary["gap"]["dataset_both"]["liver"]) == {"totalsegmentator", "amos"}
    html = (data / "report" / "index.html").read_text()
    assert "data:image/png;base64," in html and "cross-dataset" in html and "Synthetic truth" in html


@contextlib.contextmanager
def nova_endpoint() -> Iterator[dict[str, Any]]:
    """nova's OpenAI-compatible model, enabled and pointed at a local stub server for the run (no real network)."""
    with running_stub() as stub:
        yield endpoint_params(stub)


def check_nova(data: Path) -> None:
    manifest = pd.read_csv(data / "interim" / "ingest" / "manifest.csv")
    cases = NOVA_TINY["nova.ingest.cases"]
    assert manifest.case_id.nunique() == cases and set(manifest.frequency) <= {"common", "rare"}
    assert {"gold", "rater1", "rater2"} <= set(pd.read_csv(data / "interim" / "ingest" / "boxes.csv").source)
    info = json.loads((data / "interim" / "ingest" / "dataset.json").read_text())
    assert info["layout"] == "parquet" and info["root"] == "data/nova/interim/ingest/images"
    for name in ("captions.csv", "case_metadata.csv", "bboxes_gold.csv", "nova-v1.parquet"):
        assert (data / "raw" / "benchmark" / name).is_file(), name
    assert json.loads((data / "raw" / "benchmark" / "SOURCE.json").read_text()) == {"source": "synthetic"}
    assert json.loads((data / "raw" / "healthy" / "SOURCE.json").read_text()) == {"healthy_source": "synthetic"}
    assert not {"fit_seconds", "seconds"} & set(json.loads((data / "metrics" / "train_normative.json").read_text()))
    summary = json.loads((data / "predictions" / "summary.json").read_text())
    assert set(summary) == {"normative", "random_boxes", "openai_compatible"}
    assert all(v["slices"] == len(manifest) and v["problems"] == 0 for v in summary.values())
    # the stub answered each request once (boxes and caption per slice, a diagnosis per case), all kept in the cache
    assert len(list((data / "answers" / "predict").rglob("*.json"))) == 2 * len(manifest) + cases
    metrics = json.loads((data / "metrics" / "evaluate.json").read_text())
    for model in summary:
        for metric in ("map30", "map50", "map50_95", "acc50", "fnr50", "bleu4", "meteor", "rouge_l", "clinical_f1",
                       "modality_f1", "normal_abnormal_f1", "top1", "top5"):
            assert np.isfinite(metrics[model][metric]), (model, metric)
        assert set(metrics["by_frequency"][model]) == {"common", "rare"}
    assert metrics["normative_beats_random_map30"] is True
    table = pd.read_csv(data / "evaluation" / "summary.csv")
    assert set(table.group) == {"all", "common", "rare"} and (table.low <= table.value + 1e-9).all()
    assert set(pd.read_csv(data / "plots" / "pr_iou30.csv").columns) == {"recall", *summary}
    html = (data / "report" / "index.html").read_text()
    assert "data:image/png;base64," in html and "rare pathologies" in html and "Published reference points" in html
    assert "openai_compatible caption" in html


STUDIES: dict[str, StudyRow] = {
    "cmr_recon": StudyRow(CMR_TINY, check_cmr_recon),
    "ct_fairness": StudyRow(CT_TINY, check_ct_fairness),
    "nova": StudyRow(NOVA_TINY, check_nova, nova_endpoint),
}
