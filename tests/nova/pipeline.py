"""nova's row of the shared end-to-end tests (tests/pipeline_rows.py): tiny params, a stub endpoint, output checks."""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tests.nova.openai_stub import endpoint_params, running_stub
from tests.nova.tiny import TINY
from tests.pipeline_rows import StudyRow


@contextlib.contextmanager
def nova_endpoint() -> Iterator[dict[str, Any]]:
    """nova's OpenAI-compatible model, enabled and pointed at a local stub server for the run (no real network)."""
    with running_stub() as stub:
        yield endpoint_params(stub)


def check_nova(data: Path) -> None:
    manifest = pd.read_csv(data / "interim" / "ingest" / "manifest.csv")
    cases = TINY["nova.ingest.cases"]
    assert manifest.case_id.nunique() == cases and set(manifest.frequency) <= {"common", "rare"}
    assert {"gold", "rater1", "rater2"} <= set(pd.read_csv(data / "interim" / "ingest" / "boxes.csv").source)
    info = json.loads((data / "interim" / "ingest" / "dataset.json").read_text())
    assert info["layout"] == "parquet" and info["root"] == "data/nova/interim/ingest/images"
    for name in ("captions.csv", "case_metadata.csv", "bboxes_gold.csv", "data/nova-v1.parquet"):
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


ROW = StudyRow(TINY, check_nova, nova_endpoint)
