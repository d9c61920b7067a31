"""What plan and apply return: the values views render (so views never import ``envctl.app``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envctl.core.blast import BlastRadius
from envctl.core.bundle import PlanBundle
from envctl.core.changes import NodePlan
from envctl.core.errors import EnvctlError
from envctl.core.schedule import Status


@dataclass
class PlanResult:
    """A plan: the bundle, errors per node, nodes to approve. ``saved``: the bundle was written to
    ``plan_dir`` (nothing failed, and it has changes or ``--out`` asked for it). ``blast``: what
    it touches (None when nothing was planned); ``base_ref``: the ``--changed-since`` ref."""

    bundle: PlanBundle
    plan_dir: Path
    errors: dict[str, EnvctlError]
    needs_approval: list[str]
    saved: bool = False
    blast: BlastRadius | None = None
    base_ref: str | None = None


@dataclass
class NodeResult:
    """How one node of an apply ended, and the plan it was applied with."""

    node: str
    status: Status
    reason: str = ""
    plan: NodePlan | None = None
    seconds: float = 0.0
    inputs_hash: str = ""  # of the inputs it converged with: drift compares it to find stale nodes


@dataclass
class ApplyResult:
    """One apply run: every node's result in plan order, and whether Ctrl-C stopped it;
    ``pending``: the bound re-planned nodes went within without asking again (``--pending``)."""

    run_id: str
    plan_id: str
    results: dict[str, NodeResult]
    interrupted: bool = False
    errors: dict[str, EnvctlError] = field(default_factory=dict)
    pending: str | None = None

    def of(self, status: Status) -> list[str]:
        return [n for n, r in self.results.items() if r.status is status]


@dataclass(frozen=True)
class ValidateResult:
    """``envctl validate`` of one environment: it is valid (errors raise), with these warnings."""

    environment: str
    nodes: int
    edges: int
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class StatusReport:
    """``envctl status``: per node (in converge order) its last converge, the lock, the last drift.

    ``last[node]``: ``{"commit", "at", "run", "converged", "reason"}`` of the last run that wrote it
    (``converged`` False: applied but not ready, e.g. an interrupted wait; absent: never);
    ``overdue``: seconds the scheduled drift check is late (``math.inf``: never run), None if not.
    ``removed``: nodes the journal has converged (or applied) that are no longer in Git, with their
    last entry; ``behind[node]``: commits since its last converged commit that touch a file it
    reads (None: unknown, e.g. never converged or that commit is not an ancestor of HEAD);
    ``last_run``: ``{"run", "started", "finished", "commit", "outcome", "counts"}`` of the latest
    apply (``outcome``: done, failed, blocked, interrupted or running; see ``run_outcome``).
    """

    environment: str
    order: tuple[str, ...]
    last: dict[str, dict[str, Any]]
    lock: dict[str, Any] | None
    last_drift: dict[str, Any] | None
    drift_every: str | None
    overdue: float | None
    removed: dict[str, dict[str, Any]] = field(default_factory=dict)
    behind: dict[str, int | None] = field(default_factory=dict)
    last_run: dict[str, Any] | None = None


def run_outcome(statuses: list[str], *, finished: bool, interrupted: bool) -> str:
    """One word for a run from its nodes' statuses: ``failed`` if a node failed, else ``blocked``
    if one needs a new approval, else ``interrupted`` (stopped early), ``running`` (not finished:
    under way, or killed), ``done``."""
    if "failed" in statuses:
        return "failed"
    if "blocked" in statuses:
        return "blocked"
    if interrupted:
        return "interrupted"
    if not finished:
        return "running"
    return "done"
