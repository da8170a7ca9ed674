"""The steps in-process on tiny params: outputs, bad input, resume, and the scoring conventions."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from medpy.metric import binary as medpy_binary

from stages.common.badinput import BadInputError
from stages.common.validation import ManifestValidationError
from stages.sam_tta.ingest import ingest
from stages.sam_tta.pretrain import pretrain
from tests.helpers import repo_params, run_step, with_overrides
from tests.sam_tta.tiny import TINY


def test_ingest_writes_every_domain_in_the_official_format(tiny_run):
    manifest = pd.read_csv(tiny_run.data / "interim" / "ingest" / "manifest.csv")
    assert manifest.groupby("role")["case"].count().to_dict() == {"medical": 4, "source": 12, "target": 9}
    assert set(manifest[manifest.role == "target"].domain) == {"brain_mri", "pancreas_ct", "polyp_rgb"}
    assert set(manifest[manifest.domain == "polyp_rgb"].channels) == {3}
    assert set(manifest[manifest.domain == "brain_mri"].channels) == {1}
    first = (tiny_run.data / "raw" / "brain_mri" / "list.csv").read_text().splitlines()
    assert first[0] == "image,label" and first[1].startswith("image/brain_mri_0000.nii.gz,mask/")
    validation = json.loads((tiny_run.data / "interim" / "manifest_validation.json").read_text())
    assert validation["success"] is True


def test_target_domains_have_lower_object_contrast_than_the_source(tiny_run):
    from stages.sam_tta.data import load_cases, load_manifest

    manifest, root = load_manifest(tiny_run.data / "interim" / "ingest", tiny_run.root)
    cases = load_cases(manifest, root, 64)

    def contrast(case):
        inside = case.labels > 0
        return np.abs(case.image[:, inside].mean(1) - case.image[:, ~inside].mean(1)).max()

    source = np.mean([contrast(c) for c in cases if c.domain == "scenes"])
    target = np.mean([contrast(c) for c in cases if c.domain in ("brain_mri", "pancreas_ct", "polyp_rgb")])
    assert target < 0.6 * source


def test_bad_row_is_fatal_by_default_and_quarantined_with_skip(tiny_run, tmp_path):
    source = tmp_path / "real"
    for domain in ("scenes", "brain_mri", "pancreas_ct", "polyp_rgb", "ultrasound"):
        shutil.copytree(tiny_run.data / "raw" / domain, source / domain)
    lines = (source / "brain_mri" / "list.csv").read_text().splitlines()
    (source / "brain_mri" / "list.csv").write_text("\n".join([*lines, "image/missing.nii.gz,mask/missing.nii.gz"]) + "\n")
    params = with_overrides(repo_params(), {**TINY, "sam_tta.ingest.source": str(source)})
    with pytest.raises(BadInputError, match=r"row 4: .*missing.nii.gz does not exist"):
        run_step(ingest, tmp_path / "fatal", params=params)
    context, metrics = run_step(ingest, tmp_path / "skip", params=with_overrides(params, {"common.on_bad_input": "skip"}))
    quarantine = json.loads((tmp_path / "skip" / "data" / "sam_tta" / "interim" / "ingest" / "quarantine.json").read_text())
    assert quarantine["count"] == 1 and "row 4" in quarantine["entries"][0]["item"]
    assert metrics["cases_target"] == 9


def test_manifest_suite_stops_on_a_bad_value(tiny_run, monkeypatch):
    from stages.sam_tta import ingest as ingest_module

    original = ingest_module.manifest_expectations
    monkeypatch.setattr(ingest_module, "manifest_expectations",
                        lambda domains: [*original(domains), ("expect_column_values_to_be_between",
                                                              {"column": "height", "min_value": 1000})])
    with pytest.raises(ManifestValidationError, match="height"):
        run_step(ingest, tiny_run.root / "suite", TINY)


def test_an_interrupted_pretraining_resumes_to_the_same_model(tmp_path, tiny_run, monkeypatch):
    import torch

    from stages.sam_tta import pretrain as module

    for folder in ("raw", "interim"):
        shutil.copytree(tiny_run.data / folder, tmp_path / "data" / "sam_tta" / folder)
    model_file = tmp_path / "data" / "sam_tta" / "models" / "source" / "model.pt"
    context, _ = run_step(pretrain, tmp_path, TINY)
    reference = torch.load(model_file, weights_only=True)["state_dict"]
    assert not context.scratch("last.pt").exists()

    real_step, calls = module.train_step, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:  # after the checkpoint at step 3 of 6
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(module, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_step(pretrain, tmp_path, TINY)
    assert context.scratch("last.pt").exists()
    monkeypatch.setattr(module, "train_step", real_step)
    _, metrics = run_step(pretrain, tmp_path, TINY)
    resumed = torch.load(model_file, weights_only=True)["state_dict"]
    assert all(torch.allclose(reference[k], resumed[k], atol=1e-6) for k in reference)


def test_evaluate_scores_with_sam_tta_conventions(tiny_run):
    per_image = pd.read_csv(tiny_run.data / "evaluation" / "per_image.csv")
    assert set(per_image.method) == {"source_only", "sbct_only", "sam_tta", "mean_teacher", "tent", "medsam", "no_icm", "cnn_curves"}
    assert len(per_image) == 3 * 3 * 2 * 8
    with np.load(tiny_run.data / "adapted" / "main" / "predictions.npz") as arrays:
        row = per_image[(per_image.method == "sam_tta") & (per_image.prompt == "box")].iloc[0]
        prediction = arrays[f"pred__{row.domain}__box__sam_tta__{row.case}"].astype(bool)
        truth = arrays[f"truth__{row.domain}__{row.case}"].astype(bool)
    if prediction.any():
        expected = (medpy_binary.dc(prediction, truth), min(medpy_binary.hd95(prediction, truth), 50.0))
    else:  # one mask empty: Dice 0, distances at the cap
        expected = (0.0, 50.0)
    assert row.dice == pytest.approx(expected[0]) and row.hd95 == pytest.approx(expected[1])
    claims = json.loads((tiny_run.data / "metrics" / "claims.json").read_text())["claims"]
    assert {"dice_source_lt_sbct_lt_sam_tta", "sam_tta_beats_tent", "ablations_at_or_below_full"} <= set(claims)


def test_report_opens_with_its_claims(tiny_run):
    html = (tiny_run.data / "report" / "index.html").read_text()
    assert html.index("Claims tested") < html.index("DICE per target domain")
    assert "data:image/png;base64," in html and "published" in html.lower() and "0.364" in html
