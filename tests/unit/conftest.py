"""Fixtures for unit tests: temporary environment repositories built from a dict of files.

Unit tests touch no network and no live system; every repository lives under ``tmp_path``.
``make_repo(files)`` writes ``{relative path: text or bytes}`` and returns the root; with
``git_init=True`` it also initialises a Git repository and commits everything. ``run_cli(*args)``
calls ``envctl.cli.main`` in-process and returns ``(exit code, stdout, stderr)``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import pytest

from envctl.core.graph import EnvGraph
from envctl.core.model import Environment
from envctl.repo import load_environment, open_snapshot

Files = Mapping[str, str | bytes | None]

# A small valid environment: network -> database (module + reference), platform -> app (depends_on),
# database -> app (reference through layer inputs).
BASE_FILES: dict[str, str | bytes] = {
    "modules/net/main.tf": 'variable "name" {}\noutput "vpc_id" { value = var.name }\n',
    "modules/db/main.tf": 'variable "vpc_id" {}\nmodule "inner" {\n  source = "../net"\n  name = "x"\n}\n',
    "environments/dev/environment.yaml": "name: dev\nvars:\n  replicas: 2\n  size: small\n",
    "environments/dev/stacks/network/main.tf": 'output "vpc_id" { value = "vpc-1" }\n',
    "environments/dev/stacks/database/stack.yaml": (
        "module: modules/db\ninputs:\n  vpc_id: ${stack.network.outputs.vpc_id}\n  size: ${env.vars.size}\n"
    ),
    "environments/dev/layers/platform/ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: app\n",
    "environments/dev/layers/app/layer.yaml": (
        "depends_on: [layer.platform]\n"
        "namespace: app\n"
        "inputs:\n"
        "  endpoint: ${stack.database.outputs.endpoint}\n"
        "  replicas: ${env.vars.replicas}\n"
    ),
    "environments/dev/layers/app/app.yaml": (
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: web\n"
        "data:\n"
        "  ENDPOINT: ${inputs.endpoint}\n"
        "  LITERAL: $${inputs.not_a_ref}\n"
        "  REPLICAS: '${inputs.replicas}'\n"
    ),
}


def write_files(root: Path, files: Files) -> None:
    """Write ``files`` under ``root``; a value of None means "no such file"."""
    for rel, content in files.items():
        if content is None:
            continue
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")


def git(root: Path, *args: str) -> str:
    """Run git in ``root`` with a fixed identity; returns stdout."""
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(root),
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    out = subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True, text=True)
    return out.stdout.strip()


MakeRepo = Callable[..., Path]


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


class CliResult(NamedTuple):
    code: int
    out: str
    err: str


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``--debug`` is sticky inside envctl.cli; keep each test independent of the others."""
    import envctl.cli

    monkeypatch.delenv("ENVCTL_DEBUG", raising=False)
    monkeypatch.setattr(envctl.cli, "_debug", False)
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
