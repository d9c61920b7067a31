"""The ``envctl`` entry point answers help and ``version`` without typer: it must print exactly
what the typer app prints.

``envctl/helptext.py`` holds the app's rendered help. When a command, option or help string
changes (or typer renders differently), the first test fails; regenerate the file with

    ENVCTL_UPDATE_HELP=1 .venv/bin/pytest tests/unit/test_help_text.py

and review the diff.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import envctl.__main__ as entry
import envctl.cli
import envctl.helptext

REPO_ROOT = Path(__file__).resolve().parents[2]
HELPTEXT = REPO_ROOT / "envctl" / "helptext.py"


def _typer(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str, str]:
    """``envctl ARGS`` through the typer app (envctl.cli.main), in-process."""
    capsys.readouterr()
    code: int | str | None = 0
    try:
        envctl.cli.main(args)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return (code if isinstance(code, int) else 0 if code is None else 1), out, err


def _entry(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str, str]:
    """``envctl ARGS`` through the console entry point (envctl.__main__.main), in-process."""
    capsys.readouterr()
    code: int | str | None = 0
    try:
        entry.main(args)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return (code if isinstance(code, int) else 0 if code is None else 1), out, err


def _commands() -> list[str]:
    import typer.main

    group = typer.main.get_command(envctl.cli.app)
    return sorted(group.commands)  # type: ignore[attr-defined]


def _render_all(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    texts = {}
    for cmd in ["", *_commands()]:
        code, out, err = _typer(capsys, [cmd, "--help"] if cmd else ["--help"])
        assert code == 0 and not err, (cmd, code, err)
        texts[cmd] = out
    return texts


def _literal(text: str) -> str:
    """A readable (reviewable) literal: a triple-quoted block when the text allows one."""
    awkward = '"""' in text or "\\" in text or not text.endswith("\n")
    # trailing blanks would be stripped by editors (and flagged by ruff): keep those as repr
    if awkward or any(line != line.rstrip() for line in text.split("\n")):
        return repr(text)
    return '"""\\\n' + text + '"""'


def _write(texts: dict[str, str]) -> None:
    body = "".join(f"    {json.dumps(k)}: {_literal(v)},\n" for k, v in texts.items())
    HELPTEXT.write_text(
        '"""The typer app\'s help texts, rendered for a terminal of 80 columns or more.\n\n'
        "Generated: ENVCTL_UPDATE_HELP=1 pytest tests/unit/test_help_text.py (do not edit by hand).\n"
        "Used by envctl/__main__.py to answer --help without importing typer.\n"
        '"""\n\n'
        "HELP: dict[str, str] = {\n" + body + "}\n"
    )


def test_stored_help_is_what_the_typer_app_renders(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", str(entry.HELP_COLUMNS))
    texts = _render_all(capsys)
    if os.environ.get("ENVCTL_UPDATE_HELP") == "1":
        _write(texts)
        return
    assert set(envctl.helptext.HELP) == set(texts), "commands changed: regenerate envctl/helptext.py"
    for key, text in texts.items():
        assert envctl.helptext.HELP[key] == text, (
            f"help of {key or 'envctl'} changed: regenerate envctl/helptext.py "
            "(ENVCTL_UPDATE_HELP=1 pytest tests/unit/test_help_text.py)"
        )


ARGS = [
    [],
    ["--help"],
    ["-h"],
    ["version"],
    *(
        [cmd, flag]
        for cmd in (
            "version", "validate", "graph", "plan", "approve", "apply", "destroy", "status", "drift",
            "rollback",
        )
        for flag in ("--help", "-h")
    ),
    # not answered by the fast path: typer decides, the entry point must only pass them on
    ["--version"],
    ["help"],
    ["nosuchcommand", "--help"],
    ["--help", "plan"],
    ["plan", "--help", "--debug"],
    ["version", "--debug"],
    ["-e", "--help"],
]


@pytest.mark.parametrize("columns", ["80", "200", "60"])
@pytest.mark.parametrize("args", ARGS, ids=lambda a: " ".join(a) or "no-args")
def test_the_entry_point_prints_what_typer_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str], columns: str
) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    assert _entry(capsys, args) == _typer(capsys, args)


def test_every_command_has_a_stored_help() -> None:
    assert set(envctl.helptext.HELP) == {"", *_commands()}
    assert {a[0] for a in ARGS if len(a) == 2 and a[1] == "--help"} >= set(_commands())


@pytest.mark.parametrize("args", [["--help"], [], ["plan", "-h"], ["version"]])
def test_the_fast_path_imports_no_typer(args: list[str]) -> None:
    code = (
        "import sys\n"
        "from envctl.__main__ import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit as e:\n    rc = e.code\n"
        "bad = [m for m in ('typer', 'click', 'pydantic', 'rich', 'yaml') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(bad) + ' RC=' + str(rc), file=sys.stderr)\n"
    )
    env = {**os.environ, "COLUMNS": "100"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT, env=env
    )
    assert "HEAVY= RC=0\n" in out.stderr
    assert (out.stdout + out.stderr).startswith("Usage: envctl") or out.stdout.startswith("envctl ")


def test_the_console_script_is_the_fast_entry_point() -> None:
    import tomllib

    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["envctl"] == "envctl.__main__:main"
