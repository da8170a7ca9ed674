"""Command line: `python -m flows {run,serve,ui,graph}`; see `python -m flows -h`."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from flows.config import OrchestrationConfigError, load_orchestration_config
from flows.graph import UnknownStudyError, format_graph, full_stage_graph, select_study, studies

EXIT_USAGE = 2
EXIT_FAILED = 1


def _log_dir(root: Path) -> Path:
    return root / ".dvc" / "tmp" / "medrepro-logs"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flows", description=__doc__)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--repo", type=Path, default=Path.cwd(), help="repository root (default: current directory)")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", parents=[common], help="run the DVC pipeline as a Prefect flow on Ray")
    run.add_argument("--study", help="run one study (and the upstream stages it needs)")
    run.add_argument("--ray-address", help="join this Ray cluster instead of starting Ray locally")
    run.add_argument("--remote", help="DVC remote for workers without the shared disk (default: orchestration.remote)")
    run.add_argument("--force", action="store_true", help="rerun stages even if DVC finds them unchanged")

    serve = commands.add_parser(
        "serve", parents=[common], help="serve one scheduled deployment per study to a Prefect server"
    )
    serve.add_argument("--limit", type=int, default=1, help="flow runs at once (default 1)")

    ui = commands.add_parser("ui", parents=[common], help="start the Prefect and MLflow UIs on 127.0.0.1 until Ctrl-C")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--prefect-port", type=int, default=4200)
    ui.add_argument("--mlflow-port", type=int, default=5000)

    graph = commands.add_parser("graph", parents=[common], help="print the stage graph read from DVC")
    graph.add_argument("--study", help="only this study and its upstream stages")
    return parser


def _validated_root(repo: Path, study: str | None) -> Path:
    """Check the repository, config and study up front so mistakes cost one line, not a flow."""
    root = repo.resolve()
    graph = full_stage_graph(root)
    config = load_orchestration_config(root)
    config.check_names(graph.nodes, studies(graph))
    if study is not None:
        select_study(graph, study)
    return root


def _command_run(args: argparse.Namespace) -> int:
    from flows.locking import FlowLockedError, flow_lock
    from flows.run import PipelineFailedError, load_orchestration_config, pipeline
    from flows.servers import ServerStartError, prefect_api
    from stages.common.check_params import check as check_params
    from stages.common.check_params import print_problems

    root = _validated_root(args.repo, args.study)
    problems = check_params(root)
    if problems:  # DVC would delete the outputs of a stage before the stage finds its bad params
        print_problems(problems)
        return EXIT_FAILED
    try:
        # The lock first: a second run waits here instead of racing the first's server start.
        with flow_lock(root, load_orchestration_config(root).flow_lock_timeout_seconds), prefect_api(_log_dir(root)):
            summary = pipeline(
                repo_root=str(root),
                study=args.study,
                ray_address=args.ray_address,
                force=args.force,
                remote=args.remote,
            )
    except (PipelineFailedError, FlowLockedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ServerStartError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_FAILED
    for stage, outcome in summary.items():
        status = "ran" if outcome["ran"] else "up to date"
        print(f"{stage}: {status} ({outcome['seconds']:.1f} s on {outcome['host']})")
    return 0


def _command_serve(args: argparse.Namespace) -> int:
    from flows.serve import serve
    from flows.servers import prefect_api

    root = _validated_root(args.repo, None)
    with prefect_api(_log_dir(root)) as api_url:
        print(f"Prefect UI: {api_url.removesuffix('/api')}  (deployments: medrepro-pipeline/<study>)", flush=True)
        serve(root, limit=args.limit)
    return 0


def _command_ui(args: argparse.Namespace) -> int:
    from flows.servers import UI_SERVERS_FILE, free_port, start_mlflow_ui, start_prefect_server, write_ui_servers
    from stages.common.tracking import artifact_location, flush_runs, redact_uri, tracking_uri

    root = args.repo.resolve()
    uri = tracking_uri(root)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    flush_runs(root)
    servers = []
    try:
        prefect_port = args.prefect_port if _port_free(args.host, args.prefect_port) else free_port(args.host)
        servers.append(start_prefect_server(_log_dir(root), host=args.host, port=prefect_port))
        mlflow_port = args.mlflow_port if _port_free(args.host, args.mlflow_port) else free_port(args.host)
        servers.append(start_mlflow_ui(uri, artifact_location(root), _log_dir(root), host=args.host, port=mlflow_port))
        write_ui_servers(_log_dir(root), f"{servers[0].url}/api", servers[1].url)
        print(f"Prefect UI: {servers[0].url}")
        print(f"MLflow UI:  {servers[1].url}  (tracking URI {redact_uri(uri)})")
        print("Press Ctrl-C to stop both.", flush=True)
        while all(server.process.poll() is None for server in servers):
            time.sleep(1)
        stopped = [server.name for server in servers if server.process.poll() is not None]
        print(f"error: {', '.join(stopped)} exited; see {_log_dir(root)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 0
    finally:
        (_log_dir(root) / UI_SERVERS_FILE).unlink(missing_ok=True)
        for server in reversed(servers):
            server.stop()


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _command_graph(args: argparse.Namespace) -> int:
    graph = full_stage_graph(args.repo.resolve())
    if args.study is not None:
        graph = select_study(graph, args.study)
    print(format_graph(graph))
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m flows`; returns the exit code."""
    from dvc.exceptions import DvcException

    args = _parser().parse_args(argv)
    # SIGTERM (a service manager, `kill`) unwinds like Ctrl-C, so the servers this process
    # started in their own process groups are stopped instead of left running
    signal.signal(signal.SIGTERM, _interrupt)
    commands = {"run": _command_run, "serve": _command_serve, "ui": _command_ui, "graph": _command_graph}
    try:
        return commands[args.command](args)
    except (UnknownStudyError, OrchestrationConfigError, FileNotFoundError, DvcException) as exc:
        message = " ".join(str(exc).split())
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
