"""The Prefect flow that runs the DVC pipeline on Ray, one task per DVC stage.

Each task runs `dvc repro --single-item <stage>` in the repository, so DVC decides whether a
stage is up to date and DVC itself writes dvc.lock. Tasks wait on their upstream stages; Ray
runs independent branches at once (DVC has no `--jobs`; several `dvc repro --single-item`
processes are its documented way to parallelise). See flows/README.md.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff
from pydantic import BaseModel, ConfigDict

from flows.config import OrchestrationConfig, OrchestrationConfigError, load_orchestration_config
from flows.dvc_cli import run_dvc, stage_environment
from flows.graph import full_stage_graph, select_study, studies, study_of
from flows.lockfile import read_lock_entry
from flows.locking import flow_lock
from flows.remote import (
    check_remote,
    head_commit,
    merge_worker_entries,
    prepare_worker_clone,
    pull_driver_outputs,
    push_driver_outputs,
    push_stage_outputs,
    worker_repo_root,
)
from flows.tracking import close_parent_runs, open_parent_runs
from stages.common.runtime import keep_local_ray_on_loopback
from stages.common.tracking import (
    FLOW_RUN_ENV,
    PARENT_RUN_ENV,
    forwarded_tracking_env,
    redact_uri,
    tracking_uri,
    worker_tracking_uri,
)

# Environment the Ray workers need to reach the same Prefect API and MLflow store as the driver.
# Credentials are deliberately not forwarded (a runtime_env is visible in Ray's job info): on a
# cluster, set them in the environment of `ray start` on each node.
WORKER_ENV_KEYS = ("PREFECT_API_URL", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "MLFLOW_TRACKING_URI")


class PipelineFailedError(RuntimeError):
    """One or more stages failed; the message names them with their errors.

    `completed` holds the outcomes of the stages that did complete.
    """

    def __init__(self, message: str, completed: dict[str, StageOutcome] | None = None) -> None:
        self.completed = dict(completed or {})
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.completed))


class StageRequest(BaseModel):
    """Everything a worker needs to run one stage (picklable, JSON-able)."""

    model_config = ConfigDict(frozen=True)

    stage: str
    repo_root: str
    upstream: tuple[str, ...] = ()
    force: bool = False
    env: dict[str, str] = {}
    lock_retries: int = 20
    remote: str | None = None
    git_commit: str | None = None
    # Driver's dvc.lock entry for this stage at flow start (remote mode; None = no entry).
    lock_entry: dict[str, Any] | None = None


class StageOutcome(BaseModel):
    """What a stage task returns: its dvc.lock entry after the run, and whether it ran."""

    stage: str
    ran: bool
    lock_entry: dict[str, Any] | None
    seconds: float
    host: str
    resources: dict[str, float] = {}  # what Ray assigned to the task (empty outside Ray)


def execute_stage(
    request: StageRequest, upstream: Sequence[StageOutcome], log: Callable[[str], None]
) -> StageOutcome:
    """Run one stage with `dvc repro --single-item` (plain function; the Prefect task wraps it).

    With `request.remote` the worker may not share the driver's disk: it first brings its
    dvc.lock entries for this stage and its upstream stages in line with the driver's, pulls the
    upstream stages' outputs from the remote, runs the stage, and pushes its outputs
    (flows/remote.py).
    """
    started = time.monotonic()
    root = worker_repo_root(request)
    env = stage_environment(request.env)
    uri = worker_tracking_uri(env, socket.gethostname())
    if uri is not None:
        env["MLFLOW_TRACKING_URI"] = uri
    if request.remote:
        prepare_worker_clone(root, request, upstream, env, log)
    repro = ["repro", "--single-item", *(["--force"] if request.force else [])]
    if request.remote:
        repro.append("--allow-missing")  # an unchanged stage need not have its outputs here
    # DVC announces a stage it executes with this line (skipped ones: "didn't change, skipping")
    running_marker = f"Running stage '{request.stage.rsplit(':', 1)[-1]}'"
    ran = False

    def log_and_watch(line: str) -> None:
        nonlocal ran
        ran = ran or line.startswith(running_marker)
        log(line)

    run_dvc(request.stage, [*repro, request.stage], root, env, request.lock_retries, log_and_watch)
    if request.remote:
        push_stage_outputs(root, request, env, log)
    return StageOutcome(
        stage=request.stage,
        ran=ran,
        lock_entry=read_lock_entry(root, request.stage),
        seconds=time.monotonic() - started,
        host=socket.gethostname(),
    )


def _assigned_ray_resources() -> dict[str, float]:
    import ray

    if not ray.is_initialized():
        return {}
    return {name: float(amount) for name, amount in ray.get_runtime_context().get_assigned_resources().items()}


@task(name="dvc-stage", persist_result=False, cache_policy=NO_CACHE)
def run_stage_task(request: StageRequest, upstream: list[StageOutcome]) -> StageOutcome:
    """Prefect task: one DVC stage. `upstream` holds the upstream tasks' outcomes."""
    logger = get_run_logger()
    outcome = execute_stage(request, upstream, lambda line: logger.info("%s", line))
    return outcome.model_copy(update={"resources": _assigned_ray_resources()})


