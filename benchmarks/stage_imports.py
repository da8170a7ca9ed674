"""Import cost of every stage module: what each ``python -m stages.<study>.<step>`` pays before its step runs.

Every stage is its own process, so a module-level import the step does not need (torch, MONAI,
Great Expectations, matplotlib, ...) costs every run of that stage its import time. For each
stage module named by a ``cmd`` in ``dvc.yaml``, this measures the median wall time of a fresh
``python -c "import stages.<study>.<step>"`` (``--repeats`` runs; the same process then prints
which of the heavy packages below ended up in ``sys.modules``, which adds microseconds), next to
``python -c pass`` and ``import stages.common.stage`` for reference.

    python benchmarks/stage_imports.py [--repeats 3] [--study cmr_recon] [--save now.json]
        [--before then.json] [--write-results]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "RESULTS.md"
HEAVY_PACKAGES = ("torch", "monai", "great_expectations", "matplotlib", "transformers", "sklearn", "scipy",
                  "pandas", "mlflow", "sigpy", "trimesh", "torch_geometric", "wfdb", "pydicom")
REFERENCES = {"(python -c pass)": "pass", "(stages.common.stage)": "import stages.common.stage"}


def stage_modules(dvc_yaml: Path = REPO_ROOT / "dvc.yaml") -> list[str]:
    """The ``stages.<study>.<step>`` modules the pipeline runs, in dvc.yaml order, each once."""
    modules: list[str] = []
    for entry in yaml.safe_load(dvc_yaml.read_text())["stages"].values():
        words = (entry.get("do", entry)["cmd"]).split()
        if words[:2] == ["python", "-m"] and words[2].startswith("stages.") and words[2] not in modules:
            modules.append(words[2])
    return modules


def heavy_imports_code(statement: str) -> str:
    probe = ("import sys as _s, json as _j; "
             f"print(_j.dumps(sorted(p for p in {list(HEAVY_PACKAGES)!r} if p in _s.modules)))")
    return f"{statement}\n{probe}"


def measure(statement: str, repeats: int) -> tuple[float, list[str]]:
    """Median seconds of a fresh interpreter running ``statement``, and the heavy packages it loaded."""
    seconds, loaded = [], []
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for _ in range(repeats):
        started = time.perf_counter()
        completed = subprocess.run([sys.executable, "-c", heavy_imports_code(statement)], cwd=REPO_ROOT,
                                   env=env, capture_output=True, text=True)
        seconds.append(time.perf_counter() - started)
        if completed.returncode != 0:
            raise RuntimeError(f"{statement!r} failed:\n{completed.stderr}")
        loaded = json.loads(completed.stdout.strip().splitlines()[-1])
    return statistics.median(seconds), loaded


def measure_all(repeats: int, study: str | None = None) -> dict[str, tuple[float, list[str]]]:
    timings = {name: measure(statement, repeats) for name, statement in REFERENCES.items()}
    for module in stage_modules():
        if study is None or module.split(".")[1] == study:
            timings[module] = measure(f"import {module}", repeats)
            print(f"{module}: {timings[module][0]:.2f} s", file=sys.stderr, flush=True)
    return timings


Timings = dict[str, tuple[float, list[str]]]


def stage_total(timings: Timings) -> float:
    return sum(seconds for name, (seconds, _) in timings.items() if name not in REFERENCES)


def table(timings: Timings, before: Timings | None = None) -> str:
    """One row a module; with ``before`` (an earlier run's ``--save`` file) its numbers side by side."""
    if before is None:
        rows = [f"| {name} | {seconds:.2f} | {', '.join(loaded) or '-'} |" for name, (seconds, loaded) in timings.items()]
        return "\n".join(["| module | import s (median) | heavy packages loaded |", "|---|---|---|", *rows,
                          f"| **sum over stage modules** | **{stage_total(timings):.1f}** | |"])
    rows = []
    for name, (seconds, loaded) in timings.items():
        old_seconds, old_loaded = before.get(name, (float("nan"), []))
        dropped = ", ".join(p for p in old_loaded if p not in loaded) or "-"
        rows.append(f"| {name} | {old_seconds:.2f} | {seconds:.2f} | {', '.join(loaded) or '-'} | {dropped} |")
    return "\n".join(["| module | before s | after s | heavy packages loaded after | no longer loaded |",
                      "|---|---|---|---|---|", *rows,
                      f"| **sum over stage modules** | **{stage_total(before):.1f}** | **{stage_total(timings):.1f}** | | |"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--study", help="only this study's stage modules")
    parser.add_argument("--label", default="", help="a word for the RESULTS.md heading, e.g. 'before'")
    parser.add_argument("--save", type=Path, help="write the timings as JSON here")
    parser.add_argument("--before", type=Path, help="an earlier --save file to compare against")
    parser.add_argument("--write-results", action="store_true", help="append the table to benchmarks/RESULTS.md")
    arguments = parser.parse_args()
    timings = measure_all(arguments.repeats, arguments.study)
    if arguments.save:
        arguments.save.write_text(json.dumps(timings, indent=1) + "\n")
    before = {name: (seconds, loaded) for name, (seconds, loaded) in json.loads(arguments.before.read_text()).items()} \
        if arguments.before else None
    rendered = table(timings, before)
    print(rendered)
    if arguments.write_results:
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
        label = f" ({arguments.label})" if arguments.label else ""
        with RESULTS.open("a") as handle:
            handle.write(f"\n## Stage module imports{label}\n\n"
                         f"- command: `python benchmarks/stage_imports.py --repeats {arguments.repeats} --write-results`\n"
                         f"- {os.cpu_count()} CPUs shared with other jobs, load average at the end {load}\n\n"
                         f"{rendered}\n")


if __name__ == "__main__":
    main()
