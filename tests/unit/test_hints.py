"""Every "Apply it with" hint carries what the command needs: the plan, -e and, for a plan made
from a Git revision, its ``--rev`` (without it the apply is refused as stale, exit 4). One case per
output: plan text, markdown, JSON, the message after approve, the non-terminal approval command."""

from __future__ import annotations

import json

import pytest

from envctl.core.approval import Approval, approve_command
from envctl.core.bundle import PlanBundle, Rollback
from envctl.core.changes import Action, Change, NodePlan
from envctl.core.hints import apply_command
from envctl.views import plan as pv

SHA = "1234567890abcdef1234567890abcdef12345678"
HEAD = "f" * 40
PLAN_DIR = ".envctl/plans/dev-1"


def bundle(rev: str | None, rollback: Rollback | None = None) -> PlanBundle:
    change = Change("terraform_data.x", Action.CREATE, None, {"input": 1})
    plan = NodePlan("stack.net", (change,))
    return PlanBundle(
        "dev-1",
        "dev",
        rev or HEAD,
        False,
        "now",
        ("stack.net",),
        {"stack.net": plan},
        rev=rev,
        rollback=rollback,
    )


def test_the_apply_command_carries_rev_only_for_a_plan_of_a_revision() -> None:
    assert apply_command("dev", PLAN_DIR) == f"envctl apply {PLAN_DIR} -e dev"
    assert (
        apply_command("dev", PLAN_DIR, rev=SHA, approve=True)
        == f"envctl apply {PLAN_DIR} -e dev --rev {SHA} --approve"
    )
    assert approve_command("dev", PLAN_DIR, resume=True, rev=SHA) == (
        f"envctl approve {PLAN_DIR} --by NAME && "
        f"envctl apply {PLAN_DIR} -e dev --rev {SHA} --approve --resume"
    )


@pytest.mark.parametrize("rev", [None, SHA])
def test_text_markdown_and_json_hints_carry_the_rev(rev: str | None) -> None:
    b = bundle(rev)
    want_apply = f"envctl apply {PLAN_DIR} -e dev" + (f" --rev {SHA}" if rev else "")
    want_approve = f"envctl approve {PLAN_DIR} --by NAME && {want_apply} --approve"
    text = pv.plan_text(b, ["stack.net"], PLAN_DIR)
    assert f"Apply it with: {want_apply}\n" in text + "\n"
    assert f"Without a terminal: {want_approve}" in text
    md = pv.plan_markdown(b, ["stack.net"], PLAN_DIR)
    assert f"```shell\n{want_approve}\n```" in md  # needs approval: the command that approves and applies
    data = json.loads(pv.plan_json(b, ["stack.net"], PLAN_DIR))
    assert data["commands"] == {"apply": want_apply, "approve_and_apply": want_approve}
    assert data["apply_command"] == want_approve
    assert f"```shell\n{want_apply}\n```" in pv.plan_markdown(b, [], PLAN_DIR)
    assert data["rev"] == rev
    if rev is None:
        assert "--rev" not in text + md


def test_no_approval_needed_means_no_approval_command_and_no_saved_plan_no_command() -> None:
    b = bundle(SHA)
    data = json.loads(pv.plan_json(b, [], PLAN_DIR))
    assert set(data["commands"]) == {"apply"}
    assert json.loads(pv.plan_json(b, [], None))["commands"] == {}
    assert "Apply it with" not in pv.plan_text(b, [], None)


def test_the_message_after_approve_says_how_to_apply_with_the_rev() -> None:
    a = Approval("dev-1", "ab" * 32, "dev", SHA, "alice", "now")
    how = apply_command("dev", "dev-1", rev=SHA, approve=True)
    text = pv.approval_text(a, how)
    assert text.splitlines()[-1] == f"Apply it with: envctl apply dev-1 -e dev --rev {SHA} --approve"
    assert json.loads(pv.approval_json(a, how))["commands"] == {"apply": how}


def test_a_rollback_plan_says_so_with_both_commits() -> None:
    b = bundle(SHA, Rollback(SHA, HEAD))
    text = pv.plan_text(b, [], PLAN_DIR)
    assert text.splitlines()[0] == (
        f"Rollback plan dev-1 for environment dev: back to {SHA[:12]} from {HEAD[:12]} "
        "(the environment as that commit holds it)"
    )
    assert pv.plan_markdown(b, [], PLAN_DIR).startswith("### envctl rollback plan for `dev`")
    assert json.loads(pv.plan_json(b, [], PLAN_DIR))["rollback"] == {"to": SHA, "from": HEAD}
    assert json.loads(pv.plan_json(bundle(None), [], PLAN_DIR))["rollback"] is None


def test_an_interrupted_apply_says_how_to_resume_this_plan_at_its_rev() -> None:
    from envctl.core.results import ApplyResult

    resume = apply_command("dev", PLAN_DIR, rev=SHA, approve=True, resume=True)
    text = pv.apply_text(ApplyResult("run-1", "dev-1", {}, interrupted=True), resume)
    assert text.splitlines()[-1] == (
        f"Interrupted: nodes that did not start can be converged with: "
        f"envctl apply {PLAN_DIR} -e dev --rev {SHA} --approve --resume"
    )
    assert "Interrupted" not in pv.apply_text(ApplyResult("run-1", "dev-1", {}), resume)