def ray_init_kwargs(ray_address: str | None, worker_env: Mapping[str, str]) -> dict[str, Any]:
    """`ray.init` keyword arguments: the workers' environment; local Ray gets all cores."""
    init_kwargs: dict[str, Any] = {"runtime_env": {"env_vars": dict(worker_env)}}
    if ray_address is None:
        init_kwargs.update(num_cpus=os.cpu_count() or 1, include_dashboard=False)
    return init_kwargs


def make_task_runner(ray_address: str | None, worker_env: Mapping[str, str]) -> Any:
    """prefect-ray task runner: local Ray by default, or join the cluster at `ray_address`."""
    from prefect_ray import RayTaskRunner

    if ray_address is None:
        keep_local_ray_on_loopback()
    return RayTaskRunner(address=ray_address, init_kwargs=ray_init_kwargs(ray_address, worker_env))


def check_resources_feasible(
    options: Mapping[str, Mapping[str, float]],
    available: Mapping[str, float],
    local: bool,
    log: Callable[[str], None],
    resource_keys: Mapping[str, str] | None = None,
) -> None:
    """Fail early if a stage asks for more CPUs/GPUs than the local Ray cluster has.

    A request no node can satisfy would otherwise wait forever. On a joined cluster an
    autoscaler may still add nodes, so there it is only a warning. `resource_keys` names the
    `orchestration.resources` key a stage's request came from (a foreach stage's may be its
    group's); by default the stage's own name.
    """
    names = {"num_cpus": "CPU", "num_gpus": "GPU"}
    for stage, request in options.items():
        config_key = (resource_keys or {}).get(stage, stage)
        for key, resource in names.items():
            wanted = request.get(key, 0)
            have = available.get(resource, 0)
            if wanted > have:
                message = (
                    f"orchestration.resources.{config_key}.{key}: stage {stage!r} asks for {wanted:g} "
                    f"{resource}(s) but the Ray cluster has {have:g}"
                )
                if local:
                    raise OrchestrationConfigError(message)
                log(f"WARNING: {message}; it waits until a node with enough {resource}s joins")


@flow(name="medrepro-stages", log_prints=True)
def run_stages(
    requests: list[StageRequest],
    remote_options: dict[str, dict[str, float]],
    retries: int,
    retry_delay_seconds: float,
    local_ray: bool,
    resource_keys: dict[str, str] | None = None,
) -> dict[str, StageOutcome]:
    """Submit one task per stage (requests in topological order), each after its upstream."""
    import ray
    from prefect_ray.context import remote_options as ray_remote_options

    logger = get_run_logger()
    check_resources_feasible(remote_options, ray.cluster_resources(), local_ray, logger.warning, resource_keys)
    delays = exponential_backoff(retry_delay_seconds) if retry_delay_seconds > 0 else 0
    futures: dict[str, Any] = {}
    for request in requests:
        upstream = [futures[name] for name in request.upstream]
        stage_task = run_stage_task.with_options(
            name=request.stage, task_run_name=request.stage, retries=retries, retry_delay_seconds=delays
        )
        with ray_remote_options(**remote_options[request.stage]):
            # upstream futures as an argument: Ray schedules the task only once they resolve,
            # so a waiting stage holds no CPU/GPU; wait_for gives Prefect the dependency.
            futures[request.stage] = stage_task.submit(request, upstream, wait_for=upstream)
    for future in futures.values():
        future.wait()
    failures = []
    not_run = []
    outcomes: dict[str, StageOutcome] = {}
    for stage, future in futures.items():
        state = future.state
        if state.is_completed():
            outcomes[stage] = future.result()
        elif state.is_failed() or state.is_crashed():
            error = future.result(raise_on_failure=False)
            failures.append(f"{stage}: {error}")
        else:
            not_run.append(stage)
    if failures:
        message = f"{len(failures)} stage(s) failed:\n" + "\n".join(failures)
        if not_run:
            message += f"\nnot run because an upstream stage failed: {', '.join(not_run)}"
        raise PipelineFailedError(message, outcomes)
    return outcomes


def _current_api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    configured = PREFECT_API_URL.value()
    if configured:
        return configured
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:  # the ephemeral server this process started
        return str(client.api_url)


