"""The nova study on tiny params, run in-process step by step.

The step tests use it through the fixtures in ``tests/nova/conftest.py``; nova's row of
``tests/test_pipelines.py`` runs the same ``TINY`` params through ``dvc repro``, with the
OpenAI-compatible model pointed at the local stub of ``tests/nova/openai_stub.py``.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stages.nova.evaluate import evaluate
from stages.nova.ingest import ingest
from stages.nova.predict import predict
from stages.nova.report import report
from stages.nova.train_normative import train_normative
from tests.helpers import run_step

TINY: dict[str, Any] = {
    "nova.ingest.cases": 8,
    "nova.ingest.image_size": 96,
    "nova.ingest.max_scans_per_case": 2,
    "nova.ingest.healthy_slices": 16,
    "nova.train_normative.size": 64,
    "nova.train_normative.bank_size": 2000,
    "nova.evaluate.bootstrap_resamples": 30,
    "nova.report.examples": 2,
}
STEPS = (ingest, train_normative, predict, evaluate, report)
METRICS = ("map30", "map50", "map50_95", "acc50", "tp30", "fp30", "fnr50", "hit30", "hit50", "mean_best_iou", "bleu4", "meteor", "rouge_l",
           "clinical_f1", "modality_f1", "normal_abnormal_f1", "top1", "top5")


def run_steps(root: Path, overrides: Mapping[str, Any] = TINY, steps=STEPS) -> dict[str, tuple[Any, dict[str, float]]]:
    """Run ``steps`` in order, in-process, over ``root``: step name -> (its context, its metrics)."""
    return {step.__name__: run_step(step, root, overrides) for step in steps}


def file_hashes(folder: Path) -> dict[str, str]:
    """md5 of every file under ``folder`` (relative posix path -> hex digest)."""
    return {path.relative_to(folder).as_posix(): hashlib.md5(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}
