from pathlib import Path

import pytest

from stages.common.params import ParamsError, StrictModel, load_params


class StepParams(StrictModel):
    epochs: int = 1
    rate: float = 0.1
    names: list[str] = ["a"]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_values_are_read_and_typed(tmp_path):
    path = write(tmp_path, "common: {seed: 3}\nstudy:\n  step: {epochs: 5, rate: 0.5}\n")
    common, params = load_params("study", "step", StepParams, path)
    assert (common.seed, common.scale, params.epochs, params.rate, params.names) == (3, "smoke", 5, 0.5, ["a"])


def test_unknown_key_is_named(tmp_path):
    path = write(tmp_path, "study:\n  step: {epochs: 5, epoch: 2}\n")
    with pytest.raises(ParamsError, match=r"study\.step\.epoch: Extra inputs are not permitted"):
        load_params("study", "step", StepParams, path)


def test_bad_value_is_named_with_the_value(tmp_path):
    path = write(tmp_path, "study:\n  step: {epochs: three}\n")
    with pytest.raises(ParamsError, match=r"study\.step\.epochs: .*integer.*'three'"):
        load_params("study", "step", StepParams, path)


def test_bad_common_value_is_named(tmp_path):
    path = write(tmp_path, "common: {scale: huge}\nstudy:\n  step: {}\n")
    with pytest.raises(ParamsError, match=r"common\.scale"):
        load_params("study", "step", StepParams, path)


def test_full_scale_overrides_apply_only_at_full(tmp_path):
    text = "common: {scale: %s}\nstudy:\n  step:\n    epochs: 2\n    full: {epochs: 40}\n"
    _, smoke = load_params("study", "step", StepParams, write(tmp_path, text % "smoke"))
    _, full = load_params("study", "step", StepParams, write(tmp_path, text % "full"))
    assert (smoke.epochs, full.epochs) == (2, 40)


def test_full_override_of_a_key_missing_at_smoke_is_refused(tmp_path):
    path = write(tmp_path, "study:\n  step:\n    epochs: 2\n    full: {epoch: 40}\n")
    with pytest.raises(ParamsError, match=r"study\.step\.full\.epoch"):
        load_params("study", "step", StepParams, path)


def test_missing_section_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match=r"study\.step: section missing"):
        load_params("study", "step", StepParams, write(tmp_path, "other: {}\n"))
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params("study", "step", StepParams, write(tmp_path, "study: [unclosed\n"))


def test_yaml_is_loaded_safely(tmp_path):
    path = write(tmp_path, "study:\n  step: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params("study", "step", StepParams, path)


def test_project_params_file_validates_every_cmr_recon_step():
    from stages.cmr_recon import evaluate, ingest, report, train, undersample

    root = Path(__file__).resolve().parents[2]
    for step, model in [("ingest", ingest.IngestParams), ("undersample", undersample.UndersampleParams),
                        ("train", train.TrainParams), ("evaluate", evaluate.EvaluateParams), ("report", report.ReportParams)]:
        load_params("cmr_recon", step, model, root / "params.yaml")
