"""Plan the selected nodes of an environment in graph order and write the plan bundle."""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from pathlib import Path

from envctl.app.executor import run_graph
from envctl.app.inputs import (
    Values,
    inputs_hash,
    read_current_outputs,
    resolve_inputs,
    waiting_on,
)
from envctl.app.reads import extra_reads
from envctl.app.removal import plan_removed
from envctl.app.session import Session
from envctl.app.validate import precheck
from envctl.core.adapter import Upstream
from envctl.core.approval import nodes_needing_approval
from envctl.core.blast import ALL_OUTPUTS, BlastRadius, blast_radius
from envctl.core.bundle import PlanBundle, Rollback
from envctl.core.changes import NodePlan
from envctl.core.errors import EnvctlError, NotPlannedError
from envctl.core.model import Node
from envctl.core.results import PlanResult
from envctl.core.schedule import Status
from envctl.core.secrets import scrub_plan
from envctl.repo.gitcli import changed_paths
from envctl.store import now


def select_nodes(
    s: Session, targets: list[str], changed_since: str | None, *, dependencies: bool = True
) -> set[str]:
    if targets:
        return s.graph.with_dependencies(targets) if dependencies else set(targets)
    if changed_since:
        return s.graph.affected(changed_paths(s.root, changed_since, s.snapshot.commit), extra_reads(s))
    return set(s.env.nodes)


def _plan_node(
    s: Session,
    node: Node,
    values: Values,
    pending_outputs: dict[str, set[str]],
    plan_dir: Path,
    upstream_changing: tuple[str, ...] = (),
) -> tuple[NodePlan, str]:
    inputs, pending = resolve_inputs(s, node, values, pending_outputs)
    ih = inputs_hash(inputs)
    adapter = s.adapter(node.id)
    if pending:
        ups = ", ".join(waiting_on(node, pending))
        note = adapter.pending_note(
            node, inputs, f"once {ups} is applied (inputs {', '.join(pending)} change)"
        )
        return NodePlan(node.id, pending_upstream=pending, outputs_unknown=(ALL_OUTPUTS,), notes=(note,)), ih
    off_cluster = tuple(u for u in upstream_changing if not s.adapter(u).traits.in_cluster)
    plan = adapter.plan(node, inputs, plan_dir, Upstream(upstream_changing, off_cluster))
    return scrub_plan(plan, values.secrets), ih


def unknown_until_apply(plan: NodePlan) -> set[str]:
    """The outputs of a planned node whose values only its apply will tell: a consumer reading
    one is pending upstream; every other output is known (its current value, or the one the plan
    sets), so a consumer of it is planned for real."""
    changing = set(plan.outputs_changing) | set(plan.outputs_unknown)
    known = plan.planned_outputs
    return changing - (set(known.values) - set(plan.outputs_unknown)) if known is not None else changing


def _plan_waits_for(s: Session, upstream: str, node: str) -> bool:
    """Whether planning ``node`` needs ``upstream``'s plan first.

    When its inputs use the upstream's outputs, always; otherwise (a bare ``depends_on``, which
    orders applies, not plans) only for a kind whose plan is checked against what an upstream
    may create (a layer: Namespaces, CRDs, the cluster itself).
    """
    n = s.env.nodes[node]
    return s.adapter(node).traits.plans_after_any_upstream or any(
        ref.node == upstream for ref in n.upstream_refs
    )


