"""The one approval gate: which nodes a write path may write, and approval records.

Every path that writes (apply in all its forms, ``--resume``, re-plans during apply,
``drift --converge``) asks :func:`gate` about the exact node plans it is about to write, with the
:class:`Consent` it holds. A node the policy covers is written only when the consent covers that
very plan (or everything, ``--auto-approve``); otherwise it is held, and the path reports it with
the command that approves it. An approval binds to the plan's fingerprint, environment and
commit; it never carries over to a different plan. It may bound what it could not see: how far a
node of the approved plan, re-planned during apply with its upstream's new outputs, may go without
asking again (:class:`PendingBound`, ``--pending``); the bound is sealed into the record with the
plan's fingerprint.

Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from envctl.core.bundle import PlanBundle, canonical, sha256
from envctl.core.changes import Action, NodePlan
from envctl.core.errors import ApprovalRequiredError
from envctl.core.hints import approve_and_apply_command


class ChangeClass(StrEnum):
    """What a node kind's changes are, in the words of ``approval.required_for``; each adapter
    names its own (``AdapterTraits.changes``), so the gate never looks at a node's id or kind."""

    TERRAFORM = "terraform"
    KUBERNETES = "kubernetes"

    @property
    def delete_word(self) -> str:
        """The policy word that asks for approval of this class's deletions only."""
        return {ChangeClass.TERRAFORM: "terraform-destroy", ChangeClass.KUBERNETES: "kubernetes-delete"}[self]

    def deletes(self, plan: NodePlan) -> bool:
        """Whether ``plan`` deletes something of this class (a Terraform replace destroys first)."""
        if self is ChangeClass.TERRAFORM:
            return plan.destructive
        return any(c.action is Action.DELETE for c in plan.changes)


@dataclass(frozen=True)
class ApprovalPolicy:
    """The environment's ``approval.required_for`` words, and the class of each node's changes
    (``class_of(node)``, from the node's adapter)."""

    required_for: tuple[str, ...]
    class_of: Callable[[str], ChangeClass]


def needs_approval(node_plan: NodePlan, policy: ApprovalPolicy) -> bool:
    """Whether the environment's ``approval.required_for`` policy covers this node's changes."""
    words = policy.required_for
    if not node_plan.has_changes or "none" in words:
        return False
    if "all" in words:
        return True
    cls = policy.class_of(node_plan.node)
    if cls.value in words:
        return True
    if cls.delete_word in words:
        return cls.deletes(node_plan) or bool(node_plan.pending_upstream)
    return False


def nodes_needing_approval(bundle: PlanBundle, policy: ApprovalPolicy) -> list[str]:
    return [n for n in bundle.order if needs_approval(bundle.nodes[n], policy)]


class PendingBound(StrEnum):
    """How far a re-planned node of an approved plan may go without asking again (``--pending``).

    ``creates``: it only creates; ``updates``: it creates and updates in place; ``any``: anything,
    deletes and replaces included. No bound (None): every re-plan that differs is asked again.
    """

    CREATES = "creates"
    UPDATES = "updates"
    ANY = "any"

    def covers(self, plan: NodePlan) -> bool:
        allowed = _WITHIN[self]
        return all(c.action in allowed for c in plan.changes if c.action.changes)

    @classmethod
    def least(cls, plan: NodePlan) -> PendingBound:
        """The narrowest bound that covers ``plan`` (what the user must approve to let it go)."""
        return next(b for b in cls if b.covers(plan))


_WITHIN = {
    PendingBound.CREATES: {Action.CREATE},
    PendingBound.UPDATES: {Action.CREATE, Action.UPDATE},
    PendingBound.ANY: set(Action),
}


def narrower(a: PendingBound | None, b: PendingBound | None) -> PendingBound | None:
    """The narrower of two bounds (None, ask again, is the narrowest)."""
    if a is None or b is None:
        return None
    order = list(PendingBound)
    return a if order.index(a) <= order.index(b) else b


