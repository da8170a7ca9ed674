"""The five steps in-process on tiny params, and ingest's bad-input policy on a damaged real MSSEG-2 folder."""
import json

import numpy as np
import pandas as pd
import pytest

from stages.common.badinput import BadInputError
from stages.ms_lesion.evaluate import evaluate
from stages.ms_lesion.ingest import ingest
from stages.ms_lesion.preprocess import preprocess
from stages.ms_lesion.report import report
from stages.ms_lesion.train import train
from tests.helpers import run_step
from tests.ms_lesion.cases import MODELS, TINY, msseg2_fixture, save


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("ms_lesion")
    run_step(ingest, root, TINY)
    run_step(preprocess, root, TINY)
    for model in MODELS:
        run_step(train, root, TINY, item=model)
    run_step(evaluate, root, TINY)
    run_step(report, root, TINY)
    return root / "data" / "ms_lesion"


def test_ingest_reads_every_synthetic_layout(study):
    manifest = pd.read_csv(study / "interim" / "ingest" / "manifest.csv")
    layouts = manifest.groupby("dataset").layout.first().to_dict()
    assert layouts == {"crosssectional": "nnunet", "msseg2": "msseg2", "longitudinal": "longitudinal"}
    assert manifest.groupby("layout").time_points.first().to_dict() == {"longitudinal": 2, "msseg2": 2, "nnunet": 1}
    assert not manifest[manifest.dataset == "msseg2"].has_all_t1.any() and manifest.has_new.all()
    assert (study / "raw" / "msseg2" / "msse001" / "flair_time01_on_middle_space.nii.gz").is_file()
    assert json.loads((study / "raw" / "crosssectional" / "dataset.json").read_text())["numTraining"] == 5
    fates = pd.read_csv(study / "raw" / "synthetic_truth" / "lesions.csv")
    assert set(fates[fates.dataset == "longitudinal"].fate) == {"persistent", "new", "vanishing"}


def test_preprocess_puts_every_case_on_one_grid_and_keeps_the_truth(study):
    splits = pd.read_csv(study / "interim" / "splits" / "splits.csv")
    assert splits.groupby(["dataset", "split"]).size().unstack().to_dict("records")[0] == {"test": 2, "train": 2, "val": 1}
    for row in splits.itertuples():
        arrays = np.load(study / "interim" / "preprocessed" / row.file)
        assert arrays["scans"].shape == (2, 28, 36, 28) and arrays["truth_known"].all()
        if row.dataset == "msseg2":  # the layout gives only new lesions; the truth has all four maps
            assert arrays["label_known"].tolist() == [False, False, True, False] and arrays["truth"][0].any()


def test_evaluate_scores_each_task_where_truth_exists(study):
    scores = pd.read_csv(study / "evaluation" / "per_case.csv")
    cross = scores[scores.dataset == "crosssectional"]
    assert set(cross.task) == {"all", "temporal"}  # one scan: no new or vanishing task
    assert {"new", "vanishing"} <= set(scores[scores.dataset == "msseg2"].task)
    assert scores.groupby("model").case_id.nunique().tolist() == [6] * 5
    claims = json.loads((study / "metrics" / "claims.json").read_text())["claims"]
    assert all(isinstance(claim["holds"], bool) for claim in claims.values())
    assert "<h2>Claims</h2>" in (study / "report" / "index.html").read_text()


def damaged_msseg2(folder):
    root = msseg2_fixture(folder, 3)
    image = np.zeros((12, 12, 10), np.float32)
    image[0, 0, 0] = np.nan
    save(root / "014" / "flair_time01_on_middle_space.nii.gz", image, (0.5, 0.75, 0.75))
    return root


def test_a_bad_real_case_is_fatal_by_default(tmp_path):
    source = damaged_msseg2(tmp_path / "msseg2")
    with pytest.raises(BadInputError, match="subject 014: .*NaN"):
        run_step(ingest, tmp_path, {**TINY, "ms_lesion.ingest.source.msseg2": str(source)})


def test_a_bad_real_case_is_quarantined_with_skip(tmp_path):
    source = damaged_msseg2(tmp_path / "msseg2")
    run_step(ingest, tmp_path, {**TINY, "ms_lesion.ingest.source.msseg2": str(source), "common.on_bad_input": "skip"})
    out = tmp_path / "data" / "ms_lesion" / "interim" / "ingest"
    quarantine = json.loads((out / "quarantine.json").read_text())
    assert quarantine["count"] == 1 and quarantine["entries"][0]["item"] == "msseg2/014"
    manifest = pd.read_csv(out / "manifest.csv")
    assert sorted(manifest[manifest.dataset == "msseg2"].subject.astype(str).str.zfill(3)) == ["013", "015"]
