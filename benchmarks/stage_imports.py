"""Import cost of every stage module: what each ``python -m stages.<study>.<step>`` pays before its step runs.

Every stage is its own process, so a module-level import the step does not need (torch, MONAI,
Great Expectations, matplotlib, ...) costs every run of that stage its import time. For each
stage module named by a ``cmd`` in ``dvc.yaml``, this measures the median wall time of a fresh
``python -c "import stages.<study>.<step>"`` (``--repeats`` runs; the same process then prints
which of the heavy packages below ended up in ``sys.modules``, which adds microseconds), next to
``python -c pass`` and ``import stages.common.stage`` for reference.

    python benchmarks/stage_imports.py [--repeats 3] [--study cmr_recon] [--baseline-tree /tmp/base]
        [--save timings.json] [--write-results]
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
Timings = dict[str, tuple[float, list[str]]]
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


def _run_once(statement: str, root: Path) -> tuple[float, list[str]]:
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-c", heavy_imports_code(statement)], cwd=root,
                               env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{statement!r} in {root} failed:\n{completed.stderr}")
    return seconds, json.loads(completed.stdout.strip().splitlines()[-1])


def measure(statement: str, repeats: int, roots: list[Path]) -> list[tuple[float, list[str]]]:
    """For each project root, the median seconds of a fresh interpreter running ``statement`` there
    and the heavy packages it loaded; the roots take turns, so a change of load hits them alike."""
    runs: list[list[tuple[float, list[str]]]] = [[] for _ in roots]
    for _ in range(repeats):
        for index, root in enumerate(roots):
            runs[index].append(_run_once(statement, root))
    return [(statistics.median(seconds for seconds, _ in root_runs), root_runs[-1][1]) for root_runs in runs]


def measure_all(repeats: int, study: str | None = None, baseline: Path | None = None) -> tuple[Timings, Timings | None]:
    """This checkout's timings, and with ``baseline`` (another checkout of the project) its timings too."""
    roots = [REPO_ROOT] if baseline is None else [REPO_ROOT, baseline]
    results: list[Timings] = [{} for _ in roots]
    statements = dict(REFERENCES)
    statements.update({m: f"import {m}" for m in stage_modules() if study is None or m.split(".")[1] == study})
    for name, statement in statements.items():
        for index, measured in enumerate(measure(statement, repeats, roots)):
            results[index][name] = measured
        print(f"{name}: " + " / ".join(f"{r[name][0]:.2f} s" for r in results), file=sys.stderr, flush=True)
    return results[0], (results[1] if baseline is not None else None)



def stage_total(timings: Timings) -> float:
    return sum(seconds for name, (seconds, _) in timings.items() if name not in REFERENCES)


def table(timings: Timings, before: Timings | None = None) -> str:
    """One row a module; with ``before`` (the baseline checkout's timings) both side by side."""
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
    parser.add_argument("--baseline-tree", type=Path,
                        help="another checkout of the project (e.g. `git worktree add /tmp/base <commit>`), measured "
                             "in turn with this one and shown as 'before'")
    parser.add_argument("--save", type=Path, help="write the timings (and the baseline's) as JSON here")
    parser.add_argument("--write-results", action="store_true", help="append the table to benchmarks/RESULTS.md")
    arguments = parser.parse_args()
    timings, before = measure_all(arguments.repeats, arguments.study, arguments.baseline_tree)
    if arguments.save:
        arguments.save.write_text(json.dumps({"after": timings, "before": before}, indent=1) + "\n")
    rendered = table(timings, before)
    print(rendered)
    if arguments.write_results:
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
        label = f" ({arguments.label})" if arguments.label else ""
        with RESULTS.open("a") as handle:
            baseline = " --baseline-tree <checkout>" if arguments.baseline_tree else ""
            handle.write(f"\n## Stage module imports{label}\n\n"
                         f"- command: `python benchmarks/stage_imports.py --repeats {arguments.repeats}{baseline} --write-results`\n"
                         f"- {os.cpu_count()} CPUs shared with other jobs, load average at the end {load}\n\n"
                         f"{rendered}\n")


if __name__ == "__main__":
    main()
