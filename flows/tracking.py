"""MLflow parent runs for flow runs: one per study a flow run touches.

Each stage subprocess gets `MEDREPRO_PARENT_RUN_ID` (its study's parent run) and
`MEDREPRO_FLOW_RUN_ID`; the stage code opens its own run nested under the parent.
The tracking URI and experiment come from `stages.common.tracking` when it is importable
(the project's single definition); otherwise the same contract is applied here:
`MLFLOW_TRACKING_URI` if set, else `sqlite:///<repo_root>/mlruns/mlflow.db` with artifacts
under `<repo_root>/mlruns/artifacts`, one experiment per study named by the study id.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

FLOW_RUN_TAG = "medrepro.flow_run_id"
PARENT_RUN_ENV = "MEDREPRO_PARENT_RUN_ID"
FLOW_RUN_ENV = "MEDREPRO_FLOW_RUN_ID"


def tracking_uri(repo_root: Path) -> str:
    """MLflow tracking URI the flow and its stages share."""
    try:
        from stages.common.tracking import tracking_uri as project_tracking_uri
    except ImportError:
        env_uri = os.environ.get("MLFLOW_TRACKING_URI")
        if env_uri:
            return env_uri
        return f"sqlite:///{(Path(repo_root).resolve() / 'mlruns' / 'mlflow.db').as_posix()}"
    return project_tracking_uri(Path(repo_root))


def _ensure_experiment(study: str, repo_root: Path, uri: str) -> str:
    try:
        from stages.common.tracking import ensure_experiment
    except ImportError:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(study)
        if experiment is not None:
            return experiment.experiment_id
        artifact_location = None
        if "MLFLOW_TRACKING_URI" not in os.environ:
            artifacts = Path(repo_root).resolve() / "mlruns" / "artifacts"
            artifact_location = artifacts.as_uri()
        return client.create_experiment(study, artifact_location=artifact_location)
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        return ensure_experiment(study, Path(repo_root))
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous


def open_parent_runs(
    studies: Iterable[str],
    repo_root: Path,
    uri: str,
    flow_run_name: str,
    flow_run_id: str,
) -> dict[str, str]:
    """Create one running parent run per study; returns {study: run id}."""
    from mlflow import MlflowClient

    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=uri)
    run_ids: dict[str, str] = {}
    for study in sorted(set(studies)):
        experiment_id = _ensure_experiment(study, repo_root, uri)
        run = client.create_run(
            experiment_id,
            run_name=f"flow-{flow_run_name}",
            tags={FLOW_RUN_TAG: flow_run_id, "medrepro.study": study},
        )
        run_ids[study] = run.info.run_id
    return run_ids


def close_parent_runs(run_ids: Mapping[str, str], uri: str, succeeded: bool) -> None:
    """End every parent run FINISHED or FAILED."""
    if not run_ids:
        return
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    status = "FINISHED" if succeeded else "FAILED"
    for run_id in run_ids.values():
        client.set_terminated(run_id, status=status)
