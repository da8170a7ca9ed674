import json

import pytest

from stages.common.badinput import BadInputError, Quarantine
from stages.common.paths import UnsafePathError, resolve_inside


def test_paths_must_stay_inside_the_data_root(tmp_path):
    assert resolve_inside(tmp_path, "a/b.mat") == tmp_path.resolve() / "a" / "b.mat"
    with pytest.raises(UnsafePathError, match="outside"):
        resolve_inside(tmp_path, "../etc/passwd")
    with pytest.raises(UnsafePathError):
        resolve_inside(tmp_path / "data", "/etc/passwd")


def test_fatal_policy_raises_and_skip_policy_quarantines(tmp_path):
    with pytest.raises(BadInputError):
        with Quarantine("fatal").guard("case1"):
            raise BadInputError("case1: age missing")
    quarantine = Quarantine("skip")
    with quarantine.guard("case1") as outcome:
        raise BadInputError("case1: age missing")
    with quarantine.guard("case2") as fine:
        pass
    assert (outcome.ok, fine.ok, quarantine.items) == (False, True, ["case1"])
    saved = json.loads(quarantine.save(tmp_path / "q.json").read_text())
    assert saved == {"policy": "skip", "count": 1, "entries": [{"item": "case1", "problem": "case1: age missing"}]}


def test_bugs_are_never_quarantined():
    with pytest.raises(KeyError):
        with Quarantine("skip").guard("case1"):
            raise KeyError("a bug")


def test_everything_quarantined_stops_and_points_at_the_list(tmp_path):
    quarantine = Quarantine("skip")
    for name in ("a.mat", "b.mat"):
        with quarantine.guard(name):
            raise BadInputError(f"{name}: truncated")
    with pytest.raises(BadInputError) as caught:
        quarantine.stop_when_everything_quarantined(0, "file", tmp_path)
    message = str(caught.value)
    assert "every file was quarantined (2 of 2)" in message and str(tmp_path / "quarantine.json") in message
    assert [e["item"] for e in json.loads((tmp_path / "quarantine.json").read_text())["entries"]] == ["a.mat", "b.mat"]
    quarantine.stop_when_everything_quarantined(1, "file", tmp_path)  # something left: go on
