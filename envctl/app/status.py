"""``envctl status``: what the journal, the lock and the last drift check say about an environment,
and how far each node is behind HEAD."""

from __future__ import annotations

from typing import Any

from envctl.app.locking import lock_holder
from envctl.app.reads import extra_reads, node_reads
from envctl.app.session import Session
from envctl.core.drift import overdue_seconds
from envctl.core.errors import EnvctlError, UnavailableError
from envctl.core.results import StatusReport, run_outcome
from envctl.repo.gitcli import commits_behind
from envctl.store import now


def environment_status(s: Session) -> StatusReport:
    """Last converge (or apply) per node, nodes removed from Git, commits behind HEAD, the last
    run's outcome, the lock holder (even with no cluster), the last drift."""
    store, name = s.store, s.env.name
    # the last run that wrote each node: converged, or applied but not ready (an interrupted wait)
    last = {
        n: {
            "commit": r.get("commit"),
            "at": r.get("at"),
            "run": r.get("run"),
            "converged": r.get("status") == "done",
            "reason": None if r.get("status") == "done" else r.get("reason"),
        }
        for n, r in store.last_applied(name).items()
    }
    removed = {n: e for n, e in last.items() if n not in s.env.nodes}
    try:
        lock = lock_holder(s)
    except UnavailableError as e:  # unreachable, or refusing envctl (TLS, 401, 403): say which
        lock = {"holder": f"unknown: {e.message}"}
    drift = store.last_drift(name)
    overdue = overdue_seconds(drift.get("at") if drift else None, s.env.drift_every, now())
    return StatusReport(
        name,
        tuple(s.graph.order()),
        {n: e for n, e in last.items() if n in s.env.nodes},
        lock,
        drift,
        s.env.drift_every,
        overdue,
        removed=removed,
        behind=_behind(s, last),
        last_run=_last_run(store.journals(name)),
    )


def _behind(s: Session, last: dict[str, dict[str, Any]]) -> dict[str, int | None]:
    """Per node in Git, the commits since its last converged commit touching a file it reads."""
    tip = s.snapshot.commit
    if tip is None:
        return {n: None for n in s.env.nodes}
    try:
        extra = extra_reads(s)
    except EnvctlError:
        extra = {}  # a kustomization that does not load: validate and plan say why
    out: dict[str, int | None] = {}
    for n, node in s.env.nodes.items():
        since = (last.get(n) or {}).get("commit")
        out[n] = commits_behind(s.root, since, tip, node_reads(s, node, extra)) if since else None
    return out


def _last_run(journals: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not journals:
        return None
    j = journals[-1]
    statuses = [str(r.get("status")) for r in dict(j.get("nodes", {})).values()]
    counts: dict[str, int] = {}
    for st in statuses:
        counts[st] = counts.get(st, 0) + 1
    return {
        "run": j.get("run"),
        "started": j.get("started"),
        "finished": j.get("finished"),
        "commit": j.get("commit"),
        "outcome": run_outcome(statuses, finished="finished" in j, interrupted=bool(j.get("interrupted"))),
        "counts": dict(sorted(counts.items())),
        "rollback": j.get("kind") == "rollback",
        "rollback_from": dict(j.get("rollback") or {}).get("from"),
    }
