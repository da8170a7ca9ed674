"""Toy DVC repositories and helpers for the flow tests (imported by conftest.py and the tests)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

PYTHON = sys.executable

# The toy stage: appends to runs/<name>.count (outside its outs, so reruns can be counted),
# records its parent-run env vars and start/end times, fails on purpose while fail/<name>
# exists, prints $TOY_LINES lines, sleeps $TOY_SLEEP s, and writes `name(inputs...)` (plus the
# toy.b param for b1) to its out.
STAGE_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import yaml

    name, out, *inputs = sys.argv[1:]
    os.makedirs("runs", exist_ok=True)
    os.makedirs("env", exist_ok=True)
    with open(f"runs/{name}.count", "a") as f:
        f.write("x")
    start = time.time()
    with open(f"env/{name}.txt", "w") as f:
        f.write(os.environ.get("MEDREPRO_PARENT_RUN_ID", "") + "\\n")
        f.write(os.environ.get("MEDREPRO_FLOW_RUN_ID", "") + "\\n")
    if os.path.exists(f"fail/{name}"):
        print(f"toy stage {name} failed on purpose (marker fail/{name})", file=sys.stderr)
        sys.exit(3)
    time.sleep(float(os.environ.get("TOY_SLEEP", "0")))
    for i in range(int(os.environ.get("TOY_LINES", "0"))):
        print(f"{name} says line {i}")
    parts = [open(p).read().strip() for p in inputs]
    if name == "b1":
        parts.append("b=" + str(yaml.safe_load(open("params.yaml"))["toy"]["b"]))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        f.write(name + "(" + ",".join(parts) + ")\\n")
    with open(f"runs/{name}.times", "a") as f:
        f.write(f"{start} {time.time()}\\n")
    """
)


def _stage(name: str, out: str, inputs: list[str], params: list[str] | None = None) -> dict:
    entry = {
        "cmd": " ".join(["python", "stage.py", name.split("-", 1)[1], out, *inputs]),
        "deps": ["stage.py", *inputs],
        "outs": [out],
    }
    if params:
        entry["params"] = params
    return entry


# Two branches joining at the end; branch b starts from a stage of another study (aux):
#   aux-prep -> toy-b1 -> toy-b2 \
#                                  toy-join
#   toy-a1   -> toy-a2          /
TOY_STAGES = {
    "aux-prep": _stage("aux-prep", "out/prep.txt", []),
    "toy-a1": _stage("toy-a1", "out/a1.txt", []),
    "toy-a2": _stage("toy-a2", "out/a2.txt", ["out/a1.txt"]),
    "toy-b1": _stage("toy-b1", "out/b1.txt", ["out/prep.txt"], params=["toy.b"]),
    "toy-b2": _stage("toy-b2", "out/b2.txt", ["out/b1.txt"]),
    "toy-join": _stage("toy-join", "out/join.txt", ["out/a2.txt", "out/b2.txt"]),
}
TOY_EDGES = {
    ("aux-prep", "toy-b1"),
    ("toy-b1", "toy-b2"),
    ("toy-a1", "toy-a2"),
    ("toy-a2", "toy-join"),
    ("toy-b2", "toy-join"),
}
TOY_ORCHESTRATION = {
    "retries": 2,
    "retry_delay_seconds": 0.2,
    "lock_retries": 20,
    "flow_lock_timeout_seconds": 2,
    "default_resources": {"num_cpus": 1, "num_gpus": 0},
    "resources": {"toy-join": {"num_cpus": 2, "num_gpus": 0}},
}


def _foreach_stage(group: str, items: list[str], out: str, inputs: list[str]) -> dict:
    """A `foreach` stage; DVC names its items `<group>@<item>` and substitutes `${item}`."""
    step = group.split("-", 1)[1]
    return {
        "foreach": items,
        "do": {
            "cmd": " ".join(["python", "stage.py", f"{step}@${{item}}", out, *inputs]),
            "deps": ["stage.py", *inputs],
            "outs": [out],
        },
    }


