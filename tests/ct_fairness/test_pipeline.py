"""End-to-end smoke run of the ct_fairness study through `dvc repro`, on tiny synthetic data."""
import json

import mlflow
import pandas as pd

from tests.conftest import run_dvc, set_params

STAGES = ("ingest", "preprocess", "train_sex", "train_age", "train_dataset", "evaluate", "report")
TINY = {
    "ct_fairness.ingest.cases_per_dataset": 10,
    "ct_fairness.ingest.age_ranges": [[20, 40], [65, 88]],
    "ct_fairness.ingest.age_weights": [0.5, 0.5],
    "ct_fairness.ingest.scanners.totalsegmentator.spacing": [12.0, 12.0, 12.0],
    "ct_fairness.ingest.scanners.amos.spacing": [10.0, 10.0, 14.0],
    "ct_fairness.preprocess.spacing_mm": [16.0, 16.0, 16.0],
    "ct_fairness.preprocess.shape": [24, 20, 16],
    "ct_fairness.train.channels": [4, 8],
    "ct_fairness.train.strides": [2],
    "ct_fairness.train.patch": [16, 16, 16],
    "ct_fairness.train.iterations": 4,
    "ct_fairness.train.log_every": 2,
}


def test_study_runs_end_to_end_and_is_cached(project_copy):
    set_params(project_copy, TINY)
    run_dvc(project_copy, "repro", "--glob", "ct_fairness-*")
    data = project_copy / "data" / "ct_fairness"

    manifest = pd.read_csv(data / "interim" / "ingest" / "manifest.csv")
    assert len(manifest) == 20 and set(manifest.dataset) == {"totalsegmentator", "amos"}
    assert set(manifest.sex) == {"F", "M"} and manifest.shapes_equal.all()
    assert json.loads((data / "interim" / "ingest" / "quarantine.json").read_text())["count"] == 0
    folds = pd.read_csv(data / "interim" / "splits" / "folds.csv")
    assert set(folds.experiment) == {"sex_totalsegmentator", "age_totalsegmentator", "dataset_both"}
    for variable, count in (("sex", 10), ("age", 10), ("dataset", 10)):
        models = pd.read_csv(data / "models" / variable / "models.csv")
        assert len(models) == count and set(models.fold) == set(range(5))

    gaps = pd.read_csv(data / "evaluation" / "gaps.csv")
    dice = gaps[gaps.metric == "dice"]
    assert len(dice) == 3 * 4 * 2                           # experiments x organs x test groups
    assert {"gap_percent", "p_value", "significance"} <= set(gaps.columns)
    truth = pd.read_csv(data / "evaluation" / "truth_vs_measured.csv")
    assert len(truth) == 3 * 4 and {"true_volume_change_percent", "expected_gap", "direction_agrees"} <= set(truth.columns)
    summary = json.loads((data / "metrics" / "evaluate.json").read_text())
    assert set(summary["mean_abs_gap_percent"]) == {"sex", "age", "dataset"}
    assert set(summary["gap"]["dataset_both"]["liver"]) == {"totalsegmentator", "amos"}
    assert (data / "plots" / "gap_dice.csv").exists() and (data / "metrics" / "train_sex.json").exists()
    html = (data / "report" / "index.html").read_text()
    assert "data:image/png;base64," in html and "cross-dataset" in html and "Synthetic truth" in html

    status = run_dvc(project_copy, "status", *(f"ct_fairness-{s}" for s in STAGES))
    assert "up to date" in status.stdout
    again = run_dvc(project_copy, "repro", "--glob", "ct_fairness-*")
    assert "didn't change, skipping" in again.stdout and "Running stage" not in again.stdout

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project_copy / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ct_fairness")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["dvc.stage"] for r in runs) == sorted(f"ct_fairness-{s}" for s in STAGES)
    assert all(r.info.status == "FINISHED" for r in runs)
    evaluate_run = next(r for r in runs if r.data.tags["dvc.stage"] == "ct_fairness-evaluate")
    assert "mean_abs_gap.dataset" in evaluate_run.data.metrics
    train_run = next(r for r in runs if r.data.tags["dvc.stage"] == "ct_fairness-train_age")
    assert train_run.data.params["variable"] == "age"
