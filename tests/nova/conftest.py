"""Fixtures of the nova tests: the whole study run in-process on tiny params (once per session)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.nova.tiny import run_steps


@dataclass(frozen=True)
class TinyRun:
    """A project-less root holding ``data/nova`` after every step ran, and what each step returned."""

    root: Path
    results: dict[str, tuple[Any, dict[str, float]]]

    @property
    def data(self) -> Path:
        return self.root / "data" / "nova"

    def context(self, step: str):
        return self.results[step][0]

    def metrics(self, step: str) -> dict[str, float]:
        return self.results[step][1]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    root = tmp_path_factory.mktemp("nova_tiny")
    return TinyRun(root, run_steps(root))


@pytest.fixture(scope="session")
def tiny_rerun(tmp_path_factory) -> TinyRun:
    """The same run again in another root: every file must come out byte for byte the same."""
    root = tmp_path_factory.mktemp("nova_tiny_again")
    return TinyRun(root, run_steps(root))