def plan_environment(
    s: Session,
    *,
    targets: list[str] | None = None,
    changed_since: str | None = None,
    out: Path | None = None,
    dependencies: bool = True,
    rollback: Rollback | None = None,
) -> PlanResult:
    """Plan the selected nodes in graph order (parallel, bounded) and write the plan bundle.

    ``rollback``: the plan is a rollback (``envctl rollback``), recorded in the bundle and in the
    journal of the run that applies it.

    ``dependencies=False``: the targets alone, with the live outputs of every other node (what
    ``drift --converge`` re-applies), instead of the targets and everything they depend on.
    """
    selected = select_nodes(s, targets or [], changed_since, dependencies=dependencies)
    order = s.graph.subgraph_order(selected)
    values = Values()
    pending_outputs: dict[str, set[str]] = {}
    for n in s.graph.order():
        if n not in selected:
            read_current_outputs(s, s.env.nodes[n], values)
    plan_id, default_dir = s.store.new_plan_dir(s.env.name)
    plan_dir = (out or default_dir).resolve()
    plan_dir.mkdir(parents=True, exist_ok=True)
    plans: dict[str, NodePlan] = {}
    hashes: dict[str, str] = {}
    s.prewarm_engine(order)
    errors: dict[str, EnvctlError] = precheck(s, order)
    lock = threading.Lock()
    if errors:
        with contextlib.suppress(OSError):
            plan_dir.rmdir()  # nothing was planned: leave no empty plan behind
        empty = PlanBundle(plan_id, s.env.name, s.snapshot.commit, s.snapshot.dirty, now(), (), {})
        return PlanResult(empty, plan_dir, errors, [])

    def work(n: str) -> Status:
        node = s.env.nodes[n]
        s.progress(f"{n}: planning")
        t0 = time.monotonic()
        try:
            with lock:
                ancestors = s.graph.with_dependencies([n]) - {n}
                changing = tuple(sorted(u for u in ancestors if u in plans and plans[u].has_changes))
            plan, ih = _plan_node(s, node, values, pending_outputs, plan_dir, changing)
            # after the plan, which waited for Terraform's state lock: a Terraform still writing
            # this state (the worker of a killed run, say) has finished, so the file is whole
            read_current_outputs(s, node, values)
            known = plan.planned_outputs
            if known is not None:  # consumers are planned with the values after apply
                values.add(n, known.values, known.sensitive)
            plan = scrub_plan(plan, values.secrets)  # its own sensitive outputs are known now
        except EnvctlError as e:
            e.node = e.node or n
            with lock:
                errors[n] = e
            s.progress(f"{n}: plan failed")
            raise
        with lock:
            plans[n] = plan
            hashes[n] = ih
            pending_outputs[n] = unknown_until_apply(plan)
        c = plan.counts
        what = (
            "pending upstream"
            if plan.pending_upstream
            else (f"{c.add} to add, {c.change} to change, {c.destroy} to destroy, {c.replace} to replace")
        )
        s.progress(f"{n}: planned in {time.monotonic() - t0:.1f}s ({what})")
        return Status.DONE

    queue = run_graph(s, order, work, needs=lambda u, d: _plan_waits_for(s, u, d))
    for n in order:
        if queue.status[n] is Status.SKIPPED and n not in errors:
            errors[n] = NotPlannedError(
                f"not planned: {queue.reason.get(n, 'an upstream node failed')}", node=n
            )
    removals: list[str] = []
    if not targets:  # a node removed from Git is part of every plan of the whole environment
        removals, removed_plans, removed_errors = plan_removed(s, plan_dir)
        plans.update(removed_plans)
        errors.update(removed_errors)
    bundle = s.new_bundle(plan_id, [*removals, *order], plans, hashes, targets or (), rollback)
    # a plan with nothing to do is kept only when --out asked for it
    saved = not errors and (bundle.has_changes or out is not None)
    if saved:
        s.store.write_bundle(plan_dir, bundle)
    elif out is None and not errors:
        shutil.rmtree(plan_dir, ignore_errors=True)
    return PlanResult(
        bundle,
        plan_dir,
        errors,
        nodes_needing_approval(bundle, s.approval_policy()),
        saved=saved,
        blast=blast_of(s, bundle),
        base_ref=changed_since,
    )


def blast_of(s: Session, bundle: PlanBundle) -> BlastRadius:
    """Which nodes ``bundle`` changes, how many resources and objects, what apply plans again."""
    in_cluster = {n for n in bundle.order if _in_cluster(s, n)}
    return blast_radius(bundle, {k: e.reasons for k, e in s.graph.edges.items()}, in_cluster)


def _in_cluster(s: Session, node: str) -> bool:
    """Whether ``node``'s changes are Kubernetes objects (also for a node removed from Git)."""
    if node in s.env.nodes:
        return s.adapter(node).traits.in_cluster
    return any(a.traits.in_cluster for (n, _), (_, a) in s.removed_targets.items() if n == node)
