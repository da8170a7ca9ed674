"""Importing a stage module loads only what its step needs: every stage is its own process, so a
heavy package pulled in at import time (torch about 2 s, MONAI 7-9 s, Great Expectations 4 s on
2 cores) is paid by every run of that stage. ``benchmarks/stage_imports.py`` measures the cost.

One interpreter imports what every stage loads anyway (numpy, pandas, ``stages.common.stage``),
then imports each module in a forked child of itself and reports the child's ``sys.modules``:
the same as a fresh ``python -c "import <module>"`` for these checks, at a fraction of the time.
med_reasoning is not checked here (its own tests own its imports).
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from stages.common.pipeline import load_stages
from tests.helpers import REPO, repo_params

# Packages no ingest or report module needs at import time (Great Expectations and MLflow are
# imported at run time by the validation and tracking code, inside the functions that use them).
NOT_FOR_LIGHT_STAGES = ("torch", "monai", "torch_geometric", "transformers", "sigpy", "trimesh", "sklearn",
                        "great_expectations", "mlflow")
LIGHT_STEPS = ("ingest", "report")
UNCHECKED_STUDIES = ("med_reasoning",)
# Further packages a module must not load because its step never uses them.
ALSO_NOT_LOADED = {
    "stages.cmr_recon.report": ("scipy",),
    "stages.heart_mesh.report": ("scipy",),
    "stages.heart_mesh.dataset": ("trimesh",),  # what train, baselines and evaluate read the cohort with
    "stages.nova.evaluate": ("torch", "scipy"),
}
PRELOADED = ("numpy", "pandas", "stages.common.stage")
CHILD_IMPORTS = f"""
import json, os, sys
import {", ".join(PRELOADED)}

def loaded_in_child(module, packages):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            __import__(module)
            answer = [p for p in packages if p in sys.modules]
        except BaseException as error:
            answer = {{"error": repr(error)}}
        os.write(write, json.dumps(answer).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as handle:
        answer = json.loads(handle.read())
    os.waitpid(pid, 0)
    return answer

checks = json.loads(sys.argv[1])
print(json.dumps({{module: loaded_in_child(module, packages) for module, packages in checks.items()}}))
"""


def expected_absent() -> dict[str, tuple[str, ...]]:
    modules: dict[str, tuple[str, ...]] = {}
    for spec in load_stages(REPO, repo_params()).values():
        if spec.study in UNCHECKED_STUDIES:
            continue
        module = f"stages.{spec.study}.{spec.step}"
        if module in modules:
            continue
        light = NOT_FOR_LIGHT_STAGES if spec.step in LIGHT_STEPS else ()
        absent = (*light, *ALSO_NOT_LOADED.get(module, ()))
        if absent:
            modules[module] = absent
    return {**modules, **{m: p for m, p in ALSO_NOT_LOADED.items() if m not in modules}}


EXPECTED_ABSENT = expected_absent()


def loaded_after_import(checks: dict[str, tuple[str, ...]]) -> dict[str, list[str]]:
    """For each module, which of its packages ``sys.modules`` holds once it is imported."""
    completed = subprocess.run([sys.executable, "-c", CHILD_IMPORTS, json.dumps(checks)], cwd=REPO,
                               capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def loaded() -> dict[str, list[str]]:
    return loaded_after_import(EXPECTED_ABSENT)


def test_every_studied_stage_with_a_light_step_is_checked():
    light = {m for m in EXPECTED_ABSENT if m.rsplit(".", 1)[1] in LIGHT_STEPS}
    assert len(light) == 2 * len({m.split(".")[1] for m in light})  # each study's ingest and report
    assert len(light) >= 18


@pytest.mark.parametrize("module", sorted(EXPECTED_ABSENT))
def test_stage_module_does_not_import_what_its_step_does_not_need(module, loaded):
    assert loaded[module] == []


def test_the_check_sees_a_package_that_is_imported_and_a_failing_import():
    answer = loaded_after_import({"stages.cmr_recon.undersample": ("pandas", "torch", "scipy"),
                                  "stages.cmr_recon.no_such_step": ("torch",)})
    assert answer["stages.cmr_recon.undersample"] == ["pandas"]
    assert "ModuleNotFoundError" in answer["stages.cmr_recon.no_such_step"]["error"]
