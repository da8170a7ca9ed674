"""The tail every ingest shares: validate the manifest, then write it and its companions atomically.

An ingest reads its source (real, or synthetic written first in the real format), builds a
manifest with one row per case, and ends with::

    save_ingest(ctx, manifest, "cmr_recon_manifest", expectations, {"root": ...})

which runs the Great Expectations suite (a passing result saved to ``interim/manifest_validation.json``,
a failing one to the stage's log folder; both logged), then writes ``interim/ingest/`` with ``manifest.csv``,
``dataset.json``, any extra tables and ``quarantine.json`` in one atomic step, and logs them.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from stages.common.atomic import atomic_directory, write_json
from stages.common.io import write_table
from stages.common.pipeline import SYNTHETIC
from stages.common.stage import StageContext
from stages.common.validation import ExpectationSpec, validate_manifest

INGEST_OUT = "interim/ingest"
VALIDATION_OUT = "interim/manifest_validation.json"
PROVENANCE_FILE = "SOURCE.json"


def write_provenance(folder: Path, sources: Mapping[str, Path | None], repo: Path) -> Path:
    """``SOURCE.json``: each source key and where it was read from (``synthetic`` or its path)."""
    from stages.common.paths import portable_path

    return write_json(folder / PROVENANCE_FILE,
                      {key: SYNTHETIC if path is None else portable_path(path, repo) for key, path in sources.items()})


def materialise_source(ctx: StageContext[Any], source: str, write_synthetic: Callable[[Path], None]) -> Path:
    """The folder an ingest reads: the real ``source``, or ``raw/`` filled by ``write_synthetic`` when it is synthetic.

    ``raw/`` is written atomically in both cases and holds ``SOURCE.json`` saying which it was.
    """
    real_root = ctx.source(source, "source")
    with atomic_directory(ctx.out("raw")) as staging:
        if real_root is None:
            write_synthetic(staging)
        write_provenance(staging, {"source": real_root}, ctx.root)
    return real_root or ctx.out("raw")


def validate_and_log(ctx: StageContext[Any], manifest, suite_name: str, expectations: Sequence[ExpectationSpec]) -> None:
    """Run the suite; a passing result is an output, a failing one goes to the log folder; both are logged."""
    ctx.require_survivors(len(manifest), "item")
    result = ctx.out(VALIDATION_OUT)
    failed = ctx.log_folder() / Path(VALIDATION_OUT).name
    failed.unlink(missing_ok=True)
    try:
        validate_manifest(manifest, suite_name, expectations, result, failed_result_path=failed)
    finally:
        for written in (result, failed):
            if written.exists():
                ctx.log_artifact(written)


@contextlib.contextmanager
def ingest_output(ctx: StageContext[Any]) -> Iterator[Path]:
    """The staging folder of ``interim/ingest``; it replaces the old output only if the block succeeds."""
    with atomic_directory(ctx.out(INGEST_OUT)) as staging:
        yield staging


def finish_ingest(
    ctx: StageContext[Any], staging: Path, manifest, suite_name: str, expectations: Sequence[ExpectationSpec],
    dataset_info: Mapping[str, Any], tables: Mapping[str, Any] | None = None,
) -> None:
    """Validate, then write manifest.csv, dataset.json, the extra tables and quarantine.json into ``staging``."""
    validate_and_log(ctx, manifest, suite_name, expectations)
    write_table(staging / "manifest.csv", manifest)
    for name, table in (tables or {}).items():
        write_table(staging / name, table)
    write_json(staging / "dataset.json", dict(dataset_info))
    ctx.save_quarantine(staging / "quarantine.json")
    ctx.log_artifact(staging / "manifest.csv")


def save_ingest(
    ctx: StageContext[Any], manifest, suite_name: str, expectations: Sequence[ExpectationSpec],
    dataset_info: Mapping[str, Any], tables: Mapping[str, Any] | None = None,
) -> Path:
    """:func:`finish_ingest` in its own atomic ``interim/ingest`` folder; returns the folder."""
    with ingest_output(ctx) as staging:
        finish_ingest(ctx, staging, manifest, suite_name, expectations, dataset_info, tables)
    return ctx.out(INGEST_OUT)
