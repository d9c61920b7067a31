"""Render ``envctl status`` and ``envctl validate``: text and versioned JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from envctl.core.durations import format_duration
from envctl.core.errors import describe_holder
from envctl.core.results import StatusReport, ValidateResult

FORMAT_VERSION = "1"


def status_json(r: StatusReport) -> str:
    return json.dumps(
        {
            "format_version": FORMAT_VERSION,
            "environment": r.environment,
            "nodes": {n: r.last.get(n) for n in r.order},
            "never_converged": [n for n in r.order if n not in r.last],
            "removed_from_git": r.removed,
            "behind_head": {n: r.behind.get(n) for n in r.order},
            "last_run": r.last_run,
            "lock": r.lock,
            "last_drift": r.last_drift,
            "drift_every": r.drift_every,
            "drift_overdue": r.overdue is not None,
        },
        indent=2,
    )


def status_text(r: StatusReport) -> str:
    lines = [f"environment {r.environment}"]
    for n in r.order:
        last = r.last.get(n)
        if last and last.get("converged", True):
            lines.append(
                f"  {n}: converged at {(last['commit'] or 'working tree')[:12]} on {last['at']}"
                + _behind(r.behind.get(n))
            )
        elif last:
            lines.append(
                f"  {n}: applied at {(last['commit'] or 'working tree')[:12]} on {last['at']}"
                f"{_behind(r.behind.get(n))}, not converged: {str(last.get('reason') or '')[:160]}"
            )
        else:
            lines.append(f"  {n}: never converged (in Git)")
    for n, last in sorted(r.removed.items()):
        lines.append(
            f"  {n}: removed from Git, last applied at {(last.get('commit') or 'working tree')[:12]} "
            f"on {last.get('at')} (what it created may still be live)"
        )
    if r.last_run:
        run = r.last_run
        counts = ", ".join(f"{v} {k}" for k, v in run.get("counts", {}).items())
        lines.append(
            f"last run {run.get('run')} at {(run.get('commit') or 'working tree')[:12]} "
            + (
                f"(a rollback from {str(run.get('rollback_from') or 'unknown')[:12]}) "
                if run.get("rollback")
                else ""
            )
            + f"on {run.get('started')}: {run.get('outcome')} ({counts or 'no nodes'})"
        )
    else:
        lines.append("last run: never")
    lines.append(f"lock: {describe_holder(r.lock) if r.lock else 'free'}")
    if r.last_drift:
        lines.append(f"last drift check: {r.last_drift.get('at')}: {r.last_drift.get('summary')}")
    else:
        lines.append("last drift check: never")
    if r.overdue is not None:
        late = "never run" if r.overdue == math.inf else f"overdue by {format_duration(r.overdue)}"
        every = f"drift check due every {r.drift_every} (drift.every)"
        lines.append(f"{every}: {late}; run envctl drift -e {r.environment}")
    return "\n".join(lines)


def _behind(n: int | None) -> str:
    if n is None:
        return ""
    if n == 0:
        return ", up to date with HEAD"
    return f", {n} commit{'s' if n != 1 else ''} behind HEAD"


def validate_json(results: Sequence[ValidateResult]) -> str:
    envs = [
        {
            "environment": r.environment,
            "nodes": r.nodes,
            "edges": r.edges,
            "valid": True,
            "warnings": list(r.warnings),
        }
        for r in results
    ]
    return json.dumps({"format_version": FORMAT_VERSION, "environments": envs}, indent=2)


def validate_text(results: Sequence[ValidateResult]) -> str:
    lines: list[str] = []
    for r in results:
        lines.append(f"environment {r.environment}: valid ({r.nodes} nodes, {r.edges} edges)")
        lines.extend(f"  warning: {w}" for w in r.warnings)
    return "\n".join(lines)
