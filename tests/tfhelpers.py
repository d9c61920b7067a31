"""Helpers for the Terraform tests: tiny environment repos on disk, contexts, built tools.

Tests build ``Environment``/``Node`` values directly (no loader needed) over a working-tree
snapshot of a temporary directory. ``build_tool`` runs scripts/build-terraform-tools, which
builds OpenTofu and the hashicorp/local provider from their Go modules once and caches them.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from envctl.core.model import Environment, Node, StackSpec, TerraformSettings
from envctl.repo import WorkTreeSnapshot
from envctl.terraform import StackContext

REPO = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = REPO / "scripts" / "build-terraform-tools"


def write_tree(root: Path, files: Mapping[str, str]) -> None:
    """Write ``{repo-relative path: text}`` under ``root`` (text is dedented)."""
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text).lstrip("\n"))


def stack(
    name: str,
    env: str = "dev",
    *,
    inputs: Mapping[str, Any] | None = None,
    module: str | None = None,
    depends_on: tuple[str, ...] = (),
) -> Node:
    path = f"environments/{env}/stacks/{name}"
    return Node(
        id=f"stack.{name}",
        kind="stack",
        name=name,
        path=path,
        depends_on=depends_on,
        inputs=dict(inputs or {}),
        config_file=f"{path}/stack.yaml",
        stack=StackSpec(module=module),
    )


def context(
    root: Path,
    env: str = "dev",
    nodes: tuple[Node, ...] = (),
    **terraform: Any,
) -> StackContext:
    settings = replace(TerraformSettings(), **terraform)
    environment = Environment(
        name=env,
        path=f"environments/{env}",
        terraform=settings,
        nodes={n.id: n for n in nodes},
    )
    return StackContext(env=environment, snapshot=WorkTreeSnapshot(root), root=root)


def build_tool(which: str) -> Path:
    """Build (or take from the cache) ``tofu`` or ``provider-local``; returns the path printed."""
    res = subprocess.run([str(BUILD_SCRIPT), which], capture_output=True, text=True, timeout=3000)
    if res.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} {which} failed:\n{res.stderr[-4000:]}")
    return Path(res.stdout.strip().splitlines()[-1])


def dump(value: Any) -> str:
    """Everything a value could show a user: str, repr and JSON."""
    to_json = getattr(value, "to_json", None)
    parts = [str(value), repr(value)]
    if callable(to_json):
        parts.append(json.dumps(to_json(), default=str))
    for attr in ("message", "hint", "detail", "location", "node"):
        if hasattr(value, attr):
            parts.append(str(getattr(value, attr)))
    return "\n".join(parts)
