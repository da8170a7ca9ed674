"""Deployments per study with cron schedules, and the `python -m flows` command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from flowtoys import TOY_ORCHESTRATION

from flows.serve import build_deployments

SCHEDULED = {**TOY_ORCHESTRATION, "schedules": {"toy": "0 3 * * 1"}}


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_one_deployment_per_study_with_its_cron(toy_repo_factory) -> None:
    repo = toy_repo_factory(orchestration=SCHEDULED)
    deployments = {deployment.name: deployment for deployment in build_deployments(repo)}
    assert set(deployments) == {"aux", "toy", "all"}
    for name, deployment in deployments.items():
        assert deployment.flow_name == "medrepro-pipeline"
        assert deployment.entrypoint == "flows.run.pipeline"
        study = None if name == "all" else name
        assert deployment.parameters == {"repo_root": str(repo.resolve()), "study": study}
    (toy_schedule,) = deployments["toy"].schedules
    assert toy_schedule.schedule.cron == "0 3 * * 1"
    assert deployments["aux"].schedules == [] and deployments["all"].schedules == []


def test_schedule_for_unknown_study_is_rejected(toy_repo_factory) -> None:
    repo = toy_repo_factory(orchestration={"schedules": {"cmr_recon": "0 3 * * 1"}})
    with pytest.raises(ValueError, match=r"orchestration.schedules.cmr_recon: no such study.*aux, toy"):
        build_deployments(repo)


def test_serve_registers_deployments_with_the_server(prefect_server: str, toy_repo_factory) -> None:
    from prefect import get_client

    repo = toy_repo_factory(orchestration=SCHEDULED)
    server = subprocess.Popen(
        [sys.executable, "-m", "flows", "serve", "--repo", str(repo)],
        env={**os.environ, "PREFECT_API_URL": prefect_server},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        names: dict[str, object] = {}
        while time.monotonic() < deadline and set(names) != {"aux", "toy", "all"}:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            time.sleep(1)
            with get_client(sync_client=True) as client:
                deployments = client.read_deployments()
            names = {d.name: d for d in deployments if d.parameters.get("repo_root") == str(repo.resolve())}
        assert set(names) == {"aux", "toy", "all"}
        toy = names["toy"]
        assert [schedule.schedule.cron for schedule in toy.schedules] == ["0 3 * * 1"]  # type: ignore[attr-defined]
        assert toy.parameters == {"repo_root": str(repo.resolve()), "study": "toy"}  # type: ignore[attr-defined]
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_graph_command_prints_stages_with_upstream(toy_repo_factory) -> None:
    repo = toy_repo_factory()
    completed = _cli("graph", "--repo", str(repo), "--study", "aux")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["aux-prep"]
    completed = _cli("graph", "--repo", str(repo))
    assert "toy-join  <- toy-a2, toy-b2" in completed.stdout.splitlines()


def test_foreach_items_in_the_graph_command_and_deployments(foreach_repo_factory) -> None:
    repo = foreach_repo_factory()  # its orchestration.resources name the foreach group toy-train
    completed = _cli("graph", "--repo", str(repo))
    assert completed.returncode == 0, completed.stderr
    assert "toy-join  <- toy-train@age, toy-train@dataset, toy-train@sex" in completed.stdout.splitlines()
    assert "toy-train@sex  <- aux-prep" in completed.stdout.splitlines()
    assert {deployment.name for deployment in build_deployments(repo)} == {"aux", "toy", "all"}


def test_unknown_study_is_a_one_line_error_listing_known_ones(toy_repo_factory) -> None:
    repo = toy_repo_factory()
    completed = _cli("run", "--repo", str(repo), "--study", "nope")
    assert completed.returncode == 2
    assert completed.stderr.strip() == "error: unknown study 'nope'; known studies: aux, toy"


def test_bad_orchestration_config_is_a_one_line_error(toy_repo_factory) -> None:
    repo = toy_repo_factory()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["orchestration"]["resources"]["toy-join"]["num_gpus"] = "two"
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    completed = _cli("run", "--repo", str(repo))
    assert completed.returncode == 2
    (line,) = completed.stderr.strip().splitlines()
    assert line.startswith("error: ") and "orchestration.resources.toy-join.num_gpus:" in line


def test_not_a_dvc_repository(tmp_path: Path) -> None:
    completed = _cli("graph", "--repo", str(tmp_path))
    assert completed.returncode == 2
    assert completed.stderr.strip() == f"error: {tmp_path}: not a DVC repository (no .dvc directory)"


def test_bad_stage_params_stop_the_flow_before_any_server_or_stage_starts(tmp_path: Path) -> None:
    from stages.common.paths import repo_root

    project = repo_root()
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "dvc.yaml").write_text((project / "dvc.yaml").read_text())
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["nova"]["evaluate"]["bootstrap_resampels"] = params["nova"]["evaluate"].pop("bootstrap_resamples")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    completed = _cli("run", "--repo", str(tmp_path))
    assert completed.returncode == 1, completed.stderr[-2000:]
    lines = completed.stderr.strip().splitlines()
    assert lines[0] == "error: params.yaml and dvc.yaml: 1 problem(s); nothing was run:"
    assert lines[1].startswith("  - params.yaml: nova.evaluate.bootstrap_resampels: Extra inputs are not permitted")
    assert "Starting Prefect server" not in completed.stderr and not (tmp_path / "data").exists()


def test_ui_stops_its_servers_on_sigterm(toy_repo_factory) -> None:
    import psutil

    from flows.servers import free_port, running_ui_prefect_api

    repo = toy_repo_factory()
    ui = subprocess.Popen([sys.executable, "-m", "flows", "ui", "--repo", str(repo), "--prefect-port", str(free_port()),
                           "--mlflow-port", str(free_port())], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 400
        for line in ui.stdout:
            if line.startswith("Press Ctrl-C") or time.monotonic() > deadline:
                break
        servers = psutil.Process(ui.pid).children(recursive=True)
        assert len(servers) >= 2, ui.stderr.read() if ui.poll() is not None else "servers missing"
        log_dir = repo / ".dvc" / "tmp" / "medrepro-logs"
        api_url = running_ui_prefect_api(log_dir)  # what `flows run` and `flows serve` will use
        assert api_url is not None and api_url.startswith("http://127.0.0.1:") and api_url.endswith("/api")
        ui.send_signal(signal.SIGTERM)
        assert ui.wait(timeout=120) == 0
        assert running_ui_prefect_api(log_dir) is None
        gone, alive = psutil.wait_procs(servers, timeout=60)
        assert alive == [], f"left running after the signal: {[p.cmdline()[:4] for p in alive]}"
    finally:
        if ui.poll() is None:
            ui.kill()


def test_run_and_serve_use_the_running_ui_server_and_say_so(tmp_path: Path, monkeypatch, capsys) -> None:
    import http.server
    import threading

    from flows.servers import prefect_api, write_ui_servers

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/api/health" else 404)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api_url = f"http://127.0.0.1:{server.server_port}/api"
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    write_ui_servers(tmp_path, api_url, "http://127.0.0.1:5000")
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:  # no API URL configured, as for a user outside the test suite's own server
        with temporary_settings(restore_defaults={PREFECT_API_URL}), prefect_api(tmp_path) as used:
            assert used == api_url and os.environ["PREFECT_API_URL"] == api_url
    finally:
        server.shutdown()
    assert "PREFECT_API_URL" not in os.environ
    assert f"Prefect server: {api_url} (this project's `make ui`)" in capsys.readouterr().err
