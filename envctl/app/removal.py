"""Nodes removed from Git, and deleting nodes: find them, plan their deletion, name what deletes them.

A node envctl converged (its journal, an inventory in the cluster, a Terraform state) that Git
no longer has is *removed*: plan lists it as "removed from Git" with what its deletion deletes
and keeps, and apply deletes it before anything it depended on (the edges its last converge
recorded in the journal). A removed stack is destroyed with the configuration of the commit it
last converged at, loaded from Git as that commit holds it. ``envctl destroy`` plans every node
(or its targets and their dependents) the same way (``app.destroy``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import cast

from envctl.app.session import SerialSnapshot, Session, default_adapters
from envctl.core.adapter import NodeAdapter
from envctl.core.changes import Action, Deletion, NodePlan
from envctl.core.errors import EnvctlError, UnavailableError
from envctl.core.model import Node, NodeKind
from envctl.core.removal import RemovedNode, deletion_order, find_removed
from envctl.core.secrets import scrub_plan

CONFIG_COMMIT = "config_commit"  # artifact: the commit whose configuration deletes a removed node


def _kind(node_id: str) -> str:
    return node_id.split(".", 1)[0]


def find_removed_nodes(s: Session) -> list[RemovedNode]:
    """Nodes converged but no longer in Git: from the journal, the cluster's inventories (when the
    environment has a cluster) and the local Terraform states."""
    journal = s.store.last_applied(s.env.name)
    gone = [n for n in journal if n not in s.env.nodes]
    kinds = {_kind(n) for n in gone}
    known_kinds = [k for k in kinds if k in ("stack", "layer")]
    removed_in_cluster = any(s.adapter_of_kind(k).traits.in_cluster for k in known_kinds)
    inventories: list[str] = []
    if s.in_cluster or removed_in_cluster:
        from envctl.kube.inventory import inventoried_layers

        try:
            inventories = inventoried_layers(s.kube())
        except UnavailableError:
            if removed_in_cluster:
                raise  # the journal says layers left Git: their cluster must answer
            # a cluster an unapplied stack creates is not there yet: nothing of it can be removed
    states: list[str] = []
    # no local state directory, no stack to find (and no Terraform adapter to import)
    if s.env.terraform.backend == "local" and (s.store.base / "state" / s.env.name).is_dir():
        from envctl.terraform.node import stacks_with_state

        states = stacks_with_state(s.root, s.env.name)
    return [
        r for r in find_removed(s.env.nodes, journal, inventories, states) if r.kind in ("stack", "layer")
    ]


def deletion_target(s: Session, node_id: str, plan: NodePlan) -> tuple[Node, NodeAdapter]:
    """The node (its configuration) and the adapter that delete it: the node as Git has it for a
    node being destroyed, the node as its last converged commit had it for one removed from Git."""
    if plan.deletion is Deletion.DESTROY and node_id in s.env.nodes:
        return s.env.nodes[node_id], s.adapter(node_id)
    return removed_target(s, node_id, plan.artifacts.get(CONFIG_COMMIT))


def removed_target(s: Session, node_id: str, commit: str | None) -> tuple[Node, NodeAdapter]:
    key = (node_id, commit)
    if key in s.removed_targets:
        return s.removed_targets[key]
    kind, _, name = node_id.partition(".")
    found: tuple[Node, NodeAdapter] | None = None
    if commit:
        from envctl.repo import load_environment, open_snapshot

        try:
            snapshot = SerialSnapshot(open_snapshot(s.root, commit))
            old = load_environment(snapshot, s.env.name)
        except EnvctlError:
            old = None  # that commit no longer loads (or is gone): the node's config is unknown
        if old is not None and node_id in old.nodes:
            node = old.nodes[node_id]
            adapters = default_adapters(old, snapshot, s.root, s.kube, s.progress, lambda _n: {})
            found = (node, adapters[node.kind])
    if found is None:
        # no configuration: a layer is deleted from its inventory alone; a stack is kept (its
        # adapter says why) since Terraform cannot destroy without its configuration
        node = Node(node_id, cast(NodeKind, kind), name, f"{s.env.path}/{kind}s/{name}")
        found = (node, s.adapter_of_kind(kind))
    s.removed_targets[key] = found
    return found


def plan_deletions(
    s: Session,
    nodes: Iterable[str],
    depends_on: Mapping[str, Iterable[str]],
    plan_dir: Path,
    commits: Mapping[str, str | None],
) -> tuple[list[str], dict[str, NodePlan], dict[str, EnvctlError]]:
    """Plan the deletion of ``nodes`` in deletion order (dependents first), each knowing what the
    deletions before it delete. A node in Git is destroyed as Git has it; any other (removed from
    Git) with the configuration of ``commits[node]``. Returns the order, the plans and errors."""
    order = deletion_order(nodes, depends_on)
    leaving: set[str] = set()
    plans: dict[str, NodePlan] = {}
    errors: dict[str, EnvctlError] = {}
    for n in order:
        deletion = Deletion.DESTROY if n in s.env.nodes else Deletion.REMOVED
        commit = commits.get(n)
        artifacts = {CONFIG_COMMIT: commit} if deletion is Deletion.REMOVED and commit else {}
        s.progress(
            f"{n}: planning its deletion" + (" (removed from Git)" if deletion is Deletion.REMOVED else "")
        )
        try:
            node, adapter = deletion_target(s, n, NodePlan(n, deletion=deletion, artifacts=dict(artifacts)))
            plan = adapter.plan_delete(node, plan_dir, frozenset(leaving))
        except EnvctlError as e:
            e.node = e.node or n
            errors[n] = e
            continue
        plan = dataclasses.replace(
            scrub_plan(plan, ()),
            deletion=deletion,
            depends_on=tuple(sorted(d for d in depends_on.get(n, ()) if d != n)),
            artifacts={**plan.artifacts, **artifacts},
        )
        leaving |= {c.address for c in plan.changes if c.action is Action.DELETE}
        plans[n] = plan
    return order, plans, errors


def plan_removed(s: Session, plan_dir: Path) -> tuple[list[str], dict[str, NodePlan], dict[str, EnvctlError]]:
    """The deletion plans of every node removed from Git (what ``envctl plan`` adds)."""
    try:
        removed = find_removed_nodes(s)
    except EnvctlError as e:
        return [], {}, {e.node or "removed nodes": e}
    deps = {r.id: r.depends_on for r in removed}
    return plan_deletions(s, deps, deps, plan_dir, {r.id: r.commit for r in removed})
