"""The step frame: declared paths and params keys are enforced, foreach items checked, sources must be deps."""
from pathlib import Path

import pytest
import yaml

from stages.common.badinput import BadInputError
from stages.common.params import StrictModel
from stages.common.pipeline import PipelineError
from stages.common.stage import StageContext, UndeclaredPathError, open_context

COMMON = {"scale": "smoke", "seed": 4, "on_bad_input": "fatal", "device": "cpu", "max_input_bytes": 2**32}


class ToyParams(StrictModel):
    source: str
    size: int


def toy(ctx: StageContext[ToyParams]) -> dict[str, float]:
    return {"size": ctx.params.size}


def project(tmp_path: Path, stage: dict, toy_params: dict | None = None, name: str = "toy-step") -> dict:
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {name: stage}}))
    return {"common": COMMON, "toy": {"step": toy_params or {"source": "synthetic", "size": 2}}}


BASE = {"cmd": "python -m stages.toy.step", "deps": ["${toy.step.source}", "data/toy/raw"],
        "params": ["common.seed", "toy.step"], "outs": ["data/toy/interim", "data/toy/metrics/m.json"]}


def context(tmp_path, document, item=None):
    return open_context(toy, tmp_path, document, item=item, names=("toy", "step"))


def test_declared_paths_resolve_and_undeclared_ones_are_refused(tmp_path):
    ctx = context(tmp_path, project(tmp_path, BASE))
    assert ctx.dep("raw/a/b.csv") == tmp_path / "data/toy/raw/a/b.csv"
    assert ctx.out("interim") == tmp_path / "data/toy/interim"
    assert ctx.out("metrics/m.json") == tmp_path / "data/toy/metrics/m.json"
    assert ctx.dep("interim/x") == tmp_path / "data/toy/interim/x"  # a step may read back its own outputs
    with pytest.raises(UndeclaredPathError, match=r"toy-step does not declare data/toy/raw among its outs"):
        ctx.out("raw")
    with pytest.raises(UndeclaredPathError, match=r"data/toy/rawer"):
        ctx.dep("rawer")  # a sibling with a common prefix is not inside the declared folder
    with pytest.raises(UndeclaredPathError):
        ctx.out("metrics/other.json")


def test_reading_an_undeclared_common_key_is_refused(tmp_path):
    ctx = context(tmp_path, project(tmp_path, BASE))
    assert ctx.common.seed == 4
    with pytest.raises(PipelineError, match=r"toy-step reads common.device but does not list it"):
        _ = ctx.common.device


def test_a_stage_must_list_its_section_the_seed_and_the_scale_when_it_has_full_overrides(tmp_path):
    without_seed = {**BASE, "params": ["toy.step"]}
    with pytest.raises(PipelineError, match=r"must list common.seed"):
        context(tmp_path, project(tmp_path, without_seed))
    document = project(tmp_path, BASE, {"source": "synthetic", "size": 2, "full": {"size": 9}})
    with pytest.raises(PipelineError, match=r"must list common.scale"):
        context(tmp_path, document)
    project(tmp_path, {**BASE, "params": [*BASE["params"], "common.scale"]})
    document["common"] = {**COMMON, "scale": "full"}
    assert context(tmp_path, document).params.size == 9


def test_foreach_items_are_expanded_and_checked(tmp_path):
    stage = {"foreach": ["sex", "age"], "do": {**BASE, "cmd": "python -m stages.toy.step ${item}",
                                                  "outs": ["data/toy/models/${item}"]}}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"toy-step": stage}}))
    document = {"common": COMMON, "toy": {"step": {"source": "synthetic", "size": 2}}}
    ctx = context(tmp_path, document, item="age")
    assert ctx.item == "age" and ctx.spec.name == "toy-step@age"
    assert ctx.out("models/age") == tmp_path / "data/toy/models/age"
    with pytest.raises(UndeclaredPathError):
        ctx.out("models/sex")
    with pytest.raises(PipelineError, match=r"give one of \['sex', 'age'\] \(got 'weight'\)"):
        context(tmp_path, document, item="weight")


def test_a_real_source_must_exist_and_be_a_dependency(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    ctx = context(tmp_path, project(tmp_path, BASE, {"source": str(real), "size": 1}))
    assert ctx.spec.deps[0] == str(real)  # ${toy.step.source} resolved from params as DVC does
    assert ctx.source(str(real), "source") == real
    assert ctx.source("synthetic", "source") is None
    with pytest.raises(BadInputError, match=r"toy.step.source: .*missing does not exist"):
        ctx.source(str(tmp_path / "missing"), "source")
    not_a_dep = {**BASE, "deps": ["data/toy/raw"]}
    ctx = context(tmp_path, project(tmp_path, not_a_dep, {"source": str(real), "size": 1}))
    with pytest.raises(PipelineError, match=r"does not list \$\{toy.step.source\} among its deps"):
        ctx.source(str(real), "source")
