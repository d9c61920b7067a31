"""Which commit ``envctl rollback`` goes back to when none is named: read from the run journals.

Pure: the journals (oldest first, as ``Store.journals`` returns them) and a function naming the
nodes an environment has at a commit are all it needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

NodesAt = Callable[[str], "frozenset[str] | None"]  # the environment's nodes at a commit (None: unknown)


def fully_converged(journals: Sequence[Mapping[str, Any]], nodes_at: NodesAt) -> list[str]:
    """The commits at which every node of the environment converged, in the order they did.

    After each run, a commit counts when every node the environment has at that commit was last
    journalled ``done`` at that very commit (by this run or an earlier one). A run that failed,
    held or skipped a node, or one with ``--target`` that left a node at another commit, does not
    make its commit converged.
    """
    last: dict[str, tuple[Any, Any]] = {}
    cache: dict[str, frozenset[str] | None] = {}
    out: list[str] = []
    for j in journals:
        for n, r in dict(j.get("nodes") or {}).items():
            if isinstance(r, Mapping):
                last[str(n)] = (r.get("status"), r.get("commit"))
        c = j.get("commit")
        if not isinstance(c, str) or not c:
            continue
        if c not in cache:
            cache[c] = nodes_at(c)
        nodes = cache[c]
        if nodes and all(last.get(n) == ("done", c) for n in nodes):
            out.append(c)
    return out


def rollback_target(journals: Sequence[Mapping[str, Any]], nodes_at: NodesAt) -> str | None:
    """The default commit to roll back to, or None when the journal has none.

    The newest commit at which every node converged, other than the commit the environment is at
    now (the last run's) and any commit an earlier rollback left: a second rollback goes further
    back instead of returning to what the first one undid.
    """
    if not journals:
        return None
    left = {journals[-1].get("commit")}
    for j in journals:
        rb = j.get("rollback")
        if j.get("kind") == "rollback" and isinstance(rb, Mapping):
            left.add(rb.get("from"))
    for c in reversed(fully_converged(journals, nodes_at)):
        if c not in left:
            return c
    return None
