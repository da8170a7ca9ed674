"""The stage graph comes from DVC and equals what `dvc dag` prints."""

from __future__ import annotations

import re
from pathlib import Path

import networkx as nx
import pytest
import yaml
from flowtoys import FOREACH_EDGES, FOREACH_STAGES, TOY_EDGES, TOY_STAGES, dvc, git

from flows.graph import (
    UnknownStudyError,
    _graph_from_cli,
    foreach_group,
    parse_dvc_dag_dot,
    stage_graph,
    studies,
    study_of,
)


def _parse_mermaid(text: str) -> nx.DiGraph:
    """Independent reading of `dvc dag --md`: node ids -> labels, then `a-->b` edges."""
    labels = dict(re.findall(r'^\s*(node\d+)\["(.+)"\]\s*$', text, flags=re.M))
    graph = nx.DiGraph()
    graph.add_nodes_from(labels.values())
    for source, target in re.findall(r"^\s*(node\d+)-->(node\d+)\s*$", text, flags=re.M):
        graph.add_edge(labels[source], labels[target])
    return graph


def _same_graph(a: nx.DiGraph, b: nx.DiGraph) -> bool:
    return set(a.nodes) == set(b.nodes) and set(a.edges) == set(b.edges)


def test_graph_equals_dvc_dag(toy_repo_factory) -> None:
    repo = toy_repo_factory()
    graph = stage_graph(repo)
    from_dvc_dag = _parse_mermaid(dvc(repo, "dag", "--md").stdout)
    assert _same_graph(graph, from_dvc_dag)
    assert set(graph.nodes) == set(TOY_STAGES)
    assert set(graph.edges) == TOY_EDGES


def test_cli_fallback_parses_the_same_graph(toy_repo_factory) -> None:
    repo = toy_repo_factory()
    assert _same_graph(_graph_from_cli(repo), stage_graph(repo))


def test_study_keeps_upstream_stages_of_other_studies(toy_repo_factory) -> None:
    repo = toy_repo_factory()
    toy = stage_graph(repo, "toy")
    assert set(toy.nodes) == set(TOY_STAGES)  # aux-prep feeds toy-b1, so it stays
    aux = stage_graph(repo, "aux")
    assert set(aux.nodes) == {"aux-prep"}
    assert studies(stage_graph(repo)) == ["aux", "toy"]


def test_unknown_study_lists_known_ones(toy_repo_factory) -> None:
    repo = toy_repo_factory()
    with pytest.raises(UnknownStudyError, match=r"unknown study 'nope'; known studies: aux, toy"):
        stage_graph(repo, "nope")


def test_nested_dvc_yaml_and_data_stages_named_like_dvc_dag(tmp_path: Path) -> None:
    repo = tmp_path / "nested"
    repo.mkdir()
    git(repo, "init", "-q")
    dvc(repo, "init", "-q")
    (repo / "raw.txt").write_text("raw\n")
    dvc(repo, "add", "raw.txt")
    (repo / "sub").mkdir()
    each = {"foreach": ["x"], "do": {"cmd": "cp copy.txt each_${item}.txt", "deps": ["copy.txt"], "outs": ["each_${item}.txt"]}}
    (repo / "sub" / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "nest-copy": {"cmd": "cp ../raw.txt copy.txt", "deps": ["../raw.txt"], "outs": ["copy.txt"]},
                    "nest-each": each,
                }
            }
        )
    )
    (repo / "dvc.yaml").write_text(
        yaml.safe_dump(
            {"stages": {"top-use": {"cmd": "cp sub/copy.txt use.txt", "deps": ["sub/copy.txt"], "outs": ["use.txt"]}}}
        )
    )
    graph = stage_graph(repo)
    assert _same_graph(graph, _parse_mermaid(dvc(repo, "dag", "--md").stdout))
    assert set(graph.edges) == {
        ("raw.txt.dvc", "sub/dvc.yaml:nest-copy"),
        ("sub/dvc.yaml:nest-copy", "top-use"),
        ("sub/dvc.yaml:nest-copy", "sub/dvc.yaml:nest-each@x"),
    }
    assert _same_graph(_graph_from_cli(repo), graph)
    assert study_of("sub/dvc.yaml:nest-copy") == "nest"
    assert study_of("sub/dvc.yaml:nest-each@x") == "nest"
    assert foreach_group("sub/dvc.yaml:nest-each@x") == "sub/dvc.yaml:nest-each"
    assert study_of("raw.txt.dvc") is None


def test_study_of() -> None:
    assert study_of("cmr_recon-train") == "cmr_recon"
    assert study_of("cmr_recon-train@3") == "cmr_recon"
    assert study_of("ct_fairness-train@sex") == "ct_fairness"
    assert study_of("nova-train_normative") == "nova"
    assert study_of("toy-step-two@a-b") == "toy"  # a matrix item joins its values with `-`
    assert study_of("standalone") is None
    assert study_of("standalone@a-b") is None  # the `-` of an item does not make a study
    assert study_of("toy-train@a@b") is None
    assert study_of("data/raw-x.txt.dvc") is None


def test_foreach_group() -> None:
    assert foreach_group("ct_fairness-train@sex") == "ct_fairness-train"
    assert foreach_group("toy-step@a-b") == "toy-step"
    assert foreach_group("ct_fairness-train") is None
    assert foreach_group("raw.txt.dvc") is None


def test_foreach_items_are_stages_named_like_dvc_dag(foreach_repo_factory) -> None:
    repo = foreach_repo_factory()
    graph = stage_graph(repo)
    assert _same_graph(graph, _parse_mermaid(dvc(repo, "dag", "--md").stdout))
    assert set(graph.nodes) == set(FOREACH_STAGES)
    assert set(graph.edges) == FOREACH_EDGES
    assert _same_graph(_graph_from_cli(repo), graph)
    assert studies(graph) == ["aux", "toy"]
    assert set(stage_graph(repo, "toy").nodes) == set(FOREACH_STAGES)


def test_dot_parser_reads_foreach_names() -> None:
    dot = 'strict digraph {\n"toy-prep";\n"toy-train@sex";\n"toy-prep" -> "toy-train@sex";\n"solo@1";\n}\n'
    graph = parse_dvc_dag_dot(dot)
    assert set(graph.nodes) == {"toy-prep", "toy-train@sex", "solo@1"}
    assert set(graph.edges) == {("toy-prep", "toy-train@sex")}
