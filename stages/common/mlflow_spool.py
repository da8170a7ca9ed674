"""A stage's MLflow run, written to a spool file first and moved into the MLflow store in the background.

Importing MLflow and opening its SQLite store costs a stage process about 3.3 s on 2 cores,
more than many stages' own work. So a stage appends its run (tags, params, metrics with their
timestamps and steps, artifacts, status and times) as JSON lines to
``<store folder>/spool/<start ms>-<uuid>.jsonl``, and one flusher process
(``python -m stages.common.mlflow_spool``, started detached by the first stage that finds none
running, and lingering while stages keep coming) imports MLflow once and moves every finished
record into the store with its original times. :func:`flush` does the same synchronously;
``make run``'s summary, the flows and ``make ui`` call it so the UI shows every run.

A record is finished when it has its ``end`` line, or when the process that wrote it is gone
(then its run ends KILLED). Artifacts are copied into the spool when logged (as MLflow itself
copies them), so a later rerun that rewrites the outputs does not change what the run recorded.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages.common.atomic import process_alive

SPOOL_FOLDER = "spool"
LOCK_FILE = ".flusher.lock"
RECORD_SUFFIX = ".jsonl"
LINGER_SECONDS = 30.0
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100


def spool_folder(uri: str) -> Path | None:
    """``<folder of the SQLite store>/spool`` for a local SQLite tracking URI, else None (log directly)."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///")).parent / SPOOL_FOLDER


def now_ms() -> int:
    return int(time.time() * 1000)


class SpooledRun:
    """One stage run as appended JSON lines; the same calls as an MLflow run."""

    def __init__(self, folder: Path, uri: str, experiment: str, artifact_location: str, run_name: str,
                 tags: Mapping[str, str]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.start_time = now_ms()
        self.path = folder / f"{self.start_time}-{uuid.uuid4().hex}{RECORD_SUFFIX}"
        self._artifacts = self.path.with_suffix(".artifacts")
        self.ended = False
        self._append({"event": "start", "uri": uri, "experiment": experiment,
                      "artifact_location": artifact_location, "run_name": run_name, "tags": dict(tags),
                      "start_time": self.start_time, "pid": os.getpid(), "host": socket.gethostname()})

    def _append(self, event: Mapping[str, Any]) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(event) + "\n")

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._append({"event": "params", "params": {k: str(v)[:6000] for k, v in params.items()}})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._append({"event": "metrics", "metrics": {k: float(v) for k, v in metrics.items()},
                      "timestamp": now_ms(), "step": step or 0})

    def set_tag(self, key: str, value: str) -> None:
        self._append({"event": "tags", "tags": {key: value}})

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        source = Path(path)
        if source.is_dir():
            raise ValueError(f"log_artifact takes a file; {source} is a folder")
        stored = self._artifacts / uuid.uuid4().hex / source.name
        stored.parent.mkdir(parents=True)
        shutil.copy2(source, stored)  # not a hard link: a step may rewrite the file in place later
        self._append({"event": "artifact", "path": str(stored), "artifact_path": folder})

    def end(self, status: str = "FINISHED") -> None:
        if not self.ended:
            self.ended = True
            self._append({"event": "end", "status": status, "end_time": now_ms()})


@dataclass
class RunRecord:
    """A spool file read back."""

    path: Path
    start: dict[str, Any]
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)
    artifacts: list[tuple[str, str | None]] = field(default_factory=list)
    status: str | None = None
    end_time: int | None = None


def read_record(path: Path) -> RunRecord | None:
    """The record in ``path``; None when its start line is not written yet. A torn last line is ignored."""
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            break
    if not events or events[0].get("event") != "start":
        return None
    record = RunRecord(path, events[0], tags=dict(events[0]["tags"]))
    for event in events[1:]:
        kind = event["event"]
        if kind == "params":
            record.params.update(event["params"])
        elif kind == "tags":
            record.tags.update(event["tags"])
        elif kind == "metrics":
            record.metrics.extend((k, v, event["timestamp"], event["step"]) for k, v in event["metrics"].items())
        elif kind == "artifact":
            record.artifacts.append((event["path"], event["artifact_path"]))
        elif kind == "end":
            record.status, record.end_time = event["status"], event["end_time"]
    return record


def finished(record: RunRecord) -> bool:
    """Ended, or written on this host by a process that is gone (another host's live runs cannot be judged)."""
    if record.status is not None:
        return True
    same_host = record.start.get("host", socket.gethostname()) == socket.gethostname()
    return same_host and not process_alive(int(record.start["pid"]))


def pending_records(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"*{RECORD_SUFFIX}")) if folder.is_dir() else []


def ready_records(folder: Path) -> list[RunRecord]:
    """The finished records in ``folder``, oldest first."""
    records = []
    for path in pending_records(folder):
        with contextlib.suppress(FileNotFoundError):
            record = read_record(path)
            if record is not None and finished(record):
                records.append(record)
    return records


