"""Typed, validated parameters read from ``params.yaml``.

Layout of ``params.yaml``::

    common: {scale: smoke, seed: 0, on_bad_input: fatal, device: auto, max_input_bytes: 4294967296}
    <study>:
      <step>:
        key: value          # the smoke-scale value
        full: {key: value}  # optional: replaces keys when common.scale is "full"

A wrong key or value stops the stage with a message that names the key, e.g.
``params.yaml: cmr_recon.train.epochs: Input should be a valid integer (got 'three')``.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stages.common.paths import repo_root

FULL_OVERRIDES_KEY = "full"


class ParamsError(ValueError):
    """params.yaml is missing, unreadable, or has a wrong key or value."""


class StrictModel(BaseModel):
    """Base for every params section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CommonParams(StrictModel):
    """The ``common`` section; its values live in params.yaml only."""

    scale: Literal["smoke", "full"]
    seed: int
    on_bad_input: Literal["fatal", "skip"]
    device: Literal["auto", "cpu", "cuda"]
    max_input_bytes: int = Field(gt=0)


ParamsModel = TypeVar("ParamsModel", bound=StrictModel)


def read_params_file(path: Path | None = None) -> dict[str, Any]:
    """Load ``params.yaml`` safely; an unreadable or non-mapping file is a ParamsError."""
    params_path = path or repo_root() / "params.yaml"
    try:
        loaded = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ParamsError(f"{params_path}: file not found") from error
    except yaml.YAMLError as error:
        raise ParamsError(f"{params_path}: not valid YAML: {error}") from error
    if not isinstance(loaded, dict):
        raise ParamsError(f"{params_path}: expected a mapping at the top level")
    return loaded


def _format_errors(error: ValidationError, prefix: str, source: str) -> str:
    lines = []
    # an unknown (mistyped) key first: the "Field required" of the key it meant follows from it
    for item in sorted(error.errors(), key=lambda e: e["type"] != "extra_forbidden"):
        key = ".".join([prefix, *(str(part) for part in item["loc"])])
        got = f" (got {item['input']!r})" if item["type"] != "missing" and "input" in item else ""
        lines.append(f"{source}: {key}: {item['msg']}{got}")
    return "\n".join(lines)


def validate_section(model: type[ParamsModel], section: Any, key: str, source: str = "params.yaml") -> ParamsModel:
    """Validate one mapping against ``model``; errors name ``key`` and the offending sub-key."""
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ParamsError(f"{source}: {key}: expected a mapping, got {type(section).__name__}")
    try:
        return model.model_validate(section)
    except ValidationError as error:
        raise ParamsError(_format_errors(error, key, source)) from error


def apply_scale(section: dict[str, Any], scale: str, key: str, source: str = "params.yaml") -> dict[str, Any]:
    """Return ``section`` with its ``full`` overrides applied when ``scale == "full"``."""
    section = dict(section or {})
    overrides = section.pop(FULL_OVERRIDES_KEY, None) or {}
    if not isinstance(overrides, dict):
        raise ParamsError(f"{source}: {key}.{FULL_OVERRIDES_KEY}: expected a mapping")
    unknown = sorted(set(overrides) - set(section))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(section), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ParamsError(
            f"{source}: {key}.{FULL_OVERRIDES_KEY}.{unknown[0]}: overrides a key that the smoke settings do not have{hint}"
        )
    if scale == "full":
        section.update(overrides)
    return section


def step_section(document: dict[str, Any], study: str, step: str, source: str = "params.yaml") -> dict[str, Any]:
    study_section = document.get(study)
    if not isinstance(study_section, dict) or step not in study_section:
        raise ParamsError(f"{source}: {study}.{step}: section missing")
    section = study_section[step]
    if section is not None and not isinstance(section, dict):
        raise ParamsError(f"{source}: {study}.{step}: expected a mapping, got {type(section).__name__}")
    return section or {}


def section_has_full(document: dict[str, Any], study: str, step: str) -> bool:
    """Whether ``<study>.<step>`` has ``full:`` overrides (so its stage must list ``common.scale``)."""
    section = (document.get(study) or {}).get(step) if isinstance(document.get(study), dict) else None
    return isinstance(section, dict) and bool(section.get(FULL_OVERRIDES_KEY))


def validate_step(
    study: str, step: str, model: type[ParamsModel], document: dict[str, Any], source: str = "params.yaml",
    scale: str | None = None,
) -> tuple[CommonParams, ParamsModel]:
    """Validate ``common`` and ``<study>.<step>`` of a params document (at ``scale``, default common.scale)."""
    common = validate_section(CommonParams, document.get("common"), "common", source)
    key = f"{study}.{step}"
    section = step_section(document, study, step, source)
    # The smoke settings first, so a mistyped key is named as itself, not as a full override of it.
    validate_section(model, {name: value for name, value in section.items() if name != FULL_OVERRIDES_KEY}, key, source)
    merged = apply_scale(section, scale or common.scale, key, source)
    return common, validate_section(model, merged, key, source)


def load_params(
    study: str, step: str, model: type[ParamsModel], path: Path | None = None
) -> tuple[CommonParams, ParamsModel]:
    """Read and validate ``common`` and ``<study>.<step>`` from params.yaml."""
    return validate_step(study, step, model, read_params_file(path), str(path or "params.yaml"))