# One foreach stage fanning out from another study's stage and joining again:
#   aux-prep -> toy-train@sex, toy-train@age, toy-train@dataset -> toy-join
FOREACH_ITEMS = ("sex", "age", "dataset")
FOREACH_TRAIN = tuple(f"toy-train@{item}" for item in FOREACH_ITEMS)
FOREACH_DVC_STAGES = {
    "aux-prep": _stage("aux-prep", "out/prep.txt", []),
    "toy-train": _foreach_stage("toy-train", list(FOREACH_ITEMS), "out/train_${item}.txt", ["out/prep.txt"]),
    "toy-join": _stage("toy-join", "out/join.txt", [f"out/train_{item}.txt" for item in FOREACH_ITEMS]),
}
FOREACH_STAGES = ("aux-prep", *FOREACH_TRAIN, "toy-join")  # as DVC expands them
FOREACH_EDGES = {("aux-prep", stage) for stage in FOREACH_TRAIN} | {(stage, "toy-join") for stage in FOREACH_TRAIN}
FOREACH_JOIN = "join(train@sex(prep()),train@age(prep()),train@dataset(prep()))\n"
# The group's key applies to each item; an item's own key wins over it.
FOREACH_ORCHESTRATION = {
    **TOY_ORCHESTRATION,
    "resources": {
        "toy-train": {"num_cpus": 0.5, "num_gpus": 0},
        "toy-train@age": {"num_cpus": 1.5, "num_gpus": 0},
        "toy-join": {"num_cpus": 2, "num_gpus": 0},
    },
}


def run(command: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run a command, failing the test with its output when it exits non-zero."""
    completed = subprocess.run(command, cwd=cwd, capture_output=True, text=True, **kwargs)
    if completed.returncode != 0:
        raise AssertionError(f"{command} failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}")
    return completed


def dvc(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([PYTHON, "-m", "dvc", *args], cwd)


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args], cwd)


def make_toy_repo(
    path: Path, orchestration: dict | None = None, remote: Path | None = None, stages: dict | None = None
) -> Path:
    """A git + DVC repository with the toy DAG (or `stages`), committed; outputs not yet produced."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    dvc(path, "init", "-q")
    (path / ".dvcignore").write_text("__pycache__/\n*.pyc\n")
    (path / ".gitignore").write_text("runs/\nenv/\nfail/\n")
    (path / "stage.py").write_text(STAGE_SCRIPT)
    (path / "dvc.yaml").write_text(yaml.safe_dump({"stages": TOY_STAGES if stages is None else stages}, sort_keys=False))
    params = {"toy": {"b": 1}, "orchestration": TOY_ORCHESTRATION if orchestration is None else orchestration}
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(path, "config", "core.analytics", "false")
    if remote is not None:
        remote.mkdir(parents=True, exist_ok=True)
        dvc(path, "remote", "add", "-d", "store", str(remote))
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "toy pipeline")
    return path


def make_foreach_repo(path: Path, remote: Path | None = None) -> Path:
    """A toy repository whose dvc.yaml has a `foreach` stage (FOREACH_DVC_STAGES)."""
    return make_toy_repo(path, orchestration=FOREACH_ORCHESTRATION, remote=remote, stages=FOREACH_DVC_STAGES)


def load_lock(path: Path) -> dict:
    return yaml.safe_load((path / "dvc.lock").read_text())


def run_count(repo: Path, stage: str) -> int:
    counter = repo / "runs" / f"{stage.split('-', 1)[1]}.count"
    return len(counter.read_text()) if counter.exists() else 0


def dvc_status_clean(repo: Path) -> bool:
    completed = dvc(repo, "status", "--json")
    return json.loads(completed.stdout or "{}") == {}


def copy_repo(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination, symlinks=True)
    return destination
