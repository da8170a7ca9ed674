"""The up-front params check, on this project's own dvc.yaml and params.yaml."""
import shutil

import yaml

from stages.common.check_params import check, unread_sections
from stages.common.paths import repo_root


def test_the_project_params_are_valid_for_every_stage_at_both_scales():
    assert check(repo_root()) == []


def test_every_problem_is_named_at_once_and_a_mistyped_key_comes_first(tmp_path):
    shutil.copy(repo_root() / "dvc.yaml", tmp_path / "dvc.yaml")
    document = yaml.safe_load((repo_root() / "params.yaml").read_text())
    evaluate = document["nova"]["evaluate"]
    evaluate["bootstrap_resampels"] = evaluate.pop("bootstrap_resamples")   # a typo in the smoke settings
    document["cmr_recon"]["ingest"]["full"]["coils"] = "ten"                 # a bad value in a full override
    document["nova"]["evaluat"] = {"x": 1}                                    # a section no stage reads
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(document, sort_keys=False))

    problems = check(tmp_path)
    assert len(problems) == 3, problems
    typo = next(p for p in problems if "nova.evaluate" in p).splitlines()
    assert typo[0].startswith("params.yaml: nova.evaluate.bootstrap_resampels: Extra inputs are not permitted")
    assert typo[1] == "params.yaml: nova.evaluate.bootstrap_resamples: Field required"
    (full,) = [p for p in problems if "cmr_recon.ingest" in p]
    assert "cmr_recon.ingest.coils" in full and full.endswith("(with the full: overrides)")
    assert "params.yaml: nova.evaluat: no stage of dvc.yaml reads this section" in problems


def test_sections_of_unknown_studies_and_steps_are_named():
    read = {("nova", "ingest")}
    document = {"common": {}, "orchestration": {}, "nova": {"ingest": {}, "ingset": {}}, "nvoa": {"ingest": {}}}
    assert unread_sections(document, read) == ["nova.ingset: no stage of dvc.yaml reads this section",
                                               "nvoa: no stage of dvc.yaml belongs to this study"]