def _experiment_id(client: Any, name: str, artifact_location: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except Exception:  # another process created it first
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def ingest(record: RunRecord, clients: dict[str, Any]) -> str:
    """Create the record's run in its store (once, even if an earlier flusher died half-way); return its id."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    uri = record.start["uri"]
    client = clients.setdefault(uri, MlflowClient(tracking_uri=uri))
    marker = record.path.with_suffix(".run_id")  # "<run id>" once created, "<run id> logged" once filled
    state = marker.read_text().split() if marker.exists() else []
    if state:
        run_id = state[0]
    else:
        experiment = _experiment_id(client, record.start["experiment"], record.start["artifact_location"])
        run = client.create_run(experiment, start_time=record.start["start_time"], tags=record.tags,
                                run_name=record.start["run_name"])
        run_id = run.info.run_id
        marker.write_text(run_id)
    if "logged" not in state:
        params = [Param(k, v) for k, v in record.params.items()]
        metrics = [Metric(k, v, ts, step) for k, v, ts, step in record.metrics]
        for i in range(0, len(params), MAX_PARAMS_PER_BATCH):
            client.log_batch(run_id, params=params[i:i + MAX_PARAMS_PER_BATCH])
        for i in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=metrics[i:i + MAX_METRICS_PER_BATCH])
        for path, folder in record.artifacts:
            client.log_artifact(run_id, path, artifact_path=folder)
        marker.write_text(f"{run_id} logged")
    status = record.status or "KILLED"
    end_time = record.end_time or max([record.start["start_time"], *(m[2] for m in record.metrics)])
    if record.status is None:
        client.set_tag(run_id, "medrepro.error", "the stage process ended without closing its run")
    client.set_terminated(run_id, status=status, end_time=end_time)
    record.path.unlink()
    shutil.rmtree(record.path.with_suffix(".artifacts"), ignore_errors=True)
    marker.unlink()
    return run_id


@contextlib.contextmanager
def flusher_lock(folder: Path, blocking: bool) -> Iterator[bool]:
    """Hold the spool's flusher lock; yields False (holding nothing) when another process has it and not ``blocking``."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ingest_ready(folder: Path, clients: dict[str, Any]) -> int:
    records = ready_records(folder)
    for record in records:
        ingest(record, clients)
    return len(records)


class SpoolFlushError(RuntimeError):
    """The finished runs could not be moved into the MLflow store in time."""


def flush(folder: Path | None, timeout_seconds: float = 120.0) -> int:
    """Move every finished record into the store now (or wait while the background flusher does); returns the count.

    Records of stages still running stay in the spool. A store another writer holds locked is
    retried with backoff; past ``timeout_seconds`` one :class:`SpoolFlushError` names the spool,
    and the records stay for the next flush.
    """
    if folder is None or not pending_records(folder):
        return 0
    deadline = time.monotonic() + timeout_seconds
    delay, moved, last_error = 0.2, 0, None
    while True:
        with flusher_lock(folder, blocking=False) as held:
            if held:
                try:
                    return moved + ingest_ready(folder, {})
                except Exception as error:  # e.g. sqlite3 "database is locked" from another writer
                    last_error = error
        if last_error is None and not ready_records(folder):
            return moved
        if time.monotonic() > deadline:
            reason = f": {type(last_error).__name__}: {str(last_error).splitlines()[0]}" if last_error else \
                ": the background flusher did not finish"
            raise SpoolFlushError(f"MLflow spool {folder}: runs not moved into the store within "
                                  f"{timeout_seconds:.0f} s{reason}; they stay in the spool for the next flush")
        time.sleep(delay)
        delay = min(delay * 2, 5.0) if last_error else 0.2
        last_error = None


def start_flusher(folder: Path) -> None:
    """Start the background flusher unless one is running (it takes the lock; a second one exits at once)."""
    with flusher_lock(folder, blocking=False) as free:
        if not free:
            return
    log = open(folder / "flusher.log", "a")
    subprocess.Popen([sys.executable, "-m", "stages.common.mlflow_spool", str(folder)],
                     stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                     env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]),
                                                                                    os.environ.get("PYTHONPATH")]))})
    log.close()


def serve(folder: Path, linger_seconds: float) -> None:
    """Ingest finished records until none has come for ``linger_seconds``.

    A stage appends its ``end`` line before it looks for a running flusher, so after letting the
    lock go this looks once more: a record that came meanwhile is either seen here or its stage
    found the lock free and started a new flusher.
    """
    clients: dict[str, Any] = {}
    while True:
        with flusher_lock(folder, blocking=False) as held:
            if not held:
                return
            idle_since = time.monotonic()
            while time.monotonic() - idle_since < linger_seconds:
                try:
                    moved = ingest_ready(folder, clients)
                except Exception as error:  # the store is busy or broken: keep the records, retry later
                    print(f"flusher: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
                    time.sleep(2.0)
                    continue
                if moved:
                    idle_since = time.monotonic()
                else:
                    time.sleep(0.5)
        if not ready_records(folder):
            return


def main() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    parser = argparse.ArgumentParser(description="Move finished MLflow runs from a spool folder into their store.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--linger", type=float, default=LINGER_SECONDS,
                        help="seconds to wait for more records before exiting (0: one pass)")
    arguments = parser.parse_args()
    if arguments.linger <= 0:
        print(f"{flush(arguments.folder)} run(s) moved into MLflow")
    else:
        serve(arguments.folder, arguments.linger)


if __name__ == "__main__":
    main()
