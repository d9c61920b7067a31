"""Helpers for the unit tests: repository files from a dict, git with a fixed identity, CLI results.

Kept out of ``conftest.py`` on purpose: every test directory has a ``conftest.py``, and pytest
imports each of them as the top-level module ``conftest``, so ``from conftest import ...`` finds
whichever directory's conftest was loaded last when several test directories are collected
together. Test modules import from here (a unique name) instead; ``conftest.py`` keeps the fixtures.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

Files = Mapping[str, str | bytes | None]

# A small valid environment: network -> database (module + reference), platform -> app (depends_on),
# database -> app (reference through layer inputs).
BASE_FILES: dict[str, str | bytes] = {
    "modules/net/main.tf": 'variable "name" {}\noutput "vpc_id" { value = var.name }\n',
    "modules/db/main.tf": (
        'variable "vpc_id" {}\nmodule "inner" {\n  source = "../net"\n  name = "x"\n}\n'
        'output "endpoint" { value = "db.${var.vpc_id}" }\n'
    ),
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


class CliResult(NamedTuple):
    code: int
    out: str
    err: str
