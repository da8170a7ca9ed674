"""The frame every step runs in: typed params, declared paths, seeding, MLflow, clear errors.

A step is a typed function of its context that returns its headline metrics; its module's entry
point is one line::

    def train(ctx: StageContext[TrainParams]) -> Metrics:
        manifest = read_table(ctx.dep("interim/ingest/manifest.csv"))
        ...
        write_json(ctx.out("metrics/train.json"), summary)
        return {"final_loss": loss}

    if __name__ == "__main__":
        run_stage(train)

The study and step come from the module name (``stages.<study>.<step>``), the params model from
the ``ctx`` annotation, the paths and params keys from the stage's own ``dvc.yaml`` entry: a path
or ``common`` key the entry does not declare is refused. Tests call the step function directly
with :func:`open_context` (no MLflow, no subprocess).

Bad input or bad params end the process with exit status 1 and one clear message on stderr
(the MLflow run is marked FAILED); any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal

from stages.common.atomic import atomic_directory, rollback_on_failure, sweep_stale_temporaries
from stages.common.badinput import BAD_INPUT_ERRORS, BadInputError, Quarantine
from stages.common.params import CommonParams, ParamsError, ParamsModel, read_params_file, section_has_full, validate_step
from stages.common.paths import repo_root
from stages.common.pipeline import SYNTHETIC, PipelineError, StageSpec, load_stages, stage_name
from stages.common.validation import ManifestValidationError

Metrics = dict[str, float]
SCRATCH_FOLDER = ".scratch"
EXPECTED_ERRORS: tuple[type[Exception], ...] = (*BAD_INPUT_ERRORS, ParamsError, ManifestValidationError, PipelineError)

log = logging.getLogger("medrepro")


class UndeclaredPathError(PipelineError):
    """A step asked for a path its dvc.yaml entry does not declare."""


class Tracker:
    """Where a step's metrics and artifacts go: :class:`RunTracker` in a stage, this in tests.

    The base class keeps everything in memory so in-process tests can look at what was logged.
    """

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}
        self.params: dict[str, Any] = {}
        self.artifacts: list[Path] = []

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.metrics.update({k: float(v) for k, v in metrics.items()})

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(params)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.artifacts.append(Path(path))


class RunTracker(Tracker):
    """Logs into the stage's MLflow run (spooled or direct, see ``stages.common.tracking.stage_run``)."""

    def __init__(self, run: Any) -> None:
        super().__init__()
        self.run = run

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        super().log_metrics(metrics, step)
        self.run.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_params(self, params: Mapping[str, Any]) -> None:
        super().log_params(params)
        self.run.log_params(params)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        super().log_artifact(path, folder)
        self.run.log_artifact(Path(path), folder)


class DeclaredCommon:
    """``common`` as a stage sees it: only the keys its dvc.yaml entry lists can be read.

    Reading an undeclared key is a bug in dvc.yaml (DVC would not rerun the stage when that
    key changes), so it fails loudly instead of returning the value.
    """

    def __init__(self, values: CommonParams, declared: frozenset[str], stage: str) -> None:
        self._values, self._declared, self._stage = values, declared, stage

    def _get(self, key: str) -> Any:
        if key not in self._declared:
            raise PipelineError(f"dvc.yaml: stage {self._stage} reads common.{key} but does not list it under params")
        return getattr(self._values, key)

    @property
    def scale(self) -> Literal["smoke", "full"]:
        return self._get("scale")

    @property
    def seed(self) -> int:
        return self._get("seed")

    @property
    def on_bad_input(self) -> Literal["fatal", "skip"]:
        return self._get("on_bad_input")

    @property
    def device(self) -> Literal["auto", "cpu", "cuda"]:
        return self._get("device")


def _inside(path: str, declared: str) -> bool:
    return path == declared or path.startswith(declared.rstrip("/") + "/")


