"""The blast radius of a plan: which nodes change, how many Terraform resources and Kubernetes
objects, and which downstream nodes apply will plan again, reading which upstream outputs. Pure.

Computed from the plan bundle and the graph's edges (``core.graph.Edge``): an edge's reasons
are the references (``stack.network.outputs.vpc_id``) a downstream node reads. A node is planned
again during apply when it is *pending upstream*: an input it reads is known only once an
upstream node is applied (app/apply re-plans a node whose inputs differ from the planned ones).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from envctl.core.bundle import PlanBundle
from envctl.core.changes import Action, Change

PRUNED = "no longer in Git (pruned)"
"""The reason of an object deleted because its layer's inventory holds it and Git no longer does."""

ALL_OUTPUTS = "*"
"""In ``outputs_unknown``: every output of the node is known only after apply (a pending node)."""


@dataclass(frozen=True)
class Tally:
    """How many resources or objects a plan creates, updates, replaces and deletes (``pruned``:
    objects deleted because Git no longer holds them, counted apart from other deletes)."""

    create: int = 0
    update: int = 0
    replace: int = 0
    delete: int = 0
    pruned: int = 0

    @classmethod
    def of(cls, changes: Iterable[Change]) -> Tally:
        n = dict.fromkeys(("create", "update", "replace", "delete", "pruned"), 0)
        for c in changes:
            if c.action is Action.DELETE and PRUNED in c.reasons:
                n["pruned"] += 1
            elif c.action in (Action.CREATE, Action.UPDATE, Action.REPLACE, Action.DELETE):
                n[c.action.value] += 1
        return cls(**n)

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.create + other.create,
            self.update + other.update,
            self.replace + other.replace,
            self.delete + other.delete,
            self.pruned + other.pruned,
        )

    @property
    def total(self) -> int:
        return self.create + self.update + self.replace + self.delete + self.pruned

    def to_json(self) -> dict[str, int]:
        return {
            "create": self.create,
            "update": self.update,
            "replace": self.replace,
            "delete": self.delete,
            "pruned": self.pruned,
        }


@dataclass(frozen=True)
class Replan:
    """A node apply plans again after ``upstream`` nodes are applied, because it reads ``reads``
    (references to their outputs whose values are known only then)."""

    node: str
    upstream: tuple[str, ...]
    reads: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "after": list(self.upstream), "reads": list(self.reads)}


@dataclass(frozen=True)
class BlastRadius:
    """What a plan touches. ``changing``: nodes with changes (pending ones included);
    ``destructive``: nodes that delete or replace; ``resources``: Terraform resources (nodes off the
    cluster); ``objects``: Kubernetes objects; ``outputs``: changing outputs; ``replans``: nodes
    apply plans again (they read outputs known only after apply); ``follows``: nodes planned now
    with the new values of upstream outputs this plan changes."""

    changing: tuple[str, ...]
    destructive: tuple[str, ...]
    resources: Tally
    objects: Tally
    outputs: int
    replans: tuple[Replan, ...]
    follows: tuple[Replan, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes_changing": list(self.changing),
            "nodes_destructive": list(self.destructive),
            "resources": self.resources.to_json(),
            "objects": self.objects.to_json(),
            "outputs_changing": self.outputs,
            "replanned_after_apply": [r.to_json() for r in self.replans],
            "reads_changed_outputs": [r.to_json() for r in self.follows],
        }


def _output_of(ref: str) -> tuple[str, str] | None:
    """(node, output) of a reference text ``stack.x.outputs.y``; None for anything else."""
    parts = ref.split(".")
    if len(parts) >= 4 and parts[2] == "outputs":
        return f"{parts[0]}.{parts[1]}", ".".join(parts[3:])
    return None


def blast_radius(
    bundle: PlanBundle,
    edge_reasons: dict[tuple[str, str], tuple[str, ...]],
    in_cluster: Collection[str],
) -> BlastRadius:
    """The blast radius of ``bundle``. ``edge_reasons[(up, down)]``: the references ``down``
    reads from ``up`` (``depends_on`` for an explicit edge); ``in_cluster``: nodes whose changes
    are Kubernetes objects (the rest are Terraform resources)."""
    resources = objects = Tally()
    outputs = 0
    replans: list[Replan] = []
    follows: list[Replan] = []
    for n in bundle.order:
        p = bundle.nodes[n]
        t = Tally.of(p.changes)
        if n in in_cluster:
            objects += t
        else:
            resources += t
        outputs += len(p.output_changes)
        ups, reads = _reads_moving(bundle, edge_reasons, n, pending=bool(p.pending_upstream))
        if p.pending_upstream:
            replans.append(Replan(n, ups, reads or p.pending_upstream))
        elif reads:
            follows.append(Replan(n, ups, reads))
    return BlastRadius(
        changing=tuple(n for n in bundle.order if bundle.nodes[n].has_changes),
        destructive=tuple(n for n in bundle.order if bundle.nodes[n].destructive),
        resources=resources,
        objects=objects,
        outputs=outputs,
        replans=tuple(replans),
        follows=tuple(follows),
    )


def _reads_moving(
    bundle: PlanBundle, edge_reasons: dict[tuple[str, str], tuple[str, ...]], node: str, *, pending: bool
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(upstream nodes, references) of the outputs ``node`` reads that this plan changes: known
    only after apply (``pending``) or, for a node planned now, changing to a known new value."""
    ups: list[str] = []
    reads: list[str] = []
    for (up, down), refs in sorted(edge_reasons.items()):
        if down != node or up not in bundle.nodes:
            continue
        upp = bundle.nodes[up]
        moving = set(upp.outputs_changing) | (set(upp.outputs_unknown) if pending else set())
        hit = [
            r
            for r in refs
            if (o := _output_of(r)) is not None and (o[1] in moving or (pending and ALL_OUTPUTS in moving))
        ]
        if hit:
            ups.append(up)
            reads.extend(hit)
    return tuple(ups), tuple(reads)
