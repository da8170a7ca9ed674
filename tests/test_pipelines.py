"""One end-to-end `dvc repro` smoke run per study, on tiny params; a new study adds a row to STUDIES.

Each run checks what every study owes: all its stages run and then are cached, every file it
leaves lies inside an output its dvc.yaml entry declares, every stage has a FINISHED MLflow run,
and the small results are committed files that a fresh clone can `dvc metrics show`/`diff`.
The row's own check looks at the study's outputs.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import mlflow
import pytest

from stages.common.claims import CLAIMS_FILE, read_claims
from stages.common.mlflow_spool import flush, spool_folder
from stages.common.pipeline import load_stages
from stages.common.stage import SCRATCH_FOLDER
from tests.helpers import END_TO_END_DIGESTS, file_digests, run_dvc, set_params
from tests.pipeline_rows import STUDIES


def undeclared_files(root: Path, study: str) -> list[str]:
    """Files under data/<study> that no output of the study's stages declares (scratch must be gone too)."""
    outs = [out for spec in load_stages(root).values() if spec.study == study for out in spec.outs]
    left = []
    for file in (root / "data" / study).rglob("*"):
        relative = file.relative_to(root).as_posix()
        if not file.is_file() or file.name == ".gitignore":
            continue
        if not any(relative == out or relative.startswith(out.rstrip("/") + "/") for out in outs):
            left.append(relative)
    return sorted(left)


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_study_runs_end_to_end_and_is_cached(study, project_copy, tmp_path):
    row = STUDIES[study]
    with row.setup() as extra:
        set_params(project_copy, {**row.tiny, **extra})
        run_dvc(project_copy, "repro", "--glob", f"{study}-*")
        stages = sorted(name for name, spec in load_stages(project_copy).items() if spec.study == study)
        status = run_dvc(project_copy, "status", *stages)
        assert "up to date" in status.stdout, status.stdout
        again = run_dvc(project_copy, "repro", "--glob", f"{study}-*")
        assert "didn't change, skipping" in again.stdout and "Running stage" not in again.stdout

    data = project_copy / "data" / study
    if not extra:
        END_TO_END_DIGESTS[study] = file_digests(data)
    row.check(data)
    claims = read_claims(data / CLAIMS_FILE, study)  # every study states the claims its run tests
    assert claims.scale == "smoke" and all(isinstance(c.holds, bool) for c in claims.claims)
    assert undeclared_files(project_copy, study) == []
    assert not any((data / SCRATCH_FOLDER).rglob("*.*")) if (data / SCRATCH_FOLDER).exists() else True

    uri = f"sqlite:///{project_copy / 'mlruns' / 'mlflow.db'}"
    flush(spool_folder(uri))  # the stages' runs, spooled, as `make run` moves them at its end
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name(study).experiment_id])
    assert sorted(r.data.tags["dvc.stage"] for r in runs) == stages
    assert all(r.info.status == "FINISHED" for r in runs)

    # The small results are plain git files: a fresh clone shows them and diffs them against HEAD.
    for command in (["git", "add", "-A"], ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "run"]):
        subprocess.run(command, cwd=project_copy, check=True, capture_output=True)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project_copy), str(clone)], check=True, capture_output=True)
    shown = run_dvc(clone, "metrics", "show", "--json")
    assert f"data/{study}/metrics/evaluate.json" in shown.stdout
    targets = sorted({out for spec in load_stages(clone).values() if spec.study == study for out in spec.uncached
                      if out.startswith(f"data/{study}/metrics/") and out.endswith(".json")})
    diff = run_dvc(clone, "metrics", "diff", "HEAD", "--targets", *targets)
    assert diff.returncode == 0 and "failed to load" not in diff.stdout + diff.stderr
