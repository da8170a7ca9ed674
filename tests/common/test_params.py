from pathlib import Path

import pytest

from stages.common.params import ParamsError, StrictModel, load_params

COMMON = "common: {scale: %s, seed: 3, on_bad_input: fatal, device: cpu, max_input_bytes: 4294967296}\n"


class StepParams(StrictModel):
    epochs: int
    rate: float
    names: list[str]


def write(tmp_path: Path, text: str, scale: str = "smoke") -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(COMMON % scale + text)
    return path


def test_values_are_read_and_typed(tmp_path):
    path = write(tmp_path, "study:\n  step: {epochs: '5', rate: 0.5, names: [a]}\n")
    common, params = load_params("study", "step", StepParams, path)
    assert (common.seed, common.scale, params.epochs, params.rate, params.names) == (3, "smoke", 5, 0.5, ["a"])


def test_unknown_key_is_named(tmp_path):
    path = write(tmp_path, "study:\n  step: {epochs: 5, rate: 1, names: [], epoch: 2}\n")
    with pytest.raises(ParamsError, match=r"study\.step\.epoch: Extra inputs are not permitted"):
        load_params("study", "step", StepParams, path)


def test_bad_value_is_named_with_the_value(tmp_path):
    path = write(tmp_path, "study:\n  step: {epochs: three, rate: 1, names: []}\n")
    with pytest.raises(ParamsError, match=r"study\.step\.epochs: .*integer.*'three'"):
        load_params("study", "step", StepParams, path)


def test_a_missing_value_is_named_because_values_live_only_in_params_yaml(tmp_path):
    path = write(tmp_path, "study:\n  step: {epochs: 5, names: []}\n")
    with pytest.raises(ParamsError, match=r"study\.step\.rate: Field required"):
        load_params("study", "step", StepParams, path)
    (tmp_path / "params.yaml").write_text("common: {seed: 1}\nstudy:\n  step: {epochs: 5, rate: 1, names: []}\n")
    with pytest.raises(ParamsError, match=r"common\.scale: Field required"):
        load_params("study", "step", StepParams, tmp_path / "params.yaml")


def test_bad_common_value_is_named(tmp_path):
    path = write(tmp_path, "study:\n  step: {}\n", scale="huge")
    with pytest.raises(ParamsError, match=r"common\.scale"):
        load_params("study", "step", StepParams, path)


def test_full_scale_overrides_apply_only_at_full(tmp_path):
    text = "study:\n  step:\n    epochs: 2\n    rate: 1\n    names: []\n    full: {epochs: 40}\n"
    _, smoke = load_params("study", "step", StepParams, write(tmp_path, text, "smoke"))
    _, full = load_params("study", "step", StepParams, write(tmp_path, text, "full"))
    assert (smoke.epochs, full.epochs) == (2, 40)


def test_full_override_of_a_key_missing_at_smoke_is_refused_with_a_suggestion(tmp_path):
    path = write(tmp_path, "study:\n  step:\n    epochs: 2\n    rate: 1\n    names: []\n    full: {epoch: 40}\n")
    with pytest.raises(ParamsError, match=r"study\.step\.full\.epoch: overrides a key .* \(did you mean 'epochs'\?\)"):
        load_params("study", "step", StepParams, path)


def test_a_mistyped_smoke_key_is_named_itself_not_as_its_full_override(tmp_path):
    # The smoke key is mistyped and the full override spells it right: the typo is the error.
    text = "study:\n  step:\n    epoch: 2\n    rate: 1\n    names: []\n    full: {epochs: 40}\n"
    for scale in ("smoke", "full"):
        with pytest.raises(ParamsError) as raised:
            load_params("study", "step", StepParams, write(tmp_path, text, scale))
        message = str(raised.value)
        assert "study.step.epoch: Extra inputs are not permitted" in message
        assert "full.epochs" not in message


def test_missing_section_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match=r"study\.step: section missing"):
        load_params("study", "step", StepParams, write(tmp_path, "other: {}\n"))
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params("study", "step", StepParams, write(tmp_path, "study: [unclosed\n"))


def test_yaml_is_loaded_safely(tmp_path):
    path = write(tmp_path, "study:\n  step: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params("study", "step", StepParams, path)
