"""Repository paths a node may read: relative, inside the repository, outside ``.git/`` and ``.envctl/``.

The one rule every adapter applies to a path it takes from configuration (a kustomization's
resources, a stack's ``module:``, a Terraform module source or file function argument), after
substitution. Symlinks are the snapshot's business (``envctl.repo.snapshot``): it resolves them
and applies the same rule to where they lead. Pure: no I/O.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from envctl.core.errors import ConfigError
from envctl.core.refs import quoted

PRIVATE_DIRS = (".git", ".envctl")
"""Directories no node may read: Git's own (``.git/config`` holds CI tokens) and envctl's."""


def repo_path(path: str) -> str:
    """``path`` normalised (``a/./b/../c`` -> ``a/c``; ``""`` for the root) if a node may read it.

    Refused with a ConfigError (without a location: the caller knows the file and line): an
    absolute path, a ``..`` that leaves the repository, a path into ``.git/`` or ``.envctl/``, a NUL.
    """
    if "\x00" in path:  # the OS refuses it with ValueError, not OSError
        raise ConfigError(f"path {quoted(path)} contains a NUL character")
    p = PurePosixPath(path)
    if p.is_absolute():
        raise ConfigError(
            f"path {quoted(path)} is absolute", hint="use a path relative to the repository root"
        )
    parts: list[str] = []
    for part in p.parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise ConfigError(
                    f"path {quoted(path)} leads outside the repository",
                    hint="keep modules, manifests and var files inside the environment repository",
                )
            parts.pop()
        else:
            parts.append(part)
    if parts and parts[0] in PRIVATE_DIRS:
        raise ConfigError(
            f"path {quoted(path)} leads into {parts[0]}/, which no node may read",
            hint=f"{parts[0]}/ holds {'Git' if parts[0] == '.git' else 'envctl'}'s own files "
            "(credentials, state); keep configuration elsewhere in the repository",
        )
    return "/".join(parts)
