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


def _describe_failure(result: dict[str, Any]) -> str:
    config = result.get("expectation_config", {})
    kwargs = {k: v for k, v in (config.get("kwargs") or {}).items() if k not in ("batch_id",)}
    details = result.get("result") or {}
    offending = details.get("partial_unexpected_list") or details.get("observed_value")
    count = details.get("unexpected_count")
    counted = f" ({count} unexpected)" if count is not None else ""
    return f"{config.get('type')} {kwargs}: offending values {offending!r}{counted}"


_VOLATILE_KEYS = frozenset({"id", "ge_load_time"})


def without_volatile_fields(value: Any) -> Any:
    """Drop run-specific ids and load times so equal manifests give byte-identical results."""
    if isinstance(value, dict):
        return {k: without_volatile_fields(v) for k, v in value.items() if k not in _VOLATILE_KEYS}
    if isinstance(value, list):
        return [without_volatile_fields(v) for v in value]
    return value


def validate_manifest(
    manifest, suite_name: str, expectations: Sequence[ExpectationSpec], result_path: Path
) -> dict[str, Any]:
    """Run the suite on the manifest DataFrame, save the result JSON, raise if any expectation failed."""
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
    write_json(result_path, outcome)
    failures = [item for item in outcome["results"] if not item["success"]]
    if failures:
        lines = "\n".join(f"  - {_describe_failure(item)}" for item in failures)
        raise ManifestValidationError(
            f"manifest validation '{suite_name}' failed {len(failures)} of {len(outcome['results'])} "
            f"expectations (result saved to {result_path}):\n{lines}"
        )
    log.info("manifest validation '%s': %d expectations passed", suite_name, len(outcome["results"]))
    return outcome
