"""One stage outside Prefect and Ray: dvc repro semantics, lock handling, multi-node pull/push."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from flowtoys import FOREACH_JOIN, FOREACH_STAGES, FOREACH_TRAIN, dvc, dvc_status_clean, git, load_lock, run_count

from flows.config import OrchestrationConfigError, parse_orchestration_config
from flows.dvc_cli import StageFailedError, is_lock_error
from flows.graph import stage_graph
from flows.lockfile import read_lock_entry, write_lock_entries
from flows.locking import FlowLockedError, flow_lock
from flows.run import StageRequest, check_resources_feasible, execute_stage, plan_requests, ray_init_kwargs
from stages.common.tracking import git_commit


def _request(repo: Path, stage: str, **kwargs) -> StageRequest:
    return StageRequest(stage=stage, repo_root=str(repo), **kwargs)


def test_stage_runs_once_then_is_skipped_and_lock_matches_dvc(toy_repo_factory, tmp_path: Path) -> None:
    repo = toy_repo_factory()
    lines: list[str] = []
    outcome = execute_stage(_request(repo, "toy-a1", env={"TOY_LINES": "100"}), [], lines.append)
    assert outcome.ran and run_count(repo, "toy-a1") == 1
    # DVC's and the stage's output were streamed line by line, more than the kept tail
    assert "Running stage 'toy-a1':" in lines and "a1 says line 99" in lines
    assert outcome.lock_entry == load_lock(repo)["stages"]["toy-a1"]
    again = execute_stage(_request(repo, "toy-a1"), [], lines.append)
    assert not again.ran and run_count(repo, "toy-a1") == 1
    forced = execute_stage(_request(repo, "toy-a1", force=True), [], lines.append)
    assert forced.ran and run_count(repo, "toy-a1") == 2


def test_failing_stage_raises_with_stderr_tail(toy_repo_factory) -> None:
    repo = toy_repo_factory()
    (repo / "fail").mkdir()
    (repo / "fail" / "a1").touch()
    with pytest.raises(StageFailedError) as error:
        execute_stage(_request(repo, "toy-a1"), [], lambda line: None)
    message = str(error.value)
    assert "stage 'toy-a1' failed" in message
    assert "toy stage a1 failed on purpose" in message
    # crosses process boundaries (Ray, Prefect) intact
    assert str(pickle.loads(pickle.dumps(error.value))) == message


def test_lock_error_detection_uses_dvc_messages() -> None:
    from dvc.lock import FAILED_TO_LOCK_MESSAGE

    assert is_lock_error(f"ERROR: {FAILED_TO_LOCK_MESSAGE}")
    assert is_lock_error("ERROR: 'out/a1.txt' is busy, it is being blocked by:\n  (PID 12): dvc repro")
    assert not is_lock_error("ERROR: failed to reproduce 'toy-a1': exited with 1")
    assert not is_lock_error("my stage printed LockError but DVC did not fail on a lock")


def test_stage_retries_while_its_output_is_locked_by_another_process(toy_repo_factory) -> None:
    repo = toy_repo_factory()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    rwlock = repo / ".dvc" / "tmp" / "rwlock"
    rwlock.parent.mkdir(parents=True, exist_ok=True)
    out = str((repo / "out" / "a1.txt").resolve())
    rwlock.write_text(json.dumps({"read": {}, "write": {out: {"pid": holder.pid, "cmd": "dvc repro (test)"}}}))

    def release() -> None:
        time.sleep(2.0)
        holder.kill()
        holder.wait()

    releaser = threading.Thread(target=release)
    releaser.start()
    lines: list[str] = []
    try:
        outcome = execute_stage(_request(repo, "toy-a1", lock_retries=10), [], lines.append)
    finally:
        releaser.join()
    assert outcome.ran and run_count(repo, "toy-a1") == 1
    assert any("DVC lock held by another process; retry 1/10" in line for line in lines)


def test_write_lock_entries_round_trip(toy_repo_factory) -> None:
    repo = toy_repo_factory()
    execute_stage(_request(repo, "toy-a1"), [], lambda line: None)
    entry = read_lock_entry(repo, "toy-a1")
    assert write_lock_entries(repo, {"toy-a1": entry}) == []  # unchanged: not rewritten
    assert write_lock_entries(repo, {"toy-a1": None}) == ["toy-a1"]
    assert read_lock_entry(repo, "toy-a1") is None
    assert write_lock_entries(repo, {"toy-a1": entry}) == ["toy-a1"]
    assert load_lock(repo) == {"schema": "2.0", "stages": {"toy-a1": entry}}
    dvc(repo, "status", "toy-a1")  # DVC still reads the file


def test_foreach_item_runs_alone_and_its_lock_entry_is_keyed_as_dvc_keys_it(foreach_repo_factory) -> None:
    repo = foreach_repo_factory()
    execute_stage(_request(repo, "aux-prep"), [], lambda line: None)
    lines: list[str] = []
    outcome = execute_stage(_request(repo, "toy-train@sex"), [], lines.append)
    assert outcome.ran and "Running stage 'toy-train@sex':" in lines
    counts = {stage: run_count(repo, stage) for stage in FOREACH_TRAIN}
    assert counts == {"toy-train@sex": 1, "toy-train@age": 0, "toy-train@dataset": 0}
    assert set(load_lock(repo)["stages"]) == {"aux-prep", "toy-train@sex"}
    assert outcome.lock_entry == load_lock(repo)["stages"]["toy-train@sex"] == read_lock_entry(repo, "toy-train@sex")
    again = execute_stage(_request(repo, "toy-train@sex"), [], lambda line: None)
    assert not again.ran and run_count(repo, "toy-train@sex") == 1
    entry = outcome.lock_entry
    assert write_lock_entries(repo, {"toy-train@sex": None}) == ["toy-train@sex"]
    assert set(load_lock(repo)["stages"]) == {"aux-prep"}
    assert write_lock_entries(repo, {"toy-train@sex": entry}) == ["toy-train@sex"]
    assert json.loads(dvc(repo, "status", "--json", "toy-train@sex").stdout) == {}


def test_nested_foreach_lock_entries_live_in_the_nested_lock_file(tmp_path: Path) -> None:
    repo = tmp_path / "nested"
    (repo / "sub").mkdir(parents=True)
    git(repo, "init", "-q")
    dvc(repo, "init", "-q")
    each = {"foreach": ["x", "y"], "do": {"cmd": "echo ${item} > each_${item}.txt", "outs": ["each_${item}.txt"]}}
    (repo / "sub" / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"nest-each": each}}))
    dvc(repo, "repro", "sub/dvc.yaml:nest-each@x")
    stage = "sub/dvc.yaml:nest-each@x"
    written_by_dvc = yaml.safe_load((repo / "sub" / "dvc.lock").read_text())
    assert set(written_by_dvc["stages"]) == {"nest-each@x"}
    entry = read_lock_entry(repo, stage)
    assert entry == written_by_dvc["stages"]["nest-each@x"]
    assert read_lock_entry(repo, "sub/dvc.yaml:nest-each@y") is None
    assert write_lock_entries(repo, {stage: None}) == [stage]
    assert write_lock_entries(repo, {stage: entry}) == [stage]
    assert yaml.safe_load((repo / "sub" / "dvc.lock").read_text()) == written_by_dvc
    assert not (repo / "dvc.lock").exists()
    assert json.loads(dvc(repo, "status", "--json", stage).stdout) == {}


def _hold_flow_lock(repo: Path, seconds: float) -> subprocess.Popen[str]:
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from flows.locking import flow_lock\n"
        f"with flow_lock(Path({str(repo)!r}), 5):\n"
        "    print('held', flush=True)\n"
        f"    time.sleep({seconds})\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_second_flow_fails_clearly_while_the_lock_is_held(toy_repo_factory) -> None:
    repo = toy_repo_factory()
    holder = _hold_flow_lock(repo, 30)
    try:
        started = time.monotonic()
        with pytest.raises(FlowLockedError) as error:
            with flow_lock(repo, timeout=1.0):
                pass
        assert time.monotonic() - started >= 1.0
        message = str(error.value)
        assert str(repo / ".dvc" / "tmp" / "medrepro-flow.lock") in message
        assert f"pid {holder.pid}" in message
    finally:
        holder.kill()
        holder.wait()


def test_second_flow_waits_for_the_lock(toy_repo_factory) -> None:
    repo = toy_repo_factory()
    holder = _hold_flow_lock(repo, 1.5)
    started = time.monotonic()
    with flow_lock(repo, timeout=30):
        waited = time.monotonic() - started
        owner = json.loads((repo / ".dvc" / "tmp" / "medrepro-flow.owner.json").read_text())
    holder.wait()
    assert 0.5 < waited < 30
    assert owner["pid"] == os.getpid()


def test_stage_outputs_move_between_clones_through_the_remote(toy_repo_factory, tmp_path: Path) -> None:
    """Multi-node: a1 runs in clone B and is pushed; a2 runs in clone C on B's a1 pulled from the remote."""
    driver = toy_repo_factory("driver", remote=tmp_path / "remote")
    git(tmp_path, "clone", "-q", str(driver), str(tmp_path / "b"))
    git(tmp_path, "clone", "-q", str(driver), str(tmp_path / "c"))
    commit, _dirty = git_commit(driver)

    def remote_request(stage: str, upstream: tuple[str, ...] = ()) -> StageRequest:
        return _request(driver, stage, upstream=upstream, remote="store", git_commit=commit)

    previous = os.environ.get("MEDREPRO_WORKER_REPO")
    try:
        os.environ["MEDREPRO_WORKER_REPO"] = str(tmp_path / "b")
        a1 = execute_stage(remote_request("toy-a1"), [], lambda line: None)
        os.environ["MEDREPRO_WORKER_REPO"] = str(tmp_path / "c")
        a2 = execute_stage(remote_request("toy-a2", ("toy-a1",)), [a1], lambda line: None)
    finally:
        if previous is None:
            os.environ.pop("MEDREPRO_WORKER_REPO", None)
        else:
            os.environ["MEDREPRO_WORKER_REPO"] = previous
    assert run_count(tmp_path / "b", "toy-a1") == 1 and run_count(tmp_path / "c", "toy-a1") == 0
    assert (tmp_path / "c" / "out" / "a2.txt").read_text() == "a2(a1())\n"
    assert run_count(tmp_path / "c", "toy-a2") == 1
    assert a2.lock_entry is not None and a2.lock_entry["deps"][0]["md5"] == a1.lock_entry["outs"][0]["md5"]
    # the driver, which ran nothing, gets both outputs from the remote once it has the entries
    write_lock_entries(driver, {"toy-a1": a1.lock_entry, "toy-a2": a2.lock_entry})
    dvc(driver, "pull", "toy-a1", "toy-a2")
    assert (driver / "out" / "a2.txt").read_text() == "a2(a1())\n"
    assert json.loads(dvc(driver, "status", "--json", "toy-a1", "toy-a2").stdout) == {}


