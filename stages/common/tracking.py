"""MLflow tracking: one experiment per study, one run per stage execution.

The tracking URI defaults to ``sqlite:///<repo>/mlruns/mlflow.db`` with artifacts under
``<repo>/mlruns/artifacts``; ``MLFLOW_TRACKING_URI`` overrides it. When a flow started the
stage, ``MEDREPRO_PARENT_RUN_ID`` names the flow's run and the stage run is nested under it.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from stages.common.pipeline import StageSpec

PARENT_RUN_ENV = "MEDREPRO_PARENT_RUN_ID"
FLOW_RUN_ENV = "MEDREPRO_FLOW_RUN_ID"
FLOW_RUN_TAG = "medrepro.flow_run_id"
EXPERIMENT_TAGS = {"dvc.exp_name": "DVC_EXP_NAME", "dvc.exp_baseline_rev": "DVC_EXP_BASELINE_REV"}
SPOOL_ENV = "MEDREPRO_MLFLOW_SPOOL"  # "off": a stage logs straight into MLflow

log = logging.getLogger(__name__)


URI_CHECK_ENV = "MEDREPRO_MLFLOW_URI_CHECK"  # what a flow forwards instead of a tracking URI holding a password


def redact_uri(uri: str) -> str:
    """``uri`` with its password (``scheme://user:password@host``) replaced by ``***``: safe to log or forward."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def forwarded_tracking_env(uri: str) -> dict[str, str]:
    """What a flow passes to its workers (Ray's runtime_env, Prefect task inputs) for ``uri``.

    A URI without a password travels as ``MLFLOW_TRACKING_URI``; one with a password never leaves
    this process: the workers use their own ``MLFLOW_TRACKING_URI`` (local Ray workers inherit this
    process's environment) and :func:`worker_tracking_uri` checks it is the same store.
    """
    redacted = redact_uri(uri)
    return {"MLFLOW_TRACKING_URI": uri} if redacted == uri else {URI_CHECK_ENV: redacted}


def worker_tracking_uri(env: Mapping[str, str], host: str) -> str | None:
    """The tracking URI a worker's stage uses under ``env``; refuses a worker without the store's credentials."""
    expected = env.get(URI_CHECK_ENV)
    own = env.get("MLFLOW_TRACKING_URI")
    if expected is None:
        return own
    if own is None or redact_uri(own) != expected:
        found = redact_uri(own) if own else "nothing"
        raise RuntimeError(f"worker {host}: MLFLOW_TRACKING_URI must be set to {expected} with its password "
                           f"(the flow does not forward passwords; found {found})")
    return own


def tracking_uri(repo_root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(repo_root).resolve() / 'mlruns' / 'mlflow.db'}"


def artifact_location(repo_root: Path) -> str:
    return (Path(repo_root).resolve() / "mlruns" / "artifacts").as_uri()


def ensure_experiment(study: str, repo_root: Path) -> str:
    """Point MLflow at the project store and return the id of the experiment named ``study``."""
    import mlflow

    if not os.environ.get("MLFLOW_TRACKING_URI"):
        (Path(repo_root) / "mlruns").mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri(repo_root))
    experiment = mlflow.get_experiment_by_name(study)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return mlflow.create_experiment(study, artifact_location=f"{artifact_location(repo_root)}/{study}")
    except Exception:  # another process created it first
        experiment = mlflow.get_experiment_by_name(study)
        if experiment is None:
            raise
        return experiment.experiment_id


# What a run of the pipeline itself rewrites: these do not make a checkout dirty.
PIPELINE_WRITTEN = (":(exclude)dvc.lock", ":(exclude)data")


def git_commit(repo_root: Path) -> tuple[str, bool]:
    """(HEAD commit or 'unknown', whether tracked files other than dvc.lock and data/ have uncommitted changes)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *PIPELINE_WRITTEN],
                cwd=repo_root, capture_output=True, text=True, check=True,
            ).stdout.strip()
        )
        return commit, dirty
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown", False


def _file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def path_md5(path: Path) -> str:
    """md5 of a file, or of a folder's sorted (relative path, md5) list, skipping caches."""
    if path.is_file():
        return _file_md5(path)
    if not path.exists():
        return "missing"
    digest = hashlib.md5()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        relative = file.relative_to(path).as_posix()
        if "__pycache__" in relative or relative.endswith(".pyc"):
            continue
        digest.update(f"{relative}:{_file_md5(file)}\n".encode())
    return digest.hexdigest() + ".dir"


