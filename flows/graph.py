"""The stage graph, read from DVC itself (dvc.yaml is the only place the DAG is written).

Nodes are stage names exactly as `dvc dag` prints them (`Stage.addressing`); edges point
upstream -> downstream. Stages are named `<study>-<step>`; the study id is the part before
the first `-`. A `foreach` stage is expanded by DVC into one stage per item, named
`<study>-<step>@<item>` (`<study>-<step>` is then the name of the group).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import networkx as nx

_DOT_EDGE = re.compile(r'^\s*"?(?P<src>[^"]+?)"?\s*->\s*"?(?P<dst>[^"]+?)"?\s*;?\s*$')
_DOT_NODE = re.compile(r'^\s*"(?P<name>[^"]+)"\s*;?\s*$')
# DVC allows letters, digits, `_` and `-` in a stage name; a stage that a `foreach` generated
# has one `@<item>` suffix on top.
_STAGE_NAME = re.compile(r"^(?P<study>\w+)-[\w-]*(?:@[^@]+)?$")


class UnknownStudyError(ValueError):
    """A study id that no stage name in the DAG starts with."""


def study_of(stage: str) -> str | None:
    """Study id of a stage named `<study>-<step>` or `<study>-<step>@<item>`; None for stages
    outside that scheme (`.dvc` files among them)."""
    name = stage.rsplit(":", 1)[-1]  # stages of a nested dvc.yaml print as path/dvc.yaml:name
    match = _STAGE_NAME.match(name)
    return match["study"] if match else None


def foreach_group(stage: str) -> str | None:
    """The group of a stage a `foreach` generated: `<name>` of `<name>@<item>`, with the
    `path/dvc.yaml:` prefix of a nested dvc.yaml kept; None for any other stage."""
    if stage.endswith(".dvc"):
        return None
    dvcfile, colon, name = stage.rpartition(":")
    group, at, item = name.partition("@")  # DVC allows no `@` in the names written in dvc.yaml
    return f"{dvcfile}{colon}{group}" if at and group and item else None


def studies(graph: nx.DiGraph) -> list[str]:
    """Sorted study ids present in `graph`."""
    return sorted({study for node in graph if (study := study_of(node)) is not None})


def _stage_name(stage: object) -> str:
    """`Stage.addressing` as `dvc dag` prints it when run from the repository root.

    (`addressing` itself is relative to the current directory, which need not be the root.)
    A stage that a `foreach` generated has the `name` `<group>@<item>`, as `dvc dag` prints it.
    """
    path_in_repo = Path(stage.path_in_repo).as_posix()  # type: ignore[attr-defined]
    name = getattr(stage, "name", None)
    if name is None:  # a .dvc file stage
        return path_in_repo
    return name if path_in_repo == "dvc.yaml" else f"{path_in_repo}:{name}"


def _graph_from_index(repo_root: Path) -> nx.DiGraph:
    from dvc.repo import Repo

    with Repo(str(repo_root)) as repo:
        dependency_graph = repo.index.graph
        graph = nx.DiGraph()
        graph.add_nodes_from(_stage_name(stage) for stage in dependency_graph.nodes)
        # DVC's edges point from a stage to the stage it depends on; flip them.
        graph.add_edges_from(
            (_stage_name(upstream), _stage_name(downstream))
            for downstream, upstream in dependency_graph.edges
        )
    return graph


def parse_dvc_dag_dot(dot: str) -> nx.DiGraph:
    """Parse the output of `dvc dag --dot` (edges there already point upstream -> downstream)."""
    graph = nx.DiGraph()
    for line in dot.splitlines():
        if edge := _DOT_EDGE.match(line):
            graph.add_edge(edge["src"], edge["dst"])
        elif node := _DOT_NODE.match(line):
            graph.add_node(node["name"])
    return graph


def _graph_from_cli(repo_root: Path) -> nx.DiGraph:
    completed = subprocess.run(
        [sys.executable, "-m", "dvc", "dag", "--dot"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"`dvc dag --dot` failed in {repo_root}: {completed.stderr.strip()}")
    return parse_dvc_dag_dot(completed.stdout)


def full_stage_graph(repo_root: Path) -> nx.DiGraph:
    """All stages of the DVC project at `repo_root`, edges upstream -> downstream."""
    repo_root = Path(repo_root)
    if not (repo_root / ".dvc").is_dir():
        raise FileNotFoundError(f"{repo_root}: not a DVC repository (no .dvc directory)")
    try:
        return _graph_from_index(repo_root)
    except ImportError:
        return _graph_from_cli(repo_root)
    except Exception as exc:  # an invalid dvc.yaml must surface, not be masked by the fallback
        from dvc.exceptions import DvcException

        if isinstance(exc, DvcException):
            raise
        return _graph_from_cli(repo_root)


def select_study(graph: nx.DiGraph, study: str) -> nx.DiGraph:
    """Stages of `study` plus every upstream stage they need (possibly of other studies)."""
    members = {node for node in graph if study_of(node) == study}
    if not members:
        known = ", ".join(studies(graph)) or "none"
        raise UnknownStudyError(f"unknown study {study!r}; known studies: {known}")
    needed = set(members)
    for node in members:
        needed |= nx.ancestors(graph, node)
    return graph.subgraph(needed).copy()


def stage_graph(repo_root: Path, study: str | None = None) -> nx.DiGraph:
    """The DVC stage graph of `repo_root`, optionally cut down to one study and its upstream."""
    graph = full_stage_graph(Path(repo_root))
    return graph if study is None else select_study(graph, study)


def format_graph(graph: nx.DiGraph) -> str:
    """Human-readable listing: stages in a topological order with their upstream stages."""
    lines = []
    for stage in nx.lexicographical_topological_sort(graph):
        upstream = sorted(graph.predecessors(stage))
        after = f"  <- {', '.join(upstream)}" if upstream else ""
        lines.append(f"{stage}{after}")
    return "\n".join(lines)
