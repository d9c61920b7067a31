"""``envctl status``: what the journal, the lock and the last drift check say about an environment."""

from __future__ import annotations

from envctl.app.locking import lock_holder
from envctl.app.session import Session
from envctl.core.drift import overdue_seconds
from envctl.core.errors import UnavailableError
from envctl.core.results import StatusReport
from envctl.store import now


def environment_status(s: Session) -> StatusReport:
    """Last converge (or apply) per node, the lock holder (even with no cluster), the last drift."""
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
    try:
        lock = lock_holder(s)
    except UnavailableError:
        lock = {"holder": "unknown: the cluster cannot be reached"}
    drift = store.last_drift(name)
    overdue = overdue_seconds(drift.get("at") if drift else None, s.env.drift_every, now())
    return StatusReport(name, tuple(s.graph.order()), last, lock, drift, s.env.drift_every, overdue)
