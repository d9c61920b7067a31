"""The NodeAdapter protocol: what the app layer asks of a node kind (stack, layer). Pure: types only.

``envctl.app`` drives every node through one of these, picked by the node's kind from a table
(``Session.adapter``); it never branches on the kind itself. The implementations live with their
engine: ``envctl.terraform.node.StackAdapter`` and ``envctl.kube.node.LayerAdapter``. Adapters see
no secrets bookkeeping and no scheduling: they return raw plans and outputs, and the app masks,
journals and orders them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from envctl.core.approval import ChangeClass
from envctl.core.changes import Change, NodePlan, Outputs
from envctl.core.model import Node, Ref


@dataclass(frozen=True)
class Upstream:
    """What the nodes a node depends on are doing in this run, for planning it.

    ``changing``: upstream nodes with changes not applied yet; ``off_cluster``: those among them
    whose adapter does not live in the cluster (a stack may be what creates the cluster).
    """

    changing: tuple[str, ...] = ()
    off_cluster: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApplyRequest:
    """How to apply one node: its saved plan, its inputs now, and what the run knows around it.

    ``same_inputs``: the inputs are those it was planned with (the saved plan stands);
    ``upstream_applied``: a node it depends on was changed by this run (earlier dry-runs may be
    judged anew); ``plan_dir``: the plan bundle's directory (artifacts are relative to it);
    ``approve(plan)``: the approval gate; the adapter calls it with the exact plan it is about to
    write (the saved one, or the one made anew with new upstream outputs), before any write, and
    writes nothing when it answers a reason (the node needs an approval it lacks).
    """

    planned: NodePlan
    inputs: Mapping[str, Any]
    plan_dir: Path
    same_inputs: bool
    upstream_applied: bool
    approve: Callable[[NodePlan], str]


@dataclass(frozen=True)
class DeleteRequest:
    """How to delete one node: the deletion plan a human saw (its ``changes`` are all that may be
    deleted: anything else is kept), the plan bundle's directory, and the approval gate, which the
    adapter calls with that plan before it deletes anything (a reason back: delete nothing);
    ``leaving``: addresses the other deletions of the run delete (see ``plan_delete``)."""

    planned: NodePlan
    plan_dir: Path
    approve: Callable[[NodePlan], str]
    leaving: frozenset[str] = frozenset()  # what the run's other deletions delete (before this one)


@dataclass(frozen=True)
class Applied:
    """What applying a node did: the plan it applied (or stopped at), its outputs, or why it stopped."""

    plan: NodePlan
    outputs: Outputs | None = None
    blocked: str = ""  # held by the approval gate: why, and the command that approves it


@dataclass(frozen=True)
class AdapterTraits:
    """Facts about a node kind that the app's generic code needs, as data rather than branches.

    ``in_cluster``: its live state is in the environment's cluster (so the environment lock is
    also a Lease there); ``plans_after_any_upstream``: its plan needs every upstream's plan first
    (an upstream may create the Namespaces or CRDs it is checked against), not only those whose
    outputs it reads. ``changes``: which words of ``approval.required_for`` name its changes
    (``terraform``/``terraform-destroy``, ``kubernetes``/``kubernetes-delete``); whether writing a
    plan needs approval is decided by the one gate (``core.approval.gate``) alone.
    """

    in_cluster: bool
    plans_after_any_upstream: bool
    changes: ChangeClass


class NodeAdapter(Protocol):
    """One node kind's operations. Every method takes the node; inputs are already resolved."""

    traits: AdapterTraits

    def extra_refs(self, node: Node) -> Iterable[Ref]:
        """References to upstream outputs written outside the node's ``inputs`` (in its manifests)."""
        ...

    def sensitive_outputs(self, node: Node) -> frozenset[str]:
        """Outputs the node declares sensitive, read from its configuration (known before apply)."""
        ...

    def declared_outputs(self, node: Node) -> frozenset[str] | None:
        """Every output the node declares, read from its configuration; None when not known offline."""
        ...

    def prewarm(self, nodes: Sequence[Node], workers: int, *, applying: bool) -> None:
        """Start engine processes for ``nodes`` in the background (at most ``workers``)."""
        ...

    def precheck(self, node: Node, inputs: Mapping[str, Any]) -> None:
        """Offline checks before any engine runs or the cluster is asked; raises an EnvctlError."""
        ...

    def validate(self, node: Node, inputs: Mapping[str, Any]) -> list[str]:
        """Offline validation (``envctl validate``); returns warnings, raises an EnvctlError."""
        ...

    def pending_note(self, node: Node, inputs: Mapping[str, Any], what: str) -> str:
        """The note of a plan that waits on upstream outputs; ``what`` says which and why."""
        ...

    def plan(self, node: Node, inputs: Mapping[str, Any], plan_dir: Path, upstream: Upstream) -> NodePlan:
        """Plan the node; artifacts it needs at apply time are kept under ``plan_dir``."""
        ...

    def state_fingerprint(self, node: Node) -> str | None:
        """A hash of the state the node's plan was made against, or None when there is none to check."""
        ...

    def live_plan(self, node: Node, inputs: Mapping[str, Any]) -> NodePlan | None:
        """A fresh plan to compare with the saved one before applying, or None (nothing to compare)."""
        ...

    def apply(self, node: Node, request: ApplyRequest) -> Applied:
        """Converge the node as planned (re-planning when its inputs changed)."""
        ...

    def plan_delete(self, node: Node, plan_dir: Path, leaving: frozenset[str]) -> NodePlan:
        """What deleting the node would delete (its ``changes``) and keep (``kept``, with why).

        ``leaving``: addresses of objects other deletions of this run delete first (a Namespace
        they empty is not "in use"). The node's configuration may be that of an older commit
        (a node removed from Git); its inputs are those it was last applied with.
        """
        ...

    def delete(self, node: Node, request: DeleteRequest) -> Applied:
        """Delete what ``request.planned`` lists, then the node's records (inventory, state,
        workspace) unless something was kept; returns what was deleted."""
        ...

    def outputs(self, node: Node) -> Outputs | None:
        """Its outputs as they are now; None when it has none or was never applied."""
        ...

    def exists(self, node: Node, outputs: Mapping[str, Any] | None) -> bool:
        """Whether the node was ever applied, judged from the live world (no journal needed)."""
        ...

    def drift(self, node: Node, inputs: Mapping[str, Any], workdir: Path) -> NodePlan:
        """What differs between the live world and Git; writes nothing."""
        ...

    def own_drift(self, change: Change, cascading: bool) -> bool:
        """Whether ``change`` is drift of the node itself (``cascading``: an upstream output moved)."""
        ...
