"""The bad-input catalogue: one row per (study, corruption, expected outcome), run in-process on tiny data.

A study's module ``tests/badinput/test_<study>.py`` declares::

    INGEST = StudyIngest(step=ingest, source_key="cmr_recon.ingest.source", write_source=write_tiny_tree,
                         overrides=TINY_INGEST)
    CATALOGUE = [
        Corruption("truncated .mat", truncate("MultiCoil/Cine/.../cine_sax.mat"), "quarantined", "cine_sax.mat"),
        Corruption("unicode subject name", rename(...), "accepted"),
        ...
    ]

    @pytest.mark.parametrize("row", CATALOGUE, ids=lambda row: row.name)
    def test_catalogue(row, baseline):          # ``baseline`` from ``baseline_fixture(INGEST)``
        check(INGEST, row, baseline, tmp_path)

``write_source(root)`` writes a tiny, valid tree in the real format (built from the format's public
description, not by the study's own synthetic writer) and ``corrupt(root)`` damages a copy of it.
For each row :func:`check` asserts:

- ``refused``: fatal mode raises one of the errors the stage runner prints as one line and exits 1
  with (never a bug's exception), naming ``names``; nothing under ``data/`` is new or changed.
- ``quarantined``: the same in fatal mode; in skip mode the ingest succeeds, ``quarantine.json``
  lists an entry naming ``names``, and the manifest keeps rows of the clean run only, none of them a
  quarantined item (by the ingest's ``id_columns``).
- ``accepted``: both modes succeed with nothing quarantined and as many manifest rows as the clean run.

Before each corrupted run, ``data/`` holds the clean run's outputs, so "nothing changed" also
checks that a failed run leaves the previous outputs as they were.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from stages.common.ingest import INGEST_OUT
from stages.common.stage import EXPECTED_ERRORS, Step
from stages.common.validation import default_id_columns
from tests.helpers import file_digests, run_step

Outcome = Literal["refused", "quarantined", "accepted"]


@dataclass(frozen=True)
class Corruption:
    name: str
    corrupt: Callable[[Path], object]
    expected: Outcome
    names: str = ""

    def __post_init__(self) -> None:
        if self.expected != "accepted" and not self.names:
            raise ValueError(f"catalogue row {self.name!r}: say what the error must name")


@dataclass(frozen=True)
class StudyIngest:
    step: Step
    source_key: str
    write_source: Callable[[Path], object]
    overrides: Mapping[str, Any] = field(default_factory=dict)
    item: str | None = None
    manifest: str = f"{INGEST_OUT}/manifest.csv"
    quarantine: str = f"{INGEST_OUT}/quarantine.json"
    id_columns: tuple[str, ...] = ()  # what names one manifest row; default: stages.common.validation's guess


@dataclass(frozen=True)
class Baseline:
    """A clean run: its source tree, its project folder and its manifest."""

    source: Path
    project: Path
    manifest: pd.DataFrame


def _run(ingest: StudyIngest, project: Path, source: Path, policy: str):
    overrides = {**ingest.overrides, ingest.source_key: str(source), "common.on_bad_input": policy}
    return run_step(ingest.step, project, overrides, item=ingest.item)


def _data_of(ingest: StudyIngest, project: Path, relative: str) -> Path:
    from tests.helpers import step_context

    return step_context(ingest.step, project, {}, item=ingest.item).out(relative)


def make_baseline(ingest: StudyIngest, folder: Path) -> Baseline:
    """Write the tiny tree and run the clean ingest once (fatal mode); every row starts from copies of it."""
    source, project = folder / "source", folder / "project"
    source.mkdir(parents=True)
    project.mkdir()
    ingest.write_source(source)
    context, _ = _run(ingest, project, source, "fatal")
    assert not context.quarantine.entries, f"the clean tree quarantined {context.quarantine.entries}"
    return Baseline(source, project, pd.read_csv(_data_of(ingest, project, ingest.manifest)))


def _expect_refusal(ingest: StudyIngest, row: Corruption, project: Path, source: Path) -> str:
    before = file_digests(project / "data")
    try:
        context, _ = _run(ingest, project, source, "fatal")
    except EXPECTED_ERRORS as error:
        message = str(error)
    else:
        raise AssertionError(f"{row.name}: fatal mode accepted the corrupted input "
                             f"(quarantine: {context.quarantine.entries})")
    assert row.names in message, f"{row.name}: the error does not name {row.names!r}: {message}"
    after = file_digests(project / "data")
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"{row.name}: the failed run changed {changed}"
    return message


def check(ingest: StudyIngest, row: Corruption, baseline: Baseline, folder: Path) -> None:
    """Run one catalogue row on fresh copies of the clean run's source and project."""
    source, project = folder / "source", folder / "project"
    shutil.copytree(baseline.source, source, symlinks=True)
    shutil.copytree(baseline.project, project, symlinks=True)
    row.corrupt(source)
    if row.expected in ("refused", "quarantined"):
        _expect_refusal(ingest, row, project, source)
    if row.expected == "refused":
        return
    context, _ = _run(ingest, project, source, "skip")
    entries = context.quarantine.entries
    manifest = pd.read_csv(_data_of(ingest, project, ingest.manifest))
    if row.expected == "accepted":
        assert not entries, f"{row.name}: valid input was quarantined: {entries}"
        assert len(manifest) == len(baseline.manifest), f"{row.name}: {len(manifest)} rows, clean run {len(baseline.manifest)}"
        return
    assert any(row.names in f"{e['item']}: {e['problem']}" for e in entries), \
        f"{row.name}: no quarantine entry names {row.names!r}: {entries}"
    saved = json.loads(_data_of(ingest, project, ingest.quarantine).read_text())
    assert saved["entries"] == entries and saved["policy"] == "skip"
    ids = list(ingest.id_columns) or default_id_columns(baseline.manifest)
    assert ids, "the manifest has no identifying column; name one in stages.common.validation.ID_COLUMNS"
    clean = set(baseline.manifest[ids].astype(str).itertuples(index=False))
    kept = set(manifest[ids].astype(str).itertuples(index=False))
    assert kept and kept <= clean, f"{row.name}: skip mode kept {len(kept)} rows, new {sorted(kept - clean)[:3]}"
    quarantined = {entry["item"] for entry in entries}
    still_there = sorted("/".join(key) for key in kept if "/".join(key) in quarantined)
    assert not still_there, f"{row.name}: quarantined items are still in the manifest: {still_there}"
