"""One dependency graph over stacks and layers: edges, orders, checks and ``affected``."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from unithelpers import MakeRepo

from envctl.core.errors import ConfigError, Location, UsageError
from envctl.core.graph import EnvGraph
from envctl.core.model import Environment, LayerOutput, LayerSpec, Node, Ref, StackSpec
from envctl.kube import kustomize_reads
from envctl.repo import open_snapshot

GraphOf = Callable[..., EnvGraph]


def stack(name: str, deps: Iterable[str] = (), refs: Iterable[Ref] = ()) -> Node:
    deps = tuple(deps)
    cfg = f"environments/t/stacks/{name}/stack.yaml"
    return Node(
        id=f"stack.{name}",
        kind="stack",
        name=name,
        path=f"environments/t/stacks/{name}",
        depends_on=deps,
        refs=tuple(refs),
        config_file=cfg,
        stack=StackSpec(tf_files=("main.tf",)),
        depends_lines={d: Location(cfg, i + 2) for i, d in enumerate(deps)},
    )


def env_of(*nodes: Node, vars_: dict[str, object] | None = None) -> Environment:
    return Environment(name="t", path="environments/t", vars=vars_ or {}, nodes={n.id: n for n in nodes})


def out(node: str, key: str, line: int = 1) -> Ref:
    return Ref("output", key, Location("f.yaml", line), node=node)


# --- the example-like environment of unithelpers.BASE_FILES --------------------------------


def test_edges_come_from_depends_on_and_references(make_repo: MakeRepo, graph_of: GraphOf) -> None:
    g = graph_of(make_repo())
    assert {k: e.reasons for k, e in g.edges.items()} == {
        ("stack.network", "stack.database"): ("stack.network.outputs.vpc_id",),
        ("stack.database", "layer.app"): ("stack.database.outputs.endpoint",),
        ("layer.platform", "layer.app"): ("depends_on",),
    }
    edge = g.edges[("stack.network", "stack.database")]
    assert edge.location == Location("environments/dev/stacks/database/stack.yaml", 3)
    assert g.edges[("layer.platform", "layer.app")].location == Location(
        "environments/dev/layers/app/layer.yaml", 1
    )


def test_order_and_levels(make_repo: MakeRepo, graph_of: GraphOf) -> None:
    g = graph_of(make_repo())
    assert g.order() == ["layer.platform", "stack.network", "stack.database", "layer.app"]
    assert g.levels() == [["layer.platform", "stack.network"], ["stack.database"], ["layer.app"]]
    assert g.upstream("layer.app") == ["layer.platform", "stack.database"]
    assert g.downstream("stack.network") == ["stack.database"]
    assert g.subgraph_order({"layer.app", "stack.network"}) == ["stack.network", "layer.app"]


def test_order_respects_every_edge_and_is_deterministic() -> None:
    nodes = [
        stack("a", ["stack.c"]),
        stack("b"),
        stack("c", ["stack.b"]),
        stack("d", ["stack.b"]),
        stack("e"),
    ]
    g = EnvGraph(env_of(*nodes))
    order = g.order()
    for up, down in g.edges:
        assert order.index(up) < order.index(down)
    assert order == EnvGraph(env_of(*reversed(nodes))).order()
    assert g.levels() == [["stack.b", "stack.e"], ["stack.c", "stack.d"], ["stack.a"]]


def test_with_dependencies_and_dependents(make_repo: MakeRepo, graph_of: GraphOf) -> None:
    g = graph_of(make_repo())
    assert g.with_dependencies(["stack.database"]) == {"stack.network", "stack.database"}
    assert g.with_dependents(["stack.network"]) == {"stack.network", "stack.database", "layer.app"}
    with pytest.raises(UsageError, match=r"--target stack\.nope") as e:
        g.with_dependencies(["stack.nope"])
    assert e.value.hint is not None and "stack.network" in e.value.hint


@pytest.mark.parametrize(
    ("changed", "hit"),
    [
        (["modules/net/main.tf"], {"stack.database", "layer.app"}),  # used by modules/db, used by database
        (["modules/db/variables.tf"], {"stack.database", "layer.app"}),
        (["environments/dev/stacks/network/main.tf"], {"stack.network", "stack.database", "layer.app"}),
        (["environments/dev/layers/platform/ns.yaml"], {"layer.platform", "layer.app"}),
        (["environments/dev/layers/app/app.yaml"], {"layer.app"}),
        (["environments/dev/layers/app"], {"layer.app"}),
        (
            ["environments/dev/environment.yaml"],
            {"stack.network", "stack.database", "layer.platform", "layer.app"},
        ),
        (
            ["./environments/dev/environment.yaml"],
            {"stack.network", "stack.database", "layer.platform", "layer.app"},
        ),
        (["envctl.yaml"], {"stack.network", "stack.database", "layer.platform", "layer.app"}),
        (
            [
                "README.md",
                "environments/prod/environment.yaml",
                "modules/network-old/main.tf",
                "environments/dev/stacks/network2/main.tf",
                "environments/dev/layers/app.yaml",
            ],
            set(),
        ),
        ([], set()),
    ],
)
def test_affected_nodes_of_changed_paths(
    make_repo: MakeRepo, graph_of: GraphOf, changed: list[str], hit: set[str]
) -> None:
    assert graph_of(make_repo()).affected(changed) == hit


# --- rejected graphs ------------------------------------------------------------------------


def test_depends_on_a_missing_node_names_file_and_line() -> None:
    with pytest.raises(ConfigError, match=r"depends_on names 'stack\.ghost'") as e:
        EnvGraph(env_of(stack("a", ["stack.b", "stack.ghost"]), stack("b")))
    assert e.value.location == Location("environments/t/stacks/a/stack.yaml", 3)
    assert e.value.node == "stack.a"
    assert e.value.hint is not None and "stack.b" in e.value.hint


def test_reference_to_a_missing_node_names_file_and_line() -> None:
    with pytest.raises(ConfigError, match=r"\$\{stack.ghost.outputs.x\} refers to stack.ghost") as e:
        EnvGraph(env_of(stack("a", refs=[out("stack.ghost", "x", 7)])))
    assert e.value.location == Location("f.yaml", 7)


def test_reference_to_an_undeclared_layer_output_is_an_error() -> None:
    layer = Node(
        id="layer.edge",
        kind="layer",
        name="edge",
        path="environments/t/layers/edge",
        layer=LayerSpec(outputs={"host": LayerOutput("v1/Service/ns/edge", ".status")}),
    )
    EnvGraph(env_of(layer, stack("dns", refs=[out("layer.edge", "host")])))
    with pytest.raises(ConfigError, match=r"layer\.edge declares no output 'ip'") as e:
        EnvGraph(env_of(layer, stack("dns", refs=[out("layer.edge", "ip", 4)])))
    assert e.value.location == Location("f.yaml", 4)


def test_a_node_cannot_depend_on_itself() -> None:
    with pytest.raises(ConfigError, match="cannot depend on itself"):
        EnvGraph(env_of(stack("a", ["stack.a"])))
    with pytest.raises(ConfigError, match="cannot consume its own outputs"):
        EnvGraph(env_of(stack("a", refs=[out("stack.a", "x")])))


def test_unknown_env_var_is_an_error() -> None:
    ref = Ref("var", "nope", Location("f.yaml", 2))
    with pytest.raises(ConfigError, match="has no var 'nope'") as e:
        EnvGraph(env_of(stack("a", refs=[ref]), vars_={"other": 1}))
    assert e.value.location == Location("f.yaml", 2)


def test_repeated_reference_gives_one_edge_with_one_reason() -> None:
    g = EnvGraph(
        env_of(stack("a"), stack("b", ["stack.a"], refs=[out("stack.a", "x"), out("stack.a", "x", 2)]))
    )
    assert g.edges[("stack.a", "stack.b")].reasons == ("depends_on", "stack.a.outputs.x")


def test_cycle_message_prints_the_path() -> None:
    with pytest.raises(ConfigError) as e:
        EnvGraph(env_of(stack("a", ["stack.b"]), stack("b", ["stack.a"])))
    assert e.value.message == "dependency cycle: stack.a -> stack.b -> stack.a"
    assert e.value.location is not None and e.value.location.line is not None


_CYCLE = re.compile(r"dependency cycle: (.*)$")


@st.composite
def dag_with_back_edge(draw: st.DrawFn) -> tuple[int, set[tuple[int, int]], tuple[int, int]]:
    """A random DAG over nodes 0..n-1 (edges i -> j only for i < j) plus one edge j -> i closing a cycle."""
    n = draw(st.integers(min_value=2, max_value=12))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    edges = set(draw(st.lists(st.sampled_from(pairs), max_size=40)))
    # a path from i to j guarantees the back edge j -> i closes a cycle
    i = draw(st.integers(min_value=0, max_value=n - 2))
    j = draw(st.integers(min_value=i + 1, max_value=n - 1))
    middle = draw(st.lists(st.integers(min_value=i + 1, max_value=j - 1), max_size=4)) if j - i > 1 else []
    path = sorted(set(middle) | {i, j})
    edges |= set(itertools.pairwise(path))
    return n, edges, (j, i)


@settings(max_examples=200, deadline=None)
@given(dag_with_back_edge(), st.data())
def test_a_dag_plus_a_back_edge_is_a_cycle_error_naming_a_real_cycle(
    case: tuple[int, set[tuple[int, int]], tuple[int, int]], data: st.DataObject
) -> None:
    n, edges, back = case
    all_edges = edges | {back}
    names = data.draw(st.permutations([f"n{k}" for k in range(n)]))  # ids unrelated to topological order
    kinds = data.draw(st.lists(st.sampled_from(["stack", "layer"]), min_size=n, max_size=n))
    ids = [f"{kinds[k]}.{names[k]}" for k in range(n)]
    as_refs = data.draw(st.booleans())  # edges as depends_on or as output references
    nodes = []
    for k in range(n):
        ups = [ids[u] for u, d in sorted(all_edges) if d == k]
        if kinds[k] == "stack":
            spec = {"stack": StackSpec()}
        else:
            spec = {"layer": LayerSpec(outputs={"o": LayerOutput("v1/ConfigMap/ns/x", ".data")})}
        if as_refs:
            nodes.append(
                Node(
                    id=ids[k],
                    kind=kinds[k],
                    name=names[k],
                    path=f"p/{k}",  # type: ignore[arg-type]
                    refs=tuple(out(u, "o") for u in ups),
                    **spec,
                )
            )  # type: ignore[arg-type]
        else:
            nodes.append(
                Node(
                    id=ids[k],
                    kind=kinds[k],
                    name=names[k],
                    path=f"p/{k}",  # type: ignore[arg-type]
                    depends_on=tuple(ups),
                    **spec,
                )
            )  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as e:
        EnvGraph(env_of(*nodes))
    m = _CYCLE.match(e.value.message)
    assert m, e.value.message
    path = m.group(1).split(" -> ")
    assert len(path) >= 3 and path[0] == path[-1]
    assert len(set(path[:-1])) == len(path) - 1  # a simple cycle
    id_edges = {(ids[u], ids[d]) for u, d in all_edges}
    for up, down in itertools.pairwise(path):
        assert (up, down) in id_edges
    assert e.value.node == path[0]
    assert e.value.location is not None


@st.composite
def dag(draw: st.DrawFn) -> tuple[int, set[tuple[int, int]]]:
    n = draw(st.integers(min_value=1, max_value=12))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    return n, (draw(st.sets(st.sampled_from(pairs), max_size=40)) if pairs else set())


@settings(max_examples=100, deadline=None)
@given(dag())
def test_a_dag_is_accepted_and_ordered(case: tuple[int, set[tuple[int, int]]]) -> None:
    n, edges = case
    nodes = [stack(f"s{k}", [f"stack.s{u}" for u, d in sorted(edges) if d == k]) for k in range(n)]
    g = EnvGraph(env_of(*nodes))
    order = g.order()
    assert sorted(order) == sorted(x.id for x in nodes)
    for u, d in edges:
        assert order.index(f"stack.s{u}") < order.index(f"stack.s{d}")
    depth = {x: i for i, level in enumerate(g.levels()) for x in level}
    assert len(depth) == n
    for u, d in edges:
        assert depth[f"stack.s{u}"] < depth[f"stack.s{d}"]


def test_a_layer_output_consumed_by_a_stack_is_an_edge_from_the_layer(
    make_repo: MakeRepo, graph_of: GraphOf
) -> None:
    root = make_repo(
        {
            "environments/dev/layers/platform/layer.yaml": (
                "outputs:\n  host: {object: v1/Service/a/b, path: .x}\n"
            ),
            "environments/dev/stacks/network/stack.yaml": "inputs:\n  host: ${layer.platform.outputs.host}\n",
        }
    )
    g = graph_of(root)
    assert g.edges[("layer.platform", "stack.network")].reasons == ("layer.platform.outputs.host",)
    assert g.order() == ["layer.platform", "stack.network", "stack.database", "layer.app"]
    assert g.levels() == [["layer.platform"], ["stack.network"], ["stack.database"], ["layer.app"]]


def test_changed_since_follows_kustomize_bases_and_components_outside_the_layer(
    make_repo: MakeRepo, graph_of: GraphOf
) -> None:
    """An edit to a base or component anywhere in the repository affects the layer using it
    (it used to give a clean plan: only the layer directory was followed)."""
    app = "environments/dev/layers/app"
    root = make_repo(
        {
            f"{app}/kustomization.yaml": (
                "resources: [../../../../bases/web]\ncomponents: [../../../../comp/probe]\n"
            ),
            "bases/web/kustomization.yaml": "resources: [cm.yaml, ../shared]\n",
            "bases/web/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\n",
            "bases/shared/kustomization.yaml": "resources: [sa.yaml]\n",
            "bases/shared/sa.yaml": "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: web}\n",
            "comp/probe/kustomization.yaml": "kind: Component\n",
            "bases/unused/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n",
        }
    )
    graph = graph_of(root)
    env = graph.env
    snapshot = open_snapshot(root, None)
    reads = {"layer.app": kustomize_reads(env, snapshot, env.nodes["layer.app"])}
    assert graph.affected(["bases/web/cm.yaml"]) == set()  # what the graph alone sees: the old miss
    assert graph.affected(["bases/web/cm.yaml"], reads) == {"layer.app"}
    assert graph.affected(["bases/shared/sa.yaml"], reads) == {"layer.app"}  # a base of a base
    assert graph.affected(["comp/probe/kustomization.yaml"], reads) == {"layer.app"}
    assert graph.affected(["bases/unused/cm.yaml"], reads) == set()
