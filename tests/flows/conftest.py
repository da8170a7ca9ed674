"""Fixtures for the flow tests: toy DVC repositories and one Prefect test server per session."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Prefect reads these when it is imported: keep its home out of ~/.prefect and give its
# temporary server time to start on 2 cores.
_PREFECT_HOME = tempfile.mkdtemp(prefix="medrepro-prefect-home-")
atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "300"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

# The suite imports test modules in importlib mode (no sys.path changes); make the helper
# module beside this file importable for the tests here.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from flowtoys import make_foreach_repo, make_toy_repo  # noqa: E402


@pytest.fixture
def toy_repo_factory(tmp_path: Path) -> Callable[..., Path]:
    def factory(name: str = "repo", **kwargs) -> Path:
        return make_toy_repo(tmp_path / name, **kwargs)

    return factory


@pytest.fixture
def foreach_repo_factory(tmp_path: Path) -> Callable[..., Path]:
    """Like toy_repo_factory, for the toy DAG with a `foreach` stage."""

    def factory(name: str = "repo", **kwargs) -> Path:
        return make_foreach_repo(tmp_path / name, **kwargs)

    return factory


@pytest.fixture
def mlflow_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    (tmp_path / "mlflow").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """One Prefect test server (temporary SQLite database) for the whole session."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=300):
        yield PREFECT_API_URL.value()
