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
from stages.common.io import FormatError
from stages.common.params import ParamsError
from stages.common.paths import UnsafePathError
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


def write_file(path: Path, shape: tuple[int, ...], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    return write_kspace(path, (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64))


@pytest.fixture()
def damaged_source(tmp_path):
    """A 2024-layout tree of three subjects plus one damaged item of each kind issue 19 item 8 names."""
    source = tmp_path / "CMRxRecon2024"
    write_real_dataset(source)
    write_file(full_sample_path(source, "P004", "cine_sax"), (3, 1, 2, 8, 8))               # 8 x 8 matrix
    write_file(full_sample_path(source, "P001", "blackblood"), (3, 1, 2, 32, 40))           # BlackBlood with a time axis
    write_kspace(full_sample_path(source, "P003", "T1map"), np.zeros((3, 1, 2, 32, 40), np.complex64))  # all zero
    duplicate = source / "copies" / "TrainingSet" / "P001" / "cine_sax.mat"                 # (set, subject) seen before
    duplicate.parent.mkdir(parents=True)
    duplicate.write_bytes(full_sample_path(source, "P001", "cine_sax").read_bytes())
    outside = tmp_path / "elsewhere" / "T2map.mat"
    write_file(outside, (3, 1, 2, 32, 40))
    linked = full_sample_path(source, "P005", "T2map")
    linked.parent.mkdir(parents=True)
    linked.symlink_to(outside)                                                               # escapes the root
    write_file(source / "MultiCoil" / "Cine" / "TrainingSet" / "FullSample" / "P001" / "lge.mat", (3, 1, 2, 32, 40))
    overrides = {"cmr_recon.ingest.source": str(source), "cmr_recon.ingest.validation_subjects": 1,
                 "cmr_recon.ingest.held_out_modalities": []}
    return source, overrides


DAMAGED = {
    "P004/cine_sax.mat": "matrix 8 x 8",
    "P001/blackblood.mat": "BlackBlood has no time axis",
    "P003/T1map.mat": "all zero",
    "copies/TrainingSet/P001/cine_sax.mat": "duplicate of MultiCoil/Cine/TrainingSet/FullSample/P001/cine_sax.mat",
    "P005/T2map.mat": "outside",
}


def test_skip_quarantines_each_item_level_problem_by_name_and_lists_unknown_modalities(damaged_source, tmp_path):
    source, overrides = damaged_source
    ctx, metrics = run_step(ingest, tmp_path, {**overrides, "common.on_bad_input": "skip"})
    out = tmp_path / "data" / "cmr_recon" / "interim" / "ingest"
    entries = json.loads((out / "quarantine.json").read_text())["entries"]
    assert len(entries) == len(DAMAGED)
    for name, problem in DAMAGED.items():
        matching = [e for e in entries if e["item"].endswith(name)]
        assert len(matching) == 1 and problem in matching[0]["problem"], (name, entries)
    manifest = pd.read_csv(out / "manifest.csv")
    assert len(manifest) == 6 and set(manifest.subject_key) == {"TrainingSet/P001", "TrainingSet/P002", "TrainingSet/P003"}
    skipped = json.loads((out / "dataset.json").read_text())["skipped_files"]
    assert [s["path"] for s in skipped] == ["MultiCoil/Cine/TrainingSet/FullSample/P001/lge.mat"] and metrics["skipped_files"] == 1


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_each_item_level_problem_is_fatal_by_default_with_the_file_named(damaged_source, tmp_path, name):
    source, overrides = damaged_source
    for other in set(DAMAGED) - {name}:  # leave only this one damage
        for path in list(source.rglob("*.mat")):
            if path.as_posix().endswith(other):
                path.unlink()
    if name != "copies/TrainingSet/P001/cine_sax.mat":
        for path in (source / "copies").rglob("*.mat"):
            path.unlink()
    with pytest.raises((BadInputError, FormatError, UnsafePathError), match=DAMAGED[name].split(":")[0]) as caught:
        run_step(ingest, tmp_path, overrides)
    assert name.split("/")[-1] in str(caught.value)
    assert not (tmp_path / "data" / "cmr_recon" / "interim" / "ingest").exists()


def test_every_file_quarantined_stops_with_a_message_that_says_so(tmp_path):
    source = tmp_path / "CMRxRecon2024"
    for index in range(3):
        write_kspace(full_sample_path(source, f"P00{index + 1}", "cine_sax"), np.zeros((3, 1, 2, 32, 32), np.complex64))
    with pytest.raises(BadInputError, match=r"every FullSample k-space file was quarantined \(3 of 3\).*medrepro-logs.*quarantine.json"):
        run_step(ingest, tmp_path, {"cmr_recon.ingest.source": str(source), "cmr_recon.ingest.validation_subjects": 1,
                                    "cmr_recon.ingest.held_out_modalities": [], "common.on_bad_input": "skip"})
