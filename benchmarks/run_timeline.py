"""Wall time per stage and per study of a `make run` (or `dvc repro`), DVC's bookkeeping included.

`make run` prints each stage's time inside its MLflow run; what a user waits for also holds the
stage's process start and imports and DVC's hashing and lock writes. This reads the run's output
on stdin, stamps each line, and charges the time from one ``Running stage '<name>':`` line to the
next (or to the end of ``dvc repro``) to that stage, so the per-study sums are the studies'
shares of the whole run's wall time.

    make run 2>&1 | python benchmarks/run_timeline.py [--write-results]
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "RESULTS.md"
STAGE_LINE = re.compile(r"^Running stage '([^']+)':")
END_OF_REPRO = re.compile(r"^(Reproduction scorecard|Updating lock file|To track the changes|Use `dvc push`)")


def stage_walls(stamped: list[tuple[float, str]]) -> dict[str, float]:
    """Seconds from each stage's start line to the next stage's (the last one ends at the scorecard)."""
    starts = [(t, m.group(1)) for t, line in stamped if (m := STAGE_LINE.match(line))]
    if not starts:
        return {}
    ends = [t for t, line in stamped if END_OF_REPRO.match(line) and t >= starts[-1][0]]
    final = ends[0] if ends else stamped[-1][0]
    bounds = [t for t, _ in starts[1:]] + [final]
    return {name: end - start for (start, name), end in zip(starts, bounds, strict=True)}


def study_of(stage: str) -> str:
    return stage.split("-", 1)[0]


def table(walls: dict[str, float], total: float) -> str:
    per_study: dict[str, list[float]] = defaultdict(list)
    for stage, seconds in walls.items():
        per_study[study_of(stage)].append(seconds)
    rows = [f"| {study} | {len(times)} | {sum(times):.0f} |" for study, times in sorted(per_study.items())]
    return "\n".join(["| study | stages | wall seconds (DVC and start-up included) |", "|---|---|---|", *rows,
                      f"| all | {len(walls)} | {sum(walls.values()):.0f} of {total:.0f} s in all |"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-results", action="store_true", help="append the table to benchmarks/RESULTS.md")
    arguments = parser.parse_args()
    started = time.monotonic()
    stamped = []
    for line in sys.stdin:
        now = time.monotonic() - started
        stamped.append((now, line.rstrip("\n")))
        sys.stdout.write(f"[{now:7.1f}s] {line}")
        sys.stdout.flush()
    total = time.monotonic() - started
    result = table(stage_walls(stamped), total)
    print("\n" + result)
    if arguments.write_results:
        with RESULTS.open("a") as handle:
            handle.write(f"\n## Wall time per study of one run ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
                         f"{os.cpu_count()} CPUs)\n\n- command: `make run 2>&1 | python benchmarks/run_timeline.py "
                         f"--write-results`\n\n{result}\n")


if __name__ == "__main__":
    main()
