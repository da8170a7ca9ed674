"""Great Expectations suites over ingest manifests.

Studies describe a suite as a list of ``(expectation_type, kwargs)`` pairs, e.g.
``("expect_column_values_to_be_between", {"column": "coils", "min_value": 1})``; this module
alone imports great_expectations (slow to import), and only when a suite runs.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stages.common.atomic import write_json

log = logging.getLogger(__name__)

ExpectationSpec = tuple[str, dict[str, Any]]


class ManifestValidationError(ValueError):
    """At least one expectation failed; the message names each and its offending values."""


def _expectation_class(expectation_type: str):
    import great_expectations as gx

    class_name = "".join(part.capitalize() for part in expectation_type.split("_"))
    try:
        return getattr(gx.expectations, class_name)
    except AttributeError as error:
        raise ValueError(f"unknown expectation {expectation_type!r}") from error


# Columns that name a manifest row, tried in this order when a suite does not say which.
ID_COLUMNS = ("case_id", "case", "subject", "scan_id", "image_id", "filename", "file", "path", "record", "id")
_MAX_NAMED_ROWS = 10


def default_id_columns(manifest) -> list[str]:
    """The manifest's identifying columns: the first of :data:`ID_COLUMNS` present (two when there is a dataset column)."""
    present = [column for column in ID_COLUMNS if column in manifest.columns]
    chosen = present[:1]
    if chosen and "dataset" in manifest.columns:
        chosen = ["dataset", *chosen]
    return chosen


def _offending_rows(manifest, kwargs: dict[str, Any], offending: Any, id_columns: Sequence[str]) -> str:
    """`` in rows <ids>``: which rows hold the offending values of a column expectation."""
    column = kwargs.get("column")
    if column is None or column not in manifest.columns or not isinstance(offending, list) or not offending:
        return ""
    hits = manifest[manifest[column].isin(offending)]
    if hits.empty:
        return ""
    if id_columns:
        names = ["/".join(str(v) for v in row) for row in hits[list(id_columns)].itertuples(index=False)]
        label = "/".join(id_columns)
    else:
        names, label = [str(i) for i in hits.index], "row index"
    more = f" and {len(names) - _MAX_NAMED_ROWS} more" if len(names) > _MAX_NAMED_ROWS else ""
    return f" in rows ({label}) {', '.join(names[:_MAX_NAMED_ROWS])}{more}"


def _describe_failure(result: dict[str, Any], manifest=None, id_columns: Sequence[str] = ()) -> str:
    config = result.get("expectation_config", {})
    kwargs = {k: v for k, v in (config.get("kwargs") or {}).items() if k not in ("batch_id",)}
    details = result.get("result") or {}
    offending = details.get("partial_unexpected_list") or details.get("observed_value")
    count = details.get("unexpected_count")
    counted = f" ({count} unexpected)" if count is not None else ""
    rows = _offending_rows(manifest, kwargs, offending, id_columns) if manifest is not None else ""
    return f"{config.get('type')} {kwargs}: offending values {offending!r}{counted}{rows}"


_VOLATILE_KEYS = frozenset({"id", "ge_load_time"})


def without_volatile_fields(value: Any) -> Any:
    """Drop run-specific ids and load times so equal manifests give byte-identical results."""
    if isinstance(value, dict):
        return {k: without_volatile_fields(v) for k, v in value.items() if k not in _VOLATILE_KEYS}
    if isinstance(value, list):
        return [without_volatile_fields(v) for v in value]
    return value


def validate_manifest(
    manifest, suite_name: str, expectations: Sequence[ExpectationSpec], result_path: Path,
    failed_result_path: Path | None = None, id_columns: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run the suite on the manifest DataFrame, save the result JSON, raise if any expectation failed.

    A failing result goes to ``failed_result_path`` (default ``result_path``); the error names the
    offending values and the rows holding them by ``id_columns`` (default :func:`default_id_columns`).
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas(name=f"{suite_name}-source")
    asset = source.add_dataframe_asset(name=f"{suite_name}-manifest")
    batch_definition = asset.add_batch_definition_whole_dataframe(f"{suite_name}-all")
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
    for expectation_type, kwargs in expectations:
        suite.add_expectation(_expectation_class(expectation_type)(**kwargs))
    batch = batch_definition.get_batch(batch_parameters={"dataframe": manifest})
    outcome = without_volatile_fields(batch.validate(suite, result_format="SUMMARY").to_json_dict())
    failures = [item for item in outcome["results"] if not item["success"]]
    if failures:
        saved = write_json(failed_result_path or result_path, outcome)
        ids = default_id_columns(manifest) if id_columns is None else list(id_columns)
        lines = "\n".join(f"  - {_describe_failure(item, manifest, ids)}" for item in failures)
        raise ManifestValidationError(
            f"manifest validation '{suite_name}' failed {len(failures)} of {len(outcome['results'])} "
            f"expectations (result saved to {saved}):\n{lines}"
        )
    write_json(result_path, outcome)
    log.info("manifest validation '%s': %d expectations passed", suite_name, len(outcome["results"]))
    return outcome
