"""The one approval gate: which node plans a write path may write with the consent it holds."""

from __future__ import annotations

import pytest

from envctl.core.approval import (
    ApprovalPolicy,
    ChangeClass,
    Consent,
    PendingBound,
    approval_key,
    approve_command,
    gate,
)
from envctl.core.bundle import PlanBundle
from envctl.core.changes import Action, Change, NodePlan

STACK = NodePlan("stack.net", (Change("terraform_data.vpc", Action.UPDATE, {"a": 1}, {"a": 2}),))
LAYER = NodePlan("layer.app", (Change("v1 ConfigMap app/web", Action.CREATE, None, {"data": {}}),))
NOOP = NodePlan("stack.idle", (Change("terraform_data.x", Action.NOOP),))

# policy -> which of (stack, layer) need a human
POLICIES = {
    ("none",): set(),
    ("terraform",): {"stack.net"},
    ("kubernetes",): {"layer.app"},
    ("all",): {"stack.net", "layer.app"},
}


def classed(words: tuple[str, ...]) -> ApprovalPolicy:
    """``words`` with each node's changes classed as its adapter would (stacks: terraform)."""
    return ApprovalPolicy(
        words, lambda n: ChangeClass.TERRAFORM if n.startswith("stack.") else ChangeClass.KUBERNETES
    )


TERRAFORM = classed(("terraform",))


def bundle(*plans: NodePlan) -> PlanBundle:
    return PlanBundle(
        "dev-1", "dev", "abc", False, "now", tuple(p.node for p in plans), {p.node: p for p in plans}
    )


@pytest.mark.parametrize("policy", list(POLICIES), ids=lambda p: p[0])
def test_without_consent_holds_exactly_what_the_policy_names(policy: tuple[str, ...]) -> None:
    decision = gate([STACK, LAYER, NOOP], classed(policy), Consent(how="envctl approve X"))
    assert set(decision.held_nodes()) == POLICIES[policy]
    assert set(decision.write) == {"stack.net", "layer.app", "stack.idle"} - POLICIES[policy]
    assert all(h.reason == "needs approval: envctl approve X" for h in decision.held)


@pytest.mark.parametrize("policy", list(POLICIES), ids=lambda p: p[0])
def test_auto_approve_and_an_approved_bundle_write_everything(policy: tuple[str, ...]) -> None:
    assert gate([STACK, LAYER], classed(policy), Consent(everything=True)).held == ()
    assert gate([STACK, LAYER], classed(policy), Consent.of_bundle(bundle(STACK, LAYER))).held == ()


def test_an_approval_covers_the_approved_plan_only() -> None:
    consent = Consent.of_bundle(bundle(STACK, LAYER))
    replanned = NodePlan("stack.net", (Change("terraform_data.vpc", Action.REPLACE, {"a": 1}, {"a": 3}),))
    decision = gate([replanned], TERRAFORM, consent)
    assert decision.held_nodes() == ["stack.net"] and not decision.allows("stack.net")
    # the same changes with another plan file (artifacts) or notes are what the human saw
    same = NodePlan("stack.net", STACK.changes, notes=("re-planned",), artifacts={"planfile": "other"})
    assert gate([same], TERRAFORM, consent).allows("stack.net")


def test_an_approval_of_one_node_does_not_cover_another() -> None:
    consent = Consent.of_bundle(bundle(STACK))
    other = NodePlan("stack.db", STACK.changes)
    assert gate([other], TERRAFORM, consent).held_nodes() == ["stack.db"]


def test_a_pending_node_approved_as_pending_is_held_once_its_real_plan_is_known() -> None:
    pending = NodePlan("stack.db", pending_upstream=("vpc_id",))
    consent = Consent.of_bundle(bundle(pending))
    assert gate([pending], TERRAFORM, consent).allows("stack.db")
    real = NodePlan("stack.db", (Change("terraform_data.db", Action.CREATE, None, {"x": 1}),))
    assert gate([real], TERRAFORM, consent).held_nodes() == ["stack.db"]


