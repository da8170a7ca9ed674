"""The same params and code write the same bytes: every step of a study, run twice in-process, agrees file for file.

This is what lets `make run` on a fresh clone leave `dvc.lock` (and `git status`) unchanged. Outputs
that cannot be byte-stable are listed in README.md ("Reproducibility") with the tolerance their
metrics keep; none are known today, so the test asks for identical bytes everywhere.
"""
from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

import pytest

from stages.common.pipeline import load_stages
from tests.helpers import REPO, repo_params, run_step, with_overrides
from tests.pipeline_rows import STUDIES


def digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_study(study: str, root: Path, overrides: dict) -> dict[str, str]:
    document = with_overrides(repo_params(), overrides)
    for spec in load_stages(REPO, document).values():  # dvc.yaml lists each study's stages in run order
        if spec.study != study:
            continue
        module = importlib.import_module(f"stages.{study}.{spec.step}")
        run_step(getattr(module, spec.step), root, params=document, item=spec.item)
    return digests(root / "data" / study)


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_two_runs_write_identical_bytes(study, tmp_path):
    row = STUDIES[study]
    with row.setup() as extra:
        first = run_study(study, tmp_path / "first", {**row.tiny, **extra})
        second = run_study(study, tmp_path / "second", {**row.tiny, **extra})
    assert first.keys() == second.keys()
    differing = sorted(name for name in first if first[name] != second[name])
    assert differing == []
