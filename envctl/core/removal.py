"""Nodes removed from Git and the order deletions run in. Pure: no I/O.

envctl knows what it converged from its run journal (each converged node's commit and the nodes
it depended on then), the inventories in the cluster and the Terraform states it keeps. A node
found there but not in Git is *removed*: it is planned for deletion with the configuration of the
commit it last converged at. Deletions run in reverse dependency order: a node is deleted before
anything it depended on is deleted or changed, so a layer goes before the stack whose outputs it
consumed. ``envctl destroy`` uses the same order for every node of the environment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from envctl.core.changes import NodePlan
from envctl.core.errors import ConfigError


@dataclass(frozen=True)
class RemovedNode:
    """A node envctl converged that Git no longer has.

    ``commit``: the commit it last converged at (None: unknown, e.g. only its inventory was
    found, or it was applied from an uncommitted working tree); ``depends_on``: the nodes it
    depended on at that converge; ``found_in``: where envctl found it (journal, inventory, state).
    """

    id: str
    commit: str | None
    depends_on: tuple[str, ...] = ()
    found_in: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.id.split(".", 1)[-1]


def find_removed(
    in_git: Iterable[str],
    journal: Mapping[str, Mapping[str, object]],
    inventories: Iterable[str] = (),
    states: Iterable[str] = (),
) -> list[RemovedNode]:
    """Nodes converged (per the journal's last entry of each node, the cluster's inventories, the
    Terraform states) but not in Git, sorted by id. A journal entry marked ``deleted`` is a node
    whose deletion finished: it is gone unless an inventory or a state still says otherwise."""
    git = set(in_git)
    found: dict[str, list[str]] = {}
    for n, entry in journal.items():
        if n not in git and not entry.get("deleted"):
            found.setdefault(n, []).append("journal")
    for n in inventories:
        if n not in git:
            found.setdefault(n, []).append("inventory")
    for n in states:
        if n not in git:
            found.setdefault(n, []).append("state")
    out = []
    for n in sorted(found):
        entry = journal.get(n) or {}
        commit = entry.get("commit")
        deps = entry.get("depends_on")
        recorded = tuple(sorted(str(d) for d in deps)) if isinstance(deps, list | tuple) else ()
        out.append(RemovedNode(n, str(commit) if commit else None, recorded, tuple(found[n])))
    return out


def deletion_order(nodes: Iterable[str], depends_on: Mapping[str, Iterable[str]]) -> list[str]:
    """``nodes`` ordered so that each comes before every node it depended on (dependents first);
    ties by id. Edges to nodes outside ``nodes`` are ignored. A cycle (edges recorded at
    different commits can form one) is a ConfigError naming it."""
    todo = set(nodes)
    deps = {n: {d for d in depends_on.get(n, ()) if d in todo and d != n} for n in todo}
    dependents: dict[str, set[str]] = {n: set() for n in todo}
    for n, ds in deps.items():
        for d in ds:
            dependents[d].add(n)
    order: list[str] = []
    waiting = {n: len(dependents[n]) for n in todo}
    ready = sorted(n for n, k in waiting.items() if k == 0)
    while ready:
        n = ready.pop(0)
        order.append(n)
        for d in sorted(deps[n]):
            waiting[d] -= 1
            if waiting[d] == 0:
                ready.append(d)
                ready.sort()
    if len(order) != len(todo):
        stuck = sorted(n for n in todo if n not in order)
        raise ConfigError(
            f"the dependencies recorded for nodes to delete form a cycle: {', '.join(stuck)}",
            node=stuck[0],
            hint="delete one of them first with envctl destroy --target NODE",
        )
    return order


def with_dependents(targets: Iterable[str], depends_on: Mapping[str, Iterable[str]]) -> set[str]:
    """``targets`` and every node that depends on one of them, transitively."""
    out = set(targets)
    grew = True
    while grew:
        grew = False
        for n, ds in depends_on.items():
            if n not in out and any(d in out for d in ds):
                out.add(n)
                grew = True
    return out


def run_edges(plans: Mapping[str, NodePlan], graph_edges: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The ``(first, then)`` edges of the ready queue that applies ``plans``.

    A node converged from Git follows the graph's edges. A node being deleted goes before each
    node it depended on (``NodePlan.depends_on``): that node waits for the deletion, whether it
    is deleted itself or only changed.
    """
    edges = [
        (u, d)
        for u, d in graph_edges
        if u in plans and d in plans and plans[u].deletion is None and plans[d].deletion is None
    ]
    for n, p in plans.items():
        if p.deletion is not None:
            edges.extend((n, u) for u in p.depends_on if u in plans and u != n)
    return sorted(set(edges))
