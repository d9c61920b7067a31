"""The one approval gate: which nodes a write path may write, and approval records.

Every path that writes (apply in all its forms, ``--resume``, re-plans during apply,
``drift --converge``) asks :func:`gate` about the exact node plans it is about to write, with the
:class:`Consent` it holds. A node the policy covers is written only when the consent covers that
very plan (or everything, ``--auto-approve``); otherwise it is held, and the path reports it with
the command that approves it. An approval binds to the plan's fingerprint, environment and
commit; it never carries over to a different plan.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from envctl.core.bundle import PlanBundle, canonical, sha256
from envctl.core.changes import Action, NodePlan
from envctl.core.errors import ApprovalRequiredError
from envctl.core.hints import approve_and_apply_command


def needs_approval(node_plan: NodePlan, policy: tuple[str, ...]) -> bool:
    """Whether the environment's ``approval.required_for`` policy covers this node's changes."""
    if not node_plan.has_changes or "none" in policy:
        return False
    is_stack = node_plan.node.startswith("stack.")
    if "all" in policy:
        return True
    if is_stack:
        if "terraform" in policy:
            return True
        if "terraform-destroy" in policy:
            return node_plan.destructive or bool(node_plan.pending_upstream)
        return False
    if "kubernetes" in policy:
        return True
    if "kubernetes-delete" in policy:
        return any(c.action is Action.DELETE for c in node_plan.changes) or bool(node_plan.pending_upstream)
    return False


def nodes_needing_approval(bundle: PlanBundle, policy: tuple[str, ...]) -> list[str]:
    return [n for n in bundle.order if needs_approval(bundle.nodes[n], policy)]


@dataclass(frozen=True)
class Approval:
    """A recorded approval of one plan."""

    plan_id: str
    fingerprint: str
    environment: str
    commit: str | None
    by: str
    at: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Approval:
        return cls(**{k: data[k] for k in ("plan_id", "fingerprint", "environment", "commit", "by", "at")})


def check_approval(approval: Approval, bundle: PlanBundle) -> None:
    """Raise ``ApprovalRequiredError`` unless ``approval`` was given for exactly this plan."""
    if (
        approval.fingerprint != bundle.fingerprint
        or approval.environment != bundle.environment
        or approval.commit != bundle.commit
        or approval.plan_id != bundle.id
    ):
        raise ApprovalRequiredError(
            f"the recorded approval by {approval.by} is for plan {approval.plan_id}, "
            f"not for plan {bundle.id}",
            hint=f"review this plan, then run: envctl approve {bundle.id}",
        )


def approval_key(plan: NodePlan) -> str:
    """What an approval of one node covers: its changes and the inputs it waits for.

    A re-plan during apply with the same key is the plan the human saw (a new Terraform plan
    file or notes do not matter); any other change of the node needs a new approval.
    """
    return sha256(
        canonical({"changes": [c.to_json() for c in plan.changes], "pending": list(plan.pending_upstream)})
    )


@dataclass(frozen=True)
class Consent:
    """What a write path holds from a human.

    ``everything``: ``--auto-approve`` (everything approved, explicitly). ``plans``: node ->
    :func:`approval_key` of the plan a human approved (interactively, or recorded with
    ``envctl approve`` and checked against the bundle). ``how``: the exact command that would
    approve what this path holds back, shown with every held node.
    """

    everything: bool = False
    plans: Mapping[str, str] = field(default_factory=dict)
    how: str = ""

    @classmethod
    def of_bundle(cls, bundle: PlanBundle, how: str = "") -> Consent:
        """A human approved every node plan of ``bundle`` (as shown, never a later re-plan)."""
        return cls(plans={n: approval_key(p) for n, p in bundle.nodes.items()}, how=how)


@dataclass(frozen=True)
class Held:
    """A node the gate holds back: it needs an approval its writer lacks."""

    node: str
    command: str

    @property
    def reason(self) -> str:
        return f"needs approval: {self.command}" if self.command else "needs approval"


@dataclass(frozen=True)
class GateDecision:
    """``write``: nodes the path may write; ``held``: nodes it must not write."""

    write: tuple[str, ...]
    held: tuple[Held, ...]

    def allows(self, node: str) -> bool:
        return node in self.write

    def held_nodes(self) -> list[str]:
        return [h.node for h in self.held]


def gate(plans: Iterable[NodePlan], policy: tuple[str, ...], consent: Consent) -> GateDecision:
    """Which of the node plans about to be written may be written with ``consent`` under ``policy``.

    The single decision every write path takes (a test finds every write and checks it does):
    a node is written when the policy does not cover its changes, or when ``consent`` covers
    everything or this exact plan of it. Nothing else counts: not the path, not the node kind.
    """
    write: list[str] = []
    held: list[Held] = []
    for plan in plans:
        if (
            not needs_approval(plan, policy)
            or consent.everything
            or consent.plans.get(plan.node) == approval_key(plan)
        ):
            write.append(plan.node)
        else:
            held.append(Held(plan.node, consent.how))
    return GateDecision(tuple(write), tuple(held))


def approve_command(environment: str, plan_ref: str, *, resume: bool = False, rev: str | None = None) -> str:
    """The exact commands that approve a saved plan and apply it (with ``--rev`` for a plan of a revision)."""
    return approve_and_apply_command(environment, plan_ref, rev=rev, resume=resume)
