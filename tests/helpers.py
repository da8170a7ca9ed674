"""Helpers shared by every test folder: a project copy, params overrides, DVC runs, in-process steps.

Test modules import from here (or use the fixtures in ``tests/conftest.py``); no test module
imports another test module.
"""
from __future__ import annotations

import copy
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from stages.common.stage import StageContext, Step, Tracker, call_step, open_context

REPO = Path(__file__).resolve().parents[1]


def file_digests(folder: Path) -> dict[str, str]:
    """md5 of every file under ``folder`` by relative path (DVC's own ``.gitignore`` files left out)."""
    if not folder.exists():
        return {}
    return {path.relative_to(folder).as_posix(): hashlib.md5(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file() and path.name != ".gitignore"}


# ``{study: file_digests(data/<study>)}`` of tests/test_pipelines.py's `dvc repro` runs (those
# without extra overrides), so tests/test_reproducible.py compares one in-process run with it
# instead of running every study twice.
END_TO_END_DIGESTS: dict[str, dict[str, str]] = {}


def repo_params() -> dict[str, Any]:
    """The project's params.yaml as a fresh dict."""
    return yaml.safe_load((REPO / "params.yaml").read_text())


def with_overrides(document: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``document`` with ``{"cmr_recon.train.epochs": 1, ...}`` applied."""
    result = copy.deepcopy(dict(document))
    for dotted, value in overrides.items():
        node = result
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return result


def set_params(root: Path, overrides: Mapping[str, Any]) -> None:
    """Apply overrides to the params.yaml of a project copy."""
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(with_overrides(yaml.safe_load(path.read_text()), overrides), sort_keys=False))


def step_context(step: Step, root: Path, overrides: Mapping[str, Any] | None = None, item: str | None = None,
                 params: Mapping[str, Any] | None = None) -> StageContext[Any]:
    """The context a step would get in a stage, over ``root`` (a tmp folder), logging to memory.

    Paths and params keys come from the project's own dvc.yaml, so a test exercises the same
    declarations the pipeline does.
    """
    document = with_overrides(params if params is not None else repo_params(), overrides or {})
    return open_context(step, Path(root), document, item=item, tracker=Tracker(), pipeline_root=REPO)


def run_step(step: Step, root: Path, overrides: Mapping[str, Any] | None = None, item: str | None = None,
             params: Mapping[str, Any] | None = None) -> tuple[StageContext[Any], dict[str, float]]:
    """Run one step in-process; returns its context (with what it logged) and its metrics."""
    from stages.common.runtime import seed_everything

    context = step_context(step, root, overrides, item, params)
    seed_everything(context.common.seed)
    metrics = call_step(step, context) or {}
    return context, metrics


def project_files() -> list[str]:
    """Files a clean clone would have (tracked plus new, not ignored)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    return [f for f in listed if (REPO / f).is_file()]


def copy_project(root: Path, keep_lock: bool = False, keep_results: bool = False) -> Path:
    """A fresh git repository holding the project's files, as a clone would (no data, no mlruns).

    Committed results (metrics, plots) and dvc.lock are dropped unless asked for, so a run in
    the copy starts from nothing.
    """
    for relative in project_files():
        if not keep_results and relative.startswith("data/") and relative != "data/README.md":
            continue
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, target)
    if not keep_lock:
        (root / "dvc.lock").unlink(missing_ok=True)
    for command in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=root, check=True, capture_output=True)
    return root


def run_dvc(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=root, env=env,
                            capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def run_module(root: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m <module>`` in ``root`` as DVC would run it (DVC_ROOT set), output captured."""
    env = {**os.environ, "DVC_ROOT": str(root), "MEDREPRO_NO_PROGRESS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=root, env=env, capture_output=True, text=True)
