"""The plan bundle: what was planned, at which commit, for which environment, and its fingerprint.

Pure: canonical JSON form and sha256 fingerprints. Reading and writing the bundle directory is the
store's job (``envctl.store``). The fingerprint covers every node's change set and the hash of each
saved Terraform plan file, so a flipped byte anywhere makes the bundle refuse to load.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from envctl.core.changes import NodePlan
from envctl.core.errors import StalePlanError

BUNDLE_VERSION = "1"
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def check_id(value: str, what: str = "plan id") -> str:
    """``value`` if it can name a file under ``.envctl/`` (no path separator, no ``..``, no NUL);
    a StalePlanError otherwise: a bundle's id becomes ``.envctl/applied/<id>.json`` and
    ``.envctl/approvals/<id>.json``, so ``../../x`` would write outside ``.envctl/``."""
    if not _SAFE_ID.match(value) or ".." in value:
        raise StalePlanError(
            f"{what} {value[:80]!r} is not valid: only letters, digits, '.', '_' and '-', "
            "no path separators and no '..'",
            hint="use the plan envctl plan wrote; never edit a plan bundle",
        )
    return value


def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str).encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical_body(body: dict[str, Any], forms: dict[str, bytes]) -> bytes:
    """``canonical(body)``, with each node's canonical JSON (``forms``) spliced in as it is instead
    of serialising the nodes a second time: the same bytes (keys sorted, compact, ASCII)."""
    parts = []
    for key in sorted(body):
        if key == "nodes":
            value = b"{" + b",".join(canonical(n) + b":" + forms[n] for n in sorted(forms)) + b"}"
        else:
            value = canonical(body[key])
        parts.append(canonical(key) + b":" + value)
    return b"{" + b",".join(parts) + b"}"


def _spliced(data: dict[str, Any], given: dict[str, bytes]) -> bytes:
    """``canonical(data)`` of a dict with string keys, the values of the keys in ``given`` being
    their canonical JSON already: spliced in as they are, not serialised again."""
    parts = (canonical(k) + b":" + (given[k] if k in given else canonical(data[k])) for k in sorted(data))
    return b"{" + b",".join(parts) + b"}"


def _node_form(plan: dict[str, Any], lengths: dict[int, int]) -> bytes:
    """``canonical(plan)`` of a node plan's JSON, made from each change's ``after`` serialised on
    its own, whose length goes into ``lengths`` by the value's id: a plan view shows a large
    created object by its size, which then takes no serialisation of its own."""
    changes = plan.get("changes")
    if not isinstance(changes, list):
        return canonical(plan)
    forms = []
    for c in changes:
        if not isinstance(c, dict) or "after" not in c:
            forms.append(canonical(c))
            continue
        after = canonical(c["after"])
        lengths[id(c["after"])] = len(after)
        forms.append(_spliced(c, {"after": after}))
    return _spliced(plan, {"changes": b"[" + b",".join(forms) + b"]"})


def node_fingerprint(plan: NodePlan) -> str:
    """The fingerprint of one node's plan; an approval binds to these."""
    return sha256(canonical(plan.to_json()))


@dataclass(frozen=True)
class Rollback:
    """What a rollback plan rolls back: to commit ``to`` from ``origin``, the commit the environment
    was at (the last run's commit; None when no run is journalled)."""

    to: str
    origin: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return {"to": self.to, "from": self.origin}

    @classmethod
    def from_json(cls, data: Any) -> Rollback:
        if not isinstance(data, dict) or not isinstance(data.get("to"), str):
            raise ValueError("rollback: expected {to, from}")
        origin = data.get("from")
        return cls(data["to"], None if origin is None else str(origin))


