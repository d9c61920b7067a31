"""Which commit ``envctl rollback`` goes back to when none is named: read from the run journals.

Pure: the journals (oldest first, as ``Store.journals`` returns them) and a function naming the
nodes an environment has at a commit are all it needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

NodesAt = Callable[[str], "frozenset[str] | None"]  # the environment's nodes at a commit (None: unknown)


def _after_each_run(journals: Sequence[Mapping[str, Any]]) -> list[tuple[str, dict[str, tuple[Any, Any]]]]:
    """Per run with a commit: that commit, and each node's last (status, commit) after the run."""
    last: dict[str, tuple[Any, Any]] = {}
    out: list[tuple[str, dict[str, tuple[Any, Any]]]] = []
    for j in journals:
        for n, r in dict(j.get("nodes") or {}).items():
            if isinstance(r, Mapping):
                last[str(n)] = (r.get("status"), r.get("commit"))
        c = j.get("commit")
        if isinstance(c, str) and c:
            out.append((c, dict(last)))
    return out


def _converged(commit: str, last: Mapping[str, tuple[Any, Any]], nodes: frozenset[str] | None) -> bool:
    return bool(nodes) and all(last.get(n) == ("done", commit) for n in nodes or ())


def fully_converged(journals: Sequence[Mapping[str, Any]], nodes_at: NodesAt) -> list[str]:
    """The commits at which every node of the environment converged, in the order they did.

    After each run, a commit counts when every node the environment has at that commit was last
    journalled ``done`` at that very commit (by this run or an earlier one). A run that failed,
    held or skipped a node, or one with ``--target`` that left a node at another commit, does not
    make its commit converged.
    """
    return [c for c, last in _after_each_run(journals) if _converged(c, last, nodes_at(c))]


def rollback_target(journals: Sequence[Mapping[str, Any]], nodes_at: NodesAt) -> str | None:
    """The default commit to roll back to, or None when the journal has none.

    The newest commit at which every node converged, other than the commit the environment is at
    now (the last run's) and any commit an earlier rollback left: a second rollback goes further
    back instead of returning to what the first one undid. Newest first, so the environment is
    loaded (``nodes_at``) only at the commits looked at, not at every commit of a long journal.
    """
    if not journals:
        return None
    marks: list[Any] = [journals[-1].get("commit")]
    for j in journals:
        rb = j.get("rollback")
        if j.get("kind") == "rollback" and isinstance(rb, Mapping):
            marks.append(rb.get("from"))
    left = {m for m in marks if isinstance(m, str)}
    cache: dict[str, frozenset[str] | None] = {}
    for commit, last in _after_each_run(journals)[::-1]:
        if commit in left:
            continue
        if commit not in cache:
            cache[commit] = nodes_at(commit)
        if _converged(commit, last, cache[commit]):
            return commit
    return None
