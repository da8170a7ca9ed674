"""Fixtures of the sam_tta tests: the whole study run in-process on tiny params (once per session)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_step
from tests.sam_tta.tiny import TINY


@dataclass(frozen=True)
class TinyRun:
    root: Path
    results: dict[str, tuple[Any, dict[str, float]]]

    @property
    def data(self) -> Path:
        return self.root / "data" / "sam_tta"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> TinyRun:
    from stages.sam_tta.adapt import adapt
    from stages.sam_tta.evaluate import evaluate
    from stages.sam_tta.finetune_medical import finetune_medical
    from stages.sam_tta.ingest import ingest
    from stages.sam_tta.pretrain import pretrain
    from stages.sam_tta.report import report

    root = tmp_path_factory.mktemp("sam_tta_run")
    results = {}
    for name, step, item in [("ingest", ingest, None), ("pretrain", pretrain, None), ("finetune_medical", finetune_medical, None),
                             ("adapt@main", adapt, "main"), ("adapt@baselines", adapt, "baselines"),
                             ("adapt@ablations", adapt, "ablations"), ("evaluate", evaluate, None), ("report", report, None)]:
        results[name] = run_step(step, root, TINY, item=item)
    return TinyRun(root, results)
