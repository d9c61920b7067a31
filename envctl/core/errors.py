"""Exit codes and the typed errors every layer raises; one boundary (the CLI) turns them into exits.

Pure: imports nothing but the standard library. Whether an error is retryable is a property
of its type, never found by reading messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar


class ExitCode(IntEnum):
    """The exit codes of DESIGN.md §2, the same for every command."""

    OK = 0
    ERROR = 1
    CHANGES = 2
    APPROVAL_REQUIRED = 3
    STALE_PLAN = 4
    PARTIAL = 5
    USAGE = 64
    UNAVAILABLE = 69
    CONFIG = 78
    INTERRUPTED = 130


@dataclass(frozen=True)
class Location:
    """A place in the environment repository: a repo-relative file and a 1-based line."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


class EnvctlError(Exception):
    """Base of every error envctl reports to a user.

    message: what went wrong; node: the node id it concerns (``stack.network``);
    location: file and line; hint: what to do; detail: extra lines such as the tail of a
    failed command's output (already free of secrets).
    """

    exit_code: ClassVar[ExitCode] = ExitCode.ERROR
    reference: ClassVar[str] = "envctl-error"
    retryable: ClassVar[bool] = False
    # True when the node's changes were all written before the error (a readiness wait that
    # timed out, failed or was interrupted): the node runs with the inputs of this run.
    after_apply: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        node: str | None = None,
        location: Location | None = None,
        hint: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.node = node
        self.location = location
        self.hint = hint
        self.detail = detail

    def __str__(self) -> str:
        parts = []
        if self.node:
            parts.append(f"{self.node}: ")
        if self.location:
            parts.append(f"{self.location}: ")
        parts.append(self.message)
        return "".join(parts)


class ConfigError(EnvctlError):
    """The environment repository is invalid: schema, references, cycles, YAML."""

    exit_code = ExitCode.CONFIG
    reference = "invalid-configuration"


class UsageError(EnvctlError):
    """The command line is wrong: unknown environment, conflicting flags."""

    exit_code = ExitCode.USAGE
    reference = "usage"


class UnavailableError(EnvctlError):
    """An external system (API server, Git, a binary) cannot be reached or is missing."""

    exit_code = ExitCode.UNAVAILABLE
    reference = "unavailable"
    retryable = True


class StalePlanError(EnvctlError):
    """A plan no longer matches the world: commit moved, state changed, already applied, tampered."""

    exit_code = ExitCode.STALE_PLAN
    reference = "stale-plan"


class ApprovalRequiredError(EnvctlError):
    """Changes need a human approval that was not given."""

    exit_code = ExitCode.APPROVAL_REQUIRED
    reference = "approval-required"


class EngineError(EnvctlError):
    """Terraform or Kubernetes refused an operation; ``detail`` carries the diagnostics."""

    exit_code = ExitCode.ERROR
    reference = "engine-error"


class NotReadyError(EngineError):
    """Everything was applied, but some objects did not become ready (timed out or failed)."""

    reference = "not-ready"
    after_apply = True


class LockedError(EnvctlError):
    """Another run holds the environment lock."""

    exit_code = ExitCode.ERROR
    reference = "environment-locked"


def describe_holder(h: dict[str, object]) -> str:
    """How a lock holder is named in messages: who, where, which run, since when."""
    return (
        f"{h.get('holder', '?')} (pid {h.get('pid', '?')}, run {h.get('run', '?')}, "
        f"since {h.get('since', '?')})"
    )


class NotPlannedError(EnvctlError):
    """A node was not planned because a node it depends on failed (its own error is reported)."""

    exit_code = ExitCode.ERROR
    reference = "not-planned"


class InterruptedRun(EnvctlError):
    """The user interrupted the run (Ctrl-C)."""

    exit_code = ExitCode.INTERRUPTED
    reference = "interrupted"


class InterruptedWait(InterruptedRun):
    """Ctrl-C during a readiness wait: everything was applied, some objects are not ready yet."""

    after_apply = True
