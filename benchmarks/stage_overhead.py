"""Fixed cost of a stage that does nothing: process start, imports, params, MLflow run, DVC bookkeeping.

A toy project (its own git repo, DVC repo and SQLite MLflow store, like the real one) holds one
stage whose step returns at once. Measured, median of ``--repeats`` runs:

- ``python_start``: ``python -c pass``;
- ``import_common``: ``python -c 'import stages.common.stage'``;
- ``stage_direct``: the no-op step run as its own process (imports, params check, MLflow run);
- ``dvc_repro_stage``: ``dvc repro --force`` of that one stage (the above plus DVC's hashing, lock
  and cache bookkeeping) - the fixed cost every stage of ``make run`` pays;
- ``dvc_bookkeeping``: the difference of the last two.

``--real <stage>`` also times one stage of this project (``dvc repro --force -s <stage>`` against
the stage's module run directly): DVC's bookkeeping there grows with the size of ``dvc.lock``
and ``params.yaml`` (68 stages), which the one-stage toy project does not show.

Goal (issue "Platform as DVC, Prefect and MLflow users expect it", item 10): under 3 s on 2 cores.

    python benchmarks/stage_overhead.py [--repeats 5] [--real nova-report] [--write-results]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "RESULTS.md"
GOAL_SECONDS = 3.0

NOOP_STEP = textwrap.dedent("""
    from stages.common.params import StrictModel
    from stages.common.stage import StageContext, run_stage


    class NoopParams(StrictModel):
        factor: int


    def noop(ctx: StageContext[NoopParams]):
        return {"factor": float(ctx.params.factor)}


    run_stage(noop, names=("toy", "noop"))
""")


def _timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stdout}\n{completed.stderr}")
    return seconds


def build_toy_project(root: Path) -> None:
    (root / "dvc.yaml").write_text(textwrap.dedent("""
        stages:
          toy-noop:
            cmd: python noop.py
            deps: [noop.py]
            params: [common.seed, toy.noop]
    """))
    (root / "params.yaml").write_text("common: {scale: smoke, seed: 0, on_bad_input: fatal, device: cpu, max_input_bytes: 4294967296}\n"
                                      "toy:\n  noop: {factor: 3}\n")
    (root / "noop.py").write_text(NOOP_STEP)
    for command in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"],
                    [sys.executable, "-m", "dvc", "config", "core.analytics", "false"]):
        subprocess.run(command, cwd=root, check=True, capture_output=True)


def measure(repeats: int) -> dict[str, float]:
    # the background MLflow flusher may still be writing when the folder goes
    with tempfile.TemporaryDirectory(prefix="stage-overhead-", ignore_cleanup_errors=True) as folder:
        root = Path(folder)
        build_toy_project(root)
        bin_dir = str(Path(sys.executable).parent)
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               "PYTHONPATH": str(REPO_ROOT), "DVC_ROOT": str(root),
               "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"}
        (root / "mlruns").mkdir()
        commands = {
            "python_start": [sys.executable, "-c", "pass"],
            "import_common": [sys.executable, "-c", "import stages.common.stage"],
            "stage_direct": [sys.executable, "noop.py"],
            "dvc_repro_stage": [sys.executable, "-m", "dvc", "repro", "--force", "toy-noop"],
        }
        _timed(commands["stage_direct"], root, env)  # creates the MLflow store and experiment once
        timings = {name: statistics.median(_timed(command, root, env) for _ in range(repeats))
                   for name, command in commands.items()}
    timings["dvc_bookkeeping"] = timings["dvc_repro_stage"] - timings["stage_direct"]
    return timings


def measure_real(stage: str, repeats: int) -> dict[str, float]:
    """The same split for one stage of this project (its outputs are rewritten, byte-identical)."""
    import yaml

    command = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"][stage]["cmd"].split()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_ROOT": str(REPO_ROOT)}
    direct = statistics.median(_timed([sys.executable, *command[1:]], REPO_ROOT, env) for _ in range(repeats))
    repro = statistics.median(_timed([sys.executable, "-m", "dvc", "repro", "--force", "-s", stage], REPO_ROOT, env)
                              for _ in range(repeats))
    return {f"{stage}_direct": direct, f"{stage}_dvc_repro": repro, f"{stage}_dvc_bookkeeping": repro - direct}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--real", metavar="STAGE", help="also time this stage of the project itself")
    parser.add_argument("--write-results", action="store_true", help="append the table to benchmarks/RESULTS.md")
    arguments = parser.parse_args()
    timings = measure(arguments.repeats)
    if arguments.real:
        timings.update(measure_real(arguments.real, arguments.repeats))
    rows = [f"| {name} | {seconds:.2f} |" for name, seconds in timings.items()]
    verdict = "met" if timings["dvc_repro_stage"] < GOAL_SECONDS else "not met"
    table = "\n".join(["| step | seconds (median) |", "|---|---|", *rows])
    print(table)
    print(f"goal: a no-op stage under dvc repro < {GOAL_SECONDS:.0f} s: {verdict}")
    if arguments.write_results:
        with RESULTS.open("a") as handle:
            handle.write(f"\n## Fixed cost of a no-op stage ({os.cpu_count()} CPUs)\n\n"
                         f"- command: `python benchmarks/stage_overhead.py --repeats {arguments.repeats}"
                         f"{' --real ' + arguments.real if arguments.real else ''} --write-results`\n\n"
                         f"{table}\n\ngoal (< {GOAL_SECONDS:.0f} s): {verdict}\n")


if __name__ == "__main__":
    main()