def test_the_key_ignores_notes_and_artifacts_but_not_changes() -> None:
    assert approval_key(STACK) == approval_key(NodePlan("stack.net", STACK.changes, notes=("n",)))
    assert approval_key(STACK) != approval_key(LAYER)


def test_the_command_approves_and_applies_the_saved_plan() -> None:
    cmd = approve_command("dev", ".envctl/plans/dev-1", resume=True)
    assert cmd == (
        "envctl approve .envctl/plans/dev-1 --by NAME && "
        "envctl apply .envctl/plans/dev-1 -e dev --approve --resume"
    )


def test_the_class_of_a_nodes_changes_comes_from_its_adapter_not_its_id() -> None:
    # a node kind the gate has never heard of is judged by the class its adapter names
    odd = NodePlan("chart.x", (Change("a", Action.DELETE, {}, None),))
    policy = ApprovalPolicy(("kubernetes-delete",), lambda n: ChangeClass.KUBERNETES)
    assert gate([odd], policy, Consent()).held_nodes() == ["chart.x"]
    assert (
        gate([odd], ApprovalPolicy(("kubernetes-delete",), lambda n: ChangeClass.TERRAFORM), Consent()).held
        == ()
    )
    assert gate(
        [odd], ApprovalPolicy(("terraform-destroy",), lambda n: ChangeClass.TERRAFORM), Consent()
    ).held


CREATE = Change("terraform_data.db", Action.CREATE, None, {"x": 1})
UPDATE = Change("terraform_data.db", Action.UPDATE, {"x": 1}, {"x": 2})
REPLACE = Change("terraform_data.db", Action.REPLACE, {"x": 1}, {"x": 2})


@pytest.mark.parametrize(
    ("bound", "written"),
    [
        (None, set()),
        (PendingBound.CREATES, {"creates"}),
        (PendingBound.UPDATES, {"creates", "updates"}),
        (PendingBound.ANY, {"creates", "updates", "replaces"}),
    ],
    ids=["ask-again", "creates", "updates", "any"],
)
def test_a_bound_lets_re_plans_within_it_go_and_holds_the_rest(
    bound: PendingBound | None, written: set[str]
) -> None:
    pending = NodePlan("stack.db", pending_upstream=("vpc_id",))
    consent = Consent.of_bundle(bundle(pending), pending=bound)
    replans = {
        "creates": NodePlan("stack.db", (CREATE, Change("terraform_data.y", Action.NOOP))),
        "updates": NodePlan("stack.db", (CREATE, UPDATE)),
        "replaces": NodePlan("stack.db", (REPLACE,)),
    }
    allowed = {k for k, p in replans.items() if gate([p], TERRAFORM, consent).allows("stack.db")}
    assert allowed == written


def test_a_bound_covers_nodes_of_the_approved_plan_only() -> None:
    consent = Consent.of_bundle(
        bundle(NodePlan("stack.db", pending_upstream=("x",))), pending=PendingBound.ANY
    )
    assert gate([NodePlan("stack.other", (CREATE,))], TERRAFORM, consent).held_nodes() == ["stack.other"]
    assert gate([NodePlan("stack.db", (CREATE,))], TERRAFORM, Consent(pending=PendingBound.ANY)).held


def test_the_least_bound_names_what_a_re_plan_needs() -> None:
    assert PendingBound.least(NodePlan("s", (CREATE,))) is PendingBound.CREATES
    assert PendingBound.least(NodePlan("s", (CREATE, UPDATE))) is PendingBound.UPDATES
    assert PendingBound.least(NodePlan("s", (UPDATE, REPLACE))) is PendingBound.ANY
    assert approve_command("dev", "p", resume=True, pending=PendingBound.UPDATES) == (
        "envctl approve p --pending updates --by NAME && envctl apply p -e dev --approve --resume"
    )
