"""One change type for Terraform resources and Kubernetes objects alike (plan, apply, drift).

Pure. Values stored in a ``Change`` are already masked: adapters call ``mask_sensitive``
before a value ever leaves them, so no view can print a secret by accident.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Deletion(StrEnum):
    """Why a node's plan deletes it: it left Git (``removed``) or ``envctl destroy`` asked."""

    REMOVED = "removed from Git"
    DESTROY = "destroy"


class Action(StrEnum):
    """What will happen (plan) or happened (apply) to one resource or object."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    REPLACE = "replace"
    NOOP = "no-op"
    READ = "read"
    PENDING = "pending-upstream"

    @property
    def destructive(self) -> bool:
        return self in (Action.DELETE, Action.REPLACE)

    @property
    def changes(self) -> bool:
        return self not in (Action.NOOP, Action.READ)


SENSITIVE = "(sensitive)"
UNKNOWN = "(known after apply)"
"""What a value only apply will tell shows as (Terraform's words); also an unresolved input."""


def short_hash(value: Any) -> str:
    """A short, stable hash of a value, so a user can see *that* a secret changed, never *what*."""
    blob = json.dumps(value, sort_keys=True, default=str).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()[:12]


def sensitive_marker(before: Any, after: Any) -> str:
    """The text shown for a sensitive value: changed or not, and a short hash of the new value."""
    if before == after:
        return SENSITIVE
    return f"(sensitive, changed) {short_hash(after)}"


def mask_sensitive(value: Any, sensitive: Any) -> Any:
    """Replace every part of ``value`` that ``sensitive`` marks with ``SENSITIVE``.

    ``sensitive`` has Terraform's ``before_sensitive``/``after_sensitive`` shape: ``True`` for a
    sensitive value, or a dict/list of the same shape as ``value`` with booleans at the leaves.
    """
    if sensitive is True:
        return None if value is None else SENSITIVE
    if isinstance(value, dict) and isinstance(sensitive, dict):
        return {k: mask_sensitive(v, sensitive.get(k, False)) for k, v in value.items()}
    if isinstance(value, list) and isinstance(sensitive, list):
        return [mask_sensitive(v, sensitive[i] if i < len(sensitive) else False) for i, v in enumerate(value)]
    return value


@dataclass(frozen=True)
class Change:
    """One resource (``terraform_data.x``) or object (``apps/v1 Deployment app/web``) and its action.

    ``before``/``after`` are masked values (``None`` when absent); ``reasons`` says why, e.g. which
    attributes force a replacement; ``fields`` lists the changed paths of an update; ``manager`` names
    another field manager involved (conflicts and drift).
    """

    address: str
    action: Action
    before: Any = None
    after: Any = None
    reasons: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    manager: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "action": self.action.value,
            "before": self.before,
            "after": self.after,
            "reasons": list(self.reasons),
            "fields": list(self.fields),
            "manager": self.manager,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Change:
        return cls(
            address=str(data["address"]),
            action=Action(data["action"]),
            before=data.get("before"),
            after=data.get("after"),
            reasons=tuple(data.get("reasons") or ()),
            fields=tuple(data.get("fields") or ()),
            manager=data.get("manager"),
        )


@dataclass(frozen=True)
class Counts:
    """Summary counts of a change set, the numbers of a plan's summary table."""

    add: int = 0
    change: int = 0
    destroy: int = 0
    replace: int = 0

    @property
    def total(self) -> int:
        return self.add + self.change + self.destroy + self.replace

    @classmethod
    def of(cls, changes: Iterable[Change]) -> Counts:
        add = change = destroy = replace = 0
        for c in changes:
            if c.action is Action.CREATE:
                add += 1
            elif c.action is Action.UPDATE:
                change += 1
            elif c.action is Action.DELETE:
                destroy += 1
            elif c.action is Action.REPLACE:
                replace += 1
        return cls(add, change, destroy, replace)


@dataclass(frozen=True)
class Outputs:
    """A node's output values (as they are now, or as a plan says they will be after apply), and
    the names of the sensitive ones."""

    values: Mapping[str, Any]
    sensitive: frozenset[str] = frozenset()


@dataclass(frozen=True)
class NodePlan:
    """The planned changes of one node.

    ``outputs_changing``: outputs whose value will change (a change like any other: the node is
    applied so its state holds them, and its consumers are re-planned with them);
    ``output_changes``: those outputs as changes (``output.NAME``, masked old and new values);
    ``outputs_unknown``: outputs known only after apply. ``pending_upstream``: inputs of this node
    that wait on an upstream change (the node is then planned against the current upstream values,
    or not at all). ``notes``: human remarks such as "will create 3 objects once stack.cluster is
    applied".

    ``deletion``: set when the plan deletes the node (its ``changes`` are what goes; ``kept``
    lists, with why, what the deletion leaves in place and keeps recorded); ``depends_on``: the
    nodes it depended on (recorded at its last converge for a node removed from Git), which are
    deleted or changed only after it.
    """

    node: str
    changes: tuple[Change, ...] = ()
    outputs_changing: tuple[str, ...] = ()
    output_changes: tuple[Change, ...] = ()
    outputs_unknown: tuple[str, ...] = ()
    pending_upstream: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    artifacts: dict[str, str] = field(default_factory=dict, compare=False)
    deletion: Deletion | None = None
    depends_on: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    planned_outputs: Outputs | None = field(default=None, compare=False, repr=False)

    @property
    def counts(self) -> Counts:
        return Counts.of(self.changes)

    @property
    def has_changes(self) -> bool:
        if self.deletion is not None and not self.kept:
            return True  # even with nothing live left: its records (inventory, state, journal) go
        return (
            bool(self.pending_upstream)
            or bool(self.outputs_changing)
            or any(c.action.changes for c in self.changes)
        )

    @property
    def destructive(self) -> bool:
        return any(c.action.destructive for c in self.changes)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "node": self.node,
            "changes": [c.to_json() for c in self.changes],
            "outputs_changing": list(self.outputs_changing),
            "output_changes": [c.to_json() for c in self.output_changes],
            "outputs_unknown": list(self.outputs_unknown),
            "pending_upstream": list(self.pending_upstream),
            "notes": list(self.notes),
            "artifacts": dict(self.artifacts),
        }
        if self.deletion is not None:  # absent otherwise: plans of converging nodes keep their shape
            data.update(deletion=self.deletion.value, depends_on=list(self.depends_on), kept=list(self.kept))
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodePlan:
        return cls(
            node=str(data["node"]),
            changes=tuple(Change.from_json(c) for c in data.get("changes", ())),
            outputs_changing=tuple(data.get("outputs_changing", ())),
            output_changes=tuple(Change.from_json(c) for c in data.get("output_changes", ())),
            outputs_unknown=tuple(data.get("outputs_unknown", ())),
            pending_upstream=tuple(data.get("pending_upstream", ())),
            notes=tuple(data.get("notes", ())),
            artifacts=dict(data.get("artifacts", {})),
            deletion=Deletion(data["deletion"]) if data.get("deletion") else None,
            depends_on=tuple(data.get("depends_on", ())),
            kept=tuple(data.get("kept", ())),
        )
