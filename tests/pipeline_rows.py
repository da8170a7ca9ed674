"""The rows of the shared end-to-end and reproducibility tests, one per study, found by name.

Each study's row is ``ROW`` in ``tests/<study>/pipeline.py``: its tiny params (kept beside its
own tests, which use them too), a check of its outputs, and optionally a context manager that
yields extra overrides for the run (a stub server). A new study adds that file in its own test
folder and touches nothing here; `tests/test_study_pattern.py` fails until it exists.
"""
from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class StudyRow:
    tiny: dict[str, Any]
    check: Callable[[Path], None]
    # Context manager yielding extra overrides (e.g. a local stub server's URL) for the run's duration.
    setup: Callable[[], contextlib.AbstractContextManager[dict[str, Any]]] = field(default=lambda: contextlib.nullcontext({}))


def study_rows() -> dict[str, StudyRow]:
    """``{study: ROW}`` for every ``tests/<study>/pipeline.py``."""
    rows = {}
    for module_file in sorted(REPO.glob("tests/*/pipeline.py")):
        rows[module_file.parent.name] = importlib.import_module(f"tests.{module_file.parent.name}.pipeline").ROW
    return rows


STUDIES: dict[str, StudyRow] = study_rows()
