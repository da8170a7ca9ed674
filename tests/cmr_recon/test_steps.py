"""Step-level behaviour of cmr_recon, in-process: bad input, quarantine, splits, resuming training."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stages.cmr_recon.ingest import ingest, manifest_expectations
from stages.cmr_recon.io import full_sample_path, read_kspace, write_kspace
from stages.cmr_recon.phantom import cardiac_phantom, coil_maps, simulate_kspace
from stages.cmr_recon.train import TrainParams, train, training_fingerprint
from stages.cmr_recon.undersample import undersample
from stages.common.badinput import BadInputError
from stages.common.params import ParamsError
from stages.common.validation import ManifestValidationError, validate_manifest
from tests.cmr_recon.tiny import TINY
from tests.helpers import copy_project, repo_params, run_dvc, run_module, run_step, set_params, step_context


def write_real_dataset(folder: Path, subjects: int = 3) -> None:
    rng = np.random.default_rng(1)
    maps = coil_maps(2, 32, 40)
    for index in range(subjects):
        for modality in ("cine_sax", "T2map"):
            image = cardiac_phantom(modality, 32, 40, 3, 1, rng)
            write_kspace(full_sample_path(folder, f"P{index + 1:03d}", modality), simulate_kspace(image, maps, 0.01, rng))


@pytest.fixture()
def real_source(tmp_path):
    source = tmp_path / "CMRxRecon2024"
    write_real_dataset(source)
    broken = full_sample_path(source, "P002", "cine_sax")
    broken.write_bytes(broken.read_bytes()[:3000])  # truncated
    overrides = {"cmr_recon.ingest.source": str(source), "cmr_recon.ingest.validation_subjects": 1,
                 "cmr_recon.ingest.held_out_modalities": []}
    return source, overrides


def test_synthetic_ingest_writes_the_challenge_layout_and_a_validated_manifest(tmp_path):
    ctx, metrics = run_step(ingest, tmp_path, TINY)
    data = tmp_path / "data" / "cmr_recon"
    manifest = pd.read_csv(data / "interim/ingest/manifest.csv")
    assert len(manifest) == 9 and metrics["files"] == 9
    assert set(manifest.split) == {"train", "val", "unused"}
    assert set(manifest.loc[manifest.modality == "blackblood", "split"]) <= {"val", "unused"}  # held out never trains
    assert (manifest.subject[manifest.split == "val"] == "P003").all()
    kspace = read_kspace(data / "raw" / manifest.path[0])
    assert kspace.dtype == np.complex64 and kspace.shape[-2:] == (32, 40)
    assert json.loads((data / "raw/SOURCE.json").read_text()) == {"source": "synthetic"}
    assert json.loads((data / "interim/manifest_validation.json").read_text())["success"] is True
    assert ctx.tracker.metrics["quarantined"] == 0


def test_corrupt_file_is_fatal_by_default_and_leaves_no_manifest(real_source, tmp_path):
    project = copy_project(tmp_path / "project")
    source, overrides = real_source
    set_params(project, overrides)
    result = run_module(project, "stages.cmr_recon.ingest")
    assert result.returncode == 1
    assert "P002/cine_sax.mat" in result.stderr and "Traceback" not in result.stderr
    assert not (project / "data" / "cmr_recon" / "interim" / "ingest").exists()


def test_skip_quarantines_the_corrupt_file_and_keeps_the_rest(real_source, tmp_path):
    source, overrides = real_source
    ctx, _ = run_step(ingest, tmp_path, {**overrides, "common.on_bad_input": "skip"})
    out = tmp_path / "data" / "cmr_recon" / "interim" / "ingest"
    quarantine = json.loads((out / "quarantine.json").read_text())
    assert quarantine["count"] == 1 and "P002/cine_sax.mat" in quarantine["entries"][0]["item"]
    manifest = pd.read_csv(out / "manifest.csv")
    assert len(manifest) == 5 and not ((manifest.subject == "P002") & (manifest.modality == "cine_sax")).any()
    assert json.loads((tmp_path / "data/cmr_recon/raw/SOURCE.json").read_text()) == {"source": "CMRxRecon2024"}  # inside the repository: stored relative
    assert not any(Path(p).is_absolute() for p in manifest.path)


def test_a_real_source_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(BadInputError, match=r"cmr_recon.ingest.source: .*nowhere does not exist"):
        run_step(ingest, tmp_path, {"cmr_recon.ingest.source": str(tmp_path / "nowhere")})


def test_bad_params_are_refused_naming_the_key_before_anything_runs(tmp_path):
    with pytest.raises(ParamsError, match=r"cmr_recon.ingest: .*validation_subjects \(3\) must be below subjects \(3\)"):
        step_context(ingest, tmp_path, {**TINY, "cmr_recon.ingest.validation_subjects": 3})
    with pytest.raises(ParamsError, match=r"cmr_recon.undersample.patterns.ktSpiral"):
        step_context(undersample, tmp_path, {"cmr_recon.undersample.patterns": {"ktSpiral": [4]}})
    with pytest.raises(ParamsError, match=r"cmr_recon.train.num_threads: .*greater than or equal to 1"):
        step_context(train, tmp_path, {"cmr_recon.train.num_threads": 0})
    assert not (tmp_path / "data").exists()


def test_manifest_expectation_failure_names_the_expectation(tmp_path):
    run_step(ingest, tmp_path, {**TINY, "cmr_recon.ingest.coils": 3})
    manifest = pd.read_csv(tmp_path / "data/cmr_recon/interim/ingest/manifest.csv")
    assert set(manifest.nc) == {3}
    manifest.loc[0, "nc"] = 5
    with pytest.raises(ManifestValidationError, match=r"expect_column_values_to_be_between.*'column': 'nc'.*\[5\]"):
        validate_manifest(manifest, "cmr", manifest_expectations(3), tmp_path / "v.json")


def test_training_resumes_from_the_last_epoch_after_sigkill(tmp_path):
    project = copy_project(tmp_path / "project")
    set_params(project, {**TINY, "cmr_recon.train.epochs": 3, "cmr_recon.train.steps_per_epoch": 6})
    run_dvc(project, "repro", "cmr_recon-ingest")
    checkpoint = project / "data" / "cmr_recon" / ".scratch" / "cmr_recon-train" / "last.pt"
    process = subprocess.Popen([sys.executable, "-m", "stages.cmr_recon.train"], cwd=project,
                               env={**os.environ, "DVC_ROOT": str(project)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert checkpoint.exists(), "no checkpoint was written after the first epoch"
    assert not (project / "data" / "cmr_recon" / "models").exists()
    resumed = run_module(project, "stages.cmr_recon.train")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout
    history = pd.read_csv(project / "data" / "cmr_recon" / "metrics" / "train_loss.csv")
    assert list(history.epoch) == [1, 2, 3]
    assert not checkpoint.exists()


def test_a_checkpoint_is_only_resumed_for_the_same_params_code_and_data():
    section = repo_params()["cmr_recon"]["train"]
    section.pop("full")
    params = TrainParams.model_validate(section)
    inputs = {"stages/cmr_recon/model.py": "aaa", "data/cmr_recon/raw": "bbb.dir"}
    reference = training_fingerprint(params, 0, inputs)
    assert training_fingerprint(params.model_copy(update={"epochs": 9}), 0, inputs) == reference  # more epochs continue
    narrower = params.network.model_copy(update={"chans": 4})
    assert training_fingerprint(params.model_copy(update={"network": narrower}), 0, inputs) != reference
    assert training_fingerprint(params, 1, inputs) != reference
    assert training_fingerprint(params, 0, {**inputs, "stages/cmr_recon/model.py": "ccc"}) != reference


def test_a_changed_real_file_reruns_the_ingest_and_every_stage_that_reads_the_source(tmp_path):
    project = copy_project(tmp_path / "project")
    source = tmp_path / "CMRxRecon2024"
    write_real_dataset(source)
    set_params(project, {"cmr_recon.ingest.source": str(source), "cmr_recon.ingest.validation_subjects": 1,
                         "cmr_recon.ingest.held_out_modalities": []})
    run_dvc(project, "repro", "cmr_recon-ingest")
    assert "up to date" in run_dvc(project, "status", "cmr_recon-ingest").stdout
    changed = full_sample_path(source, "P001", "T2map")
    kspace = read_kspace(changed)
    write_kspace(changed, kspace * 1.01)
    status = run_dvc(project, "status", "cmr_recon-ingest", "cmr_recon-undersample", "cmr_recon-train").stdout
    assert status.count(f"modified:           {source}") == 3, status
