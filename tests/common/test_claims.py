"""Claims files: validated with the study and field named; the scorecard shows every study; a flip shows in dvc metrics diff."""
import json
import subprocess

import pytest
import yaml

from stages.common.claims import Claim, ClaimsError, claims_document, read_claims, to_json
from stages.common.summary import index_page, scorecard_lines, study_results
from tests.helpers import run_dvc


def claim(holds: bool = True, **changes) -> dict:
    base = {"id": "learned_beats_zero_filled", "claim": "Learned beats zero-filled everywhere.", "source": "Table 2",
            "measured": {"cells": 24, "psnr_wins": 24}, "comparison": "wins == cells", "holds": holds}
    return {**base, **changes}


def write(path, payload):
    """Write a claims document given with a list of claims, in the on-disk form (mapping by id)."""
    if isinstance(payload.get("claims"), list):
        payload = {**payload, "claims": {c["id"]: {k: v for k, v in c.items() if k != "id"} for c in payload["claims"]}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path


def test_a_malformed_claims_file_is_refused_naming_the_study_and_field(tmp_path):
    path = write(tmp_path / "claims.json", {"study": "toy", "scale": "smoke", "claims": [claim(holds="perhaps")]})
    with pytest.raises(ClaimsError, match=r"^toy: .*claims.json: claims.0.holds: Input should be a valid boolean"):
        read_claims(path, "toy")
    write(path, {"study": "toy", "scale": "smoke", "claims": [{k: v for k, v in claim().items() if k != "comparison"}]})
    with pytest.raises(ClaimsError, match=r"claims.0.comparison: Field required"):
        read_claims(path, "toy")
    write(path, {"study": "other", "scale": "smoke", "claims": [claim()]})
    with pytest.raises(ClaimsError, match=r"study: says 'other'"):
        read_claims(path, "toy")
    path.write_text("{not json")
    with pytest.raises(ClaimsError, match="not valid JSON"):
        read_claims(path, "toy")
    with pytest.raises(ClaimsError, match="repeated"):
        claims_document("toy", "smoke", [Claim(**claim()), Claim(**claim())])


def test_the_scorecard_lists_every_study_and_shows_claims_that_fail(tmp_path):
    stages = {f"{s}-report": {"cmd": f"python -m stages.{s}.report", "outs": [f"data/{s}/report"]} for s in ("alpha", "beta")}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    (tmp_path / "params.yaml").write_text("common: {}\n")
    write(tmp_path / "data/alpha/metrics/claims.json", {"study": "alpha", "scale": "smoke",
                                                         "claims": [claim(), claim(False, id="second_claim")]})
    report = tmp_path / "data/alpha/report/index.html"
    report.parent.mkdir(parents=True)
    report.write_text('<html><img alt="x" src="data:image/png;base64,AAAA"></html>')
    results = study_results(tmp_path)
    lines = "\n".join(scorecard_lines(results))
    assert "alpha          HOLDS         learned_beats_zero_filled" in lines
    assert "DOES NOT HOLD second_claim" in lines and "beta           (no claims file yet" in lines
    page = index_page(results, tmp_path)
    assert '<a href="alpha/report/index.html">alpha</a>' in page and "does not hold" in page
    assert "data:image/png;base64,AAAA" in page and "beta" in page and "no report yet" in page


def test_a_claim_flipping_shows_in_dvc_metrics_diff(tmp_path):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    run_dvc(tmp_path, "init", "-q")
    path = write(tmp_path / "data/toy/metrics/claims.json", {"study": "toy", "scale": "smoke", "claims": [claim(True)]})
    stage = {"cmd": "true", "metrics": [{"data/toy/metrics/claims.json": {"cache": False}}]}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"toy-evaluate": stage}}))
    for command in (["git", "add", "-A"], ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "holds"]):
        subprocess.run(command, cwd=tmp_path, check=True, capture_output=True)
    write(path, {"study": "toy", "scale": "smoke", "claims": [claim(False)]})
    diff = run_dvc(tmp_path, "metrics", "diff", "HEAD", "--json").stdout
    changed = json.loads(diff)["data/toy/metrics/claims.json"]
    assert changed["claims.learned_beats_zero_filled.holds"]["old"] is True
    assert changed["claims.learned_beats_zero_filled.holds"]["new"] is False
    document = claims_document("toy", "smoke", [Claim(**claim())])
    assert read_claims(write(tmp_path / "again.json", to_json(document)), "toy") == document


def test_the_run_summary_times_only_the_stages_this_run_ran(tmp_path, monkeypatch):
    import mlflow

    from stages.common.summary import stage_timings, timing_lines

    stages = {f"{s}-{step}": {"cmd": f"python -m stages.{s}.{step}"} for s in ("alpha", "beta") for step in ("ingest", "train")}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    (tmp_path / "params.yaml").write_text("common: {}\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    alpha = client.create_experiment("alpha")
    for stage, start, end in (("alpha-ingest", 1_000_000, 1_004_500), ("alpha-train", 2_000_000, 2_012_250),
                              ("alpha-ingest", 5_000, 9_000)):  # the last one is an earlier run
        run = client.create_run(alpha, start_time=start, tags={"dvc.stage": stage, "medrepro.study": "alpha"})
        client.set_terminated(run.info.run_id, end_time=end)
    timings = stage_timings(tmp_path, since_seconds=1_000.0)
    assert [(t.stage, t.seconds) for t in timings] == [("alpha-ingest", 4.5), ("alpha-train", 12.25)]
    lines = timing_lines(timings, ["alpha", "beta"])
    assert lines[0].split() == ["alpha", "16.8", "s", "in", "2", "stage(s)"]
    assert "beta           nothing ran" in lines[-1]
