"""Multi-node mode: workers without the driver's disk move stage outputs through a DVC remote.

A worker runs in its own clone of the repository (at the driver's commit), first writes the
driver's dvc.lock entries for the stage and its upstream stages into the clone and pulls the
upstream outputs, then pushes the stage's outputs after `dvc repro`. The driver pushes what it
has before the stages start and merges the workers' entries and pulls their outputs at the end.
See "Multi-node" in flows/README.md.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.config import OrchestrationConfigError
from flows.dvc_cli import run_dvc, stage_environment
from flows.lockfile import write_lock_entries
from stages.common.tracking import git_commit

if TYPE_CHECKING:
    from flows.run import StageOutcome, StageRequest

WORKER_REPO_ENV = "MEDREPRO_WORKER_REPO"
DRIVER = "(driver)"  # the "stage" named in errors of the driver's own DVC commands


def head_commit(repo_root: Path) -> str | None:
    """HEAD commit of the git repository at `repo_root` (None when there is none)."""
    commit, _dirty = git_commit(repo_root)
    return None if commit == "unknown" else commit


def worker_repo_root(request: StageRequest) -> Path:
    """Where this worker's copy of the repository is: $MEDREPRO_WORKER_REPO, else the driver's path."""
    return Path(os.environ.get(WORKER_REPO_ENV) or request.repo_root)


def _check_worker_clone(root: Path, request: StageRequest) -> None:
    host = socket.gethostname()
    if not (root / ".dvc").is_dir():
        raise RuntimeError(
            f"worker {host}: {root} is not a clone of the repository (no .dvc directory); clone it "
            f"there at commit {request.git_commit} or set {WORKER_REPO_ENV} to the clone's path"
        )
    commit = head_commit(root)
    if request.git_commit is not None and commit != request.git_commit:
        raise RuntimeError(
            f"worker {host}: {root} is at commit {commit}, the driver at {request.git_commit}; "
            f"check out the driver's commit on every worker"
        )


def check_remote(repo_root: Path, remote: str) -> None:
    """Raise OrchestrationConfigError unless `remote` is a DVC remote of the repository."""
    completed = subprocess.run(
        [sys.executable, "-m", "dvc", "remote", "list"], cwd=repo_root, capture_output=True, text=True, check=False
    )
    names = [line.split()[0] for line in completed.stdout.splitlines() if line.strip()]
    if remote not in names:
        raise OrchestrationConfigError(
            f"orchestration.remote: no DVC remote named {remote!r} in {repo_root} "
            f"(remotes: {', '.join(names) or 'none'}; add one with `dvc remote add`)"
        )


def prepare_worker_clone(
    root: Path,
    request: StageRequest,
    upstream: Sequence[StageOutcome],
    env: Mapping[str, str],
    log: Callable[[str], None],
) -> None:
    """Before a stage runs on a worker (`request.remote` set).

    Checks the clone, brings its dvc.lock entries for the stage and its upstream stages in line
    with the driver's, and pulls the upstream stages' outputs from the remote.
    """
    _check_worker_clone(root, request)
    entries: dict[str, dict[str, Any] | None] = {request.stage: request.lock_entry}
    entries.update({outcome.stage: outcome.lock_entry for outcome in upstream})
    write_lock_entries(root, entries)
    if request.upstream:
        pull = ["pull", "--remote", request.remote, "--allow-missing", *request.upstream]
        run_dvc(request.stage, pull, root, env, request.lock_retries, log)


def push_stage_outputs(root: Path, request: StageRequest, env: Mapping[str, str], log: Callable[[str], None]) -> None:
    """After a stage ran (or was skipped) on a worker: push its outputs to `request.remote`."""
    push = ["push", "--remote", request.remote, request.stage]
    run_dvc(request.stage, push, root, env, request.lock_retries, log)


def push_driver_outputs(
    root: Path, remote: str, stages: Iterable[str], lock_retries: int, log: Callable[[str], None]
) -> None:
    """Outputs the driver already has must be on the remote for workers to pull them."""
    push = ["push", "--remote", remote, *sorted(stages)]
    run_dvc(DRIVER, push, root, stage_environment({}), lock_retries, log)


def merge_worker_entries(root: Path, outcomes: Mapping[str, StageOutcome]) -> list[str]:
    """Write the dvc.lock entries the workers returned into the driver's; returns the changed stages."""
    return write_lock_entries(root, {stage: outcome.lock_entry for stage, outcome in outcomes.items()})


def pull_driver_outputs(
    root: Path, remote: str, stages: Iterable[str], lock_retries: int, log: Callable[[str], None]
) -> None:
    """Bring the stages' outputs (as the merged dvc.lock names them) into the driver's workspace."""
    pull = ["pull", "--remote", remote, *sorted(stages)]
    run_dvc(DRIVER, pull, root, stage_environment({}), lock_retries, log)
