"""MLflow parent runs for flow runs: one per study a flow run touches.

Each stage subprocess gets `MEDREPRO_PARENT_RUN_ID` (its study's parent run) and
`MEDREPRO_FLOW_RUN_ID`; the stage code opens its own run nested under the parent. The tracking
URI, the experiments (one per study, named by the study id) and these names are defined once, in
`stages.common.tracking`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from stages.common.tracking import FLOW_RUN_TAG, ensure_experiment


def _ensure_experiment(study: str, repo_root: Path, uri: str) -> str:
    """`ensure_experiment` in the store at `uri` (it reads `MLFLOW_TRACKING_URI`, set meanwhile)."""
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


def close_parent_runs(run_ids: Mapping[str, str], uri: str, succeeded: bool,
                      studies_that_ran: Iterable[str] | None = None) -> None:
    """Move the stages' spooled runs into the store, then end every parent run FINISHED or FAILED.

    After a successful flow, the parent run of a study none of whose stages ran (all up to date
    or restored from the run cache) is deleted, so no-op flows leave no empty runs.
    """
    from stages.common.mlflow_spool import flush, spool_folder

    flush(spool_folder(uri))
    if not run_ids:
        return
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    status = "FINISHED" if succeeded else "FAILED"
    ran = None if studies_that_ran is None else set(studies_that_ran)
    for study, run_id in run_ids.items():
        client.set_terminated(run_id, status=status)
        if succeeded and ran is not None and study not in ran:
            client.delete_run(run_id)
