"""Overhead of the Prefect + Ray flow over plain `dvc repro`, and whether branches overlap.

Toy DAG (default): `--branches` independent chains of `--depth` stages that each sleep
`--stage-seconds` (2 x 2 x 5 s). Measured: Prefect server start, Ray init, MLflow store creation
(one-off), `dvc repro` (all stages run), a no-op `dvc repro`, the flow on a fresh copy, and a no-op
flow (= the flow's fixed start-up: flow bookkeeping, Ray init, worker start, one
`dvc repro --single-item` check per stage).

Goals: flow <= 1.2 x dvc repro + fixed start-up; flow wall minus start-up < sum of stage times
(branches overlap); no-op `dvc repro` of the whole DAG < 5 s.

    python benchmarks/flow_overhead.py [--stage-seconds 5] [--write-results]
    python benchmarks/flow_overhead.py --real [--force] [--write-results]   # the project's own DAG

`--real` works on the repository itself: `dvc repro` (whatever is out of date runs), a no-op
`dvc repro`, a no-op flow; with `--force` also `dvc repro --force` and the flow with force=True,
which rerun every stage (minutes on the smoke scale).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "RESULTS.md"

SLEEP_STAGE = textwrap.dedent(
    """
    import sys, time
    name, seconds, out, *inputs = sys.argv[1:]
    time.sleep(float(seconds))
    parts = [open(path).read().strip() for path in inputs]
    with open(out, "w") as f:
        f.write(name + "(" + ",".join(parts) + ")\\n")
    """
)


def _run(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed in {cwd}:\n{completed.stdout}\n{completed.stderr}")
    return seconds


def _dvc(cwd: Path, *args: str) -> float:
    return _run([sys.executable, "-m", "dvc", *args], cwd)


def make_sleep_repo(path: Path, branches: int, depth: int, seconds: float) -> Path:
    """A git + DVC repo of `branches` independent chains of `depth` sleep stages."""
    import yaml

    path.mkdir(parents=True)
    _run(["git", "init", "-q"], path)
    _dvc(path, "init", "-q")
    _dvc(path, "config", "core.analytics", "false")
    (path / ".dvcignore").write_text("__pycache__/\n*.pyc\n")
    (path / "sleep_stage.py").write_text(SLEEP_STAGE)
    (path / "out").mkdir()
    stages: dict[str, Any] = {}
    for branch in range(branches):
        previous: str | None = None
        for step in range(depth):
            name = f"bench-b{branch}s{step}"
            out = f"out/{name}.txt"
            inputs = [previous] if previous else []
            stages[name] = {
                "cmd": " ".join(["python", "sleep_stage.py", name, str(seconds), out, *inputs]),
                "deps": ["sleep_stage.py", *inputs],
                "outs": [out],
            }
            previous = out
    (path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    (path / "params.yaml").write_text(yaml.safe_dump({"orchestration": {"retries": 0}}))
    _run(["git", "add", "-A"], path)
    _run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-qm", "bench"], path)
    return path


def _machine() -> str:
    import psutil

    memory_gb = psutil.virtual_memory().total / 2**30
    gpu = "GPU present" if shutil.which("nvidia-smi") else "no GPU"
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"{os.cpu_count()}-core CPU, {memory_gb:.0f} GB, {gpu} ({platform.platform()}); load average {load}"


def _time_ray_init() -> float:
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
    seconds = time.perf_counter() - started
    ray.shutdown()
    return seconds


def _time_mlflow_store(repo: Path) -> float:
    """Create the MLflow store and experiment once (a one-off cost the flow would otherwise include)."""
    from flows.tracking import close_parent_runs, open_parent_runs
    from stages.common.tracking import tracking_uri

    started = time.perf_counter()
    uri = tracking_uri(repo)
    close_parent_runs(open_parent_runs(["bench"], repo, uri, "warm-up", "warm-up"), uri, succeeded=True)
    return time.perf_counter() - started


def _time_flow(repo: Path, force: bool = False) -> tuple[float, dict[str, Any]]:
    from flows.run import pipeline

    started = time.perf_counter()
    summary = pipeline(str(repo), force=force)
    return time.perf_counter() - started, summary


def benchmark_toy(branches: int, depth: int, seconds: float, log_dir: Path) -> dict[str, Any]:
    """Time dvc repro and the flow on fresh copies of the sleep DAG."""
    print("building the toy repository ...", flush=True)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.servers import drain_prefect_queues, start_prefect_server

    work = Path(tempfile.mkdtemp(prefix="medrepro-flow-bench-"))
    template = make_sleep_repo(work / "template", branches, depth, seconds)
    dvc_copy = Path(shutil.copytree(template, work / "dvc", symlinks=True))
    flow_copy = Path(shutil.copytree(template, work / "flow", symlinks=True))
    results: dict[str, Any] = {"stages": branches * depth, "stage_seconds": seconds}
    results["stage_sum"] = branches * depth * seconds
    results["critical_path"] = depth * seconds

    print("dvc repro (all stages run) ...", flush=True)
    results["dvc_full"] = _dvc(dvc_copy, "repro")
    results["dvc_noop"] = _dvc(dvc_copy, "repro")

    print("Prefect server start ...", flush=True)
    started = time.perf_counter()
    server = start_prefect_server(log_dir)
    results["prefect_server_start"] = time.perf_counter() - started
    try:
        with temporary_settings(updates={PREFECT_API_URL: f"{server.url}/api"}):
            print("Ray init ...", flush=True)
            results["ray_init"] = _time_ray_init()
            os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
            results["mlflow_db_create"] = _time_mlflow_store(flow_copy)
            print("flow (all stages run) ...", flush=True)
            results["flow_full"], summary = _time_flow(flow_copy)
            print("flow (no-op) ...", flush=True)
            results["flow_noop"], _ = _time_flow(flow_copy)
            drain_prefect_queues()
    finally:
        server.stop()
    task_seconds = [outcome["seconds"] for outcome in summary.values()]
    results["task_overhead_mean"] = sum(task_seconds) / len(task_seconds) - seconds
    results["dvc_overhead_per_stage"] = (results["dvc_full"] - results["stage_sum"]) / results["stages"]
    results["flow_work"] = results["flow_full"] - results["flow_noop"]
    results["goal_overhead_ok"] = results["flow_full"] <= 1.2 * results["dvc_full"] + results["flow_noop"]
    results["goal_overlap_ok"] = results["flow_work"] < results["stage_sum"]
    results["goal_noop_ok"] = results["dvc_noop"] < 5.0
    shutil.rmtree(work, ignore_errors=True)
    return results


def benchmark_real(repo: Path, force: bool, log_dir: Path) -> dict[str, Any]:
    """Time dvc repro and the flow on the project's own DAG."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.graph import stage_graph
    from flows.servers import drain_prefect_queues, start_prefect_server

    results: dict[str, Any] = {"stages": stage_graph(repo).number_of_nodes()}
    print("dvc repro (brings the pipeline up to date) ...", flush=True)
    results["dvc_first"] = _dvc(repo, "repro")
    results["dvc_noop"] = _dvc(repo, "repro")
    if force:
        print("dvc repro --force ...", flush=True)
        results["dvc_full"] = _dvc(repo, "repro", "--force")
    started = time.perf_counter()
    server = start_prefect_server(log_dir)
    results["prefect_server_start"] = time.perf_counter() - started
    try:
        with temporary_settings(updates={PREFECT_API_URL: f"{server.url}/api"}):
            results["ray_init"] = _time_ray_init()
            print("flow (no-op) ...", flush=True)
            results["flow_noop"], _ = _time_flow(repo)
            if force:
                print("flow (force: every stage reruns) ...", flush=True)
                results["flow_full"], _ = _time_flow(repo, force=True)
                results["goal_overhead_ok"] = results["flow_full"] <= 1.2 * results["dvc_full"] + results["flow_noop"]
            drain_prefect_queues()
    finally:
        server.stop()
    results["goal_noop_ok"] = results["dvc_noop"] < 5.0
    return results