def locked_output_hashes(repo_root: Path) -> dict[str, str]:
    """md5 of every output recorded in dvc.lock, by path."""
    lock_file = repo_root / "dvc.lock"
    locked: dict[str, str] = {}
    if lock_file.exists():
        lock = yaml.safe_load(lock_file.read_text()) or {}
        for stage in (lock.get("stages") or {}).values():
            for out in stage.get("outs", []):
                if "md5" in out:
                    locked[out["path"]] = out["md5"]
    return locked


def stage_input_hashes(deps: Iterable[str], repo_root: Path) -> dict[str, str]:
    """Hashes of a stage's deps: DVC's own from dvc.lock for upstream outputs, else computed."""
    locked = locked_output_hashes(repo_root)
    return {dep: locked.get(dep) or path_md5(Path(dep) if Path(dep).is_absolute() else repo_root / dep) for dep in deps}


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}`` for MLflow params."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class DirectRun:
    """A stage run logged straight into MLflow (a tracking server, or the spool switched off)."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.ended = False

    def log_params(self, params: Mapping[str, Any]) -> None:
        import mlflow

        mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def set_tag(self, key: str, value: str) -> None:
        import mlflow

        mlflow.set_tag(key, value)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        import mlflow

        mlflow.log_artifact(str(path), artifact_path=folder)

    def end(self, status: str = "FINISHED") -> None:
        import mlflow

        if not self.ended:
            self.ended = True
            mlflow.end_run(status=status)


def stage_tags(spec: StageSpec, repo_root: Path, input_hashes: Mapping[str, str]) -> dict[str, str]:
    """The tags that let stage runs compare side by side: study, step, stage, commit, parent, deps' hashes."""
    commit, dirty = git_commit(repo_root)
    tags = {
        "medrepro.study": spec.study,
        "medrepro.step": spec.step,
        "dvc.stage": spec.name,
        "mlflow.source.git.commit": commit,
        "medrepro.git_dirty": str(dirty).lower(),
    }
    if spec.item is not None:
        tags["medrepro.item"] = spec.item
    parent = os.environ.get(PARENT_RUN_ENV)
    if parent:
        tags["mlflow.parentRunId"] = parent
    if os.environ.get(FLOW_RUN_ENV):
        tags[FLOW_RUN_TAG] = os.environ[FLOW_RUN_ENV]
    for tag, variable in EXPERIMENT_TAGS.items():  # set by `dvc exp run`
        if os.environ.get(variable):
            tags[tag] = os.environ[variable]
    for dep, digest in input_hashes.items():
        tags[f"input.{dep}"] = digest
    return tags


def spool_enabled() -> bool:
    return os.environ.get(SPOOL_ENV, "on").lower() not in ("off", "0", "false")


def flush_runs(repo_root: Path, timeout_seconds: float = 120.0) -> int:
    """Move the finished stage runs still in the spool into the MLflow store (see ``stages.common.mlflow_spool``)."""
    from stages.common.mlflow_spool import flush, spool_folder

    return flush(spool_folder(tracking_uri(repo_root)), timeout_seconds)


@contextlib.contextmanager
def stage_run(spec: StageSpec, params: Mapping[str, Any], repo_root: Path,
              input_hashes: Mapping[str, str] | None = None) -> Iterator[Any]:
    """Open the MLflow run of one stage execution, tagged so runs compare side by side (and with its deps' hashes).

    With the project's SQLite store the run goes to the spool and a background process moves it
    into MLflow (the stage never imports MLflow); otherwise it is logged directly. An exception
    ends the run FAILED and propagates.
    """
    from stages.common.mlflow_spool import SpooledRun, spool_folder, start_flusher

    hashes = input_hashes if input_hashes is not None else stage_input_hashes(spec.deps, repo_root)
    tags = stage_tags(spec, repo_root, hashes)
    uri = tracking_uri(repo_root)
    folder = spool_folder(uri) if spool_enabled() else None
    if folder is None:
        import mlflow

        experiment_id = ensure_experiment(spec.study, repo_root)
        run: Any = DirectRun(mlflow.start_run(experiment_id=experiment_id, run_name=spec.name, tags=tags))
    else:
        run = SpooledRun(folder, uri, spec.study, f"{artifact_location(repo_root)}/{spec.study}", spec.name, tags)
    try:
        run.log_params(flatten(params))
        yield run
    except BaseException:
        run.end("FAILED")
        raise
    else:
        run.end("FINISHED")
    finally:
        if folder is not None:
            start_flusher(folder)