@dataclass
class StageContext(Generic[ParamsModel]):
    """What a step gets: its params, the declared paths, a tracker and the quarantine."""

    spec: StageSpec
    common: DeclaredCommon
    params: ParamsModel
    root: Path
    tracker: Tracker = field(default_factory=Tracker)
    quarantine: Quarantine = field(default_factory=Quarantine)
    _input_hashes: dict[str, str] | None = field(default=None, repr=False)

    def input_hashes(self) -> dict[str, str]:
        """md5 of every declared dep (DVC's own for upstream outputs), computed once per stage run."""
        if self._input_hashes is None:
            from stages.common.tracking import stage_input_hashes

            self._input_hashes = stage_input_hashes(self.spec.deps, self.root)
        return self._input_hashes

    @property
    def study(self) -> str:
        return self.spec.study

    @property
    def step(self) -> str:
        return self.spec.step

    @property
    def item(self) -> str:
        """The ``foreach`` item of this stage (``sex`` for ``ct_fairness-train@sex``)."""
        if self.spec.item is None:
            raise PipelineError(f"dvc.yaml: stage {self.spec.name} is not a foreach stage; it has no item")
        return self.spec.item

    def _declared(self, relative: str, declared: tuple[str, ...], kind: str) -> Path:
        path = self.spec.data_prefix + relative.strip("/")
        if not any(_inside(path, entry) for entry in declared):
            listed = ", ".join(d for d in declared if d.startswith(self.spec.data_prefix)) or "none"
            raise UndeclaredPathError(f"dvc.yaml: stage {self.spec.name} does not declare {path} among its {kind} "
                                      f"(declared: {listed})")
        return self.root / path

    def dep(self, relative: str) -> Path:
        """``data/<study>/<relative>``, which must lie in one of the stage's declared deps (or its outs)."""
        return self._declared(relative, self.spec.deps + self.spec.outs, "deps")

    def out(self, relative: str) -> Path:
        """``data/<study>/<relative>``, which must lie in one of the stage's declared outs, metrics or plots."""
        return self._declared(relative, self.spec.outs, "outs")

    def scratch(self, name: str) -> Path:
        """``data/<study>/.scratch/<stage>/<name>``: state that lets an interrupted run resume (a checkpoint).

        It is not an output: DVC never sees it, and the step deletes it once its outputs are written.
        """
        folder = self.root / self.spec.data_prefix / SCRATCH_FOLDER / self.spec.name
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def log_folder(self) -> Path:
        """``.dvc/tmp/medrepro-logs/<stage>/``: what a failed run leaves for a person to read (never an output)."""
        folder = self.root / ".dvc" / "tmp" / "medrepro-logs" / self.spec.name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def require_survivors(self, kept: int, what: str) -> None:
        """Stop, naming the saved quarantine list, when every ``what`` was quarantined and ``kept`` is 0."""
        self.quarantine.stop_when_everything_quarantined(kept, what, self.log_folder())

    def source(self, value: str, key: str) -> Path | None:
        """A ``source``-like param resolved: None when synthetic, else the existing path (relative to the repo).

        Real sources must also be deps of the stage (``${<study>.<step>.<key>}`` in dvc.yaml) so a
        changed data set reruns it; a source the entry does not list is refused.
        """
        if value == SYNTHETIC:
            return None
        path = Path(value).expanduser()
        resolved = (path if path.is_absolute() else self.root / path).resolve()
        if not resolved.exists():
            raise BadInputError(f"{self.study}.{self.step}.{key}: {resolved} does not exist")
        if value not in self.spec.deps:
            raise PipelineError(f"dvc.yaml: stage {self.spec.name} reads the real source {value} "
                                f"but does not list ${{{self.study}.{self.step}.{key}}} among its deps")
        return resolved

    def log_metrics(self, metrics: Mapping[str, float | None], step: int | None = None) -> None:
        self.tracker.log_metrics({k: float(v) for k, v in metrics.items() if v is not None}, step=step)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.tracker.log_params(params)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        self.tracker.log_artifact(path, folder)

    def publish_report(self, report: Any, folder: str = "report") -> Path:
        """Write ``data/<study>/<folder>/index.html`` atomically, log it and say where it is."""
        out = self.out(folder)
        with atomic_directory(out) as staging:
            report.write(staging / "index.html")
        page = out / "index.html"
        self.log_artifact(page, "report")
        print(f"report: {page.relative_to(self.root) if page.is_relative_to(self.root) else page}")
        return page

    def save_quarantine(self, path: Path) -> None:
        """Save the quarantine list (also when empty) and log it."""
        self.quarantine.save(path)
        self.log_metrics({"quarantined": len(self.quarantine.entries)})
        self.log_artifact(path)

    def torch_device(self, num_threads: int):
        """Set torch's threads (from params, never from the environment), deterministic kernels, and the device."""
        from stages.common.runtime import choose_device, configure_torch

        configure_torch(num_threads)
        return choose_device(self.common.device)


Step = Callable[[StageContext[Any]], Metrics | None]


def step_names(step: Step) -> tuple[str, str]:
    """(study, step) of a step function defined in ``stages.<study>.<step>``."""
    module = step.__module__
    if module == "__main__":  # run as `python -m stages.<study>.<step>`
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec is not None else ""
    parts = module.split(".")
    if len(parts) != 3 or parts[0] != "stages":
        raise PipelineError(f"a step function must live in stages.<study>.<step>; {step.__qualname__} is in {module!r}")
    return parts[1], parts[2]


def params_model_of(step: Step) -> type:
    """The params model named by the step's ``ctx: StageContext[Model]`` annotation."""
    hints = typing.get_type_hints(step, globalns=sys.modules[step.__module__].__dict__)
    context_type = next(iter(hints.values()))
    (model,) = typing.get_args(context_type)
    return model