def _worker_env(uri: str) -> dict[str, str]:
    env = {key: os.environ[key] for key in WORKER_ENV_KEYS if os.environ.get(key)}
    env["PREFECT_API_URL"] = _current_api_url()
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(forwarded_tracking_env(uri))
    return env


def plan_requests(
    graph: nx.DiGraph,
    repo_root: Path,
    config: OrchestrationConfig,
    force: bool,
    remote: str | None,
    stage_env: Mapping[str, dict[str, str]],
    commit: str | None,
) -> list[StageRequest]:
    """One StageRequest per stage of `graph`, in a deterministic topological order."""
    requests = []
    for stage in nx.lexicographical_topological_sort(graph):
        requests.append(
            StageRequest(
                stage=stage,
                repo_root=str(repo_root),
                upstream=tuple(sorted(graph.predecessors(stage))),
                force=force,
                env=stage_env[stage],
                lock_retries=config.lock_retries,
                remote=remote,
                git_commit=commit if remote else None,
                lock_entry=read_lock_entry(repo_root, stage) if remote else None,
            )
        )
    return requests


@flow(name="medrepro-pipeline")
def pipeline(
    repo_root: str,
    study: str | None = None,
    ray_address: str | None = None,
    force: bool = False,
    remote: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Run the DVC pipeline (or one study and its upstream stages) as Prefect tasks on Ray.

    Holds the repository's flow lock throughout, opens one MLflow parent run per study and ends
    it FINISHED or FAILED. `remote` (default: orchestration.remote) switches to multi-node mode:
    workers pull inputs from / push outputs to that DVC remote, and the driver merges their
    dvc.lock entries and pulls the outputs at the end.
    Returns {stage: {ran, seconds, host, resources}}.
    """
    from prefect.context import FlowRunContext

    logger = get_run_logger()
    root = Path(repo_root).resolve()
    config = load_orchestration_config(root)
    full_graph = full_stage_graph(root)
    config.check_names(full_graph.nodes, studies(full_graph))
    graph = full_graph if study is None else select_study(full_graph, study)
    remote = remote or config.remote
    if graph.number_of_nodes() == 0:
        logger.info("No stages in %s", root)
        return {}
    if remote:
        check_remote(root, remote)

    with flow_lock(root, config.flow_lock_timeout_seconds) as lock_path:
        logger.info("Holding %s; %d stage(s): %s", lock_path, graph.number_of_nodes(), ", ".join(sorted(graph)))
        commit = head_commit(root) if remote else None
        if remote:
            push_driver_outputs(root, remote, graph, config.lock_retries, logger.info)
        uri = tracking_uri(root)
        flow_run = FlowRunContext.get().flow_run
        touched = sorted({s for node in graph if (s := study_of(node)) is not None})
        parent_runs = open_parent_runs(touched, root, uri, flow_run.name, str(flow_run.id))
        logger.info("MLflow parent runs at %s: %s", redact_uri(uri), parent_runs)
        stage_env = {}
        for stage in graph:
            env = {FLOW_RUN_ENV: str(flow_run.id), **forwarded_tracking_env(uri)}
            if (parent := parent_runs.get(study_of(stage) or "")) is not None:
                env[PARENT_RUN_ENV] = parent
            stage_env[stage] = env
        requests = plan_requests(graph, root, config, force, remote, stage_env, commit)
        succeeded = False
        outcomes: dict[str, StageOutcome] = {}
        try:
            try:
                outcomes = run_stages.with_options(task_runner=make_task_runner(ray_address, _worker_env(uri)))(
                    requests=requests,
                    remote_options={stage: config.remote_options_for(stage) for stage in graph},
                    retries=config.retries,
                    retry_delay_seconds=config.retry_delay_seconds,
                    local_ray=ray_address is None,
                    resource_keys={stage: key for stage in graph if (key := config.resources_key(stage)) is not None},
                )
            except PipelineFailedError as failure:
                if remote:  # keep what the workers did finish, so a rerun does not redo it
                    merge_worker_entries(root, failure.completed)
                raise
            if remote:
                changed = merge_worker_entries(root, outcomes)
                logger.info("Merged workers' dvc.lock entries for: %s", ", ".join(changed) or "none")
                pull_driver_outputs(root, remote, graph, config.lock_retries, logger.info)
            succeeded = True
        finally:
            close_parent_runs(parent_runs, uri, succeeded,
                              {s for stage, o in outcomes.items() if o.ran and (s := study_of(stage)) is not None})
    return {
        stage: {"ran": o.ran, "seconds": round(o.seconds, 3), "host": o.host, "resources": o.resources}
        for stage, o in outcomes.items()
    }
