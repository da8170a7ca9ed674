"""Step-level behaviour of cmr_recon: bad input, quarantine, resuming training."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from stages.cmr_recon.io import full_sample_path, write_kspace
from stages.cmr_recon.phantom import cardiac_phantom, coil_maps, simulate_kspace
from tests.conftest import run_dvc, set_params
from tests.cmr_recon.test_pipeline import TINY


def run_step(root, step, **env):
    return subprocess.run([sys.executable, "-m", f"stages.cmr_recon.{step}"], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "MEDREPRO_NO_PROGRESS": "1", **env})


def write_real_dataset(folder, subjects=3):
    rng = np.random.default_rng(1)
    maps = coil_maps(2, 32, 40)
    for index in range(subjects):
        for modality in ("cine_sax", "T2map"):
            image = cardiac_phantom(modality, 32, 40, 3, 1, rng)
            write_kspace(full_sample_path(folder, f"P{index + 1:03d}", modality), simulate_kspace(image, maps, 0.01, rng))


@pytest.fixture()
def real_source(project_copy, tmp_path):
    source = tmp_path / "CMRxRecon2024"
    write_real_dataset(source)
    broken = full_sample_path(source, "P002", "cine_sax")
    broken.write_bytes(broken.read_bytes()[:3000])  # truncated
    set_params(project_copy, {"cmr_recon.ingest.source": str(source), "cmr_recon.ingest.validation_subjects": 1,
                              "cmr_recon.ingest.held_out_modalities": []})
    return project_copy, source


def test_corrupt_file_is_fatal_by_default_and_leaves_no_manifest(real_source):
    root, _ = real_source
    result = run_step(root, "ingest")
    assert result.returncode == 1
    assert "P002/cine_sax.mat" in result.stderr and "Traceback" not in result.stderr
    assert not (root / "data" / "cmr_recon" / "interim" / "ingest").exists()


def test_skip_quarantines_the_corrupt_file_and_keeps_the_rest(real_source):
    root, _ = real_source
    set_params(root, {"common.on_bad_input": "skip"})
    result = run_step(root, "ingest")
    assert result.returncode == 0, result.stderr
    out = root / "data" / "cmr_recon" / "interim" / "ingest"
    quarantine = json.loads((out / "quarantine.json").read_text())
    assert quarantine["count"] == 1 and "P002/cine_sax.mat" in quarantine["entries"][0]["item"]
    manifest = pd.read_csv(out / "manifest.csv")
    assert len(manifest) == 5 and not ((manifest.subject == "P002") & (manifest.modality == "cine_sax")).any()
    assert (root / "data" / "cmr_recon" / "raw" / "SOURCE.txt").exists()
    assert not any(p.is_absolute() for p in map(__import__("pathlib").Path, manifest.path))


def test_manifest_expectation_failure_names_the_expectation(project_copy):
    set_params(project_copy, {**TINY, "cmr_recon.ingest.coils": 3})
    ok = run_step(project_copy, "ingest")
    assert ok.returncode == 0, ok.stderr
    manifest = pd.read_csv(project_copy / "data/cmr_recon/interim/ingest/manifest.csv")
    assert set(manifest.nc) == {3}
    from stages.cmr_recon.ingest import manifest_expectations
    from stages.common.validation import ManifestValidationError, validate_manifest
    manifest.loc[0, "nc"] = 5
    with pytest.raises(ManifestValidationError, match=r"expect_column_values_to_be_between.*'column': 'nc'.*\[5\]"):
        validate_manifest(manifest, "cmr", manifest_expectations(3), project_copy / "v.json")


def test_training_resumes_from_the_last_epoch_after_sigkill(project_copy):
    set_params(project_copy, {**TINY, "cmr_recon.train.epochs": 3, "cmr_recon.train.steps_per_epoch": 6})
    run_dvc(project_copy, "repro", "cmr_recon-ingest")
    checkpoint = project_copy / "data" / "cmr_recon" / "checkpoints" / "last.pt"
    process = subprocess.Popen([sys.executable, "-m", "stages.cmr_recon.train"], cwd=project_copy,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert checkpoint.exists(), "no checkpoint was written after the first epoch"
    assert not (project_copy / "data" / "cmr_recon" / "models").exists()
    resumed = run_step(project_copy, "train")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout
    history = pd.read_csv(project_copy / "data" / "cmr_recon" / "metrics" / "train_loss.csv")
    assert list(history.epoch) == [1, 2, 3]
    assert not checkpoint.exists()


def test_a_checkpoint_is_only_resumed_for_the_same_params_code_and_data():
    from stages.cmr_recon.train import TrainParams, training_fingerprint

    inputs = {"stages/cmr_recon/model.py": "aaa", "data/cmr_recon/raw": "bbb.dir"}
    reference = training_fingerprint(TrainParams(), 0, inputs)
    assert training_fingerprint(TrainParams(epochs=9), 0, inputs) == reference  # more epochs continue
    assert training_fingerprint(TrainParams(chans=4), 0, inputs) != reference
    assert training_fingerprint(TrainParams(), 1, inputs) != reference
    assert training_fingerprint(TrainParams(), 0, {**inputs, "stages/cmr_recon/model.py": "ccc"}) != reference
