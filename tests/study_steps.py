"""Run every step of one study in-process, in a process of its own: ``python -m tests.study_steps STUDY ROOT OVERRIDES_JSON``.

tests/test_reproducible.py runs it in a fresh interpreter so that state an earlier test left in
the pytest process (a cached tokenizer, a seeded generator) cannot make two runs agree or differ.
"""
from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from stages.common.pipeline import load_stages
from tests.helpers import REPO, repo_params, run_step, with_overrides


def run_study(study: str, root: Path, overrides: dict) -> None:
    document = with_overrides(repo_params(), overrides)
    for spec in load_stages(REPO, document).values():  # dvc.yaml lists each study's stages in run order
        if spec.study != study:
            continue
        module = importlib.import_module(f"stages.{study}.{spec.step}")
        run_step(getattr(module, spec.step), root, params=document, item=spec.item)


if __name__ == "__main__":
    run_study(sys.argv[1], Path(sys.argv[2]), json.loads(Path(sys.argv[3]).read_text()))
