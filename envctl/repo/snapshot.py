"""Snapshots of the repository: the working tree, or one Git revision read without checkout.

Both refuse paths that leave the repository (absolute paths, ``..`` and symlinks pointing
outside) and paths into ``.git/`` (Git's own files: CI tokens sit in ``.git/config``) or
``.envctl/`` (envctl's state, plans and journals), so a hostile repo cannot make envctl read, or
print, a file elsewhere on the machine or one of envctl's own. A repository that commits
``.envctl/`` is refused outright: envctl's state is never read from Git.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from envctl.core.errors import ConfigError, Location, UsageError
from envctl.core.paths import PRIVATE_DIRS
from envctl.core.paths import repo_path as _clean
from envctl.core.refs import quoted
from envctl.repo import gitcli

if TYPE_CHECKING:
    import git


_SYMLINK = 0o120000
_MAX_HOPS = 40


def _committed_state(root: Path, rev: str | None) -> bool:
    """Whether ``.envctl/`` is in Git's index, or in the commit ``rev``: with ``--rev`` too, the
    checkout's ``.envctl/`` (plans, approvals, the parse cache and its key) is the one envctl uses,
    so a tracked one is refused whatever commit is read."""
    if gitcli.ls_files(root, ".envctl"):
        return True
    return rev is not None and bool(gitcli.ls_tree(root, rev, ".envctl"))


def _open_repo(root: Path) -> git.Repo | None:
    import git

    try:
        return git.Repo(root, search_parent_directories=False)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None


def find_repo_root(start: Path) -> Path:
    """The Git work tree around ``start``, or ``start`` itself when it is not in a Git repo but
    holds ``environments/``; anywhere else a usage error that says so and suggests ``--repo``."""
    top = gitcli.toplevel(start)
    if top is not None:
        return top
    if (start / "environments").is_dir():
        return start.resolve()
    raise UsageError(
        f"{start.resolve()} is not inside a Git repository (and has no environments/ directory)",
        hint="run envctl inside the environment repository, or point at it with --repo PATH",
    )


class WorkTreeSnapshot:
    """The files as they are on disk under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @property
    def commit(self) -> str | None:
        """HEAD's commit, read again on every call; None outside a repo or before the first commit."""
        return gitcli.head(self.root).commit

    @cached_property
    def dirty(self) -> bool:
        if not gitcli.head(self.root).is_repo:
            return True
        return gitcli.is_dirty(self.root)

    def _abs(self, path: str) -> Path:
        rel = _clean(path)
        full = self.root / rel if rel else self.root
        real = Path(os.path.realpath(full))
        if real != self.root and self.root not in real.parents:
            raise ConfigError(
                f"{rel} is a symlink that leads outside the repository",
                location=Location(rel),
                hint="replace the symlink with the file itself",
            )
        inside = real.relative_to(self.root).parts
        if inside and inside[0] in PRIVATE_DIRS:
            raise ConfigError(
                f"{rel} is a symlink into {inside[0]}/, which no node may read",
                location=Location(rel),
                hint="remove the symlink: it would expose Git's or envctl's own files (credentials, state)",
            )
        return full

    def read_bytes(self, path: str) -> bytes:
        full = self._abs(path)
        try:
            # a FIFO or device would block or never end: only regular files are read
            if not stat.S_ISREG(full.stat().st_mode):
                raise ConfigError(f"{path} is not a regular file", location=Location(path))
            return full.read_bytes()
        except PermissionError as e:
            raise ConfigError(f"{path} is not readable", location=Location(path)) from e
        except OSError as e:  # missing, a directory, a symlink loop, an I/O error
            raise ConfigError(f"cannot read {path}: {e.strerror or e}", location=Location(path)) from e

    def exists(self, path: str) -> bool:
        return self._abs(path).exists()

    def is_dir(self, path: str) -> bool:
        return self._abs(path).is_dir()

    def listdir(self, path: str) -> list[str]:
        d = self._abs(path)
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir() if p.name != ".git")

    def walk_files(self, path: str) -> Iterator[str]:
        base = _clean(path)
        d = self._abs(base)
        if not d.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(d):
            dirnames[:] = sorted(n for n in dirnames if n not in (".git", ".terraform", ".envctl"))
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for f in sorted(filenames):
                yield f"{rel_dir}/{f}" if rel_dir != "." else f


