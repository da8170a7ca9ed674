"""Prefect deployments: one per study (plus `all`), scheduled from orchestration.schedules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flows.config import load_orchestration_config
from flows.graph import full_stage_graph, studies

ALL_STUDIES_DEPLOYMENT = "all"


def build_deployments(repo_root: Path) -> list[Any]:
    """RunnerDeployments of the `pipeline` flow for the DVC project at `repo_root`.

    One per study id found in the stage names, with the study's cron schedule when
    `orchestration.schedules` has one, and an unscheduled `all` deployment for the whole DAG.
    Parameters are {"repo_root": <absolute path>, "study": <id or None>}.
    """
    from prefect.deployments.runner import EntrypointType

    from flows.run import pipeline

    root = Path(repo_root).resolve()
    config = load_orchestration_config(root)
    graph = full_stage_graph(root)
    study_ids = studies(graph)
    config.check_names(graph.nodes, study_ids)
    deployments = []
    for study in [*study_ids, None]:
        cron = config.schedules.get(study) if study is not None else None
        name = study or ALL_STUDIES_DEPLOYMENT
        deployments.append(
            pipeline.to_deployment(
                name=name,
                cron=cron,
                parameters={"repo_root": str(root), "study": study},
                description=(
                    f"DVC stages of study {study!r} and their upstream stages, on Ray"
                    if study
                    else "The whole DVC pipeline, on Ray"
                ),
                tags=["medrepro", name],
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return deployments


def serve(repo_root: Path, limit: int = 1) -> None:
    """Serve the deployments to the Prefect API (blocks until interrupted).

    `limit` caps concurrent flow runs; runs in one repository take its flow lock in turn anyway.
    """
    import prefect

    prefect.serve(*build_deployments(repo_root), limit=limit)
