"""Check an environment for drift: refresh-only plans for stacks, live comparison for layers.

Read-only towards the world: it never writes Terraform state, inventories or cluster objects
(``--converge`` is a separate step: the drifted nodes alone, planned and applied through the
normal apply path and its approval gate). It records the last
result under ``.envctl/drift/`` for ``envctl status``.
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envctl.app.apply import apply_bundle
from envctl.app.executor import run_graph
from envctl.app.inputs import (
    Values,
    input_refs,
    inputs_hash,
    read_current_outputs,
    resolve_inputs,
    waiting_on,
)
from envctl.app.locking import hold_environment_lock, lock_holder
from envctl.app.plan import plan_environment
from envctl.app.removal import plan_removed
from envctl.app.session import Session
from envctl.core.approval import Consent, approve_command
from envctl.core.drift import DriftReport, NodeDrift
from envctl.core.errors import EnvctlError, ExitCode
from envctl.core.schedule import Status
from envctl.core.secrets import scrub_error, scrub_plan
from envctl.store import now


def last_converged(s: Session) -> dict[str, dict[str, Any]]:
    """Per node, the journal entry of the last run that wrote it (``Store.last_applied``).

    A layer applied by a run interrupted during its readiness wait runs with that run's inputs:
    comparing with an older converge would call it stale while plan finds nothing to change.
    """
    return s.store.last_applied(s.env.name)


def check_drift(s: Session) -> DriftReport:
    """Compare every node with the live world: a node after the nodes whose outputs it reads,
    independent nodes (layers ordered by a bare ``depends_on``) at the same time, in
    ``s.parallelism`` threads. The report lists them in graph order."""
    edges = tuple(sorted(s.graph.edges))
    try:
        holder = lock_holder(s)
    except EnvctlError:
        # An unreachable cluster must still produce a report (and a notification): every layer
        # then fails its own check below and the report exits 69, never "no drift".
        holder = None
    if holder is not None:
        return DriftReport(
            s.env.name,
            s.snapshot.commit,
            now(),
            (),
            edges,
            skipped_reason=f"apply in progress by {holder.get('holder', 'another run')}, skipped",
        )
    last = last_converged(s)
    values = Values()
    results: dict[str, NodeDrift] = {}
    changed_outputs: dict[str, set[str]] = {}
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="envctl-drift-") as tmp:

        def work(n: str) -> Status:
            node = s.env.nodes[n]
            try:
                read_current_outputs(s, node, values)
                with lock:
                    outs = dict(changed_outputs)
                result, outs_changed = _check_node(s, n, values, last.get(n), outs, Path(tmp))
            except EnvctlError as e:
                exit_code = ExitCode.UNAVAILABLE if e.exit_code == ExitCode.UNAVAILABLE else ExitCode.ERROR
                error = str(scrub_error(e, values.secrets))  # error texts may echo a secret
                result, outs_changed = NodeDrift(n, "error", error=error, error_exit=exit_code), set()
            with lock:
                failed_up = [c for c in result.causes if c in results and results[c].status == "error"]
                if result.status == "stale" and failed_up:
                    # Its inputs are missing because the upstream check failed, not because upstream
                    # changed: this node was not checked either, and must not read as cascading drift.
                    result = NodeDrift(
                        n,
                        "error",
                        error=f"{n}: not checked: upstream {', '.join(failed_up)} could not be checked",
                        error_exit=max(results[c].error_exit for c in failed_up),
                    )
                results[n] = result
                changed_outputs[n] = outs_changed
            return Status.DONE

        # A node waits only for the nodes whose outputs it reads (their values, and whether they
        # changed); the others - layers ordered by a bare depends_on - are checked at the same time.
        run_graph(s, s.graph.order(), work, needs=lambda u, d: _reads_outputs_of(s, d, u))
        removed = _removed_drift(s, Path(tmp))
    return DriftReport(
        s.env.name, s.snapshot.commit, now(), (*removed, *(results[n] for n in s.graph.order())), edges
    )


def _reads_outputs_of(s: Session, node: str, upstream: str) -> bool:
    return any(ref.node == upstream for ref in s.env.nodes[node].upstream_refs)


def _removed_drift(s: Session, tmp: Path) -> list[NodeDrift]:
    """Nodes removed from Git but still live: drifted, with what ``envctl apply`` deletes; what
    their deletion keeps is listed (in sync: nothing to converge) until removed or adopted."""
    order, plans, errors = plan_removed(s, tmp / "removed")
    out = [
        NodeDrift(
            n,
            "error",
            error=str(scrub_error(e)),
            error_exit=ExitCode.UNAVAILABLE if e.exit_code == ExitCode.UNAVAILABLE else ExitCode.ERROR,
        )
        for n, e in errors.items()
    ]
    for n in order:
        p = plans.get(n)
        if p is None:
            continue
        kept = tuple(f"kept: {k}" for k in p.kept)
        if p.has_changes:
            why = f"removed from Git, still live: envctl apply -e {s.env.name} deletes it"
            out.append(NodeDrift(n, "drifted", p.changes, notes=(why, *kept, *p.notes)))
        else:
            out.append(NodeDrift(n, "in-sync", notes=("removed from Git", *kept, *p.notes)))
    return out


def record_result(s: Session, report: DriftReport) -> None:
    """The final result (after converge and notifications) in ``.envctl/drift/`` for ``status``."""
    s.store.write_drift(
        s.env.name,
        {
            "at": report.at,
            "summary": report.summary(),
            "exit_code": report.exit_code,
            "drift": report.has_drift,
        },
    )


def _check_node(
    s: Session,
    n: str,
    values: Values,
    last: dict[str, Any] | None,
    changed_outputs: dict[str, set[str]],
    tmp: Path,
) -> tuple[NodeDrift, set[str]]:
    node = s.env.nodes[n]
    inputs, pending = resolve_inputs(s, node, values, {})
    causes = sorted(
        {
            ref.node
            for key in node.inputs
            for ref in input_refs(node, key)
            if ref.node and ref.kind == "output" and ref.name in changed_outputs.get(ref.node, set())
        }
    )
    journal_notes: tuple[str, ...] = ()
    if last is None:
        # No run journal here (a fresh clone: a CronJob, a CI runner): whether the node was ever
        # applied comes from the live world - an inventory, a state with outputs.
        if not _applied_live(s, node.id, values):
            return NodeDrift(n, "not-applied", notes=("never converged by envctl",)), set()
        journal_notes = ("no run journal here: compared with the live world; stale inputs not checked",)
    if pending:
        return NodeDrift(
            n,
            "stale",
            causes=tuple(waiting_on(node, pending)),
            notes=(f"inputs {', '.join(pending)} have no value upstream",),
        ), set()
    recorded = last.get("inputs_hash") if last else None
    if recorded and recorded != inputs_hash(inputs) and not causes:
        causes = sorted({r.node for k in node.inputs for r in input_refs(node, k) if r.node}) or ["env"]
    adapter = s.adapter(n)
    plan = scrub_plan(adapter.drift(node, inputs, tmp), values.secrets)
    outs = set(plan.outputs_changing)
    changes = tuple(c for c in plan.changes if c.action.changes)
    own = [c for c in changes if adapter.own_drift(c, cascading=bool(causes))]
    if own:
        return NodeDrift(n, "drifted", changes, tuple(causes), notes=plan.notes + journal_notes), outs
    if changes:
        return NodeDrift(
            n,
            "stale",
            changes,
            tuple(causes),
            notes=("an upstream output it consumes changed since it last converged", *plan.notes),
        ), outs
    if causes or (recorded and recorded != inputs_hash(inputs)):
        return NodeDrift(
            n,
            "stale",
            (),
            tuple(causes),
            notes=("an upstream output it consumes changed since it last converged",),
        ), outs
    return NodeDrift(n, "in-sync", notes=plan.notes + journal_notes), outs


def _applied_live(s: Session, n: str, values: Values) -> bool:
    """Whether a node without a journal entry exists in the live world."""
    return s.adapter(n).exists(s.env.nodes[n], values.outputs.get(n))


@dataclass(frozen=True)
class Converged:
    """What ``drift --converge`` did: a note per node, whether a node failed, nodes held back."""

    notes: tuple[str, ...] = ()
    failed: bool = False
    held: tuple[str, ...] = ()


def converge_drifted(s: Session, report: DriftReport, *, auto_approve: bool) -> Converged:
    """Re-converge the drifted (and stale) nodes only, each through the one approval gate.

    Only those nodes are planned - never the nodes they depend on - so their inputs are the
    upstream outputs as they are live: a Git change of an upstream stack that nobody approved is
    never applied on the way. A node the policy covers is written only with ``--auto-approve``
    (everything approved, explicitly); otherwise it is held, with the command that approves it,
    and so is whatever waits for it.
    """
    # A node stale because its own inputs changed in Git ("env") is a Git change, not drift: it
    # is for envctl apply and its approval, and converging it here could hold what waits for it.
    git_changed = [d.node for d in report.nodes if d.status == "stale" and "env" in d.causes]
    targets = [
        d.node
        for d in report.nodes
        if d.node in s.env.nodes
        and (d.status == "drifted" or (d.status == "stale" and d.node not in git_changed))
    ]
    notes = tuple(
        f"{n}: not converged: its inputs changed in Git since it last converged (envctl apply "
        f"-e {s.env.name} applies them)"
        for n in git_changed
    ) + tuple(
        f"{d.node}: not deleted: removed from Git; envctl apply -e {s.env.name} deletes it (with its plan)"
        for d in report.nodes
        if d.status == "drifted" and d.node not in s.env.nodes
    )
    if not targets:
        return Converged(notes)
    # plan and apply under one lock, as envctl apply does: the plan is fresh when it is applied
    with hold_environment_lock(s):
        result = plan_environment(s, targets=targets, dependencies=False)
        if result.errors:
            errors = (f"{n}: not converged: {e.message}" for n, e in result.errors.items())
            return Converged((*notes, *errors), True)
        bundle = result.bundle
        how = approve_command(s.env.name, bundle.id, resume=True, rev=bundle.rev)
        consent = Consent(everything=True) if auto_approve else Consent(how=how)
        applied = apply_bundle(s, bundle, result.plan_dir, consent=consent, prompt=None, fresh=True)
    out: list[str] = list(notes)
    held: list[str] = []
    failed = False
    for n, r in applied.results.items():  # in dependency order
        ups = s.graph.with_dependencies([n]) - {n}
        if r.status is Status.BLOCKED or (r.status is Status.SKIPPED and any(u in held for u in ups)):
            held.append(n)
            out.append(f"{n}: not converged: {r.reason}")
            continue
        out.append(f"{n}: converge {r.status.value}" + (f" ({r.reason})" if r.reason else ""))
        failed = failed or r.status in (Status.FAILED, Status.SKIPPED, Status.NOT_STARTED)
    return Converged(tuple(out), failed, tuple(held))


def run_drift_check(
    s: Session,
    urls: list[str],
    *,
    converge: bool,
    auto_approve: bool,
    progress: Callable[[str], None],
) -> DriftReport:
    """One ``envctl drift`` check: compare, repair what ``converge`` allows, notify ``urls`` of
    drift or errors, record the result; the report says what was repaired and who was told."""
    report = check_drift(s)
    if converge and report.has_drift:
        # Before notifying and rendering, so that the alert and the report say what was repaired.
        done = converge_drifted(s, report, auto_approve=auto_approve)
        for note in done.notes:
            progress(f"converge: {note}")
        report = dataclasses.replace(
            report, converge=done.notes, converge_failed=done.failed, converge_held=done.held
        )
    if urls and not report.skipped_reason and (report.has_drift or report.has_errors):
        from envctl.notify import drift_payload, post_all

        report = dataclasses.replace(report, deliveries=post_all(urls, drift_payload(report.to_json())))
    record_result(s, report)
    return report
