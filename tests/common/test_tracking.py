import os
import subprocess
import sys
import textwrap

import mlflow
import pytest
import yaml


@pytest.fixture()
def project(tmp_path, monkeypatch):
    """A tiny project: dvc.yaml + params.yaml + a step module using run_stage, tracked in a tmp sqlite store."""
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"toy-step": {"cmd": "python step.py", "deps": ["input.txt"]}}}))
    (tmp_path / "params.yaml").write_text("common: {seed: 1}\ntoy:\n  step: {factor: 3}\n")
    (tmp_path / "input.txt").write_text("hello")
    (tmp_path / "step.py").write_text(textwrap.dedent("""
        from stages.common.params import StrictModel
        from stages.common.stage import run_stage
        from stages.common.badinput import BadInputError

        class StepParams(StrictModel):
            factor: int = 1
            fail: bool = False

        with run_stage("toy", "step", StepParams) as ctx:
            ctx.log_metrics({"score": 2.0 * ctx.params.factor})
            if ctx.params.fail:
                raise BadInputError("input.txt: row 3 has no age")
    """))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return tmp_path, uri


def run_step(root, **env):
    return subprocess.run([sys.executable, "step.py"], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "DVC_ROOT": str(root), "DVC_STAGE": "toy-step", **env})


def test_stage_run_is_recorded_with_tags_params_and_metrics(project):
    root, uri = project
    result = run_step(root, MEDREPRO_PARENT_RUN_ID="parent123")
    assert result.returncode == 0, result.stderr
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("toy")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.metrics["score"] == 6.0
    assert run.data.params["toy.step.factor"] == "3" and run.data.params["common.seed"] == "1"
    tags = run.data.tags
    assert tags["dvc.stage"] == "toy-step" and tags["medrepro.study"] == "toy"
    assert tags["mlflow.parentRunId"] == "parent123"
    assert "mlflow.source.git.commit" in tags
    import hashlib
    assert tags["input.input.txt"] == hashlib.md5(b"hello").hexdigest()
    assert run.info.status == "FINISHED"


def test_bad_input_exits_nonzero_with_a_clear_message_and_a_failed_run(project):
    root, uri = project
    (root / "params.yaml").write_text("toy:\n  step: {fail: true}\n")
    result = run_step(root)
    assert result.returncode == 1
    assert "error: toy-step: input.txt: row 3 has no age" in result.stderr
    assert "Traceback" not in result.stderr
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("toy").experiment_id])
    assert run.info.status == "FAILED"


def test_params_error_names_the_key_before_anything_runs(project):
    root, _ = project
    (root / "params.yaml").write_text("toy:\n  step: {factr: 2}\n")
    result = run_step(root)
    assert result.returncode == 1
    assert "toy.step.factr: Extra inputs are not permitted" in result.stderr
