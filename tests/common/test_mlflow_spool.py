"""The MLflow spool: what a stage appends is what MLflow's own client reads back after a flush."""
import subprocess
import sys
import time

import mlflow
import pytest

from stages.common.mlflow_spool import (
    SpooledRun,
    flush,
    flusher_lock,
    pending_records,
    read_record,
    serve,
    spool_folder,
    start_flusher,
)


@pytest.fixture()
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    return uri, spool_folder(uri), (tmp_path / "mlruns" / "artifacts").as_uri()


def _runs(uri, experiment):
    client = mlflow.MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def test_spool_folder_is_next_to_a_local_sqlite_store_only(tmp_path):
    assert spool_folder(f"sqlite:///{tmp_path}/mlruns/mlflow.db") == tmp_path / "mlruns" / "spool"
    assert spool_folder("http://127.0.0.1:5000") is None


def test_a_flushed_run_has_the_params_metrics_steps_tags_times_and_artifacts_logged(store, tmp_path):
    uri, folder, artifacts = store
    model = tmp_path / "model.txt"
    model.write_text("weights v1")
    run = SpooledRun(folder, uri, "toy", f"{artifacts}/toy", "toy-train", {"dvc.stage": "toy-train"})
    run.log_params({"toy.train.lr": 0.001, "toy.train.layers": [8, 16]})
    run.log_metrics({"loss": 2.0}, step=0)
    run.log_metrics({"loss": 1.5}, step=1)
    run.log_metrics({"dice": 0.75})
    run.set_tag("medrepro.error", "none")
    run.log_artifact(model, "models")
    model.write_text("weights v2, a later rerun")  # the run keeps what was logged
    run.end("FINISHED")
    assert _runs(uri, "toy") == []  # nothing in the store before the flush

    assert flush(folder) == 1
    (found,) = _runs(uri, "toy")
    assert found.info.run_name == "toy-train" and found.info.status == "FINISHED"
    assert found.info.start_time == run.start_time and found.info.end_time >= run.start_time
    assert found.data.params == {"toy.train.lr": "0.001", "toy.train.layers": "[8, 16]"}
    assert found.data.metrics == {"loss": 1.5, "dice": 0.75}
    assert found.data.tags["dvc.stage"] == "toy-train" and found.data.tags["medrepro.error"] == "none"
    client = mlflow.MlflowClient(tracking_uri=uri)
    history = client.get_metric_history(found.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 2.0), (1, 1.5)]
    experiment = client.get_experiment_by_name("toy")
    assert experiment.artifact_location == f"{artifacts}/toy"
    downloaded = client.download_artifacts(found.info.run_id, "models/model.txt", str(tmp_path / "down"))
    assert open(downloaded).read() == "weights v1"
    assert pending_records(folder) == [] and not any(folder.glob("*.artifacts"))


def test_a_run_whose_process_died_ends_killed_and_a_running_one_stays(store):
    uri, folder, artifacts = store
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = SpooledRun(folder, uri, "toy", f"{artifacts}/toy", "toy-dead", {})
    lines = orphan.path.read_text().replace(f'"pid": {__import__("os").getpid()}', f'"pid": {int(dead.stdout)}')
    orphan.path.write_text(lines)
    orphan.log_metrics({"loss": 3.0})
    running = SpooledRun(folder, uri, "toy", f"{artifacts}/toy", "toy-running", {})  # this process: alive

    assert flush(folder) == 1
    (found,) = _runs(uri, "toy")
    assert found.info.run_name == "toy-dead" and found.info.status == "KILLED"
    assert "without closing its run" in found.data.tags["medrepro.error"]
    assert pending_records(folder) == [running.path]


def test_a_flusher_that_died_after_creating_the_run_does_not_duplicate_it(store):
    uri, folder, artifacts = store
    run = SpooledRun(folder, uri, "toy", f"{artifacts}/toy", "toy-once", {})
    run.log_metrics({"dice": 0.5})
    run.end()
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("toy")
    created = client.create_run(experiment, run_name="toy-once")
    run.path.with_suffix(".run_id").write_text(created.info.run_id)  # the first flusher got this far

    flush(folder)
    (found,) = _runs(uri, "toy")
    assert found.info.run_id == created.info.run_id and found.info.status == "FINISHED"
    assert found.data.metrics == {"dice": 0.5}  # what the first flusher had not logged yet


def test_a_busy_store_is_retried_then_named(store, monkeypatch):
    import stages.common.mlflow_spool as spool

    uri, folder, artifacts = store
    SpooledRun(folder, uri, "toy", f"{artifacts}/toy", "toy-busy", {}).end()
    real_ingest, calls = spool.ingest, []

    def locked_twice(record, clients):
        calls.append(record.path)
        if len(calls) <= 2:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return real_ingest(record, clients)

    monkeypatch.setattr(spool, "ingest", locked_twice)
    assert flush(folder, timeout_seconds=30) == 1 and len(calls) == 3
    assert [r.info.run_name for r in _runs(uri, "toy")] == ["toy-busy"]

    SpooledRun(folder, uri, "toy", f"{artifacts}/toy", "toy-stuck", {}).end()
    monkeypatch.setattr(spool, "ingest", lambda record, clients: (_ for _ in ()).throw(RuntimeError("database is locked")))
    with pytest.raises(spool.SpoolFlushError, match=r"MLflow spool .*spool: runs not moved .* database is locked"):
        flush(folder, timeout_seconds=1)
    assert len(pending_records(folder)) == 1  # kept for the next flush


def test_a_torn_last_line_is_ignored(store):
    uri, folder, artifacts = store
    run = SpooledRun(folder, uri, "toy", f"{artifacts}/toy", "toy-torn", {})
    run.log_metrics({"dice": 0.5})
    with open(run.path, "a") as handle:
        handle.write('{"event": "metrics", "metr')
    assert read_record(run.path).metrics[0][:2] == ("dice", 0.5)


def test_the_background_flusher_moves_runs_and_only_one_runs_at_a_time(store):
    uri, folder, artifacts = store
    run = SpooledRun(folder, uri, "toy", f"{artifacts}/toy", "toy-bg", {})
    run.end()
    with flusher_lock(folder, blocking=False) as held:
        assert held
        start_flusher(folder)  # the lock is taken: no second flusher starts
        time.sleep(1.0)
        assert pending_records(folder) == [run.path]
    start_flusher(folder)
    deadline = time.monotonic() + 90
    while pending_records(folder) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert pending_records(folder) == []
    assert [r.info.run_name for r in _runs(uri, "toy")] == ["toy-bg"]


def test_serve_ingests_what_arrives_while_it_lingers_then_exits(store):
    uri, folder, artifacts = store
    first = SpooledRun(folder, uri, "toy", f"{artifacts}/toy", "toy-1", {})
    first.end()
    started = time.monotonic()
    serve(folder, linger_seconds=0.6)
    assert time.monotonic() - started < 60
    assert pending_records(folder) == [] and len(_runs(uri, "toy")) == 1