def _format(results: dict[str, Any]) -> str:
    lines = []
    for key, value in results.items():
        lines.append(f"| {key} | {value:.2f} |" if isinstance(value, float) else f"| {key} | {value} |")
    return "| measure | value (s unless a count or flag) |\n|---|---|\n" + "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage-seconds", type=float, default=5.0)
    parser.add_argument("--branches", type=int, default=2)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--real", action="store_true", help="benchmark the project's own DAG instead of the toy")
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="repository for --real")
    parser.add_argument("--force", action="store_true", help="with --real: also rerun every stage both ways")
    parser.add_argument("--write-results", action="store_true", help=f"append a section to {RESULTS}")
    args = parser.parse_args()

    scratch: list[Path] = []
    if not args.real and "PREFECT_HOME" not in os.environ:
        scratch.append(Path(tempfile.mkdtemp(prefix="medrepro-bench-prefect-")))
        os.environ["PREFECT_HOME"] = str(scratch[-1])
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.pop("PREFECT_API_URL", None)
    log_dir = Path(tempfile.mkdtemp(prefix="medrepro-bench-logs-"))
    scratch.append(log_dir)  # kept if the benchmark fails, for the server logs

    if args.real:
        results = benchmark_real(args.repo.resolve(), args.force, log_dir)
        title = f"real DAG at {args.repo.resolve()}" + (" (with --force)" if args.force else "")
    else:
        results = benchmark_toy(args.branches, args.depth, args.stage_seconds, log_dir)
        title = f"toy DAG, {args.branches} branches x {args.depth} stages x {args.stage_seconds:g} s sleep"
    command = "python " + " ".join([str(Path(sys.argv[0])), *sys.argv[1:]])
    table = _format(results)
    print(table)
    if args.write_results:
        section = (
            f"\n## Flow overhead: {title}\n\n"
            f"- date: {datetime.now(UTC).strftime('%a %b %d %H:%M:%S UTC %Y')}\n"
            f"- machine: {_machine()}\n"
            f"- command: `{command}`\n\n{table}\n"
        )
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(RESULTS, "a") as handle:
            handle.write(section)
        print(f"appended to {RESULTS}")
    for path in scratch:
        shutil.rmtree(path, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
