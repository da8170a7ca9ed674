"""Printed at the end of `make run`: where each study's report is and how to open the UIs."""
from __future__ import annotations

from pathlib import Path

import yaml

from stages.common.paths import repo_root
from stages.common.tracking import tracking_uri


def report_outputs(root: Path) -> dict[str, list[Path]]:
    """Each study's report outputs, read from the ``<study>-report`` stages of dvc.yaml."""
    stages = (yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("stages", {})
    reports: dict[str, list[Path]] = {}
    for name, stage in stages.items():
        if not name.endswith("-report"):
            continue
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage.get("outs", [])]
        reports[name.removesuffix("-report")] = [root / o for o in outs]
    return reports


def main() -> None:
    root = repo_root()
    print("\nReports:")
    for study, outs in sorted(report_outputs(root).items()):
        for out in outs:
            pages = sorted(out.glob("*.html")) if out.is_dir() else [out]
            for page in pages:
                state = "" if page.exists() else "  (missing: run `dvc repro`)"
                print(f"  {study:14s} {page}{state}")
    print(f"\nMLflow store: {tracking_uri(root)}")
    print("Open the MLflow and Prefect UIs:  make ui   (MLflow http://127.0.0.1:5000, Prefect http://127.0.0.1:4200)")
    print("Run the same DAG through Prefect on Ray:  make flow")


if __name__ == "__main__":
    main()
