"""Fixtures of the ct_fairness tests: the whole study run once, in-process, on TINY params."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from stages.common.stage import StageContext
from stages.ct_fairness.evaluate import evaluate
from stages.ct_fairness.ingest import ingest
from stages.ct_fairness.preprocess import preprocess
from stages.ct_fairness.report import report
from stages.ct_fairness.train import train
from tests.ct_fairness.cases import TINY, VARIABLES
from tests.helpers import run_step


@dataclass
class TinyStudy:
    """A finished TINY run: its root, and each stage's context and returned metrics (by stage name)."""

    root: Path
    contexts: dict[str, StageContext] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.root / "data" / "ct_fairness"


@contextlib.contextmanager
def torch_settings_kept() -> Iterator[None]:
    """The torch steps set threads and deterministic kernels from params; put them back afterwards."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


@pytest.fixture(autouse=True)
def _keep_torch_settings() -> Iterator[None]:
    with torch_settings_kept():
        yield


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> TinyStudy:
    """Every step of the study, in order, in one tmp root (read it, never write to it)."""
    study = TinyStudy(tmp_path_factory.mktemp("ct_fairness_tiny"))
    steps = [(ingest, None), (preprocess, None), *((train, v) for v in VARIABLES), (evaluate, None), (report, None)]
    with torch_settings_kept():
        for step, item in steps:
            context, metrics = run_step(step, study.root, TINY, item=item)
            study.contexts[context.spec.name] = context
            study.metrics[context.spec.name] = metrics
    return study
