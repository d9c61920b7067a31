"""networkx is imported only for a graph that has edges; an edgeless graph answers the same."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from envctl.core.errors import UsageError
from envctl.core.graph import EnvGraph
from envctl.core.model import Environment, Node, StackSpec

REPO_ROOT = Path(__file__).resolve().parents[2]


def stack(name: str, deps: tuple[str, ...] = ()) -> Node:
    path = f"environments/t/stacks/{name}"
    return Node(
        id=f"stack.{name}", kind="stack", name=name, path=path, depends_on=deps,
        config_file=f"{path}/stack.yaml", stack=StackSpec(tf_files=("main.tf",)),
    )


def env_of(*nodes: Node) -> Environment:
    return Environment(name="t", path="environments/t", vars={}, nodes={n.id: n for n in nodes})


@pytest.mark.parametrize("names", [[], ["a"], ["b", "a", "c"]])
def test_an_edgeless_graph_answers_as_networkx_does(names: list[str]) -> None:
    import networkx as nx  # the reference (imported here: the module is imported by a probe below)

    g = EnvGraph(env_of(*(stack(n) for n in names)))
    ref = nx.DiGraph()
    ref.add_nodes_from(sorted(f"stack.{n}" for n in names))
    assert g.order() == list(nx.lexicographical_topological_sort(ref))
    assert g.levels() == [sorted(gen) for gen in nx.topological_generations(ref)]
    for n in ref.nodes:
        assert g.upstream(n) == g.downstream(n) == []
        assert g.with_dependencies([n]) == g.with_dependents([n]) == {n}
    assert g.affected(["environments/t/environment.yaml"]) == set(ref.nodes)
    assert g.subgraph_order(set(ref.nodes)) == sorted(ref.nodes)
    with pytest.raises(UsageError, match="no such node"):
        g.with_dependencies(["stack.nope"])
    with pytest.raises(nx.NetworkXError):  # as before: a bug in the caller, not a user error
        g.with_dependents(["stack.nope"])


def _imports_networkx(nodes: str) -> bool:
    code = (
        "import sys\n"
        "from test_graph_lazy import env_of, stack\n"
        "from envctl.core.graph import EnvGraph\n"
        "assert 'networkx' not in sys.modules\n"
        f"g = EnvGraph(env_of({nodes}))\n"
        "g.order(); g.levels(); [g.upstream(n) for n in g.env.nodes]\n"
        "print('networkx' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT / "tests" / "unit",
    )
    return out.stdout.strip() == "True"


def test_networkx_is_imported_only_when_the_graph_has_edges() -> None:
    assert not _imports_networkx("")
    assert not _imports_networkx("stack('a'), stack('b')")
    assert _imports_networkx("stack('a'), stack('b', ('stack.a',))")
