"""The `orchestration` section of params.yaml: retries, Ray resources, schedules, DVC remote.

The section is read by the flows only; no stage lists it in its `params`, so editing it never
invalidates a stage. A missing section means the defaults below.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from flows.graph import foreach_group
from stages.common.params import ParamsError, read_params_file

SECTION = "orchestration"


class OrchestrationConfigError(ValueError):
    """The orchestration section is invalid; the message names the offending key."""


def _valid_cron(cron: str) -> str:
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=cron)
    except (ValidationError, ValueError):
        raise ValueError("not a valid cron string") from None
    return cron


CronString = Annotated[str, AfterValidator(_valid_cron)]


class StageResources(BaseModel):
    """Ray resources one stage task asks for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_cpus: float = Field(default=1, ge=0)
    num_gpus: float = Field(default=0, ge=0)


class OrchestrationConfig(BaseModel):
    """Validated `orchestration` section of params.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retries: int = Field(default=2, ge=0, le=50)
    retry_delay_seconds: float = Field(default=5, ge=0)
    lock_retries: int = Field(default=20, ge=0)
    flow_lock_timeout_seconds: float = Field(default=60, ge=0)
    default_resources: StageResources = StageResources()
    resources: dict[str, StageResources] = Field(default_factory=dict)
    schedules: dict[str, CronString] = Field(default_factory=dict)
    remote: str | None = None

    def resources_key(self, stage: str) -> str | None:
        """The `resources` key that applies to `stage`: the stage's own name, else (for a stage
        `<name>@<item>` that a `foreach` generated) its group's `<name>`; None if neither is there."""
        if stage in self.resources:
            return stage
        group = foreach_group(stage)
        return group if group is not None and group in self.resources else None

    def resources_for(self, stage: str) -> StageResources:
        """Resources of `stage`: its own entry, else its foreach group's, else the defaults."""
        key = self.resources_key(stage)
        return self.default_resources if key is None else self.resources[key]

    def remote_options_for(self, stage: str) -> dict[str, float]:
        """Keyword arguments for `prefect_ray.context.remote_options` (i.e. `ray.remote`)."""
        resources = self.resources_for(stage)
        return {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus}

    def check_names(self, stages: Iterable[str], studies: Iterable[str]) -> None:
        """Raise if `resources` names a stage (or foreach group) or `schedules` a study that the DAG does not have."""
        known_stages = set(stages)
        known_groups = {group for stage in known_stages if (group := foreach_group(stage)) is not None}
        known_studies = set(studies)
        for stage in self.resources:
            if stage not in known_stages and stage not in known_groups:
                groups = f"; foreach groups: {', '.join(sorted(known_groups))}" if known_groups else ""
                raise OrchestrationConfigError(
                    f"{SECTION}.resources.{stage}: no such stage in the DVC pipeline "
                    f"(stages: {', '.join(sorted(known_stages))}{groups})"
                )
        for study in self.schedules:
            if study not in known_studies:
                raise OrchestrationConfigError(
                    f"{SECTION}.schedules.{study}: no such study in the DVC pipeline "
                    f"(studies: {', '.join(sorted(known_studies))})"
                )


def _format_error(error: Mapping[str, Any]) -> str:
    location = ".".join(str(part) for part in error["loc"])
    key = f"{SECTION}.{location}" if location else SECTION
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    return f"{key}: {message} (got {error.get('input')!r})"


def parse_orchestration_config(section: Mapping[str, Any] | None) -> OrchestrationConfig:
    """Validate the raw `orchestration` mapping (None means all defaults)."""
    if section is None:
        return OrchestrationConfig()
    if not isinstance(section, Mapping):
        raise OrchestrationConfigError(f"{SECTION}: expected a mapping, got {section!r}")
    try:
        return OrchestrationConfig.model_validate(dict(section))
    except ValidationError as exc:
        messages = "; ".join(_format_error(error) for error in exc.errors())
        raise OrchestrationConfigError(messages) from None


def load_orchestration_config(repo_root: Path) -> OrchestrationConfig:
    """Read and validate `orchestration` from `<repo_root>/params.yaml` (absent -> defaults)."""
    params_path = Path(repo_root) / "params.yaml"
    if not params_path.exists():
        return OrchestrationConfig()
    try:
        params = read_params_file(params_path)
    except ParamsError as exc:
        raise OrchestrationConfigError(str(exc)) from None
    try:
        return parse_orchestration_config(params.get(SECTION))
    except OrchestrationConfigError as exc:
        raise OrchestrationConfigError(f"{params_path}: {exc}") from None
