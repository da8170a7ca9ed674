"""End-to-end smoke run of the cmr_recon study through `dvc repro`, on tiny synthetic data."""
import json

import mlflow
import pandas as pd

from tests.conftest import run_dvc, set_params

TINY = {
    "cmr_recon.ingest.subjects": 3,
    "cmr_recon.ingest.validation_subjects": 1,
    "cmr_recon.ingest.modalities": ["cine_sax", "T1map", "blackblood"],
    "cmr_recon.ingest.held_out_modalities": ["blackblood"],
    "cmr_recon.ingest.frames": 3,
    "cmr_recon.ingest.slices": 1,
    "cmr_recon.ingest.matrix_sizes": [[40, 32], [48, 32]],
    "cmr_recon.undersample.patterns": {"Uniform": [4], "ktRadial": [8]},
    "cmr_recon.train.num_cascades": 1,
    "cmr_recon.train.chans": 4,
    "cmr_recon.train.epochs": 2,
    "cmr_recon.train.steps_per_epoch": 3,
    "cmr_recon.evaluate.sense_iterations": 5,
}


def test_study_runs_end_to_end_and_is_cached(project_copy):
    set_params(project_copy, TINY)
    run_dvc(project_copy, "repro", "--glob", "cmr_recon-*")
    data = project_copy / "data" / "cmr_recon"

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

    status = run_dvc(project_copy, "status", "--with-deps", "cmr_recon-report")
    assert "up to date" in status.stdout
    again = run_dvc(project_copy, "repro", "--glob", "cmr_recon-*")
    assert "didn't change, skipping" in again.stdout and "Running stage" not in again.stdout

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project_copy / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cmr_recon")
    runs = client.search_runs([experiment.experiment_id])
    assert {r.data.tags["dvc.stage"] for r in runs} == {f"cmr_recon-{s}" for s in ("ingest", "undersample", "train", "evaluate", "report")}
    assert all(r.info.status == "FINISHED" for r in runs)
    evaluate_run = next(r for r in runs if r.data.tags["dvc.stage"] == "cmr_recon-evaluate")
    assert "validation.learned.psnr" in evaluate_run.data.metrics
