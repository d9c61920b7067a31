"""Apply a plan bundle: refuse stale plans, converge nodes in order, re-plan with new upstream
outputs, journal every node so an interrupted run resumes.

Every node passes the one approval gate (``core.approval.gate``) with the exact plan about to be
written - the planned one, or its re-plan: the adapter calls ``ApplyRequest.approve`` just before
it writes. A node the gate holds is BLOCKED (its dependents skipped) with the command that
approves it; the rest converge.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from envctl.app.destroy import after_destroy
from envctl.app.executor import interrupts, run_graph
from envctl.app.inputs import Values, inputs_hash, read_current_outputs, resolve_inputs
from envctl.app.locking import environment_lock, new_run_id
from envctl.app.removal import CONFIG_COMMIT, deletion_target
from envctl.app.session import Session
from envctl.core.adapter import ApplyRequest, DeleteRequest
from envctl.core.approval import Approval, Consent, PendingBound, approve_command, check_approval, gate
from envctl.core.bundle import PlanBundle, canonical, node_fingerprint, sha256
from envctl.core.changes import Action, NodePlan
from envctl.core.errors import (
    ApprovalRequiredError,
    EngineError,
    EnvctlError,
    ExitCode,
    InterruptedRun,
    StalePlanError,
    UsageError,
)
from envctl.core.hints import rev_flag
from envctl.core.model import Node
from envctl.core.removal import run_edges
from envctl.core.results import ApplyResult, NodeResult
from envctl.core.schedule import Status
from envctl.core.secrets import scrub_error, scrub_plan
from envctl.store import now

Prompt = Callable[[str, NodePlan | None], bool]


def preflight(s: Session, bundle: PlanBundle, *, resume: bool) -> None:
    """Refuse a stale plan before anything is applied (exit 4)."""
    if bundle.environment != s.env.name:
        raise UsageError(
            f"the plan is for environment {bundle.environment}, not {s.env.name}",
            hint=f"run with -e {bundle.environment}, or plan {s.env.name}",
        )
    if bundle.commit != s.snapshot.commit:
        raise StalePlanError(
            f"the plan was made at commit {str(bundle.commit)[:12]}, the repository is now at "
            f"{str(s.snapshot.commit)[:12]}",
            hint="run envctl plan again (a plan made with --rev is applied with "
            f"--rev {str(bundle.commit)[:12]})",
        )
    if bundle.inputs_hash.get("_source") != s.source_hash():
        raise StalePlanError(
            "files of the environment changed since the plan was made", hint="run envctl plan again"
        )
    if s.store.was_applied(bundle.id) and not resume:
        raise StalePlanError(
            f"plan {bundle.id} was already applied",
            hint="run envctl plan again (or --resume to finish an interrupted run)",
        )
    for n in bundle.order:
        plan = bundle.nodes[n]
        if "state_sha256" not in plan.artifacts or resume:
            continue
        node, adapter = (
            deletion_target(s, n, plan) if plan.deletion is not None else (s.env.nodes[n], s.adapter(n))
        )
        if adapter.state_fingerprint(node) != plan.artifacts["state_sha256"]:
            raise StalePlanError(
                f"the Terraform state of {n} changed since the plan was made",
                node=n,
                hint="run envctl plan again",
            )


def check_live(s: Session, bundle: PlanBundle) -> None:
    """Refuse the plan if a node's live objects changed since planning (exit 4, nothing applied).

    Only nodes whose plan is final can be compared now: planned with known inputs and with no
    upstream change in this plan (those are re-planned during apply anyway), and whose adapter
    makes a live plan (a layer; a stack's state is checked by its hash in ``preflight``).
    """
    values = Values()
    for n in s.graph.order():
        read_current_outputs(s, s.env.nodes[n], values)
    for n in bundle.order:
        planned = bundle.nodes[n]
        if planned.pending_upstream or planned.deletion is not None:
            continue  # a deletion deletes only what it planned, of what the prune rules still let go
        node = s.env.nodes[n]
        if any(
            bundle.nodes[u].has_changes for u in s.graph.with_dependencies([n]) - {n} if u in bundle.nodes
        ):
            continue
        inputs, pending = resolve_inputs(s, node, values, {})
        if pending or bundle.inputs_hash.get(n) != inputs_hash(inputs):
            continue
        live = s.adapter(n).live_plan(node, inputs)
        if live is not None and changes_key(scrub_plan(live, values.secrets)) != changes_key(planned):
            raise StalePlanError(
                "the live objects changed since the plan was made",
                node=n,
                hint="run envctl plan again to see the current differences",
            )


def approve_plan(s: Session, bundle: PlanBundle, by: str, pending: PendingBound | None = None) -> Approval:
    """Record an approval of ``bundle`` (re-plans within ``pending``), sealed with its fingerprint."""
    approval = Approval.of(bundle, by, now(), pending)
    s.store.record_approval(approval)
    return approval


def check_recorded_approval(s: Session, bundle: PlanBundle) -> Approval:
    """The approval recorded for exactly this plan (``ApprovalRequiredError`` if there is none)."""
    approval = s.store.read_approval(bundle.id)
    if approval is None:
        raise ApprovalRequiredError(
            f"plan {bundle.id} has no recorded approval",
            hint=f"run: envctl approve {bundle.id} --by NAME",
        )
    check_approval(approval, bundle)
    return approval


def apply_bundle(
    s: Session,
    bundle: PlanBundle,
    plan_dir: Path,
    *,
    consent: Consent,
    prompt: Prompt | None,
    resume: bool = False,
    lock_timeout: float = 0.0,
    fresh: bool = False,
) -> ApplyResult:
    """Converge the nodes of ``bundle`` in dependency order, each through the approval gate.

    ``consent``: what the caller holds from a human (``--auto-approve``, the approved bundle, or
    nothing); ``prompt``: asks a human about a node the gate holds (None: nobody to ask).

    ``fresh``: the plan was made by this process under the lock it still holds, so the live
    objects were compared moments ago and need no second dry-run before applying.
    """
    run_id = str(s.held_lock["run"]) if s.held_lock is not None else new_run_id()
    stop = threading.Event()
    with environment_lock(s, run_id, lock_timeout) as holder:
        s.prewarm_engine((n for n in bundle.order if bundle.nodes[n].has_changes), applying=True)
        preflight(s, bundle, resume=resume)
        if not resume and not fresh:
            check_live(s, bundle)
        done_before = _resumable(s, bundle) if resume else {}
        values = Values()
        for n in s.graph.order():
            if n not in bundle.nodes:
                read_current_outputs(s, s.env.nodes[n], values)
        results: dict[str, NodeResult] = {}
        lock = threading.Lock()
        journal: dict[str, Any] = {
            "run": run_id,
            "plan": bundle.id,
            "environment": s.env.name,
            "commit": bundle.commit,
            "started": now(),
            "holder": holder,
            "nodes": {},
        }
        if bundle.rollback is not None:  # status and the next rollback read it
            journal["kind"] = "rollback"
            journal["rollback"] = bundle.rollback.to_json()

        def record(r: NodeResult) -> None:
            with lock:
                results[r.node] = r
                journal["nodes"][r.node] = {
                    "status": r.status.value,
                    "reason": r.reason,
                    "at": now(),
                    "commit": bundle.commit,
                    "fingerprint": bundle.node_fingerprint(r.node),
                    "seconds": round(r.seconds, 3),
                    "inputs_hash": r.inputs_hash,
                    **journal_edges(s, bundle.nodes[r.node], r),
                }
                s.store.write_journal(s.env.name, run_id, journal)

        def work(n: str) -> Status:
            planned = bundle.nodes[n]
            t0 = time.monotonic()
            if planned.deletion is not None:
                return delete_work(
                    s, n, planned, plan_dir, consent, prompt, record, errors, done_before, leaving
                )
            node = s.env.nodes[n]
            try:
                ih_start = inputs_hash(resolve_inputs(s, node, values, {})[0])
            except EnvctlError:
                ih_start = ""  # _apply_node raises it again, as the node's failure
            with lock:
                started[n] = ih_start
            if n in done_before and done_before[n] == bundle.node_fingerprint(n):
                read_current_outputs(s, node, values)
                s.progress(f"{n}: already converged by an earlier run of this plan, skipped")
                ih = inputs_hash(resolve_inputs(s, node, values, {})[0])
                record(NodeResult(n, Status.DONE, "resumed", planned, 0.0, ih))
                return Status.DONE
            try:
                status, reason, plan = _apply_node(
                    s, node, planned, bundle, plan_dir, values, consent, prompt
                )
            except EnvctlError as e:
                e.node = e.node or n
                scrub_error(e, values.secrets)  # API server and Terraform texts may echo a secret
                s.progress(
                    f"{n}: {'interrupted' if isinstance(e, InterruptedRun) else 'failed'}: {e.message}"
                )
                # Applied but not ready (a wait that timed out, failed or was interrupted): the node
                # runs with this run's inputs, so drift must not call it stale.
                applied_with = ih_start if e.after_apply else ""
                record(NodeResult(n, Status.FAILED, e.message, None, time.monotonic() - t0, applied_with))
                with lock:
                    errors[n] = e
                return Status.FAILED
            ih = inputs_hash(resolve_inputs(s, node, values, {})[0]) if status is Status.DONE else ""
            seconds = time.monotonic() - t0
            record(NodeResult(n, status, reason, plan, seconds, ih))
            s.progress(f"{n}: {'converged' if status is Status.DONE else status.value} in {seconds:.1f}s")
            return status

        errors: dict[str, EnvctlError] = {}
        started: dict[str, str] = {}  # node -> hash of the inputs it runs with
        leaving = frozenset(  # what the deletions of this run delete
            c.address
            for p in bundle.nodes.values()
            if p.deletion is not None
            for c in p.changes
            if c.action is Action.DELETE
        )

        def exited() -> None:
            """The second Ctrl-C: journal every node not finished, before the lock is released."""
            with lock:
                for n in bundle.order:
                    if n in results:
                        continue
                    ran = n in started
                    journal["nodes"][n] = {
                        "status": (Status.FAILED if ran else Status.NOT_STARTED).value,
                        "reason": "the run exited (second Ctrl-C) while it ran; a running Terraform "
                        "command finishes on its own"
                        if ran
                        else "the run exited (second Ctrl-C) before it started",
                        "at": now(),
                        "commit": bundle.commit,
                        "fingerprint": bundle.node_fingerprint(n),
                        "inputs_hash": started.get(n, ""),
                    }
                journal["finished"] = now()
                journal["interrupted"] = True
                s.store.write_journal(s.env.name, run_id, journal)

        s.store.mark_applied(bundle, run_id)
        with interrupts(stop, s.progress, s.cancel_waits):
            try:
                edges = run_edges(bundle.nodes, s.graph.edges)
                queue = run_graph(s, list(bundle.order), work, stop, edges=edges)
            except KeyboardInterrupt:
                exited()
                raise
        for n in bundle.order:
            st = queue.status[n]
            if n not in results or results[n].status is not st:
                results[n] = NodeResult(n, st, queue.reason.get(n, ""))
                journal["nodes"][n] = {
                    "status": st.value,
                    "reason": queue.reason.get(n, ""),
                    "at": now(),
                    "commit": bundle.commit,
                    "fingerprint": bundle.node_fingerprint(n),
                }
        journal["finished"] = now()
        journal["interrupted"] = stop.is_set()
        s.store.write_journal(s.env.name, run_id, journal)
        bound = consent.pending.value if consent.pending else None
        result = ApplyResult(
            run_id, bundle.id, {n: results[n] for n in bundle.order}, stop.is_set(), errors, bound
        )
    if apply_outcome(result)[0] is ExitCode.OK:
        after_destroy(s, bundle, result)  # a whole environment destroyed: its lock goes too
    return result


def _resumable(s: Session, bundle: PlanBundle) -> dict[str, str]:
    return {n: str(r.get("fingerprint")) for n, r in s.store.last_done(s.env.name, bundle.id).items()}


def _apply_node(
    s: Session,
    node: Node,
    planned: NodePlan,
    bundle: PlanBundle,
    plan_dir: Path,
    values: Values,
    consent: Consent,
    prompt: Prompt | None,
) -> tuple[Status, str, NodePlan]:
    inputs, pending = resolve_inputs(s, node, values, {})
    if pending:
        raise EngineError(
            f"inputs {', '.join(pending)} are still unknown after upstream nodes converged", node=node.id
        )
    upstream = s.graph.with_dependencies([node.id]) - {node.id}

    def approve(plan: NodePlan) -> str:
        # the adapter asks with the exact plan it is about to write; a re-plan is a new object
        return _held(s, scrub_plan(plan, values.secrets), consent, prompt, replanned=plan is not planned)

    request = ApplyRequest(
        planned=planned,
        inputs=inputs,
        plan_dir=plan_dir,
        same_inputs=bundle.inputs_hash.get(node.id) == inputs_hash(inputs) and not planned.pending_upstream,
        upstream_applied=any(bundle.nodes[u].has_changes for u in upstream if u in bundle.nodes),
        approve=approve,
    )
    applied = s.adapter(node.id).apply(node, request)
    plan = scrub_plan(applied.plan, values.secrets)
    if applied.blocked:
        return Status.BLOCKED, applied.blocked, plan
    if applied.outputs is not None:
        values.put(node.id, applied.outputs.values, applied.outputs.sensitive)
    return Status.DONE, "", plan


def journal_edges(s: Session, planned: NodePlan, r: NodeResult) -> dict[str, Any]:
    """What the journal records of a node beyond its status: the nodes it depends on (a node
    removed from Git later is deleted before them), and for a deletion, that it is gone (nothing
    kept) or the commit whose configuration still describes what was kept."""
    if planned.deletion is None:
        return {"depends_on": s.graph.upstream(r.node)}
    kept = r.plan.kept if r.plan is not None else planned.kept
    entry: dict[str, Any] = {"depends_on": list(planned.depends_on), "deletion": planned.deletion.value}
    if r.status is Status.DONE and not kept:
        entry["deleted"] = True
    if CONFIG_COMMIT in planned.artifacts:
        entry["commit"] = planned.artifacts[CONFIG_COMMIT]
    return entry


def delete_work(
    s: Session,
    n: str,
    planned: NodePlan,
    plan_dir: Path,
    consent: Consent,
    prompt: Prompt | None,
    record: Callable[[NodeResult], None],
    errors: dict[str, EnvctlError],
    done_before: dict[str, str],
    leaving: frozenset[str],
) -> Status:
    """Delete one node as planned, through the approval gate; journal it like any node."""
    t0 = time.monotonic()
    if n in done_before and done_before[n] == node_fingerprint(planned):
        s.progress(f"{n}: already deleted by an earlier run of this plan, skipped")
        record(NodeResult(n, Status.DONE, "resumed", planned, 0.0))
        return Status.DONE
    try:
        node, adapter = deletion_target(s, n, planned)

        def approve(plan: NodePlan) -> str:
            return _held(s, plan, consent, prompt, replanned=False)

        applied = adapter.delete(node, DeleteRequest(planned, plan_dir, approve, leaving))
    except EnvctlError as e:
        e.node = e.node or n
        scrub_error(e)
        s.progress(f"{n}: {'interrupted' if isinstance(e, InterruptedRun) else 'failed'}: {e.message}")
        record(NodeResult(n, Status.FAILED, e.message, None, time.monotonic() - t0))
        errors[n] = e
        return Status.FAILED
    done = dataclasses.replace(
        applied.plan, deletion=planned.deletion, depends_on=planned.depends_on, artifacts=planned.artifacts
    )
    status = Status.BLOCKED if applied.blocked else Status.DONE
    seconds = time.monotonic() - t0
    record(NodeResult(n, status, applied.blocked, done, seconds))
    s.progress(f"{n}: {'deleted' if status is Status.DONE else status.value} in {seconds:.1f}s")
    return status


def changes_key(plan: NodePlan) -> str:
    return sha256(canonical([c.to_json() for c in plan.changes]))


def _held(s: Session, plan: NodePlan, consent: Consent, prompt: Prompt | None, *, replanned: bool) -> str:
    """'' when the gate lets ``plan`` be written (or a human said yes); else why it is held."""
    if replanned and consent.plan_ref:
        # the saved plan approved again with a bound this re-plan stays within lets it go: the
        # run resumes, skips what converged and re-plans the node the same way
        how = approve_command(
            s.env.name, consent.plan_ref, resume=True, rev=s.planned_rev, pending=PendingBound.least(plan)
        )
        consent = dataclasses.replace(consent, how=how)
    elif replanned:
        how = (
            f"envctl apply -e {s.env.name}{rev_flag(s.planned_rev)} in a terminal "
            f"(re-plans {plan.node} and asks)"
        )
        consent = dataclasses.replace(consent, how=how)
    decision = gate([plan], s.approval_policy(), consent)
    if decision.allows(plan.node):
        return ""
    if prompt is not None and prompt(plan.node, plan):
        return ""
    what = "changed after re-planning with the new upstream outputs: " if replanned else ""
    return what + decision.held[0].reason


def apply_outcome(res: ApplyResult) -> tuple[ExitCode, str]:
    """The exit code of an apply (DESIGN.md §2) and the word for the convergence notice."""
    statuses = {r.status for r in res.results.values()}
    if res.interrupted:
        return ExitCode.INTERRUPTED, "interrupted"
    if statuses <= {Status.DONE}:
        return ExitCode.OK, "success"
    if Status.FAILED in statuses:
        if Status.DONE in statuses:
            return ExitCode.PARTIAL, "partial failure"
        stale = any(isinstance(e, StalePlanError) for e in res.errors.values())
        return (ExitCode.STALE_PLAN if stale else ExitCode.ERROR), "failure"
    if Status.BLOCKED in statuses:
        return ExitCode.APPROVAL_REQUIRED, "approval needed"
    return ExitCode.PARTIAL, "partial failure"


def notify_apply(
    s: Session, outcome: str, statuses: dict[str, str], run: str, warn: Callable[[str], None]
) -> None:
    """The convergence notice to the environment's webhooks; a failed delivery is reported, never silent."""
    if not s.env.notifications:
        return
    from envctl.notify import apply_payload, post_all

    for d in post_all(s.env.notifications, apply_payload(s.env.name, outcome, statuses, run)):
        if not d.ok:
            warn(f"Warning: notification to {d.url} failed after {d.attempts} attempt(s): {d.detail}")
