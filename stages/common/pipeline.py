"""The stages of ``dvc.yaml`` as typed records: the one place a stage's paths and params are declared.

A step never spells a data path by hand: it asks its context for ``ctx.dep("interim/ingest")`` or
``ctx.out("metrics/train.json")`` (relative to ``data/<study>/``) and gets the path only if its own
``dvc.yaml`` entry declares it. ``foreach`` stages expand to ``<study>-<step>@<item>`` as DVC names
them, and ``${item}`` / ``${<dotted.params.key>}`` are substituted as DVC's templating does (the
subset this project uses: whole values of params.yaml, no arithmetic, no nested dictionaries).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stages.common.paths import repo_root

# A dependency on `${<study>.ingest.source}` resolves to this committed folder while the source is
# synthetic, so the ingest stage has a dependency that exists in both modes (see synthetic/README.md).
SYNTHETIC = "synthetic"
_TEMPLATE = re.compile(r"\$\{\s*([A-Za-z0-9_.\-]+)\s*\}")
STAGE_NAME = re.compile(r"^(?P<study>[a-z0-9_]+)-(?P<step>[a-z0-9_]+)(?:@(?P<item>[A-Za-z0-9_\-]+))?$")


class PipelineError(ValueError):
    """dvc.yaml and the code disagree: a stage, path or params key that one side expects is missing."""


@dataclass(frozen=True)
class StageSpec:
    """One (expanded) stage of dvc.yaml: what it declares, with templates resolved."""

    name: str
    study: str
    step: str
    item: str | None
    cmd: str
    deps: tuple[str, ...]
    outs: tuple[str, ...]      # outs, metrics and plots declared as outputs
    uncached: tuple[str, ...]  # the outputs declared `cache: false` (committed to git)
    params: tuple[str, ...]    # keys of params.yaml the stage lists

    @property
    def data_prefix(self) -> str:
        return f"data/{self.study}/"


def _entry_path(entry: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(entry, Mapping):
        (path, options), = entry.items()
        return str(path), dict(options or {})
    return str(entry), {}


def lookup(document: Mapping[str, Any], dotted: str) -> Any:
    """``document["a"]["b"]`` for ``"a.b"``; KeyError naming the key when absent."""
    node: Any = document
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def substitute(text: str, values: Mapping[str, Any], where: str) -> str:
    """Replace every ``${key}`` in ``text`` by its value from ``values`` (``item`` or a params key)."""

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        try:
            value = lookup(values, key)
        except KeyError:
            raise PipelineError(f"dvc.yaml: {where}: ${{{key}}} names no value in params.yaml") from None
        if isinstance(value, (Mapping, list)):
            raise PipelineError(f"dvc.yaml: {where}: ${{{key}}} is a {type(value).__name__}, not a single value")
        return str(value)

    return _TEMPLATE.sub(replace, text)


def _resolve(value: Any, values: Mapping[str, Any], where: str) -> Any:
    if isinstance(value, str):
        return substitute(value, values, where)
    if isinstance(value, list):
        return [_resolve(v, values, where) for v in value]
    if isinstance(value, Mapping):
        return {substitute(str(k), values, where): _resolve(v, values, where) for k, v in value.items()}
    return value


def _spec(name: str, body: Mapping[str, Any], item: str | None) -> StageSpec:
    match = STAGE_NAME.match(name)
    if match is None:
        raise PipelineError(f"dvc.yaml: stage {name!r}: names must read <study>-<step> or <study>-<step>@<item>")
    outs, uncached = [], []
    for section in ("outs", "metrics", "plots"):
        for entry in body.get(section) or []:
            path, options = _entry_path(entry)
            outs.append(path)
            if options.get("cache") is False:
                uncached.append(path)
    params = []
    for entry in body.get("params") or []:
        if isinstance(entry, Mapping):  # {params-file: [keys]}
            for keys in entry.values():
                params.extend(str(k) for k in keys or [])
        else:
            params.append(str(entry))
    return StageSpec(
        name=name, study=match["study"], step=match["step"], item=item, cmd=str(body.get("cmd", "")),
        deps=tuple(_entry_path(d)[0] for d in body.get("deps") or []), outs=tuple(outs),
        uncached=tuple(uncached), params=tuple(params),
    )


def expand_stages(pipeline: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, StageSpec]:
    """Every stage of a parsed dvc.yaml, ``foreach`` expanded and templates resolved against ``params``."""
    specs: dict[str, StageSpec] = {}
    for name, body in (pipeline.get("stages") or {}).items():
        if "foreach" in body:
            items = body["foreach"]
            if not isinstance(items, list):
                raise PipelineError(f"dvc.yaml: stage {name!r}: foreach must be a list of names")
            for item in items:
                values = {**params, "item": item}
                full_name = f"{name}@{item}"
                specs[full_name] = _spec(full_name, _resolve(body["do"], values, full_name), str(item))
        else:
            specs[name] = _spec(name, _resolve(body, params, name), None)
    return specs


def load_stages(root: Path | None = None, params: Mapping[str, Any] | None = None) -> dict[str, StageSpec]:
    """The expanded stages of ``<root>/dvc.yaml`` (params from ``<root>/params.yaml`` unless given)."""
    base = root or repo_root()
    pipeline = yaml.safe_load((base / "dvc.yaml").read_text(encoding="utf-8")) or {}
    if params is None:
        params = yaml.safe_load((base / "params.yaml").read_text(encoding="utf-8")) or {}
    return expand_stages(pipeline, params)


def stage_name(study: str, step: str, item: str | None = None) -> str:
    return f"{study}-{step}" + (f"@{item}" if item else "")
