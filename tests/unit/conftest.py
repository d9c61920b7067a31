"""Fixtures for unit tests: temporary environment repositories built from a dict of files.

Unit tests touch no network and no live system; every repository lives under ``tmp_path``.
``make_repo(files)`` writes ``{relative path: text or bytes}`` and returns the root; with
``git_init=True`` it also initialises a Git repository and commits everything. ``run_cli(*args)``
calls ``envctl.cli.main`` in-process and returns ``(exit code, stdout, stderr)``. Plain helpers
(``BASE_FILES``, ``write_files``, ``git``, ``CliResult``) live in ``unithelpers.py``: import them
from there, never ``from conftest import``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from unithelpers import BASE_FILES, CliResult, Files, MakeRepo, git, write_files

from envctl.core.graph import EnvGraph
from envctl.core.model import Environment
from envctl.repo import load_environment, open_snapshot


@pytest.fixture(autouse=True)
def _forget_known_secrets() -> Iterator[None]:
    """Unit tests run the CLI in one process: a secret one test taught the masker (``KNOWN`` only
    grows, as in a real run) must not mask another test's output, e.g. help text saying "none"."""
    from envctl.core.secrets import KNOWN

    KNOWN.clear()
    yield
    KNOWN.clear()


@pytest.fixture
def make_repo(tmp_path: Path) -> MakeRepo:
    """Build a repository from a dict of files: ``make_repo(files, base=True, git_init=False)``.

    ``base=True`` starts from BASE_FILES; entries in ``files`` override it (None removes one).
    Each call makes a fresh directory.
    """
    counter = iter(range(1_000_000))

    def make(files: Files | None = None, *, base: bool = True, git_init: bool = False) -> Path:
        root = tmp_path / f"repo{next(counter)}"
        root.mkdir()
        merged: dict[str, str | bytes | None] = dict(BASE_FILES) if base else {}
        merged.update(files or {})
        write_files(root, merged)
        if git_init:
            git(root, "init", "-q", "-b", "main")
            git(root, "add", "-A")
            git(root, "commit", "-q", "-m", "initial")
        return root

    return make


@pytest.fixture
def load_env() -> Callable[..., Environment]:
    """``load_env(root, env="dev", rev=None)``: the environment as the loader sees it."""

    def load(root: Path, env: str = "dev", rev: str | None = None) -> Environment:
        return load_environment(open_snapshot(root, rev), env)

    return load


@pytest.fixture
def graph_of(load_env: Callable[..., Environment]) -> Callable[..., EnvGraph]:
    """``graph_of(root, env="dev")``: the checked dependency graph."""

    def build(root: Path, env: str = "dev") -> EnvGraph:
        return EnvGraph(load_env(root, env))

    return build


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Errors go through the error boundary, as for a user (ENVCTL_DEBUG=1 would re-raise them)."""
    monkeypatch.delenv("ENVCTL_DEBUG", raising=False)
    yield


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``envctl ARGS`` in-process through ``main`` (the error boundary)."""
    from envctl.cli import main

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        else:  # pragma: no cover - main always exits
            code = 0
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
