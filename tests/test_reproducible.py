"""The same params and code write the same bytes: every step of a study, run twice, agrees file for file.

The first run is tests/test_pipelines.py's `dvc repro` of the study when it ran in this session
(and needed no extra overrides); otherwise the study's steps run twice. Each run of the steps is a
fresh interpreter (tests/study_steps.py), as each `dvc repro` stage is.

This is what lets `make run` on a fresh clone leave `dvc.lock` (and `git status`) unchanged. Outputs
that cannot be byte-stable are listed in README.md ("Reproducibility") with the tolerance their
metrics keep; none are known today, so the test asks for identical bytes everywhere.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import END_TO_END_DIGESTS, REPO, file_digests
from tests.pipeline_rows import STUDIES


def run_study(study: str, root: Path, overrides: dict) -> dict[str, str]:
    """Every step of ``study`` in a fresh interpreter (as `dvc repro` runs each stage), then the digests."""
    root.mkdir(parents=True)
    (root / "overrides.json").write_text(json.dumps(overrides))
    done = subprocess.run([sys.executable, "-m", "tests.study_steps", study, str(root), str(root / "overrides.json")],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, f"{study}: the steps failed:\n{done.stderr[-3000:]}"
    return file_digests(root / "data" / study)


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_two_runs_write_identical_bytes(study, tmp_path):
    row = STUDIES[study]
    with row.setup() as extra:
        first = END_TO_END_DIGESTS.get(study) if not extra else None
        if first is None:
            first = run_study(study, tmp_path / "first", {**row.tiny, **extra})
        second = run_study(study, tmp_path / "second", {**row.tiny, **extra})
    assert first.keys() == second.keys()
    differing = sorted(name for name in first if first[name] != second[name])
    assert differing == []
