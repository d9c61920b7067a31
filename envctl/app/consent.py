"""What an apply holds from a human before it writes: ``--auto-approve``, a recorded approval, a
yes typed at the terminal, or nothing - and the question asked again when a held node is re-planned.

The approval flow of ``envctl apply`` (the CLI parses the options and renders; the questions go
through a :class:`Human`, so a terminal, a test or nobody answers them). The decision per node is
the one gate's (``core.approval.gate``): this module only builds the :class:`Consent` it is asked
with. A bound for re-planned nodes (``--pending``) counts only with an approval: the one recorded
(``--approve``: the command line may narrow its bound, never widen it) or the one typed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from envctl.app.apply import Prompt, check_recorded_approval
from envctl.app.session import Session
from envctl.core.approval import Consent, PendingBound, approve_command, narrower
from envctl.core.bundle import PlanBundle
from envctl.core.changes import NodePlan
from envctl.core.errors import ApprovalRequiredError, UsageError

ASK_AGAIN = "ask"
"""The answer at the prompt that sets no bound: every re-plan that differs is asked again."""

Render = Callable[[PlanBundle, list[str]], str]
"""Renders a plan (the bundle, the nodes needing approval) for a question; the CLI's views."""


class Human(Protocol):
    """Someone at a terminal. Both questions hold progress output back while they wait."""

    def ask(self, question: str, expected: str, shown: str = "") -> bool:
        """Show ``shown`` and ``question``; True when the answer is ``expected``."""
        ...

    def choose(self, question: str, choices: Sequence[str], default: str) -> str:
        """One of ``choices`` (``default`` on an empty answer or end of input)."""
        ...


@dataclass(frozen=True)
class ApprovalOptions:
    """The approval options of ``envctl apply``: ``--auto-approve``, ``--approve`` (``recorded``)
    and ``--pending`` (None: not given)."""

    auto_approve: bool = False
    recorded: bool = False
    pending: PendingBound | None = None


def obtain_consent(
    s: Session,
    bundle: PlanBundle,
    plan_ref: str,
    needing: list[str],
    options: ApprovalOptions,
    human: Human | None,
    render: Render,
    *,
    show_plan: bool,
) -> tuple[Consent, Prompt | None]:
    """The consent an apply of ``bundle`` (saved at ``plan_ref``) writes with, and how it asks
    about a held re-plan (None: nobody to ask). ``needing``: nodes of the plan that need approval;
    ``show_plan``: the plan was not shown yet (a saved plan), so the question shows it.

    Raises ``ApprovalRequiredError`` (exit 3) when the human says no or the recorded approval
    does not match, and writes nothing then.
    """
    if options.auto_approve and options.pending is not None:
        raise UsageError(
            "--pending bounds an approval; --auto-approve approves everything already",
            hint="use --pending with --approve or at the terminal",
        )
    if options.auto_approve:
        return Consent(everything=True), None
    env = bundle.environment
    how = approve_command(env, plan_ref, resume=True, rev=bundle.rev)
    consent = Consent.of_bundle(bundle, how, plan_ref=plan_ref)
    if needing:
        if options.recorded:
            approval = check_recorded_approval(s, bundle)
            consent = Consent.of_bundle(
                bundle, how, _within(approval.pending, options.pending, bundle, approval.by), plan_ref
            )
        elif human is not None:
            question = f"\nenvctl will change {', '.join(needing)} in environment {env}."
            if not human.ask(question, env, render(bundle, needing) if show_plan else ""):
                raise ApprovalRequiredError("apply cancelled: the plan was not approved")
            pending = options.pending
            if pending is None and any(p.pending_upstream for p in bundle.nodes.values()):
                pending = ask_bound(human, bundle)
            consent = Consent.of_bundle(bundle, how, pending, plan_ref)
        else:
            # nobody to ask: the rest is written, these nodes are held (exit 3)
            s.progress(
                f"changes to {', '.join(needing)} need approval and this is not a terminal: "
                f"they are not applied; to approve them: {how}"
            )
            consent = Consent(how=how, plan_ref=plan_ref)
    if human is None:
        return consent, None

    def prompt(node: str, plan: NodePlan | None) -> bool:
        assert human is not None
        shown = "" if plan is None else render(_one(bundle, node, plan), [node])
        return human.ask(f"{node} changed after its upstream was applied.", env, shown)

    return consent, prompt


def ask_bound(human: Human, bundle: PlanBundle) -> PendingBound | None:
    """The ``--pending`` choice at the terminal: how far the pending nodes may go once re-planned."""
    pending = [n for n in bundle.order if bundle.nodes[n].pending_upstream]
    answer = human.choose(
        f"{', '.join(pending)} will be re-planned once their upstream is applied. Apply a re-plan "
        "without asking again when it only creates (creates), creates or updates in place "
        f"(updates), or anything (any); or ask again ({ASK_AGAIN})?",
        [ASK_AGAIN, *(b.value for b in PendingBound)],
        ASK_AGAIN,
    )
    return None if answer == ASK_AGAIN else PendingBound(answer)


def _within(
    recorded: PendingBound | None, given: PendingBound | None, bundle: PlanBundle, by: str
) -> PendingBound | None:
    """The recorded bound, or the narrower one the command line gives; a wider one is refused."""
    if given is None or given == narrower(recorded, given):
        return given if given is not None else recorded
    raise ApprovalRequiredError(
        f"the approval of plan {bundle.id} by {by} lets re-planned nodes go "
        + (f"only within --pending {recorded.value}" if recorded else "nowhere without asking again")
        + f", not --pending {given.value}",
        hint=f"review the plan, then run: envctl approve {bundle.id} --pending {given.value} --by NAME",
    )


def _one(bundle: PlanBundle, node: str, plan: NodePlan) -> PlanBundle:
    """A bundle of one node's new plan, to show it as a plan is shown."""
    return PlanBundle(
        bundle.id, bundle.environment, bundle.commit, bundle.dirty, bundle.created, (node,), {node: plan}
    )