def test_foreach_items_move_between_clones_through_the_remote(foreach_repo_factory, tmp_path: Path) -> None:
    """Multi-node with foreach items: clone B runs prep, @age and @dataset; clone C runs @sex and
    the join, pulling @age and @dataset from the remote; the driver pulls everything."""
    driver = foreach_repo_factory("driver", remote=tmp_path / "remote")
    clones = {name: tmp_path / name for name in ("b", "c")}
    for clone in clones.values():
        git(tmp_path, "clone", "-q", str(driver), str(clone))
    commit, _dirty = git_commit(driver)
    plan = [
        ("b", "aux-prep", ()),
        ("b", "toy-train@age", ("aux-prep",)),
        ("b", "toy-train@dataset", ("aux-prep",)),
        ("c", "toy-train@sex", ("aux-prep",)),
        ("c", "toy-join", FOREACH_TRAIN),
    ]
    outcomes = {}
    previous = os.environ.get("MEDREPRO_WORKER_REPO")
    try:
        for clone, stage, upstream in plan:
            os.environ["MEDREPRO_WORKER_REPO"] = str(clones[clone])
            request = _request(driver, stage, upstream=upstream, remote="store", git_commit=commit)
            outcomes[stage] = execute_stage(request, [outcomes[name] for name in upstream], lambda line: None)
    finally:
        if previous is None:
            os.environ.pop("MEDREPRO_WORKER_REPO", None)
        else:
            os.environ["MEDREPRO_WORKER_REPO"] = previous
    assert all(outcome.ran for outcome in outcomes.values())
    assert run_count(clones["c"], "toy-train@age") == 0 and run_count(clones["c"], "toy-train@sex") == 1
    assert (clones["c"] / "out" / "join.txt").read_text() == FOREACH_JOIN
    write_lock_entries(driver, {stage: outcome.lock_entry for stage, outcome in outcomes.items()})
    assert set(load_lock(driver)["stages"]) == set(FOREACH_STAGES)
    dvc(driver, "pull", *FOREACH_STAGES)
    assert (driver / "out" / "join.txt").read_text() == FOREACH_JOIN
    assert dvc_status_clean(driver)


