"""Local Prefect and MLflow servers started as subprocesses (bound to 127.0.0.1 by default)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
PREFECT_STARTUP_TIMEOUT_SECONDS = 300.0


class ServerStartError(RuntimeError):
    """A server subprocess exited or did not answer its health check in time."""


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A server subprocess in its own process group, and the URL it answers on."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server's process group: SIGINT, then SIGTERM, then SIGKILL."""
        if self.process.poll() is not None:
            return
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=timeout)
                return
            except subprocess.TimeoutExpired:
                continue


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_healthy(server: ServerProcess, health_url: str, timeout: float, progress: bool) -> None:
    started = time.monotonic()
    next_report = started + 5.0
    while True:
        if server.process.poll() is not None:
            raise ServerStartError(
                f"{server.name} exited with code {server.process.returncode} while starting; "
                f"last lines of {server.log_path}:\n{_log_tail(server.log_path)}"
            )
        try:
            with urllib.request.urlopen(health_url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        now = time.monotonic()
        if now - started > timeout:
            server.stop()
            raise ServerStartError(
                f"{server.name} did not answer {health_url} within {timeout:.0f} s; "
                f"last lines of {server.log_path}:\n{_log_tail(server.log_path)}"
            )
        if progress and now >= next_report:
            print(f"  waiting for {server.name} ({now - started:.0f} s) ...", file=sys.stderr, flush=True)
            next_report = now + 5.0
        time.sleep(0.5)


def _spawn(name: str, command: list[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env),
            start_new_session=True,
        )


def start_prefect_server(
    log_dir: Path,
    host: str = DEFAULT_HOST,
    port: int | None = None,
    timeout: float = PREFECT_STARTUP_TIMEOUT_SECONDS,
    progress: bool = True,
) -> ServerProcess:
    """Start `prefect server start` and wait until its API answers; returns the running server.

    Start-up took 17-76 s on a 2-core machine, hence the generous default timeout.
    """
    port = port or free_port(host)
    env = dict(os.environ)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.pop("PREFECT_API_URL", None)
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
    log_path = Path(log_dir) / "prefect-server.log"
    if progress:
        print(f"Starting Prefect server on http://{host}:{port} (log: {log_path})", file=sys.stderr, flush=True)
    process = _spawn("Prefect server", command, env, log_path)
    server = ServerProcess("Prefect server", f"http://{host}:{port}", process, log_path)
    _wait_healthy(server, f"{server.url}/api/health", timeout, progress)
    return server


def start_mlflow_ui(
    backend_store_uri: str,
    artifact_root: str | None,
    log_dir: Path,
    host: str = DEFAULT_HOST,
    port: int = 5000,
    timeout: float = 300.0,
    progress: bool = True,
) -> ServerProcess:
    """Start `mlflow ui` on `backend_store_uri` and wait until it answers."""
    command = [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", backend_store_uri,
        "--host", host, "--port", str(port),
    ]  # fmt: skip
    if artifact_root is not None:
        command += ["--default-artifact-root", artifact_root]
    log_path = Path(log_dir) / "mlflow-ui.log"
    if progress:
        print(f"Starting MLflow UI on http://{host}:{port} (log: {log_path})", file=sys.stderr, flush=True)
    # MLflow's documented telemetry opt-out, unless the user chose otherwise
    env = {"MLFLOW_DISABLE_TELEMETRY": "true", **os.environ}
    process = _spawn("MLflow UI", command, env, log_path)
    server = ServerProcess("MLflow UI", f"http://{host}:{port}", process, log_path)
    _wait_healthy(server, f"{server.url}/health", timeout, progress)
    return server


def drain_prefect_queues(timeout: float = 30.0) -> None:
    """Send the logs and events this process still has queued to the Prefect API.

    Call before stopping a server this process started; otherwise Prefect keeps retrying
    against a closed port when the process exits.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        service.drain_all(timeout=timeout)


UI_SERVERS_FILE = "ui-servers.json"


def write_ui_servers(log_dir: Path, prefect_api_url: str, mlflow_url: str) -> Path:
    """Record the servers `python -m flows ui` runs, so every entry point of this project finds them."""
    path = Path(log_dir) / UI_SERVERS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"prefect_api_url": prefect_api_url, "mlflow_url": mlflow_url, "pid": os.getpid()}))
    return path


def running_ui_prefect_api(log_dir: Path) -> str | None:
    """The Prefect API of this project's running `make ui`, if its process lives and the server answers."""
    path = Path(log_dir) / UI_SERVERS_FILE
    try:
        recorded = json.loads(path.read_text())
        os.kill(int(recorded["pid"]), 0)
        with urllib.request.urlopen(f"{recorded['prefect_api_url']}/health", timeout=5) as response:
            if response.status == 200:
                return str(recorded["prefect_api_url"])
    except (OSError, ValueError, KeyError, urllib.error.URLError):
        return None
    return None


@contextmanager
def prefect_api(log_dir: Path, progress: bool = True) -> Iterator[str]:
    """Yield a Prefect API URL every process (Ray workers included) can reach, and say which one it is.

    In order: ``PREFECT_API_URL`` when set; the server of this project's running `make ui`
    (recorded in ``<log_dir>/ui-servers.json``); otherwise a temporary local server for the
    duration. This process's Prefect settings and environment (for child processes) point at it.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        if progress:
            print(f"Prefect server: {configured} (PREFECT_API_URL)", file=sys.stderr, flush=True)
        yield configured
        return
    server = None
    api_url = running_ui_prefect_api(log_dir)
    if api_url is not None:
        if progress:
            print(f"Prefect server: {api_url} (this project's `make ui`)", file=sys.stderr, flush=True)
    else:
        server = start_prefect_server(log_dir, progress=progress)
        api_url = f"{server.url}/api"
        if progress:
            print(f"Prefect server: {api_url} (temporary, stops at the end; `make ui` keeps one running)",
                  file=sys.stderr, flush=True)
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            yield api_url
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
        if server is not None:
            drain_prefect_queues()
            server.stop()
