"""One dependency graph over stacks and layers (networkx): checks, orders and selections. Pure.

Edges point from a dependency to its dependent (``stack.network -> stack.database``): from
``depends_on`` and from ``${stack.X.outputs.Y}`` / ``${layer.X.outputs.Y}`` references.

networkx is imported the first time a graph algorithm runs on a graph that has edges (~100 ms,
its ``__init__`` imports every algorithm). A graph without edges needs none: it is acyclic, its
order is its sorted nodes, and nothing is upstream or downstream of anything. That keeps
``envctl plan`` of an empty or edgeless environment inside its start-up budget (bench B1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from envctl.core.errors import ConfigError, Location, UsageError
from envctl.core.model import Environment, Node
from envctl.core.refs import quoted

if TYPE_CHECKING:
    import networkx as nx


@dataclass(frozen=True)
class Edge:
    """Why ``upstream`` must converge before ``downstream``: depends_on, or the references listed."""

    upstream: str
    downstream: str
    reasons: tuple[str, ...]
    location: Location | None


class EnvGraph:
    """The checked graph of one environment."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        edges: dict[tuple[str, str], Edge] = {}
        for node in env.nodes.values():
            for dep in node.depends_on:
                loc = node.depends_lines.get(dep) or Location(node.config_file or node.path)
                if dep not in env.nodes:
                    raise ConfigError(
                        f"depends_on names {quoted(dep)}, which is not a node of environment {env.name}",
                        node=node.id,
                        location=loc,
                        hint=_known(env, dep),
                    )
                if dep == node.id:
                    raise ConfigError("a node cannot depend on itself", node=node.id, location=loc)
                self._add(edges, dep, node.id, "depends_on", loc)
            for ref in node.upstream_refs:
                assert ref.node is not None
                if ref.node not in env.nodes:
                    raise ConfigError(
                        f"${{{ref.text}}} refers to {ref.node}, "
                        f"which is not a node of environment {env.name}",
                        node=node.id,
                        location=ref.location,
                        hint=_known(env, ref.node),
                    )
                if ref.node == node.id:
                    raise ConfigError(
                        f"${{{ref.text}}}: a node cannot consume its own outputs",
                        node=node.id,
                        location=ref.location,
                    )
                target = env.nodes[ref.node]
                if target.layer is not None and ref.name not in target.layer.outputs:
                    raise ConfigError(
                        f"${{{ref.text}}}: {ref.node} declares no output {ref.name!r}",
                        node=node.id,
                        location=ref.location,
                        hint=f"declare it under outputs: in {target.path}/layer.yaml",
                    )
                self._add(edges, ref.node, node.id, ref.text, ref.location)
        for node in env.nodes.values():
            for ref in node.refs:
                if ref.kind == "var" and ref.name not in env.vars:
                    raise ConfigError(
                        f"${{{ref.text}}}: environment {env.name} has no var {ref.name!r}",
                        node=node.id,
                        location=ref.location,
                        hint=f"add it under vars: in {env.path}/environment.yaml",
                    )
        self.edges = edges
        self._check_acyclic()

    def _add(
        self, edges: dict[tuple[str, str], Edge], up: str, down: str, reason: str, loc: Location
    ) -> None:
        key = (up, down)
        old = edges.get(key)
        if old is None:
            edges[key] = Edge(up, down, (reason,), loc)
        elif reason not in old.reasons:  # the same output used twice is one reason
            edges[key] = Edge(up, down, (*old.reasons, reason), old.location)

    @cached_property
    def g(self) -> nx.DiGraph:
        """The networkx graph, built (and networkx imported) on first use."""
        import networkx as nx

        g = nx.DiGraph()
        g.add_nodes_from(sorted(self.env.nodes))
        g.add_edges_from(self.edges)
        return g

    def _check_acyclic(self) -> None:
        if not self.edges:
            return
        import networkx as nx

        try:
            cycle = nx.find_cycle(self.g)
        except nx.NetworkXNoCycle:
            return
        nodes = [u for u, _ in cycle]
        # start the printed cycle at its smallest node id so the message is stable
        i = nodes.index(min(nodes))
        nodes = nodes[i:] + nodes[:i]
        path = " -> ".join([*nodes, nodes[0]])
        first = self.edges[(nodes[-1], nodes[0])]
        raise ConfigError(
            f"dependency cycle: {path}",
            node=nodes[0],
            location=first.location,
            hint="remove one depends_on or output reference on this path",
        )

    # --- orders and selections ------------------------------------------------------------

    def upstream(self, node_id: str) -> list[str]:
        if not self.edges and node_id in self.env.nodes:
            return []
        return sorted(self.g.predecessors(node_id))

    def downstream(self, node_id: str) -> list[str]:
        if not self.edges and node_id in self.env.nodes:
            return []
        return sorted(self.g.successors(node_id))

    def order(self) -> list[str]:
        """A deterministic topological order (ties broken by node id)."""
        if not self.edges:
            return sorted(self.env.nodes)
        import networkx as nx

        return list(nx.lexicographical_topological_sort(self.g))

    def levels(self) -> list[list[str]]:
        """Nodes grouped by depth: what could run together if everything took the same time."""
        if not self.edges:
            return [sorted(self.env.nodes)] if self.env.nodes else []
        import networkx as nx

        return [sorted(gen) for gen in nx.topological_generations(self.g)]

    def with_dependencies(self, targets: Iterable[str]) -> set[str]:
        out: set[str] = set()
        for t in targets:
            if t not in self.env.nodes:
                # a command-line mistake, not a broken repository: exit 64, not 78
                raise UsageError(
                    f"--target {t}: no such node in environment {self.env.name}", hint=_known(self.env, t)
                )
            out.add(t)
            if self.edges:
                import networkx as nx

                out |= nx.ancestors(self.g, t)
        return out

    def with_dependents(self, nodes: Iterable[str]) -> set[str]:
        out: set[str] = set()
        for n in nodes:
            out.add(n)
            if self.edges or n not in self.env.nodes:
                import networkx as nx

                out |= nx.descendants(self.g, n)
        return out

    def affected(
        self, changed_paths: Iterable[str], reads: Mapping[str, Iterable[str]] | None = None
    ) -> set[str]:
        """Nodes whose directory, used module, chart or values file changed, plus everything downstream.

        ``reads``: more repository paths (directories or files) a node reads, by node id (a
        kustomization's bases and components, found by the kube adapter). A change to the
        environment's own settings (``environment.yaml``) or to ``envctl.yaml`` affects every node.
        """
        env_files = {f"{self.env.path}/environment.yaml", "envctl.yaml"}
        hit: set[str] = set()
        for raw in changed_paths:
            p = PurePosixPath(raw)  # also drops "./" and trailing "/" so both spellings match
            if str(p) in env_files:
                return set(self.env.nodes)
            for node in self.env.nodes.values():
                dirs = [node.path]
                if node.stack is not None:
                    dirs.extend(node.stack.module_dirs)
                if node.layer is not None:
                    dirs.extend(node.layer.sources)
                dirs.extend((reads or {}).get(node.id, ()))
                if any(p == PurePosixPath(d) or PurePosixPath(d) in p.parents for d in dirs):
                    hit.add(node.id)
        return self.with_dependents(hit)

    def subgraph_order(self, nodes: set[str]) -> list[str]:
        return [n for n in self.order() if n in nodes]

    def node(self, node_id: str) -> Node:
        return self.env.nodes[node_id]


def _known(env: Environment, wanted: str) -> str:
    names = sorted(env.nodes)
    return f"nodes of {env.name}: {', '.join(names) or 'none'}"
