"""``envctl destroy``: plan the deletion of every node (or the targets and every node depending on
them) in reverse dependency order; after a whole environment is deleted, its lock goes too.

The plan is an ordinary plan bundle whose nodes are deletions (``NodePlan.deletion``), so it is
approved and applied like any plan: the same gate, exit codes and journal (``app.apply``).
"""

from __future__ import annotations

import os
from pathlib import Path

from envctl.app.removal import find_removed_nodes, plan_deletions
from envctl.app.session import Session
from envctl.core.approval import nodes_needing_approval
from envctl.core.bundle import PlanBundle
from envctl.core.changes import Deletion
from envctl.core.errors import ApprovalRequiredError, UsageError
from envctl.core.hints import approve_and_apply_command
from envctl.core.removal import with_dependents
from envctl.core.results import ApplyResult, PlanResult


def plan_destroy(s: Session, targets: list[str], out: Path | None = None) -> PlanResult:
    """The deletion plan of the environment (or of ``targets`` and their dependents), saved."""
    removed = find_removed_nodes(s)
    deps: dict[str, tuple[str, ...]] = {n: tuple(s.graph.upstream(n)) for n in s.env.nodes}
    deps.update({r.id: r.depends_on for r in removed})
    for t in targets:
        if t not in deps:
            raise UsageError(
                f"--target {t}: no such node in environment {s.env.name}",
                hint=f"nodes of {s.env.name}: {', '.join(sorted(deps)) or 'none'}",
            )
    selected = with_dependents(targets, deps) if targets else set(deps)
    plan_id, default_dir = s.store.new_plan_dir(s.env.name)
    plan_dir = (out or default_dir).resolve()
    plan_dir.mkdir(parents=True, exist_ok=True)
    order, plans, errors = plan_deletions(s, selected, deps, plan_dir, {r.id: r.commit for r in removed})
    bundle = s.new_bundle(plan_id, order, plans, {}, targets)
    if not errors:
        s.store.write_bundle(plan_dir, bundle)
    needing = nodes_needing_approval(bundle, s.approval_policy())
    return PlanResult(bundle, plan_dir, errors, needing, saved=not errors)


def destroys_environment(bundle: PlanBundle) -> bool:
    """Whether ``bundle`` deletes the whole environment (``envctl destroy`` without ``--target``)."""
    return not bundle.targets and any(p.deletion is Deletion.DESTROY for p in bundle.nodes.values())


def forget_environment(s: Session) -> None:
    """After every node is deleted: the environment's Lease in its cluster, its local lock and
    what is left of its workspaces.

    Called while this command still holds the lock; releasing a Lease that is gone is a no-op."""
    if s.in_cluster:
        from envctl.kube.lease import delete_lease

        delete_lease(s.kube(), s.env.name)
    from envctl.terraform.node import forget_environment as forget_workspaces

    forget_workspaces(s.root, s.env.name)
    s.store.forget_environment(s.env.name)


def after_destroy(s: Session, bundle: PlanBundle, res: ApplyResult) -> None:
    """After an apply that succeeded: a bundle that destroyed the whole environment, keeping
    nothing, takes the environment's lock with it (``forget_environment``)."""
    kept = any(r.plan is not None and r.plan.kept for r in res.results.values())
    if destroys_environment(bundle) and not kept:
        forget_environment(s)


def unless_held(result: PlanResult, *, nobody_to_ask: bool) -> str:
    """The saved destroy plan to apply; when it needs an approval and nobody can give it (no
    terminal, no ``--auto-approve``), an ``ApprovalRequiredError`` (exit 3): nothing is deleted,
    the plan stays saved, and the error says how to approve and apply it."""
    where = os.path.relpath(result.plan_dir)
    if nobody_to_ask:
        raise ApprovalRequiredError(
            f"destroying {', '.join(result.needs_approval)} needs approval; nothing was deleted",
            hint=f"run: {approve_and_apply_command(result.bundle.environment, where, rev=result.bundle.rev)}",
        )
    return where
