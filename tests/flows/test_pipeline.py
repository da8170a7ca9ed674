"""The pipeline flow end to end: Prefect (test server) + Ray (2 CPUs) + DVC on the toy DAG."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from flowtoys import (
    FOREACH_JOIN,
    FOREACH_STAGES,
    FOREACH_TRAIN,
    copy_repo,
    dvc,
    dvc_status_clean,
    git,
    load_lock,
    make_foreach_repo,
    make_toy_repo,
    run_count,
)

from flows.run import PipelineFailedError, pipeline

TOY_SLEEP_SECONDS = 2.0
BRANCH_A = ("toy-a1", "toy-a2")
BRANCH_B = ("aux-prep", "toy-b1", "toy-b2")
ALL_STAGES = (*BRANCH_A, *BRANCH_B, "toy-join")


def _intervals(repo: Path, stage: str) -> list[tuple[float, float]]:
    path = repo / "runs" / f"{stage.split('-', 1)[1]}.times"
    return [tuple(map(float, line.split())) for line in path.read_text().splitlines()]  # type: ignore[misc]


def _parent_runs(uri: str, study: str, flow_run_id: str) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(study)
    assert experiment is not None, f"no MLflow experiment {study!r}"
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`medrepro.flow_run_id` = '{flow_run_id}'"
    )
    return [run for run in runs if run.info.run_name.startswith("flow-")]


def _flow_run(state: Any) -> tuple[str, str]:
    from prefect import get_client

    flow_run_id = str(state.state_details.flow_run_id)
    with get_client(sync_client=True) as client:
        return flow_run_id, client.read_flow_run(flow_run_id).name


def _stage_task_runs(flow_run_id: str) -> list[Any]:
    """The task runs of the stages: they belong to the `medrepro-stages` subflow of the flow run."""
    from uuid import UUID

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    subflows = FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[UUID(flow_run_id)]))
    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=subflows)


LOOPBACK_ADDRESSES = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def _sample_listening_sockets(stop: threading.Event, samples: dict[str, set[str]]) -> None:
    """Every listening socket of this process's descendants (Ray's GCS, raylet, agents and workers), by process name."""
    import psutil

    me = psutil.Process()
    while not stop.wait(0.3):
        for child in me.children(recursive=True):
            try:
                name = child.name()
                sockets = child.net_connections(kind="inet")
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            for sock in sockets:
                if sock.status == psutil.CONN_LISTEN:
                    samples.setdefault(name, set()).add(sock.laddr.ip)


def _contend_for_lock(repo: Path, api_url: str, result: dict[str, Any]) -> None:
    """Start a second flow run (the CLI) once the first holds the flow lock."""
    owner = repo / ".dvc" / "tmp" / "medrepro-flow.owner.json"
    deadline = time.monotonic() + 180
    while not owner.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    result["started_while_locked"] = owner.exists()
    result["process"] = subprocess.run(
        [sys.executable, "-m", "flows", "run", "--repo", str(repo)],
        env={**os.environ, "PREFECT_API_URL": api_url},
        capture_output=True,
        text=True,
        timeout=300,
    )
    result["lock_still_held"] = owner.exists()


@pytest.fixture(scope="module")
def two_runs(prefect_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the flow on a fresh toy repo (with a second flow contending), then run it again."""
    base = tmp_path_factory.mktemp("pipeline")
    repo = make_toy_repo(base / "repo")
    reference = copy_repo(repo, base / "reference")
    dvc(reference, "repro")
    uri = f"sqlite:///{base / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_URI", uri)
        env.setenv("TOY_SLEEP", str(TOY_SLEEP_SECONDS))
        contender: dict[str, Any] = {}
        thread = threading.Thread(target=_contend_for_lock, args=(repo, prefect_server, contender))
        thread.start()
        listening: dict[str, set[str]] = {}
        stop_sampling = threading.Event()
        sampler = threading.Thread(target=_sample_listening_sockets, args=(stop_sampling, listening), daemon=True)
        sampler.start()
        started = time.monotonic()
        first = pipeline(str(repo), return_state=True)
        first_seconds = time.monotonic() - started
        stop_sampling.set()
        sampler.join()
        thread.join()
        counts_after_first = {stage: run_count(repo, stage) for stage in ALL_STAGES}
        lock_after_first = load_lock(repo)
        status_clean_after_first = dvc_status_clean(repo)
        second = pipeline(str(repo), return_state=True)
    return {
        "repo": repo,
        "reference": reference,
        "uri": uri,
        "first": first,
        "second": second,
        "first_seconds": first_seconds,
        "counts_after_first": counts_after_first,
        "lock_after_first": lock_after_first,
        "status_clean_after_first": status_clean_after_first,
        "contender": contender,
        "listening": listening,
    }


