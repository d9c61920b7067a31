"""Prune: which inventory objects that left Git may be deleted, and deleting them in reverse kind order.

``prune_decision`` is the pure safety rule: only objects that still carry this layer's labels;
never a CRD, a PersistentVolumeClaim or a Namespace holding other objects unless the object is
annotated ``envctl.io/prune: allow``; never an object annotated ``envctl.io/prune: disabled``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envctl.core.blast import PRUNED
from envctl.core.changes import Action, Change
from envctl.kube.client import KubeContext, Mapping_
from envctl.kube.errors import ApiError, translate
from envctl.kube.objects import (
    ANNOTATION_PRUNE,
    LABEL_ENV,
    LABEL_LAYER,
    ObjRef,
    kind_rank,
    mask_object,
    normalise,
    sort_for_delete,
)
from envctl.kube.render import label_value

PROTECTED_KINDS = frozenset({"CustomResourceDefinition", "PersistentVolumeClaim", "Namespace"})
# Objects every namespace gets from the control plane; they do not make a namespace "in use".
_NAMESPACE_DEFAULTS = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}
_IGNORED_KINDS = frozenset({"Event", "Lease"})


@dataclass(frozen=True)
class PruneDecision:
    """``delete``: prune it; ``check_namespace``: only if the namespace is empty; ``reason``: why not;
    ``ours``: not deleted, it is still this layer's to record (kept), not someone else's now."""

    delete: bool
    reason: str = ""
    check_namespace: bool = False
    ours: bool = True


def prune_decision(
    ref: ObjRef, live: Mapping[str, Any] | None, *, env_label: str, layer_label: str
) -> PruneDecision:
    if live is None:
        return PruneDecision(False, "already gone")
    meta = live.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(LABEL_ENV) != env_label or labels.get(LABEL_LAYER) != layer_label:
        return PruneDecision(False, "kept: no longer carries this layer's labels", ours=False)
    if meta.get("deletionTimestamp"):
        return PruneDecision(False, "already being deleted", ours=False)
    policy = str((meta.get("annotations") or {}).get(ANNOTATION_PRUNE, "")).lower()
    if policy == "disabled":
        return PruneDecision(False, f"kept: annotated {ANNOTATION_PRUNE}: disabled")
    if ref.kind in PROTECTED_KINDS and policy != "allow":
        if ref.kind == "Namespace":
            return PruneDecision(True, check_namespace=True)
        return PruneDecision(
            False, f"kept: a {ref.kind} is pruned only when annotated {ANNOTATION_PRUNE}: allow"
        )
    return PruneDecision(True)


def namespace_in_use(
    ctx: KubeContext, namespace: str, leaving: Sequence[ObjRef], leaving_elsewhere: Collection[str] = ()
) -> list[str]:
    """Objects in ``namespace`` other than ``leaving`` and control-plane defaults (first few only).

    ``leaving_elsewhere``: addresses (``apps/v1 Deployment app/web``) other nodes of the same run
    delete before this one."""
    leaving_keys = {(r.kind, r.name) for r in leaving if r.namespace == namespace}
    leaving_keys |= {
        (k, n.split("/", 1)[1])
        for a in leaving_elsewhere
        if len(parts := a.split(" ")) == 3
        for k, n in [(parts[1], parts[2])]
        if n.startswith(f"{namespace}/")
    }
    # a Service's Endpoints are the endpoints controller's (no owner reference): they go with it
    leaving_keys |= {("Endpoints", n) for k, n in leaving_keys if k == "Service"}
    resources: list[tuple[str, str, str]] = []
    for gv in ctx.preferred_versions():
        path = "/api/v1" if gv == "v1" else f"/apis/{gv}"
        try:
            doc = ctx.request("GET", path)
        except ApiError:
            continue
        for r in doc.get("resources", []):
            listable = "list" in (r.get("verbs") or [])
            if r.get("namespaced") and "/" not in r["name"] and listable and r["kind"] not in _IGNORED_KINDS:
                resources.append((gv, str(r["kind"]), str(r["name"])))

    def count(res: tuple[str, str, str]) -> list[str]:
        gv, kind, plural = res
        base = "/api/v1" if gv == "v1" else f"/apis/{gv}"
        found = []
        for item in ctx.list_items(f"{base}/namespaces/{namespace}/{plural}", query={"limit": 50}):
            meta = item.get("metadata") or {}
            name = str(meta.get("name", ""))
            if (
                (kind, name) in leaving_keys
                or (kind, name) in _NAMESPACE_DEFAULTS
                or meta.get("ownerReferences")
            ):
                continue
            found.append(f"{gv} {kind} {namespace}/{name}")
        return found

    out: list[str] = []
    for r in ctx.parallel(count, resources):
        if isinstance(r, list):
            out.extend(r)
    return sorted(out)[:5]


@dataclass
class PruneCandidate:
    ref: ObjRef
    mapping: Mapping_
    live: dict[str, Any]


def delete_objects(
    ctx: KubeContext, node_id: str, candidates: Sequence[PruneCandidate]
) -> dict[ObjRef, BaseException]:
    """Delete in reverse kind order, one kind at a time, concurrently within a kind; failures returned."""
    errors: dict[ObjRef, BaseException] = {}
    by_rank: dict[int, list[PruneCandidate]] = {}
    for c in candidates:
        by_rank.setdefault(kind_rank(c.ref.kind), []).append(c)

    def one(c: PruneCandidate) -> bool:
        try:
            return ctx.delete(c.ref, c.mapping)
        except ApiError as e:
            raise translate(e, c.ref, node=node_id) from e

    for rank in sorted(by_rank, reverse=True):
        group = by_rank[rank]
        for c, r in zip(group, ctx.parallel(one, group), strict=True):
            if isinstance(r, BaseException):
                errors[c.ref] = r
    return errors


def sort_by_delete(candidates: Sequence[PruneCandidate]) -> list[PruneCandidate]:
    """Candidates in the order they are deleted (``objects.sort_for_delete``: dependents first)."""
    order = {r: i for i, r in enumerate(sort_for_delete(c.ref for c in candidates))}
    return sorted(candidates, key=lambda c: order[c.ref])


def delete_change(c: PruneCandidate) -> Change:
    """The plan's change for a candidate that is pruned: its live object (masked) goes away."""
    return Change(str(c.ref), Action.DELETE, mask_object(normalise(c.live)), None, (PRUNED,))


