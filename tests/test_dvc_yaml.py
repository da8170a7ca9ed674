"""dvc.yaml agrees with the code: names, commands, and code deps that cover every imported module."""
import ast
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


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


def covered(module: str, deps: list[str]) -> bool:
    file = module.replace(".", "/") + ".py"
    return any(file == dep or file.startswith(dep.rstrip("/") + "/") or module.replace(".", "/") == dep for dep in deps)


def test_stage_names_and_commands_follow_the_convention():
    for name, stage in STAGES.items():
        assert re.fullmatch(r"[a-z0-9_]+-[a-z0-9_]+", name), name
        study, step = name.split("-")
        command = stage["cmd"].split()
        assert command[:2] == ["python", "-m"] and command[2].startswith(f"stages.{study}."), name
        assert "stages/common" in stage["deps"], name


def test_every_imported_project_module_is_a_dependency():
    missing = {}
    for name, stage in STAGES.items():
        module = stage["cmd"].split()[2]
        absent = sorted(m for m in local_imports(module) if not m.endswith("__init__") and not covered(m, stage["deps"])
                        and (REPO / (m.replace(".", "/") + ".py")).exists())
        if absent:
            missing[name] = absent
    assert missing == {}, f"code a stage imports but does not list in deps: {missing}"


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