def test_flow_runs_every_stage_once_and_leaves_dvc_status_clean(two_runs: dict[str, Any]) -> None:
    assert two_runs["first"].is_completed(), two_runs["first"].message
    summary = two_runs["first"].result()
    assert set(summary) == set(ALL_STAGES)
    assert all(outcome["ran"] for outcome in summary.values())
    assert two_runs["counts_after_first"] == dict.fromkeys(ALL_STAGES, 1)
    assert two_runs["status_clean_after_first"]
    assert (two_runs["repo"] / "out" / "join.txt").read_text() == "join(a2(a1()),b2(b1(prep(),b=1)))\n"


def test_local_ray_listens_on_loopback_only(two_runs: dict[str, Any]) -> None:
    listening = two_runs["listening"]
    assert {"gcs_server", "raylet"} <= set(listening), f"Ray's servers were not seen listening: {sorted(listening)}"
    exposed = {name: sorted(ips - LOOPBACK_ADDRESSES) for name, ips in listening.items() if ips - LOOPBACK_ADDRESSES}
    assert not exposed, f"listening beyond loopback during the flow: {exposed}"


def test_lock_equals_the_one_plain_dvc_repro_writes(two_runs: dict[str, Any]) -> None:
    assert two_runs["lock_after_first"] == load_lock(two_runs["reference"])


def test_independent_branches_overlap(two_runs: dict[str, Any]) -> None:
    repo = two_runs["repo"]
    overlaps = [
        (a, b)
        for a in BRANCH_A
        for b in BRANCH_B
        for (a_start, a_end) in _intervals(repo, a)
        for (b_start, b_end) in _intervals(repo, b)
        if a_start < b_end and b_start < a_end
    ]
    assert overlaps, "no stage of branch a ran at the same time as a stage of branch b"


def test_rerun_skips_unchanged_stages(two_runs: dict[str, Any]) -> None:
    assert two_runs["second"].is_completed(), two_runs["second"].message
    summary = two_runs["second"].result()
    assert not any(outcome["ran"] for outcome in summary.values())
    assert {stage: run_count(two_runs["repo"], stage) for stage in ALL_STAGES} == dict.fromkeys(ALL_STAGES, 1)
    assert load_lock(two_runs["repo"]) == two_runs["lock_after_first"]
    assert dvc_status_clean(two_runs["repo"])


def test_per_stage_resources_from_params_reach_ray(two_runs: dict[str, Any]) -> None:
    summary = two_runs["first"].result()
    assert summary["toy-join"]["resources"].get("CPU") == 2.0  # orchestration.resources.toy-join
    assert all(summary[stage]["resources"].get("CPU") == 1.0 for stage in (*BRANCH_A, *BRANCH_B))


def test_mlflow_parent_run_per_study_and_stage_env(two_runs: dict[str, Any]) -> None:
    repo = two_runs["repo"]
    flow_run_id, flow_run_name = _flow_run(two_runs["first"])
    for study in ("aux", "toy"):
        (parent,) = _parent_runs(two_runs["uri"], study, flow_run_id)
        assert parent.info.run_name == f"flow-{flow_run_name}"
        assert parent.info.status == "FINISHED"
    # the second flow ran no stage: it leaves no empty parent runs
    second_id, _ = _flow_run(two_runs["second"])
    assert [_parent_runs(two_runs["uri"], study, second_id) for study in ("aux", "toy")] == [[], []]
    # the stages ran during the first flow run and were given its parent runs
    flow_run_id, _ = _flow_run(two_runs["first"])
    parents = {study: _parent_runs(two_runs["uri"], study, flow_run_id)[0].info.run_id for study in ("aux", "toy")}
    for stage in ALL_STAGES:
        parent_env, flow_env = (repo / "env" / f"{stage.split('-', 1)[1]}.txt").read_text().splitlines()
        assert parent_env == parents[stage.split("-", 1)[0]]
        assert flow_env == flow_run_id


def test_second_flow_at_once_fails_clearly_and_lock_stays_valid(two_runs: dict[str, Any]) -> None:
    contender = two_runs["contender"]
    assert contender["started_while_locked"] and contender["lock_still_held"]
    process = contender["process"]
    assert process.returncode == 1, process.stderr[-3000:]
    lock_file = two_runs["repo"] / ".dvc" / "tmp" / "medrepro-flow.lock"
    assert f"error: another flow run holds {lock_file} (pid " in process.stderr
    assert two_runs["lock_after_first"] == load_lock(two_runs["reference"])


