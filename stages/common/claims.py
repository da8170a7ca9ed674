"""The paper's claims a study's run tests, as a machine-readable file: ``data/<study>/metrics/claims.json``.

Each study's evaluate step builds a list of :class:`Claim` and calls :func:`write_claims`; the
file is a DVC metric (``cache: false``), so ``dvc metrics diff`` shows a claim flipping between
two experiments, and each claim's ``holds`` is logged to MLflow as ``claim.<id>.holds`` (0 or 1).
A claim that does not hold is written as measured; the scorecard shows it, never hides it.

On disk the claims are a mapping from id to claim (DVC flattens mappings, not lists, into
metric names: ``claims.learned_beats_sense.holds``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from stages.common.atomic import write_json
from stages.common.params import StrictModel

CLAIMS_FILE = "metrics/claims.json"


class ClaimsError(ValueError):
    """A claims file is missing, unreadable or malformed; the message names the study and the field."""


class Claim(StrictModel):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    claim: str = Field(min_length=10)        # the paper's claim in one sentence
    source: str = Field(min_length=3)        # where the paper makes it (section, table, figure)
    measured: dict[str, float | int | str]   # the numbers compared, by name
    intervals: dict[str, tuple[float, float]] = {}  # confidence intervals of measured values, where computed
    comparison: str = Field(min_length=3)    # the test applied to the numbers, in words
    holds: bool


class ClaimsFile(StrictModel):
    study: str
    scale: str
    claims: list[Claim] = Field(min_length=1)


def _describe(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors())


def claims_document(study: str, scale: str, claims: list[Claim]) -> ClaimsFile:
    ids = [c.id for c in claims]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise ClaimsError(f"{study}: claim ids must be unique; repeated: {duplicated}")
    return ClaimsFile(study=study, scale=scale, claims=claims)


def to_json(document: ClaimsFile) -> dict[str, Any]:
    claims = {c.id: c.model_dump(mode="json", exclude={"id"}) for c in document.claims}
    return {"study": document.study, "scale": document.scale, "claims": claims}


def write_claims(ctx: Any, claims: list[Claim]) -> Path:
    """Write the study's claims file (declared as an output of the calling stage) and log each verdict."""
    document = claims_document(ctx.study, ctx.common.scale, claims)
    path = write_json(ctx.out(CLAIMS_FILE), to_json(document))
    ctx.log_metrics({f"claim.{c.id}.holds": float(c.holds) for c in claims})
    ctx.log_artifact(path)
    return path


def read_claims(path: Path, study: str) -> ClaimsFile:
    """Read and validate one study's claims file; errors name the study, the file and the field."""
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ClaimsError(f"{study}: {path}: no claims file (run its evaluate stage)") from error
    except json.JSONDecodeError as error:
        raise ClaimsError(f"{study}: {path}: not valid JSON ({error})") from error
    try:
        if not isinstance(payload, dict) or not isinstance(payload.get("claims"), dict):
            raise ClaimsError(f"{study}: {path}: claims: expected a mapping from claim id to claim")
        claims = [{"id": key, **(value if isinstance(value, dict) else {"claim": value})} for key, value in payload["claims"].items()]
        document = ClaimsFile.model_validate({**payload, "claims": claims})
    except ValidationError as error:
        raise ClaimsError(f"{study}: {path}: {_describe(error)}") from error
    if document.study != study:
        raise ClaimsError(f"{study}: {path}: study: says {document.study!r}")
    return document
