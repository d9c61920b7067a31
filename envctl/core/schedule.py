"""The converge scheduler as a pure state machine: a ready queue over the dependency graph.

A node becomes ready as soon as every node it needs is DONE (not level by level). One
transition, ``mark``, moves a running node to its final status; a failure (or a block waiting for
approval) marks everything downstream SKIPPED. ``stop`` ends scheduling of new nodes (Ctrl-C).
The executor drives it; nothing here runs Terraform or talks to a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    BLOCKED = "blocked"  # needs a new approval
    SKIPPED = "skipped"  # an upstream failed or was blocked
    NOT_STARTED = "not-started"  # scheduling stopped (interrupt) before it started

    @property
    def final(self) -> bool:
        return self not in (Status.PENDING, Status.RUNNING)


@dataclass
class ReadyQueue:
    """``needs[n]``: the nodes ``n`` waits for. ``order``: tie-break order for ready nodes."""

    order: list[str]
    needs: Mapping[str, frozenset[str]]
    status: dict[str, Status] = field(default_factory=dict)
    reason: dict[str, str] = field(default_factory=dict)
    stopped: bool = False

    @classmethod
    def build(cls, order: Iterable[str], edges: Iterable[tuple[str, str]]) -> ReadyQueue:
        nodes = list(order)
        needs: dict[str, set[str]] = {n: set() for n in nodes}
        for up, down in edges:
            if up in needs and down in needs:
                needs[down].add(up)
        return cls(nodes, {n: frozenset(v) for n, v in needs.items()}, {n: Status.PENDING for n in nodes})

    def ready(self) -> list[str]:
        """Nodes that may start now, in ``order``; does not change state."""
        if self.stopped:
            return []
        return [
            n
            for n in self.order
            if self.status[n] is Status.PENDING and all(self.status[u] is Status.DONE for u in self.needs[n])
        ]

    def start(self, node: str) -> None:
        if self.status[node] is not Status.PENDING or node not in self.ready():
            raise ValueError(f"{node} is not ready (status {self.status[node].value})")
        self.status[node] = Status.RUNNING

    def mark(self, node: str, result: Status, reason: str = "") -> None:
        """The single transition out of RUNNING."""
        if self.status[node] is not Status.RUNNING:
            raise ValueError(f"{node} is not running")
        if result not in (Status.DONE, Status.FAILED, Status.BLOCKED):
            raise ValueError(f"cannot mark a node {result.value}")
        self.status[node] = result
        if reason:
            self.reason[node] = reason
        if result is not Status.DONE:
            self._skip_below(node)

    def _skip_below(self, node: str) -> None:
        todo = [node]
        while todo:
            cur = todo.pop()
            for n in self.order:
                if cur in self.needs[n] and self.status[n] is Status.PENDING:
                    self.status[n] = Status.SKIPPED
                    self.reason[n] = f"upstream {cur} {self.status[cur].value}"
                    todo.append(n)

    def stop(self) -> None:
        self.stopped = True

    @property
    def running(self) -> list[str]:
        return [n for n in self.order if self.status[n] is Status.RUNNING]

    @property
    def finished(self) -> bool:
        if self.running:
            return False
        return self.stopped or not self.ready()

    def close(self) -> None:
        """After the last node ended: whatever never started is NOT_STARTED."""
        for n in self.order:
            if self.status[n] is Status.PENDING:
                self.status[n] = Status.NOT_STARTED

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.status.values():
            out[s.value] = out.get(s.value, 0) + 1
        return out
