"""End-to-end smoke run of the nova study through `dvc repro`, on a tiny synthetic benchmark, with
the OpenAI-compatible model pointed at a stub server on 127.0.0.1 (no real network)."""
import json

import mlflow
import numpy as np
import pandas as pd
import yaml

from tests.conftest import REPO, run_dvc, set_params
from tests.nova.test_nova_openai import StubServer

TINY = {
    "nova.ingest.cases": 8,
    "nova.ingest.image_size": 96,
    "nova.ingest.max_scans_per_case": 2,
    "nova.ingest.healthy_slices": 16,
    "nova.train_normative.size": 64,
    "nova.train_normative.bank_size": 2000,
    "nova.evaluate.bootstrap_resamples": 30,
    "nova.report.examples": 2,
}
STAGES = ("ingest", "train_normative", "predict", "evaluate", "report")
METRICS = ("map30", "map50", "map50_95", "acc50", "tp30", "fp30", "fnr50", "bleu4", "meteor", "rouge_l",
           "clinical_f1", "modality_f1", "normal_abnormal_f1", "top1", "top5")


def test_the_http_model_is_off_by_default():
    predict = yaml.safe_load((REPO / "params.yaml").read_text())["nova"]["predict"]
    assert predict["openai_compatible"]["enabled"] is False and set(predict["models"]) == {"normative", "random_boxes"}


def test_study_runs_end_to_end_and_is_cached(project_copy):
    stub = StubServer()
    stub.thread.start()
    try:
        set_params(project_copy, {**TINY, "nova.predict.openai_compatible.enabled": True,
                                  "nova.predict.openai_compatible.base_url": stub.url,
                                  "nova.predict.openai_compatible.backoff_s": 0.01})
        run_dvc(project_copy, "repro", "--glob", "nova-*")
        data = project_copy / "data" / "nova"

        manifest = pd.read_csv(data / "interim" / "ingest" / "manifest.csv")
        assert manifest.case_id.nunique() == 8 and set(manifest.frequency) <= {"common", "rare"}
        boxes = pd.read_csv(data / "interim" / "ingest" / "boxes.csv")
        assert {"gold", "rater1", "rater2"} <= set(boxes.source)
        assert json.loads((data / "interim" / "ingest" / "dataset.json").read_text())["layout"] == "parquet"
        for name in ("captions.csv", "case_metadata.csv", "bboxes_gold.csv", "nova-v1.parquet"):
            assert (data / "raw" / "benchmark" / name).is_file()

        summary = json.loads((data / "predictions" / "summary.json").read_text())
        assert set(summary) == {"normative", "random_boxes", "openai_compatible"}
        sent = len(stub.requests)
        assert sent == 2 * len(manifest) + 8  # boxes and caption per slice, one diagnosis per case
        assert summary["openai_compatible"]["problems"] == 0

        metrics = json.loads((data / "metrics" / "evaluate.json").read_text())
        for model in summary:
            for metric in METRICS:
                assert np.isfinite(metrics[model][metric]), (model, metric)
            assert set(metrics["by_frequency"][model]) == {"common", "rare"}
        assert metrics["normative_beats_random_map30"] is True
        table = pd.read_csv(data / "evaluation" / "summary.csv")
        assert set(table.group) == {"all", "common", "rare"} and (table.low <= table.value + 1e-9).all()
        assert (data / "plots" / "pr_iou30.csv").is_file() and (data / "metrics" / "train_normative.json").is_file()
        html = (data / "report" / "index.html").read_text()
        assert "data:image/png;base64," in html and "Published reference points" in html and "rare pathologies" in html
        assert "openai_compatible caption" in html

        status = run_dvc(project_copy, "status", *(f"nova-{s}" for s in STAGES))
        assert "up to date" in status.stdout
        # Forcing predict again: every answer comes from the on-disk cache, the outputs are identical.
        run_dvc(project_copy, "repro", "--force", "--single-item", "nova-predict")
        assert len(stub.requests) == sent
        again = run_dvc(project_copy, "repro", "--glob", "nova-*")
        assert "didn't change, skipping" in again.stdout and "Running stage" not in again.stdout
    finally:
        stub.server.shutdown()
        stub.server.server_close()

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project_copy / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("nova")
    runs = client.search_runs([experiment.experiment_id])
    assert {r.data.tags["dvc.stage"] for r in runs} == {f"nova-{s}" for s in STAGES}
    assert all(r.info.status == "FINISHED" for r in runs)
    predict_runs = sorted((r for r in runs if r.data.tags["dvc.stage"] == "nova-predict"), key=lambda r: r.info.start_time)
    assert [r.data.metrics["openai_compatible.client.requests"] for r in predict_runs] == [sent, 0]
    assert predict_runs[-1].data.metrics["openai_compatible.client.cache_hits"] == sent
    evaluate_run = next(r for r in runs if r.data.tags["dvc.stage"] == "nova-evaluate")
    assert "normative.map30" in evaluate_run.data.metrics and "random_boxes.rare.top1" in evaluate_run.data.metrics
    report_run = next(r for r in runs if r.data.tags["dvc.stage"] == "nova-report")
    assert [a.path for a in client.list_artifacts(report_run.info.run_id, "report")] == ["report/index.html"]
