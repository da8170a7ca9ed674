import os
import subprocess
import sys
import textwrap

import mlflow
import pytest
import yaml

from stages.common.tracking import flush_runs

COMMON = "common: {scale: smoke, seed: 1, on_bad_input: fatal, device: cpu, max_input_bytes: 4294967296}\n"


@pytest.fixture()
def project(tmp_path, monkeypatch):
    """A tiny project: dvc.yaml + params.yaml + a step module using run_stage, tracked in a tmp sqlite store."""
    stage = {"cmd": "python step.py", "deps": ["input.txt"], "params": ["common.seed", "toy.step"]}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"toy-step": stage}}))
    (tmp_path / "params.yaml").write_text(COMMON + "toy:\n  step: {factor: 3, fail: false}\n")
    (tmp_path / "input.txt").write_text("hello")
    (tmp_path / "step.py").write_text(textwrap.dedent("""
        from stages.common.params import StrictModel
        from stages.common.stage import StageContext, run_stage
        from stages.common.badinput import BadInputError

        class StepParams(StrictModel):
            factor: int
            fail: bool

        def step(ctx: StageContext[StepParams]):
            ctx.log_metrics({"score": 2.0 * ctx.params.factor})
            if ctx.params.fail:
                raise BadInputError("input.txt: row 3 has no age")
            return {"half": ctx.params.factor / 2}

        run_stage(step, names=("toy", "step"))
    """))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return tmp_path, uri


def run_step(root, **env):
    """Run the step as its own process, then move its spooled run into the store as `make run` does at its end."""
    result = subprocess.run([sys.executable, "step.py"], cwd=root, capture_output=True, text=True,
                            env={**os.environ, "DVC_ROOT": str(root), **env})
    flush_runs(root)
    return result


def test_stage_run_is_recorded_with_tags_params_and_metrics(project):
    root, uri = project
    result = run_step(root, MEDREPRO_PARENT_RUN_ID="parent123")
    assert result.returncode == 0, result.stderr
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("toy")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.metrics["score"] == 6.0 and run.data.metrics["half"] == 1.5
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
    (root / "params.yaml").write_text(COMMON + "toy:\n  step: {factor: 1, fail: true}\n")
    result = run_step(root)
    assert result.returncode == 1
    assert "error: toy-step: input.txt: row 3 has no age" in result.stderr
    assert "Traceback" not in result.stderr
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("toy").experiment_id])
    assert run.info.status == "FAILED"


def test_params_error_names_the_key_before_anything_runs(project):
    root, _ = project
    (root / "params.yaml").write_text(COMMON + "toy:\n  step: {factr: 2, factor: 1, fail: false}\n")
    result = run_step(root)
    assert result.returncode == 1
    assert "toy.step.factr: Extra inputs are not permitted" in result.stderr


def test_a_run_carries_the_dvc_experiment_that_started_it(project):
    root, uri = project
    assert run_step(root, DVC_EXP_NAME="wide-lr", DVC_EXP_BASELINE_REV="abc123").returncode == 0
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("toy").experiment_id])
    assert run.data.tags["dvc.exp_name"] == "wide-lr" and run.data.tags["dvc.exp_baseline_rev"] == "abc123"


def test_what_the_pipeline_rewrites_does_not_make_a_checkout_dirty(tmp_path):
    from stages.common.tracking import git_commit

    (tmp_path / "data").mkdir()
    for name in ("code.py", "dvc.lock", "data/metrics.json"):
        (tmp_path / name).write_text("v1\n")
    for command in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "c"]):
        subprocess.run(command, cwd=tmp_path, check=True, capture_output=True)
    (tmp_path / "dvc.lock").write_text("v2\n")
    (tmp_path / "data" / "metrics.json").write_text("v2\n")
    commit, dirty = git_commit(tmp_path)
    assert len(commit) == 40 and dirty is False
    (tmp_path / "code.py").write_text("v2\n")
    assert git_commit(tmp_path)[1] is True


def test_a_second_writer_of_the_same_stage_is_refused_by_name(project):
    from stages.common.locks import lock_path

    root, _ = project
    path = lock_path(root, "toy-step")
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, sys, time
        handle = open({str(path)!r}, "a+"); fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0); handle.truncate(); handle.write("4242"); handle.flush()
        print("held", flush=True); time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = run_step(root)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "error: toy-step: stage toy-step is already running (pid 4242" in result.stderr
    finally:
        holder.kill()
        holder.wait()
    assert run_step(root).returncode == 0  # the lock went with its holder


def test_temporaries_of_killed_writers_go_at_the_next_stage_start_and_live_ones_stay(tmp_path):
    from stages.common.atomic import sweep_stale_temporaries

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = tmp_path / "data" / "toy" / "metrics"
    folder.mkdir(parents=True)
    stale = folder / f".tmp-evaluate.json.{int(dead.stdout)}.0123abcd"
    stale.write_text("half")
    staged = folder / f".tmp-models.{int(dead.stdout)}.89abcdef"
    (staged / "inner").mkdir(parents=True)
    live = folder / f".tmp-train.json.{os.getpid()}.00000000"
    live.write_text("being written")
    kept = folder / "evaluate.json"
    kept.write_text("{}")
    assert sorted(sweep_stale_temporaries([folder, tmp_path / "absent"])) == sorted([stale, staged])
    assert sorted(p.name for p in folder.iterdir()) == sorted([live.name, kept.name])


def test_a_password_in_a_tracking_uri_is_never_logged_or_forwarded():
    from urllib.parse import urlsplit

    from stages.common.tracking import forwarded_tracking_env, redact_uri, worker_tracking_uri

    uri = "postgresql://mlflow:s3cr%40t@db.example.org:5432/mlflow"
    assert urlsplit(uri).password == "s3cr%40t"  # the reference parse of what must go
    redacted = redact_uri(uri)
    assert "s3cr" not in redacted and redacted == "postgresql://mlflow:***@db.example.org:5432/mlflow"
    assert redact_uri("sqlite:////tmp/mlruns/mlflow.db") == "sqlite:////tmp/mlruns/mlflow.db"
    assert redact_uri("http://user@host:5000") == "http://user@host:5000"

    forwarded = forwarded_tracking_env(uri)
    assert "s3cr" not in str(forwarded) and "MLFLOW_TRACKING_URI" not in forwarded
    assert worker_tracking_uri({**forwarded, "MLFLOW_TRACKING_URI": uri}, "node-1") == uri  # its own, inherited
    with pytest.raises(RuntimeError, match=r"worker node-2: MLFLOW_TRACKING_URI must be set to postgresql://mlflow:\*\*\*@db"):
        worker_tracking_uri(forwarded, "node-2")
    with pytest.raises(RuntimeError, match="found postgresql://other:\\*\\*\\*@db"):
        worker_tracking_uri({**forwarded, "MLFLOW_TRACKING_URI": "postgresql://other:x@db.example.org:5432/mlflow"}, "n")
    plain = forwarded_tracking_env("sqlite:////p/mlruns/mlflow.db")
    assert plain == {"MLFLOW_TRACKING_URI": "sqlite:////p/mlruns/mlflow.db"}
    assert worker_tracking_uri(plain, "n") == "sqlite:////p/mlruns/mlflow.db"
