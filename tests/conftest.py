"""Shared fixtures; the helpers behind them live in ``tests/helpers.py``."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import copy_project

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "600")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MEDREPRO_NO_PROGRESS", "1")


@pytest.fixture()
def project_copy(tmp_path: Path) -> Path:
    """A fresh git repository holding the project's files, as a clone would (no data, no mlruns, no dvc.lock)."""
    return copy_project(tmp_path / "project")