def test_worker_at_another_commit_is_refused(toy_repo_factory, tmp_path: Path) -> None:
    driver = toy_repo_factory("driver", remote=tmp_path / "remote")
    request = _request(driver, "toy-a1", remote="store", git_commit="0" * 40)
    with pytest.raises(RuntimeError, match=r"is at commit .* the driver at 0000"):
        execute_stage(request, [], lambda line: None)


def test_requests_follow_the_graph_and_resources_come_from_params(toy_repo_factory) -> None:
    repo = toy_repo_factory()
    graph = stage_graph(repo)
    config = parse_orchestration_config({"resources": {"toy-join": {"num_cpus": 2, "num_gpus": 0}}})
    env = {stage: {"X": stage} for stage in graph}
    requests = plan_requests(graph, repo, config, False, None, env, None)
    order = [request.stage for request in requests]
    assert sorted(order) == sorted(graph.nodes)
    for request in requests:
        assert set(request.upstream) == set(graph.predecessors(request.stage))
        assert all(order.index(up) < order.index(request.stage) for up in request.upstream)
        assert request.env == {"X": request.stage}
    assert config.remote_options_for("toy-join") == {"num_cpus": 2, "num_gpus": 0}
    assert config.remote_options_for("toy-a1") == {"num_cpus": 1, "num_gpus": 0}


