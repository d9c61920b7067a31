"""Drift reports: per node, what differs between Git and the live world, and why. Pure values.

A node is ``drifted`` when its own live state differs (another field manager, an out-of-band
Terraform change, a missing object); ``stale`` when an upstream output it consumes changed since it
last converged (cascading drift, grouped under its root cause); ``error`` when it could not be
checked — never reported as in sync.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from envctl.core.changes import Change
from envctl.core.durations import parse_duration
from envctl.core.errors import ExitCode

DriftStatus = Literal["in-sync", "drifted", "stale", "error", "not-applied"]
FORMAT_VERSION = "1"


@dataclass(frozen=True)
class NodeDrift:
    node: str
    status: DriftStatus
    changes: tuple[Change, ...] = ()
    causes: tuple[str, ...] = ()  # upstream nodes whose changed outputs make this node stale
    error: str | None = None
    error_exit: ExitCode = ExitCode.ERROR
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "status": self.status,
            "changes": [c.to_json() for c in self.changes],
            "causes": list(self.causes),
            "error": self.error,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Delivery:
    """What happened to one webhook notification."""

    url: str
    ok: bool
    attempts: int
    detail: str = ""


@dataclass(frozen=True)
class DriftReport:
    environment: str
    commit: str | None
    at: str
    nodes: tuple[NodeDrift, ...]
    edges: tuple[tuple[str, str], ...] = ()
    deliveries: tuple[Delivery, ...] = field(default_factory=tuple)
    skipped_reason: str | None = None  # e.g. "apply in progress"
    converge: tuple[str, ...] = ()  # what --converge did, per node
    converge_failed: bool = False  # a drifted node --converge tried to repair is still not converged
    converge_held: tuple[str, ...] = ()  # drifted nodes --converge left alone: they need an approval

    @property
    def has_drift(self) -> bool:
        return any(n.status in ("drifted", "stale", "not-applied") for n in self.nodes)

    @property
    def has_errors(self) -> bool:
        return (
            any(n.status == "error" for n in self.nodes)
            or any(not d.ok for d in self.deliveries)
            or self.converge_failed
        )

    def root_causes(self) -> dict[str, list[str]]:
        """Stale nodes grouped under the upstream node where the change started."""
        status = {n.node: n for n in self.nodes}
        groups: dict[str, list[str]] = {}
        for n in self.nodes:
            if n.status != "stale":
                continue
            roots: set[str] = set()
            todo = list(n.causes)
            seen: set[str] = set()
            while todo:
                c = todo.pop()
                if c in seen:
                    continue
                seen.add(c)
                up = status.get(c)
                if up is not None and up.status == "stale" and up.causes:
                    todo.extend(up.causes)
                else:
                    roots.add(c)
            for r in sorted(roots) or ["unknown"]:
                groups.setdefault(r, []).append(n.node)
        return groups

    @property
    def exit_code(self) -> ExitCode:
        if self.skipped_reason:
            return ExitCode.OK
        errors = [n for n in self.nodes if n.status == "error"]
        if errors:
            return max(n.error_exit for n in errors)
        if self.converge_failed or any(not d.ok for d in self.deliveries):
            return ExitCode.ERROR
        if self.converge_held:
            return ExitCode.APPROVAL_REQUIRED
        return ExitCode.CHANGES if self.has_drift else ExitCode.OK

    def _converge_json(self) -> dict[str, Any] | None:
        if not self.converge:
            return None
        held = list(self.converge_held)
        return {"notes": list(self.converge), "failed": self.converge_failed, "held": held}

    def summary(self) -> str:
        if self.skipped_reason:
            return f"skipped: {self.skipped_reason}"
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.status] = counts.get(n.status, 0) + 1
        return ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "type": "drift",
            "environment": self.environment,
            "commit": self.commit,
            "at": self.at,
            "summary": self.summary(),
            "drift": self.has_drift,
            "errors": self.has_errors,
            "exit_code": self.exit_code,
            "skipped_reason": self.skipped_reason,
            "nodes": [n.to_json() for n in self.nodes],
            "root_causes": self.root_causes(),
            "edges": [list(e) for e in self.edges],
            "notifications": [d.__dict__ for d in self.deliveries],
            "converge": self._converge_json(),
        }


def overdue_seconds(last_check: str | None, every: str | None, at: str) -> float | None:
    """How long past its schedule (``drift.every``) the next drift check is, as of ``at``.

    ``last_check`` and ``at`` are ISO 8601 times; None when there is no schedule or the check
    is not due yet. Never checked at all with a schedule: overdue since ever (``math.inf``).
    """
    if not every:
        return None
    if not last_check:
        return math.inf
    late = (dt.datetime.fromisoformat(at) - dt.datetime.fromisoformat(last_check)).total_seconds()
    late -= parse_duration(every)
    return late if late > 0 else None
