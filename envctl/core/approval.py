"""Approval policy and approval records: which nodes need a human, and whether an approval fits a plan.

Pure. An approval binds to the plan's fingerprint, environment and commit; it never carries over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envctl.core.bundle import PlanBundle
from envctl.core.changes import Action, NodePlan
from envctl.core.errors import ApprovalRequiredError


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