def test_infeasible_local_resources_fail_naming_the_key() -> None:
    options = {"toy-a1": {"num_cpus": 1, "num_gpus": 0}, "cmr_recon-train": {"num_cpus": 1, "num_gpus": 1}}
    with pytest.raises(OrchestrationConfigError, match=r"orchestration.resources.cmr_recon-train.num_gpus"):
        check_resources_feasible(options, {"CPU": 2.0}, local=True, log=lambda line: None)
    warnings: list[str] = []
    check_resources_feasible(options, {"CPU": 2.0}, local=False, log=warnings.append)
    assert len(warnings) == 1 and "cmr_recon-train" in warnings[0]


def test_infeasible_foreach_item_names_the_key_it_got_its_resources_from() -> None:
    options = {"ct_fairness-train@sex": {"num_cpus": 1, "num_gpus": 1}}
    with pytest.raises(
        OrchestrationConfigError,
        match=r"^orchestration.resources.ct_fairness-train.num_gpus: stage 'ct_fairness-train@sex' asks for 1 GPU",
    ):
        check_resources_feasible(
            options, {"CPU": 2.0}, local=True, log=lambda line: None, resource_keys={"ct_fairness-train@sex": "ct_fairness-train"}
        )


def test_requests_of_foreach_items(foreach_repo_factory) -> None:
    repo = foreach_repo_factory()
    graph = stage_graph(repo)
    config = parse_orchestration_config(None)
    planned = plan_requests(graph, repo, config, False, None, {stage: {} for stage in graph}, None)
    requests = {request.stage: request for request in planned}
    assert set(requests) == set(FOREACH_STAGES)
    assert requests["toy-join"].upstream == tuple(sorted(FOREACH_TRAIN))
    assert all(requests[stage].upstream == ("aux-prep",) for stage in FOREACH_TRAIN)


def test_ray_init_kwargs_pass_the_worker_environment() -> None:
    env = {"PREFECT_API_URL": "http://127.0.0.1:1234/api", "MLFLOW_TRACKING_URI": "sqlite:///x.db"}
    local = ray_init_kwargs(None, env)
    assert local["runtime_env"] == {"env_vars": env}
    assert local["num_cpus"] == os.cpu_count() and local["include_dashboard"] is False
    joined = ray_init_kwargs("ray://head:10001", env)
    assert joined == {"runtime_env": {"env_vars": env}}


def test_a_second_flows_run_waits_on_the_lock_before_starting_any_server(toy_repo_factory, monkeypatch, capsys) -> None:
    """Issue 19 item 13: the second run's server never races the first's; it stops with one line."""
    import flows.__main__ as cli
    import flows.servers

    repo = toy_repo_factory()
    with flow_lock(repo, timeout=5) as held:  # reentrant in one process: the flow takes it again
        with flow_lock(repo, timeout=0.1) as again:
            assert again == held
    started_servers: list[str] = []
    monkeypatch.setattr(flows.servers, "prefect_api", lambda *a, **k: started_servers.append("prefect"))
    monkeypatch.setattr(cli, "_validated_root", lambda root, study: repo)
    holder = _hold_flow_lock(repo, 30)
    try:
        code = cli.main(["run", "--repo", str(repo)])
    finally:
        holder.kill()
        holder.wait()
    assert code == cli.EXIT_FAILED and started_servers == []
    error = capsys.readouterr().err
    assert "another flow run holds" in error and f"pid {holder.pid}" in error and "Traceback" not in error
