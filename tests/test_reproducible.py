"""The same params and code write the same bytes: every step of a study, run twice, agrees file for file.

The first run is tests/test_pipelines.py's `dvc repro` of the study when it ran in this session
(and needed no extra overrides); otherwise the study runs twice in-process.

This is what lets `make run` on a fresh clone leave `dvc.lock` (and `git status`) unchanged. Outputs
that cannot be byte-stable are listed in README.md ("Reproducibility") with the tolerance their
metrics keep; none are known today, so the test asks for identical bytes everywhere.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from stages.common.pipeline import load_stages
from tests.helpers import END_TO_END_DIGESTS, REPO, file_digests, repo_params, run_step, with_overrides
from tests.pipeline_rows import STUDIES


def run_study(study: str, root: Path, overrides: dict) -> dict[str, str]:
    document = with_overrides(repo_params(), overrides)
    for spec in load_stages(REPO, document).values():  # dvc.yaml lists each study's stages in run order
        if spec.study != study:
            continue
        module = importlib.import_module(f"stages.{study}.{spec.step}")
        run_step(getattr(module, spec.step), root, params=document, item=spec.item)
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
