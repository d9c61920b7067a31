"""Terraform diagnostics -> envctl errors a user can act on. Pure functions.

Terraform's ``-json`` output carries each diagnostic with severity, summary, detail and a
source range. envctl reports the first error as the message, names the node, the repository
file and line (mapped back from the workspace copy), keeps the failed command and the other
diagnostics as detail, adds a hint, and scrubs known secret values from every text it keeps.

Imports only the standard library and ``envctl.core``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from envctl.core.errors import ConfigError, EngineError, EnvctlError, Location, StalePlanError
from envctl.core.secrets import KNOWN, mask, secret_texts

REDACTED = "(sensitive value)"


@dataclass(frozen=True)
class Diagnostic:
    severity: str
    summary: str
    detail: str
    filename: str | None
    line: int | None


def parse_json_lines(stdout: str) -> list[dict[str, Any]]:
    """The machine-readable lines of a ``-json`` command's output (other lines are skipped)."""
    out: list[dict[str, Any]] = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def _diag(d: dict[str, Any]) -> Diagnostic:
    rng = d.get("range") or {}
    start = rng.get("start") or {}
    return Diagnostic(
        severity=str(d.get("severity", "error")),
        summary=str(d.get("summary", "")),
        detail=str(d.get("detail", "")),
        filename=rng.get("filename"),
        line=start.get("line"),
    )


def diagnostics_from_stream(stdout: str) -> list[Diagnostic]:
    """Diagnostics of a streaming ``-json`` command (plan, apply, init)."""
    return [_diag(m["diagnostic"]) for m in parse_json_lines(stdout) if m.get("type") == "diagnostic"]


def diagnostics_from_validate(stdout: str) -> list[Diagnostic]:
    """Diagnostics of ``validate -json`` (one JSON document)."""
    try:
        doc = json.loads(stdout)
    except ValueError:
        return []
    return [_diag(d) for d in doc.get("diagnostics") or ()] if isinstance(doc, dict) else []


def diagnostics_from_text(stderr: str) -> list[Diagnostic]:
    """Diagnostics of a command without ``-json`` (``Error: summary`` blocks in the text)."""
    out: list[Diagnostic] = []
    lines = [ln.strip().lstrip("│╷╵").strip() for ln in stderr.splitlines()]
    i = 0
    while i < len(lines):
        ln = lines[i]
        if ln.startswith(("Error: ", "Warning: ")):
            sev, _, summary = ln.partition(": ")
            body: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].startswith(("Error: ", "Warning: ")):
                if lines[i]:
                    body.append(lines[i])
                i += 1
            fname = line_no = None
            if body and body[0].startswith("on ") and " line " in body[0]:
                loc = body.pop(0)[3:]
                fname, _, rest = loc.partition(" line ")
                digits = "".join(ch for ch in rest if ch.isdigit())[:9]
                line_no = int(digits) if digits else None
            out.append(Diagnostic(sev.lower(), summary, "\n".join(body), fname, line_no))
            continue
        i += 1
    return out


class Redactor:
    """Replaces known secret values (sensitive variables' inputs) in any text envctl keeps.

    Which texts a secret takes, and which are too short to hide, is ``envctl.core.secrets``.
    """

    def __init__(self, secrets: Iterable[Any] = ()) -> None:
        # a stable order (longest first) for ``secrets``, which planjson.scrub also uses
        self._secrets = tuple(sorted(secret_texts(secrets), key=lambda s: (-len(s), s)))
        KNOWN.add_texts(self._secrets)  # and masked in everything else envctl prints or stores

    @property
    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    def __call__(self, text: str) -> str:
        return mask(text, self._secrets, REDACTED)


