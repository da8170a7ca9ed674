"""The orchestration section of params.yaml: defaults, validation messages, resources."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.config import (
    OrchestrationConfigError,
    StageResources,
    load_orchestration_config,
    parse_orchestration_config,
)


def test_missing_section_and_missing_file_mean_defaults(tmp_path: Path) -> None:
    assert load_orchestration_config(tmp_path) == parse_orchestration_config(None)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"cmr_recon": {"ingest": {"n": 2}}}))
    config = load_orchestration_config(tmp_path)
    assert config.retries == 2
    assert config.retry_delay_seconds == 5
    assert config.lock_retries == 20
    assert config.remote is None
    assert config.resources_for("anything") == StageResources(num_cpus=1, num_gpus=0)


def test_full_section_is_read(tmp_path: Path) -> None:
    section = {
        "retries": 3,
        "retry_delay_seconds": 1.5,
        "lock_retries": 7,
        "default_resources": {"num_cpus": 1, "num_gpus": 0},
        "resources": {"cmr_recon-train": {"num_cpus": 2, "num_gpus": 1}},
        "schedules": {"cmr_recon": "0 3 * * 1"},
        "remote": "store",
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"orchestration": section}))
    config = load_orchestration_config(tmp_path)
    assert config.retries == 3 and config.lock_retries == 7 and config.remote == "store"
    assert config.schedules == {"cmr_recon": "0 3 * * 1"}
    assert config.remote_options_for("cmr_recon-train") == {"num_cpus": 2, "num_gpus": 1}
    assert config.remote_options_for("cmr_recon-ingest") == {"num_cpus": 1, "num_gpus": 0}


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"resources": {"cmr_recon-train": {"num_gpus": -1}}}, "orchestration.resources.cmr_recon-train.num_gpus"),
        ({"resources": {"cmr_recon-train": {"gpus": 1}}}, "orchestration.resources.cmr_recon-train.gpus"),
        ({"retries": "many"}, "orchestration.retries"),
        ({"retry_delay": 3}, "orchestration.retry_delay"),
        ({"schedules": {"cmr_recon": "every monday"}}, "orchestration.schedules.cmr_recon"),
        ({"default_resources": {"num_cpus": -2}}, "orchestration.default_resources.num_cpus"),
        ({"remote": 5}, "orchestration.remote"),
    ],
)
def test_bad_values_name_the_key(section: dict, key: str) -> None:
    with pytest.raises(OrchestrationConfigError) as error:
        parse_orchestration_config(section)
    assert str(error.value).startswith(key + ":")


def test_unknown_key_says_so(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"orchestration": {"retires": 2}}))
    with pytest.raises(OrchestrationConfigError, match=r"params.yaml: orchestration.retires: unknown key"):
        load_orchestration_config(tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [("toy: [unclosed\n", "not valid YAML"), ("- a list\n", "expected a mapping at the top level")],
)
def test_unreadable_params_file_is_a_config_error(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(OrchestrationConfigError, match=rf"params.yaml: {message}"):
        load_orchestration_config(tmp_path)


def test_check_names_rejects_unknown_stage_and_study() -> None:
    config = parse_orchestration_config(
        {"resources": {"cmr_recon-trian": {"num_cpus": 2}}, "schedules": {"cmr": "0 3 * * 1"}}
    )
    with pytest.raises(OrchestrationConfigError, match=r"^orchestration.resources.cmr_recon-trian: no such stage"):
        config.check_names(["cmr_recon-train"], ["cmr_recon"])
    config = parse_orchestration_config({"schedules": {"cmr": "0 3 * * 1"}})
    with pytest.raises(OrchestrationConfigError, match=r"^orchestration.schedules.cmr: no such study.*cmr_recon"):
        config.check_names(["cmr_recon-train"], ["cmr_recon"])


FOREACH_RESOURCES = {
    "default_resources": {"num_cpus": 1, "num_gpus": 0},
    "resources": {
        "ct_fairness-train": {"num_cpus": 2, "num_gpus": 0},
        "ct_fairness-train@age": {"num_cpus": 4, "num_gpus": 1},
        "sub/dvc.yaml:nest-each": {"num_cpus": 3, "num_gpus": 0},
    },
}


def test_foreach_group_key_applies_to_each_item_and_an_exact_key_wins() -> None:
    config = parse_orchestration_config(FOREACH_RESOURCES)
    assert config.resources_key("ct_fairness-train@sex") == "ct_fairness-train"
    assert config.remote_options_for("ct_fairness-train@sex") == {"num_cpus": 2, "num_gpus": 0}
    assert config.remote_options_for("ct_fairness-train@dataset") == {"num_cpus": 2, "num_gpus": 0}
    assert config.resources_key("ct_fairness-train@age") == "ct_fairness-train@age"
    assert config.remote_options_for("ct_fairness-train@age") == {"num_cpus": 4, "num_gpus": 1}
    assert config.resources_key("sub/dvc.yaml:nest-each@x") == "sub/dvc.yaml:nest-each"
    assert config.resources_for("sub/dvc.yaml:nest-each@x") == StageResources(num_cpus=3, num_gpus=0)
    assert config.resources_key("ct_fairness-evaluate") is None
    assert config.remote_options_for("ct_fairness-evaluate") == {"num_cpus": 1, "num_gpus": 0}
    assert config.resources_key("ct_fairness-train_extra@sex") is None  # a group is matched whole


def test_check_names_accepts_foreach_groups_and_items() -> None:
    stages = ["ct_fairness-preprocess", "ct_fairness-train@sex", "ct_fairness-train@age", "sub/dvc.yaml:nest-each@x"]
    parse_orchestration_config(FOREACH_RESOURCES).check_names(stages, ["ct_fairness", "nest"])
    for key in ("ct_fairness-trian", "ct_fairness-train@nope", "ct_fairness-preprocess@sex"):
        config = parse_orchestration_config({"resources": {key: {"num_cpus": 2}}})
        with pytest.raises(
            OrchestrationConfigError, match=rf"^orchestration.resources.{key}: no such stage.*foreach groups: ct_fairness-train"
        ):
            config.check_names(stages, ["ct_fairness", "nest"])