def test_failing_stage_is_retried_then_the_flow_fails(
    prefect_server: str, toy_repo_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = toy_repo_factory()
    (repo / "fail").mkdir()
    (repo / "fail" / "b2").touch()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    state = pipeline(str(repo), study="toy", return_state=True)
    assert state.is_failed()
    assert "toy stage b2 failed on purpose" in state.message
    error = state.result(raise_on_failure=False)
    assert isinstance(error, PipelineFailedError)
    assert "stage 'toy-b2' failed" in str(error) and "not run because an upstream stage failed: toy-join" in str(error)
    assert set(error.completed) == {"aux-prep", "toy-a1", "toy-a2", "toy-b1"}
    assert run_count(repo, "toy-b2") == 3  # orchestration.retries: 2 -> three attempts
    assert run_count(repo, "toy-join") == 0
    assert run_count(repo, "toy-a2") == 1 and run_count(repo, "toy-b1") == 1
    flow_run_id, _ = _flow_run(state)
    assert [run.info.status for run in _parent_runs(uri, "toy", flow_run_id)] == ["FAILED"]


def test_multi_node_workers_use_their_own_clone_and_the_remote(
    prefect_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = make_toy_repo(tmp_path / "driver", remote=tmp_path / "remote")
    worker = tmp_path / "worker"
    git(tmp_path, "clone", "-q", str(driver), str(worker))
    monkeypatch.setenv("MEDREPRO_WORKER_REPO", str(worker))  # the Ray workers' clone
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    state = pipeline(str(driver), remote="store", return_state=True)
    assert state.is_completed(), state.message
    assert {stage: run_count(worker, stage) for stage in ALL_STAGES} == dict.fromkeys(ALL_STAGES, 1)
    assert {stage: run_count(driver, stage) for stage in ALL_STAGES} == dict.fromkeys(ALL_STAGES, 0)
    # the driver merged the entries DVC wrote on the worker, and pulled the outputs
    assert load_lock(driver) == load_lock(worker)
    assert dvc_status_clean(driver)
    assert (driver / "out" / "join.txt").read_text() == "join(a2(a1()),b2(b1(prep(),b=1)))\n"


def test_foreach_items_are_tasks_of_their_own(prefect_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `foreach` stage: one task per item, named as DVC names it, resources by group or item."""
    repo = make_foreach_repo(tmp_path / "repo")
    reference = copy_repo(repo, tmp_path / "reference")
    dvc(reference, "repro")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("TOY_SLEEP", str(TOY_SLEEP_SECONDS))
    state = pipeline(str(repo), study="toy", return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    assert set(summary) == set(FOREACH_STAGES)
    assert all(outcome["ran"] for outcome in summary.values())
    assert {stage: run_count(repo, stage) for stage in FOREACH_STAGES} == dict.fromkeys(FOREACH_STAGES, 1)
    assert (repo / "out" / "join.txt").read_text() == FOREACH_JOIN
    lock = load_lock(repo)
    assert set(lock["stages"]) == set(FOREACH_STAGES) and lock == load_lock(reference)
    assert dvc_status_clean(repo)
    # orchestration.resources: toy-train for @sex and @dataset, toy-train@age for itself
    assert {stage: summary[stage]["resources"].get("CPU") for stage in FOREACH_STAGES} == {
        "aux-prep": 1.0,
        "toy-train@sex": 0.5,
        "toy-train@age": 1.5,
        "toy-train@dataset": 0.5,
        "toy-join": 2.0,
    }
    overlaps = [
        (a, b)
        for a in FOREACH_TRAIN
        for b in FOREACH_TRAIN
        if a < b
        for (a_start, a_end) in _intervals(repo, a)
        for (b_start, b_end) in _intervals(repo, b)
        if a_start < b_end and b_start < a_end
    ]
    assert overlaps, "no two items of toy-train ran at the same time"
    flow_run_id, _ = _flow_run(state)
    assert sorted(task_run.name for task_run in _stage_task_runs(flow_run_id)) == sorted(FOREACH_STAGES)
    parents = {study: _parent_runs(uri, study, flow_run_id)[0].info.run_id for study in ("aux", "toy")}
    for stage in FOREACH_STAGES:
        parent_env, flow_env = (repo / "env" / f"{stage.split('-', 1)[1]}.txt").read_text().splitlines()
        assert parent_env == parents[stage.split("-", 1)[0]]
        assert flow_env == flow_run_id
