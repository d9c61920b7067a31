"""Questions about a Git working tree, answered by the ``git`` command (a few ms each).

The working tree needs only its top level, HEAD, whether it has uncommitted changes and which
paths changed since a revision. Importing GitPython for that costs ~60 ms of every command's
start-up; one short ``git`` process costs ~2 ms. GitPython is still used to read the files of a
revision without checking it out (``GitSnapshot``, ``--rev``).

Every function looks at the repository whose top level is the directory it is given, as
``git.Repo(root)`` did: ``GIT_DIR``/``GIT_WORK_TREE`` from the environment (a Git hook running
envctl) are not allowed to point ``git`` at another repository.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from envctl.core.errors import UsageError

_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE")


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes] | None:
    """Run ``git args`` in ``cwd``; None when git cannot be started (not installed, no such dir).

    A repository that git refuses to read because another user owns it is an error with the fix
    in its hint, not a tree silently treated as "no repository".
    """
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
    env["LC_ALL"] = "C"  # git's messages in English: the refusal below is recognised by its text
    try:
        res = subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, check=False, stdin=subprocess.DEVNULL
        )
    except OSError:
        return None
    if res.returncode != 0 and (b"dubious ownership" in res.stderr or b"unsafe repository" in res.stderr):
        raise UsageError(
            f"git refuses to read the repository around {cwd}: another user owns it",
            hint=f"if you trust it: git config --global --add safe.directory {_dotgit_parent(cwd)}",
        )
    return res


def _dotgit_parent(start: Path) -> Path:
    """The nearest directory at or above ``start`` that holds ``.git`` (for messages only)."""
    start = start.resolve()
    for d in (start, *start.parents):
        if (d / ".git").exists():
            return d
    return start


def _lines(out: bytes) -> list[str]:
    return out.decode("utf-8", "surrogateescape").splitlines()


def _paths(out: bytes) -> list[str]:
    """The NUL-separated paths of a ``-z`` listing (no quoting of unusual names)."""
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


def toplevel(start: Path) -> Path | None:
    """The top level of the Git working tree around ``start``, or None outside of one."""
    res = _git(start, "rev-parse", "--show-toplevel")
    if res is None or res.returncode != 0:
        return None
    lines = _lines(res.stdout)
    return Path(lines[0]).resolve() if lines else None


@dataclass(frozen=True)
class Head:
    """What ``git`` says about ``root``: is it the top level of a working tree, and its HEAD."""

    is_repo: bool
    commit: str | None  # None: no repository at root, or no commit yet


def head(root: Path) -> Head:
    """Whether ``root`` is the top level of a Git working tree, and the commit HEAD points to.

    A directory inside a repository but not its top level is not a repository here (as
    ``git.Repo(root)`` without searching parent directories).
    """
    res = _git(root, "rev-parse", "--show-toplevel", "--verify", "-q", "HEAD^{commit}")
    if res is None:
        return Head(False, None)
    lines = _lines(res.stdout)
    if not lines or res.returncode not in (0, 1) or Path(lines[0]).resolve() != root.resolve():
        return Head(False, None)
    commit = lines[1] if res.returncode == 0 and len(lines) > 1 else None
    return Head(True, commit)


def is_dirty(root: Path) -> bool:
    """Changes to tracked files (staged or not) or untracked files outside envctl's ``.envctl/``.

    ``root`` must be the top level (see ``head``). Ignored files do not count. When git cannot
    answer, the tree counts as dirty: a plan never claims a clean commit it cannot vouch for.
    """
    res = _git(root, "--no-optional-locks", "status", "--porcelain", "-z", "--untracked-files=normal")
    if res is None or res.returncode != 0:
        return True
    entries = res.stdout.decode("utf-8", "surrogateescape").split("\0")
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if not entry:
            continue
        code, path = entry[:2], entry[3:]
        if "R" in code or "C" in code:
            i += 1  # a rename or copy is followed by its source path
        if code == "??" and (path == ".envctl/" or path.startswith(".envctl/")):
            continue  # envctl's own directory is not a change to the environment
        return True
    return False


def ls_files(root: Path, path: str) -> list[str]:
    """Paths under ``path`` in Git's index (tracked files); empty outside a repository."""
    res = _git(root, "--no-optional-locks", "ls-files", "-z", "--", path)
    if res is None or res.returncode != 0:
        return []
    return [p for p in res.stdout.decode("utf-8", "surrogateescape").split("\0") if p]


def ls_tree(root: Path, rev: str, path: str) -> list[str]:
    """Paths under ``path`` in the commit ``rev``; empty when there are none (or no such commit)."""
    res = _git(root, "ls-tree", "-r", "-z", "--name-only", "--end-of-options", rev, "--", path)
    if res is None or res.returncode != 0:
        return []
    return [p for p in res.stdout.decode("utf-8", "surrogateescape").split("\0") if p]


def changed_paths(root: Path, ref: str, head_commit: str | None) -> list[str]:
    """Paths that differ between ``ref`` and ``head_commit`` (both sides of a rename), sorted.

    Without ``head_commit``: between ``ref`` and the working tree, plus the branch's HEAD
    commit, plus untracked files (what ``--changed-since`` used with GitPython).
    """
    bad = UsageError(f"--changed-since {ref}: not a revision of this repository")
    if ref.startswith("-") or not head(root).is_repo:  # never let a revision be read as an option
        raise bad
    base = _rev(root, ref)
    if base is None:
        raise bad
    parts: list[list[str] | None] = []
    if head_commit:
        other = _rev(root, head_commit)
        if other is None:
            raise bad
        parts.append(_diff(root, "diff-tree", "-r", base, other))
    else:
        parts.append(_diff(root, "diff", base))
        branch = _git(root, "symbolic-ref", "-q", "HEAD")
        tip = _rev(root, "HEAD")
        if branch is not None and branch.returncode == 0 and tip is not None:
            parts.append(_diff(root, "diff-tree", "-r", base, tip))
        res = _git(root, "ls-files", "--others", "--exclude-standard", "-z")
        parts.append(_paths(res.stdout) if res is not None and res.returncode == 0 else None)
    paths: set[str] = set()
    for part in parts:
        if part is None:
            raise bad
        paths.update(part)
    return sorted(paths)


def commits_behind(root: Path, since: str, head_commit: str, paths: list[str]) -> int | None:
    """How many commits after ``since`` up to ``head_commit`` touch one of ``paths`` (all commits
    when ``paths`` is empty); None when ``since`` is unknown or not an ancestor of ``head_commit``
    (history rewritten, or an apply of another branch)."""
    if since.startswith("-") or head_commit.startswith("-"):
        return None
    base, tip = _rev(root, since), _rev(root, head_commit)
    if base is None or tip is None:
        return None
    anc = _git(root, "merge-base", "--is-ancestor", base, tip)
    if anc is None or anc.returncode != 0:
        return None
    res = _git(root, "--literal-pathspecs", "rev-list", "--count", f"{base}..{tip}", "--", *paths)
    if res is None or res.returncode != 0:
        return None
    lines = _lines(res.stdout)
    return int(lines[0]) if lines and lines[0].isdigit() else None


def _rev(root: Path, rev: str) -> str | None:
    res = _git(root, "rev-parse", "--verify", "-q", f"{rev}^{{commit}}")
    if res is None or res.returncode != 0:
        return None
    lines = _lines(res.stdout)
    return lines[0] if lines else None


def _diff(root: Path, cmd: str, *args: str) -> list[str] | None:
    res = _git(root, cmd, "--no-renames", "--name-only", "-z", *args, "--")
    return _paths(res.stdout) if res is not None and res.returncode == 0 else None
