"""Every study has what stages/README.md ("Adding a study") lists, and its params obey the pattern."""
import importlib
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from stages.common.params import FULL_OVERRIDES_KEY, validate_step
from stages.common.pipeline import load_stages
from stages.common.stage import params_model_of
from tests.pipeline_rows import STUDIES as PIPELINE_ROWS

REPO = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
STUDIES = sorted(p.name for p in (REPO / "stages").iterdir() if p.is_dir() and (p / "__init__.py").exists() and p.name != "common")
SPECS = load_stages(REPO)


def steps_of(study: str) -> list[str]:
    return sorted({spec.step for spec in SPECS.values() if spec.study == study})


def step_function(study: str, step: str):
    module = importlib.import_module(f"stages.{study}.{step}")
    function = getattr(module, step, None)
    assert callable(function), f"stages/{study}/{step}.py must define the step function {step}(ctx)"
    return function


def fields_with_defaults(model: type[BaseModel], prefix: str) -> list[str]:
    """Fields of ``model`` (and of nested params models) that carry a default: values must live in params.yaml only."""
    found = []
    for name, info in model.model_fields.items():
        if not info.is_required():
            found.append(f"{prefix}.{name}")
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found += fields_with_defaults(annotation, f"{prefix}.{name}")
    return found


def test_the_study_list_is_what_the_pipeline_runs():
    assert STUDIES and sorted({spec.study for spec in SPECS.values()}) == STUDIES


@pytest.mark.parametrize("study", STUDIES)
def test_study_has_every_place_a_study_must_touch(study):
    assert (REPO / "stages" / study / "README.md").is_file(), f"stages/{study}/README.md"
    assert f"| `{study}` |" in (REPO / "README.md").read_text(), f"README.md studies table has no row for {study}"
    assert study in PARAMS, f"params.yaml has no {study} section"
    assert set(PARAMS[study]) == set(steps_of(study)), f"params.yaml {study} sub-sections must match its dvc.yaml steps"
    assert {"ingest", "report"} <= set(steps_of(study)), f"{study} needs an ingest and a report stage"
    assert study in PIPELINE_ROWS, f"tests/{study}/pipeline.py (the study's ROW of the end-to-end test) is missing"
    assert any((REPO / "tests" / study).glob("test_*.py")), f"tests/{study}/ has no tests"
    assert study in PARAMS["orchestration"]["schedules"], f"orchestration.schedules has no cron line for {study}"


@pytest.mark.parametrize("study", STUDIES)
@pytest.mark.parametrize("scale", ["smoke", "full"])
def test_params_validate_at_both_scales(study, scale):
    for step in steps_of(study):
        validate_step(study, step, params_model_of(step_function(study, step)), PARAMS, scale=scale)


@pytest.mark.parametrize("study", STUDIES)
def test_params_models_hold_no_values(study):
    offenders = []
    for step in steps_of(study):
        offenders += fields_with_defaults(params_model_of(step_function(study, step)), f"{study}.{step}")
    assert offenders == [], "defaults restate params.yaml; make these fields required"


@pytest.mark.parametrize("study", STUDIES)
def test_full_overrides_change_something(study):
    for step in steps_of(study):
        overrides = (PARAMS[study][step] or {}).get(FULL_OVERRIDES_KEY) or {}
        same = sorted(k for k, v in overrides.items() if PARAMS[study][step].get(k) == v)
        assert same == [], f"{study}.{step}.full repeats the smoke values of {same}"
