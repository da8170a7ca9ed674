"""dvc.yaml agrees with the code: names, commands, code deps, and the params contract of every stage."""
import ast
import re
from pathlib import Path

import yaml

from stages.common.params import FULL_OVERRIDES_KEY
from stages.common.pipeline import STAGE_NAME

REPO = Path(__file__).resolve().parents[1]
PIPELINE = yaml.safe_load((REPO / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
TORCH_IMPORT = re.compile(r"^(import torch|from torch|import monai|from monai)", re.MULTILINE)  # module level
THREADS_FROM_PARAMS = re.compile(r"\b(torch_device|configure_torch)\(")
COMMON_READ = re.compile(r"\bcommon\.(scale|seed|on_bad_input|device)\b|\bctx\.torch_device\(")


def stage_bodies() -> dict[str, dict]:
    """Every stage as written (templates unresolved); a foreach stage once, by its group name."""
    return {name: body.get("do", body) for name, body in PIPELINE["stages"].items()}


def module_of(body: dict) -> str:
    return body["cmd"].split()[2]


def local_imports(module: str) -> set[str]:
    """Modules of this project (``stages.*``) that ``module`` imports, transitively."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = REPO / (name.replace(".", "/") + ".py")
        if not path.exists():
            path = REPO / name.replace(".", "/") / "__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stages."):
                todo.append(node.module)
            elif isinstance(node, ast.Import):
                todo.extend(a.name for a in node.names if a.name.startswith("stages."))
    return seen


def study_sources(module: str) -> set[str]:
    """Source text of the study's own modules a step imports (stages.common excluded)."""
    study = module.split(".")[1]
    return {(REPO / (m.replace(".", "/") + ".py")).read_text() for m in local_imports(module)
            if m.startswith(f"stages.{study}.") and (REPO / (m.replace(".", "/") + ".py")).exists()}


def covered(module: str, deps: list[str]) -> bool:
    file = module.replace(".", "/") + ".py"
    return any(file == dep or file.startswith(dep.rstrip("/") + "/") or module.replace(".", "/") == dep for dep in deps)


def test_stage_names_and_commands_follow_the_convention():
    for name, body in stage_bodies().items():
        assert STAGE_NAME.match(name) and "@" not in name, name
        study, step = name.split("-")
        assert body["cmd"].split()[:3] == ["python", "-m", f"stages.{study}.{step}"], name
        assert "stages/common" in body["deps"], name
    for name, stage in PIPELINE["stages"].items():
        if "foreach" in stage:
            assert stage["do"]["cmd"].endswith(" ${item}"), f"{name}: a foreach stage passes its item as the argument"


def test_every_imported_project_module_is_a_dependency():
    missing = {}
    for name, body in stage_bodies().items():
        module = module_of(body)
        absent = sorted(m for m in local_imports(module) if not m.endswith("__init__") and not covered(m, body["deps"])
                        and (REPO / (m.replace(".", "/") + ".py")).exists())
        if absent:
            missing[name] = absent
    assert missing == {}, f"code a stage imports but does not list in deps: {missing}"


def test_every_stage_lists_the_params_it_depends_on():
    """Own section and common.seed always; common.scale with full: overrides; common.device where the device is chosen.

    A stage that runs torch sets its threads from params; it reads common.device through
    ctx.torch_device (then it must list it), or runs on the CPU via configure_torch.
    """
    problems = []
    for name, body in stage_bodies().items():
        study, step = name.split("-")
        listed = set(body.get("params") or [])
        required = {f"{study}.{step}", "common.seed"}
        section = PARAMS[study][step] or {}
        if FULL_OVERRIDES_KEY in section:
            required.add("common.scale")
        sources = study_sources(module_of(body))
        step_source = (REPO / (module_of(body).replace(".", "/") + ".py")).read_text()
        if any(TORCH_IMPORT.search(text) for text in sources) and not THREADS_FROM_PARAMS.search(step_source):
            problems.append(f"{name} runs torch but does not set its threads from params (ctx.torch_device / configure_torch)")
        for text in sources:
            for match in COMMON_READ.finditer(text):
                required.add(f"common.{match.group(1) or 'device'}")
        if "ingest" in step:
            required.add("common.on_bad_input")
        if required - listed:
            problems.append(f"{name} must also list {sorted(required - listed)}")
    assert problems == []


def test_a_real_source_is_a_dependency_of_every_stage_that_reads_it():
    """Stages that read the ingest's raw folder also read the real source files it points to."""
    problems = []
    stages = stage_bodies()
    for name, body in stages.items():
        study = name.split("-")[0]
        ingest = stages.get(f"{study}-ingest")
        if ingest is None:
            continue
        source_deps = {d for d in ingest["deps"] if d.startswith("${")}
        assert source_deps, f"{study}-ingest lists no ${{{study}.ingest.source}} dependency"
        reads_raw = any(d == f"data/{study}/raw" or d.startswith(f"data/{study}/raw/") for d in body["deps"])
        if reads_raw and not source_deps & set(body["deps"]):
            problems.append(f"{name} reads data/{study}/raw but does not list {sorted(source_deps - set(body['deps']))}")
    assert problems == []


def test_small_results_are_committed_and_never_cached():
    """Metrics and plots files are cache: false (committed, so `dvc metrics diff main` works on a fresh clone)."""
    for name, body in stage_bodies().items():
        for section in ("metrics", "plots"):
            for entry in body.get(section) or []:
                (path, options), = entry.items()
                assert options.get("cache") is False, f"{name}: {path} must be cache: false"


def test_studies_import_only_common_and_themselves():
    offenders = []
    for module_file in (REPO / "stages").glob("*/*.py"):
        study = module_file.parent.name
        if study == "common":
            continue
        for node in ast.walk(ast.parse(module_file.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("stages."):
                owner = node.module.split(".")[1]
                if owner not in ("common", study):
                    offenders.append(f"{module_file.relative_to(REPO)} imports {node.module}")
    assert offenders == []
