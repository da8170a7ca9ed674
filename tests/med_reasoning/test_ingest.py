"""med_reasoning-ingest in-process: the synthetic default, a real folder, bad input fatal or quarantined."""
import json

import pandas as pd
import pytest

from stages.common.badinput import BadInputError
from stages.med_reasoning.ingest import ingest
from tests.helpers import copy_project, run_module, run_step, set_params
from tests.med_reasoning.test_formats import MEDQA_LINE
from tests.med_reasoning.tiny import TINY


def test_synthetic_ingest_writes_medqa_files_and_a_validated_manifest(tmp_path):
    ctx, metrics = run_step(ingest, tmp_path, TINY)
    data = tmp_path / "data" / "med_reasoning"
    manifest = pd.read_csv(data / "interim/ingest/manifest.csv")
    assert metrics["questions"] == len(manifest) == 4 * 2 + 3 * 2 + 3 * 2
    assert manifest.groupby("split").size().to_dict() == {"test_in": 6, "test_ood": 6, "train": 8}
    assert set(manifest.set) == {"train", "test_in", "ood_more_options", "ood_unseen_templates"}
    assert set(manifest.n_options[manifest.set == "ood_more_options"]) == {8}
    assert not set(manifest.template[manifest.set == "ood_unseen_templates"]) & set(manifest.template[manifest.split == "train"])
    first = json.loads((data / "raw/train.jsonl").read_text().splitlines()[0])
    assert set(first) >= {"question", "options", "answer_idx", "answer"}  # MedQA's fields
    assert json.loads((data / "interim/manifest_validation.json").read_text())["success"] is True
    assert ctx.tracker.metrics["quarantined"] == 0


def write_source(folder, bad_lines=()):
    folder.mkdir(parents=True)
    lines = [json.dumps(MEDQA_LINE), json.dumps({**MEDQA_LINE, "id": "q2"})]
    (folder / "train.jsonl").write_text("\n".join([*lines, *bad_lines]) + "\n")
    (folder / "test.jsonl").write_text(json.dumps({"question": "Q?\nA. x\nB. y", "answer": "A", "id": "t1"}) + "\n")
    return {"med_reasoning.ingest.source": str(folder)}


def test_real_folder_records_each_question_source(tmp_path):
    overrides = write_source(tmp_path / "medqa")
    run_step(ingest, tmp_path, overrides)
    manifest = pd.read_csv(tmp_path / "data/med_reasoning/interim/ingest/manifest.csv")
    assert list(manifest.id) == ["train-1", "q2", "t1"] and list(manifest.source_dataset) == ["train", "train", "test"]


BAD_LINES = ["{oops", json.dumps({**MEDQA_LINE, "id": "q2"}), json.dumps({**MEDQA_LINE, "id": "q9", "answer_idx": "Z"}),
             json.dumps({**MEDQA_LINE, "id": "q8", "question": ""})]


def test_bad_lines_are_quarantined_under_skip(tmp_path):
    overrides = write_source(tmp_path / "medqa", BAD_LINES)
    ctx, _ = run_step(ingest, tmp_path, {**overrides, "common.on_bad_input": "skip"})
    quarantine = json.loads((tmp_path / "data/med_reasoning/interim/ingest/quarantine.json").read_text())
    problems = {entry["item"]: entry["problem"] for entry in quarantine["entries"]}
    assert list(problems) == ["train.jsonl line 3", "train.jsonl line 4", "train.jsonl line 5", "train.jsonl line 6"]
    assert "not JSON" in problems["train.jsonl line 3"]
    assert "id 'q2' repeats train.jsonl line 2" in problems["train.jsonl line 4"]
    assert "answer 'Z' is not among" in problems["train.jsonl line 5"]
    assert "empty question" in problems["train.jsonl line 6"]
    assert len(pd.read_csv(tmp_path / "data/med_reasoning/interim/ingest/manifest.csv")) == 3


def test_a_missing_test_file_is_refused(tmp_path):
    overrides = write_source(tmp_path / "medqa")
    (tmp_path / "medqa/test.jsonl").unlink()
    with pytest.raises(BadInputError, match="no test.jsonl or test.parquet"):
        run_step(ingest, tmp_path, overrides)


def test_bad_line_is_fatal_by_default_with_no_manifest(tmp_path):
    project = copy_project(tmp_path / "project")
    set_params(project, write_source(tmp_path / "medqa", BAD_LINES[:1]))
    result = run_module(project, "stages.med_reasoning.ingest")
    assert result.returncode == 1
    assert "train.jsonl line 3: not JSON" in result.stderr and "Traceback" not in result.stderr
    assert not (project / "data/med_reasoning/interim/ingest").exists()