class GitSnapshot:
    """The files of one commit, read from the object database; the working tree is not touched."""

    def __init__(self, root: Path, rev: str) -> None:
        import git

        self.root = root.resolve()
        repo = _open_repo(self.root)
        if repo is None:
            raise UsageError(f"--rev {rev} needs a Git repository, and {self.root} is not one")
        try:
            if rev.startswith("-"):  # never let a revision be read as an option of git
                raise ValueError(rev)
            self._commit = repo.commit(rev)
            # objects load lazily: a SHA that is not in the repository only fails here
            self._tree = self._commit.tree
        except (git.BadName, git.BadObject, ValueError, git.GitCommandError) as e:
            raise UsageError(
                f"unknown revision {quoted(rev)}", hint="give a commit SHA, branch or tag that exists"
            ) from e

    @property
    def commit(self) -> str | None:
        return str(self._commit.hexsha)

    @property
    def dirty(self) -> bool:
        return False

    def _obj(self, path: str) -> object | None:
        """The tree or blob at ``path``, following symlinks inside the repository as the working
        tree does, so ``--rev`` sees the same files; a symlink leading outside is an error."""
        import git

        todo = [p for p in _clean(path).split("/") if p]
        obj: object = self._tree
        done: list[str] = []
        hops = 0
        while todo:
            name = todo.pop(0)
            if not isinstance(obj, git.Tree):
                return None
            try:
                child = obj[name]
            except KeyError:
                return None
            if isinstance(child, git.Blob) and child.mode == _SYMLINK:
                link = "/".join([*done, name])
                hops += 1
                target = child.data_stream.read().decode("utf-8", "replace")
                try:
                    if hops > _MAX_HOPS or target.startswith("/"):
                        raise ConfigError(target)
                    resolved = _clean("/".join([*done, target]))
                except ConfigError as e:
                    into = next((d for d in PRIVATE_DIRS if f"leads into {d}/" in e.message), None)
                    raise ConfigError(
                        f"{link} is a symlink into {into}/, which no node may read"
                        if into
                        else f"{link} is a symlink that leads outside the repository (or loops)",
                        location=Location(link),
                        hint="replace the symlink with the file itself",
                    ) from None
                todo = [p for p in resolved.split("/") if p] + todo
                obj, done = self._tree, []
                continue
            obj = child
            done.append(name)
        return obj

    def read_bytes(self, path: str) -> bytes:
        import git

        obj = self._obj(path)
        if not isinstance(obj, git.Blob):
            raise ConfigError(f"cannot read {path} at commit {self.commit}", location=Location(path))
        data: bytes = obj.data_stream.read()
        return data

    def exists(self, path: str) -> bool:
        return self._obj(path) is not None

    def is_dir(self, path: str) -> bool:
        import git

        return isinstance(self._obj(path), git.Tree)

    def listdir(self, path: str) -> list[str]:
        import git

        obj = self._obj(path)
        if not isinstance(obj, git.Tree):
            return []
        return sorted(str(o.name) for o in obj)

    def walk_files(self, path: str) -> Iterator[str]:
        import git

        obj = self._obj(path)
        if not isinstance(obj, git.Tree):
            return
        for p in sorted(str(b.path) for b in obj.traverse() if isinstance(b, git.Blob)):
            try:
                if isinstance(self._obj(p), git.Tree):
                    continue  # a symlink to a directory: not descended, as in the working tree
            except ConfigError:
                pass  # a symlink leading outside: reading it reports the error
            yield p


def open_snapshot(root: Path, rev: str | None) -> WorkTreeSnapshot | GitSnapshot:
    """The working tree under ``root``, or the commit ``rev`` of the repo at ``root``."""
    if not root.is_dir():
        raise UsageError(f"--repo {root} is not a directory")
    snapshot = GitSnapshot(root, rev) if rev else WorkTreeSnapshot(root)
    if _committed_state(snapshot.root, rev):
        raise ConfigError(
            ".envctl/ is committed to Git" + (f" (in the index or at {rev})" if rev else ""),
            location=Location(".envctl"),
            hint="envctl's state, plans and journals never come from Git: "
            "git rm -r --cached .envctl && git commit (envctl keeps .envctl/ ignored itself)",
        )
    return snapshot
