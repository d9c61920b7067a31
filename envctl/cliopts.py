"""The command line's shared options and the checks of the raw arguments, for ``envctl.cli``.

``-e/--env``, ``--repo``, ``--rev``, ``--format`` and ``--debug`` as typer annotations (and the
options plan and rollback share: ``--out``, ``--parallelism``, ``--to``); their
callbacks fill in the run's ``Output`` (the format errors are printed in, whether to show
tracebacks). ``asked_format`` and ``check_one_env`` read the raw arguments before typer parses them.
Imports only typer at module level, like ``envctl.cli``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

EnvOpt = Annotated[
    str | None,
    typer.Option("-e", "--env", help="Environment (a directory under environments/).", show_default=False),
]
RepoOpt = Annotated[
    Path | None,
    typer.Option(
        "--repo", help="Environment repository (default: the Git repo around the current directory)."
    ),
]
RevOpt = Annotated[
    str | None,
    typer.Option(
        "--rev",
        help="Use what this Git commit/branch/tag holds, not the working tree (a plan made with "
        "--rev is applied with the same --rev; its 'Apply it with' line says so).",
    ),
]

TargetsOpt = Annotated[
    list[str] | None,
    typer.Option("--target", help="Only this node and every node depending on it (repeatable)."),
]
AutoApproveOpt = Annotated[bool, typer.Option("--auto-approve", help="Apply without asking.")]
ParallelismOpt = Annotated[int, typer.Option("--parallelism", min=1, help="Nodes converged at once.")]
DetailedExitcodeOpt = Annotated[
    bool, typer.Option("--detailed-exitcode", help="Exit 2 when there are changes, 0 when none.")
]
ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Skip nodes an interrupted run of this plan finished.")
]
LockTimeoutOpt = Annotated[float, typer.Option("--lock-timeout", help="Seconds to wait for the lock.")]


@dataclass
class Output:
    """What the command line asked of the output: its ``--format`` and ``--debug``.

    One per run (``main`` passes it to typer as the context object); the options' callbacks fill
    it in as each command's options are parsed, so errors escaping a command are still printed in
    the format it was asked for.
    """

    format: str = "text"
    debug: bool = field(default_factory=lambda: os.environ.get("ENVCTL_DEBUG") == "1")


def _output(ctx: typer.Context) -> Output:
    root = ctx.find_root()
    if not isinstance(root.obj, Output):
        root.obj = Output()
    return root.obj


def _debug_option(ctx: typer.Context, value: bool) -> bool:
    if value:
        _output(ctx).debug = True
    return value


def format_option(*allowed: str) -> Callable[[typer.Context, str], str]:
    def check(ctx: typer.Context, value: str) -> str:
        if value not in allowed:
            from envctl.core.errors import UsageError

            raise UsageError(
                f"--format {value} is not supported here", hint=f"use one of: {', '.join(allowed)}"
            )
        _output(ctx).format = value
        return value

    return check


OutOpt = Annotated[Path | None, typer.Option("--out", help="Directory for the plan bundle.")]
PlanParallelismOpt = Annotated[int, typer.Option("--parallelism", min=1, help="Nodes planned at once.")]
PlanFormatOpt = Annotated[
    str,
    typer.Option(
        "--format", help="text, json or markdown.", callback=format_option("text", "json", "markdown")
    ),
]
ToOpt = Annotated[
    str | None,
    typer.Option(
        "--to",
        metavar="REV",
        help="The commit/branch/tag to roll back to (default: the last commit at which every node "
        "converged, from the run journal).",
        show_default=False,
    ),
]
DebugOpt = Annotated[
    bool, typer.Option("--debug", help="Show internal tracebacks for bug reports.", callback=_debug_option)
]
PENDING_BOUNDS = ("creates", "updates", "any")  # core.approval.PendingBound, without importing it


def _pending_option(value: str | None) -> str | None:
    if value is not None and value not in PENDING_BOUNDS:
        from envctl.core.errors import UsageError

        raise UsageError(f"--pending {value} is not a bound", hint=f"use one of: {', '.join(PENDING_BOUNDS)}")
    return value


PendingOpt = Annotated[
    str | None,
    typer.Option(
        "--pending",
        help="How far nodes re-planned during apply may go without asking again: creates (only "
        "creates), updates (creates and in-place updates) or any. Default: ask again.",
        callback=_pending_option,
        show_default=False,
    ),
]
GraphFormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        help="text, json, dot or mermaid.",
        callback=format_option("text", "json", "dot", "mermaid"),
    ),
]
TextJson = Annotated[
    str, typer.Option("--format", help="text or json.", callback=format_option("text", "json"))
]


def asked_format(args: list[str]) -> str:
    """``json`` when the arguments ask for it (``--format json`` or ``--format=json``)."""
    for i, a in enumerate(args):
        if a == "--":
            break
        if a == "--format=json" or (a == "--format" and args[i + 1 : i + 2] == ["json"]):
            return "json"
    return "text"


def check_one_env(args: list[str]) -> None:
    """``-e`` given twice is a usage error: click would silently keep the last one."""
    envs: list[str] = []
    for i, a in enumerate(args):
        if a == "--":
            break
        if a in ("-e", "--env"):
            envs.append(args[i + 1] if i + 1 < len(args) else "")
        elif a.startswith("--env="):
            envs.append(a.removeprefix("--env="))
        elif a.startswith("-e") and not a.startswith("--"):
            envs.append(a[2:])
    if len(envs) > 1:
        from envctl.core.errors import UsageError

        raise UsageError(
            f"-e/--env given {len(envs)} times ({', '.join(envs)}); envctl works on one environment per run",
            hint="run envctl once per environment",
        )