def check_contract(spec: StageSpec, params_document: Mapping[str, Any]) -> None:
    """The keys every stage must list: its own section, ``common.seed``, ``common.scale`` when it has ``full:``."""
    own = f"{spec.study}.{spec.step}"
    required = [own, "common.seed"]
    if section_has_full(params_document, spec.study, spec.step):
        required.append("common.scale")
    missing = [key for key in required if key not in spec.params]
    if missing:
        raise PipelineError(f"dvc.yaml: stage {spec.name} must list {', '.join(missing)} under params")


def open_context(
    step: Step,
    root: Path,
    params_document: Mapping[str, Any],
    item: str | None = None,
    tracker: Tracker | None = None,
    pipeline_root: Path | None = None,
    names: tuple[str, str] | None = None,
) -> StageContext[Any]:
    """The context ``step`` runs in, from a params document; ``pipeline_root`` holds dvc.yaml (default ``root``).

    ``names`` = (study, step) overrides the names taken from the module (for toy steps in tests).
    """
    study, step_name = names or step_names(step)
    specs = load_stages(pipeline_root or root, params_document)
    name = stage_name(study, step_name, item)
    if name not in specs:
        items = [s.item for s in specs.values() if (s.study, s.step) == (study, step_name) and s.item is not None]
        if items:
            raise PipelineError(f"stage {study}-{step_name} runs once per item: give one of {items} (got {item!r})")
        raise PipelineError(f"dvc.yaml has no stage {name}")
    spec = specs[name]
    check_contract(spec, params_document)
    common, params = validate_step(study, step_name, params_model_of(step), params_document)
    declared = frozenset(key.removeprefix("common.") for key in spec.params if key.startswith("common."))
    from stages.common.io import set_max_input_bytes

    set_max_input_bytes(common.max_input_bytes)
    return StageContext(spec, DeclaredCommon(common, declared, name), params, Path(root),
                        tracker or Tracker(), Quarantine(common.on_bad_input))


def _configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("MEDREPRO_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("alembic", "mlflow", "urllib3", "great_expectations", "numba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def study_output_folders(study: str, root: Path, params_document: Mapping[str, Any]) -> list[Path]:
    """The folders the study's declared outputs lie in (where a killed writer's temporaries are)."""
    specs = load_stages(root, params_document).values()
    return sorted({(root / out).parent for spec in specs if spec.study == study for out in spec.outs})


def call_step(step: Step, context: StageContext[Any]) -> Metrics | None:
    """Run the step so that, if it raises, every output it wrote through ``stages.common.atomic`` is put back."""
    kept = (context.root / context.spec.data_prefix / SCRATCH_FOLDER, context.root / ".dvc" / "tmp")
    with rollback_on_failure(keep=kept):
        return step(context)


def run_stage(step: Step, argv: list[str] | None = None, names: tuple[str, str] | None = None) -> None:
    """The entry point of a step module: context from dvc.yaml and params.yaml, an MLflow run, the step."""
    _configure_logging()
    arguments = sys.argv[1:] if argv is None else argv
    study, step_name = names or step_names(step)
    label = stage_name(study, step_name, arguments[0] if arguments else None)
    root = repo_root()
    try:
        if len(arguments) > 1:
            raise PipelineError(f"stage {label} takes at most one argument (its foreach item), got {arguments}")
        document = read_params_file(root / "params.yaml")
        context = open_context(step, root, document, item=arguments[0] if arguments else None, names=(study, step_name))
    except (ParamsError, PipelineError) as error:
        print(f"error: {label}: {error}", file=sys.stderr)
        raise SystemExit(1) from error
    from stages.common.locks import stage_lock
    from stages.common.runtime import seed_everything
    from stages.common.tracking import stage_run

    with contextlib.ExitStack() as held:
        try:
            held.enter_context(stage_lock(root, context.spec.name))
        except PipelineError as error:
            print(f"error: {context.spec.name}: {error}", file=sys.stderr)
            raise SystemExit(1) from error
        sweep_stale_temporaries(study_output_folders(context.spec.study, root, document))
        seed_everything(context.common.seed)
        logged = {"common": document.get("common") or {}, study: {step_name: context.params.model_dump(mode="json")}}
        run = held.enter_context(stage_run(context.spec, logged, root, context.input_hashes()))
        context.tracker = RunTracker(run)
        try:
            metrics = call_step(step, context)
            if metrics:
                context.log_metrics(metrics)
        except EXPECTED_ERRORS as error:
            run.set_tag("medrepro.error", str(error)[:5000])
            run.end("FAILED")
            print(f"error: {context.spec.name}: {error}", file=sys.stderr)
            raise SystemExit(1) from error