@dataclass(frozen=True)
class PlanBundle:
    """``nodes`` in ``order``; ``inputs_hash[n]``: hash of the resolved inputs the node was planned with.

    ``rev``: the commit (full SHA) a plan made with ``--rev`` read, so every command it tells the
    user to run carries ``--rev`` (None: the working tree). ``rollback``: set on a plan made by
    ``envctl rollback``; the run that applies it journals it as a rollback. Both are in the
    fingerprint (an approval covers them) and written only when set, so older bundles still load.
    """

    id: str
    environment: str
    commit: str | None
    dirty: bool
    created: str
    order: tuple[str, ...]
    nodes: dict[str, NodePlan]
    inputs_hash: dict[str, str] = field(default_factory=dict)
    targets: tuple[str, ...] = ()
    rev: str | None = None
    rollback: Rollback | None = None

    def body(self) -> dict[str, Any]:
        return dict(self._encoded[0])

    def _body(self) -> tuple[dict[str, Any], dict[str, bytes], dict[int, int]]:
        """The body, each node's canonical JSON (its fingerprint's input, made once), and the
        length of the canonical JSON of each change's ``after`` by the value's id."""
        extra: dict[str, Any] = {}
        if self.rev is not None:
            extra["rev"] = self.rev
        if self.rollback is not None:
            extra["rollback"] = self.rollback.to_json()
        nodes = {n: self.nodes[n].to_json() for n in self.order}
        lengths: dict[int, int] = {}
        forms = {n: _node_form(nodes[n], lengths) for n in self.order}
        body = {
            **extra,
            "format_version": BUNDLE_VERSION,
            "id": self.id,
            "environment": self.environment,
            "commit": self.commit,
            "dirty": self.dirty,
            "created": self.created,
            "order": list(self.order),
            "targets": list(self.targets),
            "inputs_hash": dict(self.inputs_hash),
            "nodes": nodes,
            "node_fingerprints": {n: sha256(forms[n]) for n in self.order},
        }
        return body, forms, lengths

    @cached_property
    def _encoded(self) -> tuple[dict[str, Any], dict[str, bytes], str, dict[int, int]]:
        """The body, each node's canonical JSON and the fingerprint, made once per bundle: a plan
        of large CRDs is megabytes of JSON, and a create used to serialise it five times before
        its first write (the bundle file, its fingerprint for the applied record, each node's
        fingerprint for the journal). A bundle is not edited after it is made (frozen, and its
        plans are frozen too), so what was serialised once stands."""
        body, forms, lengths = self._body()
        return body, forms, sha256(_canonical_body(body, forms)), lengths

    @property
    def fingerprint(self) -> str:
        return self._encoded[2]

    def node_fingerprint(self, node: str) -> str:
        """``node_fingerprint(self.nodes[node])``, from the forms the bundle's fingerprint was made of."""
        found = self._encoded[0]["node_fingerprints"].get(node)
        return str(found) if found is not None else node_fingerprint(self.nodes[node])

    def to_json(self) -> dict[str, Any]:
        body, _, fingerprint, _ = self._encoded
        return {**body, "fingerprint": fingerprint}

    def canonical_json(self) -> bytes:
        """``canonical(self.to_json())`` - what the store writes as ``bundle.json`` - with each
        node's canonical JSON spliced in as made for the fingerprint, not serialised again."""
        body, forms, fingerprint, _ = self._encoded
        return _canonical_body({**body, "fingerprint": fingerprint}, forms)

    def json_length(self, value: Any) -> int | None:
        """``len(canonical(value))`` of the ``after`` of a change of this bundle's plans, known from
        the forms its fingerprint was made of; None for any other value."""
        return self._encoded[3].get(id(value))

    @property
    def has_changes(self) -> bool:
        return any(p.has_changes for p in self.nodes.values())

    @classmethod
    def from_json(cls, data: Any, where: str = "plan bundle") -> PlanBundle:
        """Parse and verify; any mismatch is a ``StalePlanError`` (exit 4), never a traceback."""
        try:
            if not isinstance(data, dict) or data.get("format_version") != BUNDLE_VERSION:
                raise ValueError("unknown format_version")
            order = tuple(str(n) for n in data["order"])
            nodes = {n: NodePlan.from_json(data["nodes"][n]) for n in order}
            bundle = cls(
                id=str(data["id"]),
                environment=str(data["environment"]),
                commit=data["commit"] if data["commit"] is None else str(data["commit"]),
                dirty=bool(data["dirty"]),
                created=str(data["created"]),
                order=order,
                nodes=nodes,
                inputs_hash={str(k): str(v) for k, v in dict(data.get("inputs_hash", {})).items()},
                targets=tuple(str(t) for t in data.get("targets", ())),
                rev=None if data.get("rev") is None else str(data["rev"]),
                rollback=None if data.get("rollback") is None else Rollback.from_json(data["rollback"]),
            )
            claimed = str(data["fingerprint"])
            check_id(bundle.id)
            check_id(bundle.environment, "environment")
        except StalePlanError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as e:
            raise StalePlanError(
                f"{where} is not a valid envctl plan ({e.__class__.__name__}: {e})",
                hint="run envctl plan again",
            ) from None
        try:
            again = bundle.to_json()
            genuine = again["fingerprint"] == claimed and again == data
        except RecursionError:
            genuine = False
        if not genuine:
            raise StalePlanError(
                f"{where} was modified after it was written (fingerprint mismatch)",
                hint="never edit a plan bundle; run envctl plan again",
            )
        return bundle
