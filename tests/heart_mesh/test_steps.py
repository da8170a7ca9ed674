"""heart_mesh's steps in-process on the tiny cohort: training, resuming, baselines, evaluation, claims, report."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from stages.heart_mesh.baselines import baselines
from stages.heart_mesh.evaluate import evaluate, phewas
from stages.heart_mesh.ingest import ingest
from stages.heart_mesh.report import report
from stages.heart_mesh.train import train
from tests.heart_mesh.tiny import TINY
from tests.helpers import run_step

DATA = "data/heart_mesh"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("heart_mesh")
    for step in (ingest, train, baselines, evaluate, report):
        run_step(step, root, TINY)
    return root / DATA


def test_train_saves_the_model_and_its_loss_history(study):
    history = pd.read_csv(study / "metrics/train_loss.csv")
    assert list(history.epoch) == [1, 2] and history.val_reconstruction.notna().all()
    state = torch.load(study / "models/meshheart/model.pt", weights_only=True)
    assert state["config"]["z_dim"] == 16 and state["config"]["vertices"] == 126 and state["reconstruction"] == "mse"
    assert not (study / ".scratch/heart_mesh-train/last.pt").exists()


def test_an_interrupted_training_resumes_from_its_checkpoint(tmp_path):
    run_step(ingest, tmp_path, TINY)
    run_step(train, tmp_path, {**TINY, "heart_mesh.train.epochs": 1})
    # keep the checkpoint a crash after epoch 1 would leave (a finished run deletes it)
    checkpoint = tmp_path / DATA / ".scratch/heart_mesh-train/last.pt"
    assert not checkpoint.exists()
    import stages.heart_mesh.train as module

    saved = {}
    original = module.torch.save

    def keep(state, path):
        original(state, path)
        if "fingerprint" in state:
            saved["state"] = state

    module.torch.save = keep
    try:
        run_step(train, tmp_path, {**TINY, "heart_mesh.train.epochs": 1})
    finally:
        module.torch.save = original
    torch.save(saved["state"], checkpoint)
    ctx, _ = run_step(train, tmp_path, TINY)  # 2 epochs: resumes after epoch 1
    assert ctx.tracker.metrics["resumed_epochs"] == 1
    assert list(pd.read_csv(tmp_path / DATA / "metrics/train_loss.csv").epoch) == [1, 2]


def test_evaluate_scores_every_method_and_writes_the_claims(study):
    per_subject = pd.read_csv(study / "evaluation/per_subject.csv")
    assert set(per_subject.method) == {"meshheart", "pca", "vae"} and len(per_subject) == 30
    assert (per_subject[["hausdorff", "assd", "chamfer"]] > 0).all().all()
    assert (per_subject.hausdorff >= per_subject.assd).all()  # the maximum bounds the mean
    claims = json.loads((study / "metrics/claims.json").read_text())
    assert claims["study"] == "heart_mesh" and len(claims["claims"]) == 6
    delta = pd.read_csv(study / "evaluation/latent_delta.csv")
    assert len(delta) == 10 and (delta.latent_delta >= 0).all() and delta.disease.sum() == 4
    examples = np.load(study / "evaluation/examples.npz")
    assert examples["truth"].shape == examples["meshheart"].shape == (2, 4, 126, 3)


def test_phewas_finds_the_driven_phenotype_and_corrects_for_multiple_tests():
    rng = np.random.default_rng(0)
    delta = rng.normal(size=200)
    rows = pd.DataFrame({"log_nt_probnp": delta + rng.normal(0, 0.5, 200), "walk_distance_m": rng.normal(size=200),
                         "systolic_bp": rng.normal(size=200), "hba1c": rng.normal(size=200), "ldl": rng.normal(size=200)})
    table = phewas(delta, rows, 0.05).set_index("phenotype")
    assert table.loc["log_nt_probnp", "significant"] and table.significant.sum() == 1
    assert (table.p_bh >= table.p_value).all()


def test_report_opens_with_the_claims_and_embeds_the_figures(study):
    html = (study / "report/index.html").read_text()
    assert html.index("Claims") < html.index("Reconstruction")
    assert html.count("data:image/png;base64,") >= 7 and "latent delta (our definition)" in html