CONFIG_COMMANDS = ("terraform init", "terraform validate")
# Errors Terraform reports while evaluating the configuration during plan (HCL and Terraform's
# expression evaluation; their summaries are the only classification its diagnostics carry). At
# a line of a repository file they are configuration errors (exit 78), like init's and
# validate's; any other plan error (a provider's, a data source's) stays an engine error.
EVALUATION_SUMMARIES = (
    "Reference to undeclared",  # input variable, local value, resource, module, output value
    "Unsupported attribute",
    "Unsupported argument",
    "Unsupported block type",
    "Missing required argument",
    "Invalid reference",
    "Invalid function argument",
    "Call to unknown function",
    "Error in function call",
    "Not enough function arguments",
    "Too many function arguments",
    "Invalid value for input variable",
    "Invalid value for variable",
    "No value for required variable",
    "Invalid default value for variable",
    "Incorrect attribute value type",
    "Unsuitable value type",
    "Invalid index",
    "Invalid operand",
    "Unsupported operator",
    "Inconsistent conditional result types",
    "Incorrect condition type",
    "Invalid template interpolation value",
    "Invalid count argument",
    "Invalid for_each argument",
    "Missing map element",
    "Attempt to get attribute from null value",
    "Iteration over null value",
    "Invalid expression",
    "Variables not allowed",
    "Function calls not allowed",
    "Unknown variable",
)
PLAN_COMMANDS = ("terraform plan",)
STALE_SUMMARIES = ("Saved plan is stale", "Saved plan does not match", "Saved plan is for a different")


def error_from(
    diags: Sequence[Diagnostic],
    *,
    node: str,
    command: str,
    what: str,
    hint: str,
    to_repo_path: Callable[[str], str | None],
    redact: Redactor,
    fallback: str = "",
) -> EnvctlError:
    """One ``EngineError`` (or ``StalePlanError``) for a failed Terraform command."""
    errors = [d for d in diags if d.severity == "error"] or list(diags)
    first = errors[0] if errors else None
    location = None
    if first is not None and first.filename:
        repo_path = to_repo_path(first.filename)
        location = Location(repo_path or first.filename, first.line)
    lines = [f"command: {command}"]
    for d in errors:
        where = ""
        if d.filename:
            where = f" ({to_repo_path(d.filename) or d.filename}:{d.line})" if d.line else f" ({d.filename})"
        lines.append(f"{d.severity}: {d.summary}{where}")
        # redacted before re-indenting and cutting: a multi-line secret is then still found whole
        lines.extend("  " + ln for ln in redact(d.detail).splitlines() if ln.strip())
    if not errors and fallback:
        lines.append(_tail(redact(fallback)))
    detail = redact("\n".join(lines))
    summary = first.summary if first else "Terraform failed"
    if first is not None and first.summary.startswith(STALE_SUMMARIES):
        return StalePlanError(
            redact(f"the saved plan is stale: {first.summary}"),
            node=node,
            detail=detail,
            hint="the state changed since this plan was made (another apply ran): run envctl plan again",
        )
    # init and validate read the configuration: an error at a line of a repository file is a
    # configuration error (a syntax error, say), not a provider or engine problem. init puts a
    # general "problems during initialisation" error first: the located one says what is wrong.
    # plan evaluates it: an evaluation error at a line of a repository file is one too.
    in_repo = [d for d in errors if d.filename and to_repo_path(d.filename) is not None]
    if what in PLAN_COMMANDS:  # plan: only errors of evaluating the configuration
        in_repo = [d for d in in_repo if d.summary.startswith(EVALUATION_SUMMARIES)]
    if (what in CONFIG_COMMANDS or what in PLAN_COMMANDS) and in_repo:
        bad = in_repo[0]
        at = Location(to_repo_path(bad.filename or "") or "", bad.line)
        return ConfigError(
            redact(f"Terraform configuration error: {bad.summary}"),
            node=node,
            location=at,
            hint=f"fix {at.file}" + (f" at line {at.line}" if at.line else ""),
            detail=detail,
        )
    return EngineError(
        redact(f"{what} failed: {summary}"), node=node, location=location, hint=hint, detail=detail
    )


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
