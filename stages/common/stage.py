"""The frame every step module runs in: params, seeding, MLflow run, clear errors.

A step module reads like a story::

    def main() -> None:
        with run_stage("cmr_recon", "train", TrainParams) as ctx:
            ...  # read inputs, call pure functions, write outputs, ctx.log_metrics(...)

Bad input or bad params end the process with exit status 1 and one clear message on stderr
(the MLflow run is marked FAILED); any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic

from stages.common.atomic import atomic_directory
from stages.common.badinput import BAD_INPUT_ERRORS, Quarantine
from stages.common.params import CommonParams, ParamsError, ParamsModel, load_params
from stages.common.paths import repo_root, study_dir
from stages.common.report import HtmlReport
from stages.common.runtime import seed_everything
from stages.common.validation import ManifestValidationError

EXPECTED_ERRORS: tuple[type[Exception], ...] = (*BAD_INPUT_ERRORS, ParamsError, ManifestValidationError)

log = logging.getLogger("medrepro")


@dataclass
class StageContext(Generic[ParamsModel]):
    study: str
    step: str
    common: CommonParams
    params: ParamsModel
    root: Path
    run: Any = None
    quarantine: Quarantine = field(default_factory=Quarantine)

    @property
    def data(self) -> Path:
        """``data/<study>`` under the repository root."""
        return study_dir(self.study, self.root)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import mlflow

        finite = {k: float(v) for k, v in metrics.items() if v is not None}
        mlflow.log_metrics(finite, step=step)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        import mlflow

        mlflow.log_artifact(str(path), artifact_path=folder)

    def publish_report(self, report: HtmlReport) -> Path:
        """Write ``data/<study>/report/index.html`` atomically, log it to MLflow and say where it is."""
        out = self.data / "report"
        with atomic_directory(out) as staging:
            report.write(staging / "index.html")
        page = out / "index.html"
        self.log_artifact(page, "report")
        print(f"report: {page}")
        return page

    def save_quarantine(self, path: Path) -> None:
        """Save the quarantine list beside the outputs and log it (also when empty)."""
        self.quarantine.save(path)
        self.log_metrics({"quarantined": len(self.quarantine.entries)})
        self.log_artifact(path)


def _configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("MEDREPRO_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("alembic", "mlflow", "urllib3", "great_expectations", "numba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextlib.contextmanager
def run_stage(study: str, step: str, model: type[ParamsModel]) -> Iterator[StageContext[ParamsModel]]:
    _configure_logging()
    root = repo_root()
    label = os.environ.get("DVC_STAGE") or f"{study}-{step}"
    try:
        common, params = load_params(study, step, model, root / "params.yaml")
    except ParamsError as error:
        print(f"error: {label}: {error}", file=sys.stderr)
        raise SystemExit(1) from error
    seed_everything(common.seed)
    from stages.common.tracking import stage_run

    logged = {"common": common.model_dump(), study: {step: params.model_dump()}}
    with stage_run(study, step, logged, root) as run:
        context = StageContext(study, step, common, params, root, run, Quarantine(common.on_bad_input))
        try:
            yield context
        except EXPECTED_ERRORS as error:
            import mlflow

            mlflow.set_tag("medrepro.error", str(error)[:5000])
            mlflow.end_run(status="FAILED")
            print(f"error: {label}: {error}", file=sys.stderr)
            raise SystemExit(1) from error
