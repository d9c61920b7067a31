"""``envctl rollback``: plan the environment as an earlier commit holds it.

The commit is ``--to REV``, or by default the last commit at which every node converged, read
from the run journals (``core.rollback``). The plan is an ordinary plan of that revision (as
``envctl plan --rev``) marked as a rollback: saved, approved and applied through the same gate,
and journalled as a rollback by the run that applies it. What the commit does not hold is
planned as any node removed from Git is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from envctl.app.loading import open_session, pick_environment, repo_root
from envctl.app.plan import plan_environment
from envctl.core.bundle import Rollback
from envctl.core.errors import EnvctlError, UsageError
from envctl.core.results import PlanResult
from envctl.core.rollback import rollback_target
from envctl.repo import load_environment, open_snapshot
from envctl.repo.gitcli import head
from envctl.store import Store


def nodes_at(root: Path, env: str) -> Callable[[str], frozenset[str] | None]:
    """The node ids ``env`` has at a commit (None when that commit does not load)."""

    def at(commit: str) -> frozenset[str] | None:
        try:
            return frozenset(load_environment(open_snapshot(root, commit), env).nodes)
        except EnvctlError:
            return None

    return at


def choose_target(root: Path, env: str, to: str | None) -> tuple[str, Rollback]:
    """The full SHA to roll back to and the rollback record; usage errors (exit 64) say what to do."""
    journals = Store(root).journals(env)
    origin = journals[-1].get("commit") if journals else None
    rev = to
    if rev is None:
        rev = rollback_target(journals, nodes_at(root, env))
        if rev is None:
            raise UsageError(
                f"no commit to roll back to: the journal of environment {env} has no run at which "
                "every node converged"
                + (" other than the commit it is at now" if journals else " (nothing was applied yet)"),
                hint=f"name the commit with envctl rollback -e {env} --to REV "
                f"(envctl status -e {env} shows the commit each node converged at)",
            )
    try:
        commit = open_snapshot(root, rev).commit
    except UsageError as e:
        raise UsageError(
            f"cannot roll back to {rev!r}: {e.message}",
            hint="give a commit SHA, branch or tag that exists (git log lists them), or leave out "
            "--to to go back to the last commit at which every node converged",
        ) from None
    assert commit is not None  # a Git revision always names a commit
    if commit == head(root).commit:
        what = "the last commit at which every node converged" if to is None else repr(to)
        raise UsageError(
            f"{what} is HEAD ({commit[:12]}): there is nothing to roll back to",
            hint=f"envctl plan -e {env} plans HEAD (a normal plan); to roll back, name an earlier "
            "commit with --to REV",
        )
    return commit, Rollback(commit, origin if isinstance(origin, str) else None)


def plan_rollback(
    repo: Path | None,
    to: str | None,
    env: str | None,
    progress: Callable[[str], None],
    parallelism: int = 4,
    out: Path | None = None,
) -> PlanResult:
    """Plan ``env`` as commit ``to`` (default: chosen from the journal) holds it, as a rollback."""
    root = repo_root(repo)
    name = pick_environment(open_snapshot(root, None), env)
    commit, rollback = choose_target(root, name, to)
    progress(f"rolling back environment {name} to {commit[:12]}")
    s = open_session(root, commit, name, progress, parallelism, terraform=True)
    return plan_environment(s, out=out, rollback=rollback)