@dataclass(frozen=True)
class Kept:
    """An inventory object that prune or a deletion leaves in place, and why; it stays recorded in
    the inventory, so every later plan and drift lists it again until it is removed or adopted."""

    ref: ObjRef
    reason: str
    recorded: bool = True  # False: no longer this layer's (relabelled, being deleted): not recorded

    def __str__(self) -> str:
        return f"{self.ref}: {self.reason}"


def prune_candidates(
    ctx: KubeContext, node_id: str, stale: Sequence[ObjRef], leaving_elsewhere: Collection[str] = ()
) -> tuple[list[PruneCandidate], list[Kept], list[ObjRef]]:
    """Which of ``stale`` (inventory objects to go) may be deleted; those kept, and why; those
    already gone. ``leaving_elsewhere``: addresses other nodes of the run delete first."""
    env_label, layer_label = label_value(ctx.env_name), label_value(node_id.split(".", 1)[-1])

    def look(ref: ObjRef) -> tuple[ObjRef, Any, Any]:
        resolved = ctx.resolve(ref)
        if resolved is None:
            return ref, None, None
        ref2, mapping = resolved
        try:
            return ref2, mapping, ctx.get(ref2, mapping)
        except ApiError as e:
            raise translate(e, ref2, node=node_id) from e

    candidates: list[PruneCandidate] = []
    kept: list[Kept] = []
    gone: list[ObjRef] = []
    looked = ctx.parallel(look, list(stale))
    for r in looked:
        if isinstance(r, BaseException):
            raise r
    deleting = [r[0] for r in looked if not isinstance(r, BaseException) and r[2] is not None]
    for r in looked:
        assert not isinstance(r, BaseException)
        ref, mapping, live = r
        decision = prune_decision(ref, live, env_label=env_label, layer_label=layer_label)
        if live is None:
            gone.append(ref)
            continue
        if decision.check_namespace:
            others = namespace_in_use(ctx, ref.name, deleting, leaving_elsewhere)
            if others:
                kept.append(Kept(ref, f"kept: the namespace still holds other objects ({', '.join(others)})"))
                continue
        if not decision.delete:
            kept.append(Kept(ref, decision.reason, recorded=decision.ours))
            continue
        candidates.append(PruneCandidate(ref, mapping, live))
    candidates.sort(key=lambda c: (-kind_rank(c.ref.kind), c.ref))
    return candidates, kept, gone
