"""How an envctl error looks on a terminal: what, where, the detail, and what to do."""

from __future__ import annotations

import json

from envctl.core.errors import EnvctlError


def error_text(err: EnvctlError, *, exit_code: bool = True) -> str:
    """``exit_code``: name the exit code the error makes (False for the error of one node of an
    apply, whose exit code is the apply's outcome, printed after it)."""
    head = "Error"
    where = []
    if err.node:
        where.append(err.node)
    if err.location:
        where.append(str(err.location))
    lines = [f"{head}: {err.message}"]
    if where:
        lines.append(f"  at {' '.join(where)}")
    if err.detail:
        lines.extend(f"  | {line}" for line in err.detail.rstrip().splitlines())
    if err.hint:
        lines.append(f"  hint: {err.hint}")
    lines.append(f"  ({err.reference}, exit {int(err.exit_code)})" if exit_code else f"  ({err.reference})")
    return "\n".join(lines)


def error_json(err: EnvctlError) -> str:
    return json.dumps(
        {
            "format_version": "1",
            "type": "error",
            "reference": err.reference,
            "exit_code": int(err.exit_code),
            "message": err.message,
            "node": err.node,
            "file": err.location.file if err.location else None,
            "line": err.location.line if err.location else None,
            "hint": err.hint,
            "detail": err.detail,
        },
        indent=2,
    )
