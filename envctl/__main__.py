"""The ``envctl`` command (and ``python -m envctl``): start-up is a feature.

``envctl``, ``envctl --help``/``-h``, ``envctl COMMAND --help``/``-h``, ``envctl version`` and
``envctl --version`` are answered here without importing typer (~40 ms; typer 0.29 adds ~100 ms of
pydantic to every parsed command), except when a shell asks for completions. The help texts are
the typer app's own output, stored in ``envctl/helptext.py`` and compared with what the app renders by
``tests/unit/test_help_text.py`` (which also rewrites them: ``ENVCTL_UPDATE_HELP=1``).
Everything else, and any terminal narrower than the stored texts, goes to ``envctl.cli.main``.
"""

from __future__ import annotations

import sys

HELP_FLAGS = ("--help", "-h")
HELP_COLUMNS = 80  # click wraps help to min(columns, 80) - 2; the stored texts are that width


def answer(args: list[str]) -> tuple[str, bool] | None:
    """What ``envctl ARGS`` prints without typer, and whether to stderr; None: ask typer."""
    import os

    if "_ENVCTL_COMPLETE" in os.environ:
        return None  # a shell asking for completions: typer's mechanism answers
    if args in (["version"], ["--version"]):
        from envctl import __version__

        return f"envctl {__version__}\n", False
    if not args:
        key, to_stderr = "", True  # no arguments: the help, on stderr, exit 0 (as typer does)
    elif len(args) == 1 and args[0] in HELP_FLAGS:
        key, to_stderr = "", False
    elif len(args) == 2 and args[1] in HELP_FLAGS and not args[0].startswith("-"):
        key, to_stderr = args[0], False
    else:
        return None
    from envctl.helptext import HELP

    if key not in HELP:
        return None
    import shutil

    if shutil.get_terminal_size().columns < HELP_COLUMNS:
        return None
    return HELP[key], to_stderr


def main(argv: list[str] | None = None) -> None:
    """Console entry point; see the module docstring."""
    args = sys.argv[1:] if argv is None else list(argv)
    fast = answer(args)
    if fast is None:
        from envctl.cli import main as cli_main

        cli_main(args)
        return
    text, to_stderr = fast
    stream = sys.stderr if to_stderr else sys.stdout
    stream.write(text)
    stream.flush()
    sys.exit(0)  # ExitCode.OK: the help was printed (envctl.core.errors is not imported for this)


if __name__ == "__main__":
    main()
