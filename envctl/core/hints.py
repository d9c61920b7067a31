"""The commands envctl tells a user to run next ("Apply it with: ..."), built in one place.

A hint is copied and run as it is, so it carries everything the command needs: the plan, the
environment, and ``--rev`` for a plan made from a Git revision (applied at another commit, a plan
is stale, exit 4). Pure: strings only.
"""

from __future__ import annotations


def rev_flag(rev: str | None) -> str:
    """`` --rev SHA`` for a plan made from a revision; empty for a plan of the working tree."""
    return f" --rev {rev}" if rev else ""


def apply_command(
    environment: str, plan_ref: str, *, rev: str | None = None, approve: bool = False, resume: bool = False
) -> str:
    """``envctl apply PLAN -e ENV [--rev SHA] [--approve] [--resume]``."""
    return (
        f"envctl apply {plan_ref} -e {environment}{rev_flag(rev)}"
        + (" --approve" if approve else "")
        + (" --resume" if resume else "")
    )


def approve_and_apply_command(
    environment: str,
    plan_ref: str,
    *,
    rev: str | None = None,
    resume: bool = False,
    pending: str | None = None,
) -> str:
    """Record an approval of a saved plan (with ``--pending BOUND`` for re-planned nodes), then
    apply it under that approval."""
    bound = f" --pending {pending}" if pending else ""
    return f"envctl approve {plan_ref}{bound} --by NAME && " + apply_command(
        environment, plan_ref, rev=rev, approve=True, resume=resume
    )
