"""Validate the whole params.yaml against every stage's params model, at both scales, before anything runs.

DVC deletes a stage's outputs before it runs the stage, so a typo found by the stage itself has
already cost its models and metrics. ``make run``, ``make flow`` and ``python -m flows run`` call
this first; it imports each step module once (in one process), validates ``common`` and every
``<study>.<step>`` section with its smoke settings and with its ``full:`` overrides, checks each
stage's dvc.yaml contract, and names sections no stage reads. All problems are printed at once.

    python -m stages.common.check_params
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stages.common.params import ParamsError, read_params_file, validate_step
from stages.common.paths import repo_root
from stages.common.pipeline import PipelineError, load_stages

NOT_STUDIES = ("common", "orchestration")


def _step_function(study: str, step: str) -> Any:
    module = importlib.import_module(f"stages.{study}.{step}")
    function = getattr(module, step, None)
    if not callable(function):
        raise PipelineError(f"stages/{study}/{step}.py: no step function named {step}")
    return function


def unread_sections(document: Mapping[str, Any], read: set[tuple[str, str]]) -> list[str]:
    """``<study>.<step>`` sections of params.yaml that no stage of dvc.yaml reads (a mistyped step name)."""
    studies = {study for study, _ in read}
    unread = []
    for study, steps in document.items():
        if study in NOT_STUDIES or not isinstance(steps, Mapping):
            continue
        if study not in studies:
            unread.append(f"{study}: no stage of dvc.yaml belongs to this study")
            continue
        unread.extend(f"{study}.{step}: no stage of dvc.yaml reads this section"
                      for step in steps if (study, step) not in read)
    return unread


def check(root: Path) -> list[str]:
    """Every problem of params.yaml and the stages' contracts, one line each (empty when all is well)."""
    from stages.common.stage import check_contract, params_model_of

    try:
        document = read_params_file(root / "params.yaml")
        specs = load_stages(root, document)
    except (ParamsError, PipelineError) as error:
        return [str(error)]
    # only stages that follow the pattern (`python -m stages.<study>.<step>`) have a params model
    specs = {name: spec for name, spec in specs.items() if spec.cmd.startswith(f"python -m stages.{spec.study}.")}
    if not specs:
        return []
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    problems: list[str] = []
    for spec in specs.values():
        try:
            check_contract(spec, document)
        except PipelineError as error:
            problems.append(str(error))
    steps = sorted({(spec.study, spec.step) for spec in specs.values()})
    for study, step in steps:
        try:
            model = params_model_of(_step_function(study, step))
        except PipelineError as error:
            problems.append(str(error))
            continue
        for scale in ("smoke", "full"):
            try:
                validate_step(study, step, model, document, scale=scale)
            except ParamsError as error:
                message = str(error)
                if message not in problems:
                    problems.append(message if scale == "smoke" else f"{message} (with the full: overrides)")
    problems.extend(f"params.yaml: {line}" for line in unread_sections(document, set(steps)))
    return problems


def print_problems(problems: list[str]) -> None:
    print(f"error: params.yaml and dvc.yaml: {len(problems)} problem(s); nothing was run:", file=sys.stderr)
    for problem in problems:
        print("  - " + problem.replace("\n", "\n    "), file=sys.stderr)


def main() -> int:
    root = repo_root()
    problems = check(root)
    if problems:
        print_problems(problems)
        return 1
    print(f"params.yaml: every stage's params are valid at both scales ({root / 'params.yaml'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