@dataclass(frozen=True)
class Approval:
    """A recorded approval of one plan; ``pending``: its bound for re-planned nodes (None: ask
    again). ``seal`` binds every other field to the plan's fingerprint: a record edited after it
    was written (its bound widened, say) no longer matches and approves nothing."""

    plan_id: str
    fingerprint: str
    environment: str
    commit: str | None
    by: str
    at: str
    pending: PendingBound | None = None
    seal: str = ""

    @classmethod
    def of(cls, bundle: PlanBundle, by: str, at: str, pending: PendingBound | None = None) -> Approval:
        unsealed = cls(bundle.id, bundle.fingerprint, bundle.environment, bundle.commit, by, at, pending)
        return dataclasses.replace(unsealed, seal=unsealed.expected_seal())

    def expected_seal(self) -> str:
        fields = {k: v for k, v in self.to_json().items() if k != "seal"}
        return sha256(canonical(fields))

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "pending": self.pending.value if self.pending else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Approval:
        """Raises ValueError/KeyError/TypeError on a record that is not an approval."""
        pending = data.get("pending")
        return cls(
            **{k: data[k] for k in ("plan_id", "fingerprint", "environment", "commit", "by", "at")},
            pending=PendingBound(pending) if pending is not None else None,
            seal=str(data.get("seal", "")),
        )


def check_approval(approval: Approval, bundle: PlanBundle) -> None:
    """Raise ``ApprovalRequiredError`` unless ``approval`` was given for exactly this plan, as recorded."""
    if approval.seal != approval.expected_seal():
        raise ApprovalRequiredError(
            f"the recorded approval of plan {approval.plan_id} was changed after it was recorded "
            "(its seal does not match its plan, bound and approver)",
            hint=f"review the plan, then run: envctl approve {bundle.id} --by NAME",
        )
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
    ``envctl approve`` and checked against the bundle). ``pending``: how far a re-plan of one of
    those nodes may go without asking again (None: not at all). ``how``: the exact command that
    would approve what this path holds back, shown with every held node; ``plan_ref``: the saved
    plan it names, so a held re-plan can name the bound that would let it go.
    """

    everything: bool = False
    plans: Mapping[str, str] = field(default_factory=dict)
    how: str = ""
    pending: PendingBound | None = None
    plan_ref: str = ""

    @classmethod
    def of_bundle(
        cls, bundle: PlanBundle, how: str = "", pending: PendingBound | None = None, plan_ref: str = ""
    ) -> Consent:
        """A human approved every node plan of ``bundle`` as shown, and re-plans of them within
        ``pending``."""
        plans = {n: approval_key(p) for n, p in bundle.nodes.items()}
        return cls(plans=plans, how=how, pending=pending, plan_ref=plan_ref)

    def covers(self, plan: NodePlan) -> bool:
        """Whether a human approved this very plan of the node, or a re-plan of it within the bound."""
        if self.everything:
            return True
        if plan.node not in self.plans:
            return False
        return self.plans[plan.node] == approval_key(plan) or (
            self.pending is not None and not plan.pending_upstream and self.pending.covers(plan)
        )


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


def gate(plans: Iterable[NodePlan], policy: ApprovalPolicy, consent: Consent) -> GateDecision:
    """Which of the node plans about to be written may be written with ``consent`` under ``policy``.

    The single decision every write path takes (a test finds every write and checks it does):
    a node is written when the policy does not cover its changes, or when ``consent`` covers
    everything or this exact plan of it. Nothing else counts: not the path, not the node kind.
    """
    write: list[str] = []
    held: list[Held] = []
    for plan in plans:
        if not needs_approval(plan, policy) or consent.covers(plan):
            write.append(plan.node)
        else:
            held.append(Held(plan.node, consent.how))
    return GateDecision(tuple(write), tuple(held))


def approve_command(
    environment: str,
    plan_ref: str,
    *,
    resume: bool = False,
    rev: str | None = None,
    pending: PendingBound | None = None,
) -> str:
    """The exact commands that approve a saved plan (re-plans within ``pending``) and apply it
    (with ``--rev`` for a plan of a revision)."""
    return approve_and_apply_command(
        environment, plan_ref, rev=rev, resume=resume, pending=pending.value if pending else None
    )
