"""The end of `make run`: the reproduction scorecard of every study, `data/index.html`, and where things are.

The scorecard has one line per claim (study, claim, measured, holds) read from each study's
``data/<study>/metrics/claims.json``. A claim that does not hold is shown as such; a study
without a claims file says so. It is an honest account, not a test that must pass: the command
exits 0 either way, unless a claims file is malformed.
"""
from __future__ import annotations

import html
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stages.common.atomic import write_text
from stages.common.claims import CLAIMS_FILE, ClaimsError, ClaimsFile, read_claims
from stages.common.mlflow_spool import SpoolFlushError
from stages.common.paths import repo_root
from stages.common.pipeline import load_stages
from stages.common.tracking import flush_runs, redact_uri, tracking_uri

RUN_STARTED_ENV = "MEDREPRO_RUN_STARTED"  # seconds since the epoch; `make run` sets it before `dvc repro`

_FIRST_FIGURE = re.compile(r'<img alt="[^"]*" src="data:image/png;base64,[A-Za-z0-9+/=]+">')


@dataclass(frozen=True)
class StudyResult:
    study: str
    claims: ClaimsFile | None
    report: Path | None


def study_results(root: Path) -> list[StudyResult]:
    """Each study of dvc.yaml with its claims (None when not written yet) and its report page."""
    studies = sorted({spec.study for spec in load_stages(root).values()})
    results = []
    for study in studies:
        claims_path = root / "data" / study / CLAIMS_FILE
        claims = read_claims(claims_path, study) if claims_path.exists() else None
        page = root / "data" / study / "report" / "index.html"
        results.append(StudyResult(study, claims, page if page.exists() else None))
    return results


def measured_text(measured: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in measured.items())


def scorecard_lines(results: list[StudyResult]) -> list[str]:
    lines = []
    for result in results:
        if result.claims is None:
            lines.append(f"  {result.study:14s} (no claims file yet: data/{result.study}/{CLAIMS_FILE})")
            continue
        for claim in result.claims.claims:
            verdict = "HOLDS" if claim.holds else "DOES NOT HOLD"
            lines.append(f"  {result.study:14s} {verdict:13s} {claim.id}: {claim.claim}\n"
                         f"  {'':14s} {'':13s} measured: {measured_text(claim.measured)}")
    return lines


def index_page(results: list[StudyResult], root: Path) -> str:
    """``data/index.html``: the scorecard, each study's report linked, with the report's first figure."""
    rows, sections = [], []
    for result in results:
        link = f'<a href="{result.study}/report/index.html">{result.study}</a>' if result.report else html.escape(result.study)
        for claim in (result.claims.claims if result.claims else []):
            state = "holds" if claim.holds else "does not hold"
            colour = "#e6f4ea" if claim.holds else "#fde7e7"
            rows.append(f'<tr style="background:{colour}"><td>{link}</td><td>{html.escape(claim.claim)}'
                        f"<br><small>{html.escape(claim.source)}; {html.escape(claim.comparison)}</small></td>"
                        f"<td>{html.escape(measured_text(claim.measured))}</td><td>{state}</td></tr>")
        if result.claims is None:
            rows.append(f"<tr><td>{link}</td><td colspan=3><em>no claims file yet</em></td></tr>")
        figure = ""
        if result.report:
            match = _FIRST_FIGURE.search(result.report.read_text(encoding="utf-8"))
            figure = match.group(0).replace("<img ", '<img style="max-width:100%" ') if match else ""
        sections.append(f"<h2>{link}</h2>{figure or '<p><em>no report yet</em></p>'}")
    table = ("<table><thead><tr><th>study</th><th>claim</th><th>measured</th><th>verdict</th></tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table>")
    style = ("body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem;vertical-align:top}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>medrepro scorecard</title><style>{style}</style>"
            f"</head><body><h1>medrepro: reproduction scorecard</h1>{table}{''.join(sections)}</body></html>\n")


@dataclass(frozen=True)
class StageTiming:
    stage: str
    study: str
    seconds: float
    status: str


def stage_timings(root: Path, since_seconds: float) -> list[StageTiming]:
    """The stage runs MLflow recorded since ``since_seconds``: what this `make run` actually ran."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(root))
    client = mlflow.MlflowClient()
    studies = sorted({spec.study for spec in load_stages(root).values()})
    experiments = [e.experiment_id for e in (client.get_experiment_by_name(s) for s in studies) if e is not None]
    if not experiments:
        return []
    runs = client.search_runs(experiments, filter_string=f"attributes.start_time >= {int(since_seconds * 1000)}",
                              max_results=10_000)
    timings = []
    for run in runs:
        stage = run.data.tags.get("dvc.stage")
        if stage is None:
            continue
        end = run.info.end_time or run.info.start_time
        timings.append(StageTiming(stage, run.data.tags.get("medrepro.study", stage.split("-")[0]),
                                   (end - run.info.start_time) / 1000, run.info.status))
    return sorted(timings, key=lambda t: t.stage)


def timing_lines(timings: Sequence[StageTiming], studies: Sequence[str]) -> list[str]:
    """Per study the stages that ran with their time in the stage (DVC's own bookkeeping excluded)."""
    lines = []
    for study in studies:
        ran = [t for t in timings if t.study == study]
        if not ran:
            lines.append(f"  {study:14s} nothing ran (up to date or restored from DVC's run cache)")
            continue
        lines.append(f"  {study:14s} {sum(t.seconds for t in ran):7.1f} s in {len(ran)} stage(s)")
        for timing in ran:
            state = "" if timing.status == "FINISHED" else f"  [{timing.status}]"
            lines.append(f"  {'':14s}   {timing.seconds:7.1f} s  {timing.stage}{state}")
    return lines


def log_scorecard(page: Path, results: list[StudyResult], root: Path) -> None:
    import mlflow

    from stages.common.tracking import ensure_experiment

    experiment = ensure_experiment("scorecard", root)
    with mlflow.start_run(experiment_id=experiment, run_name="scorecard"):
        mlflow.log_metrics({f"{r.study}.{c.id}.holds": float(c.holds) for r in results if r.claims for c in r.claims.claims})
        mlflow.log_artifact(str(page))


def main() -> int:
    root = repo_root()
    try:
        results = study_results(root)
    except ClaimsError as error:
        print(f"error: scorecard: {error}", file=sys.stderr)
        return 1
    print("\nReproduction scorecard (claims each study's smoke run tests):")
    print("\n".join(scorecard_lines(results)))
    page = write_text(root / "data" / "index.html", index_page(results, root))
    try:
        flush_runs(root)
    except SpoolFlushError as error:
        print(f"error: scorecard: {error}", file=sys.stderr)
        return 1
    log_scorecard(page, results, root)
    started = os.environ.get(RUN_STARTED_ENV)
    if started:
        print("\nTime per study and stage in this run (from the stages' MLflow runs):")
        print("\n".join(timing_lines(stage_timings(root, float(started)), [r.study for r in results])))
    print(f"\nScorecard and reports: {page}")
    for result in results:
        state = result.report or "(missing: run `dvc repro`)"
        print(f"  {result.study:14s} {state}")
    print(f"\nMLflow store: {redact_uri(tracking_uri(root))}")
    print("Open the MLflow and Prefect UIs:  make ui   (MLflow http://127.0.0.1:5000, Prefect http://127.0.0.1:4200)")
    print("Run the same DAG through Prefect on Ray:  make flow")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
