"""Prune: which inventory objects that left Git may be deleted, and deleting them in reverse kind order.

``prune_decision`` is the pure safety rule: only objects that still carry this layer's labels;
never a CRD, a PersistentVolumeClaim or a Namespace holding other objects unless the object is
annotated ``envctl.io/prune: allow``; never an object annotated ``envctl.io/prune: disabled``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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

PROTECTED_KINDS = frozenset({"CustomResourceDefinition", "PersistentVolumeClaim", "Namespace"})
# Objects every namespace gets from the control plane; they do not make a namespace "in use".
_NAMESPACE_DEFAULTS = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}
_IGNORED_KINDS = frozenset({"Event", "Lease"})


@dataclass(frozen=True)
class PruneDecision:
    """``delete``: prune it; ``check_namespace``: only if the namespace is empty; ``reason``: why not."""

    delete: bool
    reason: str = ""
    check_namespace: bool = False


def prune_decision(
    ref: ObjRef, live: Mapping[str, Any] | None, *, env_label: str, layer_label: str
) -> PruneDecision:
    if live is None:
        return PruneDecision(False, "already gone")
    meta = live.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(LABEL_ENV) != env_label or labels.get(LABEL_LAYER) != layer_label:
        return PruneDecision(False, "kept: no longer carries this layer's labels")
    if meta.get("deletionTimestamp"):
        return PruneDecision(False, "already being deleted")
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


def namespace_in_use(ctx: KubeContext, namespace: str, leaving: Sequence[ObjRef]) -> list[str]:
    """Objects in ``namespace`` other than ``leaving`` and control-plane defaults (first few only)."""
    leaving_keys = {(r.kind, r.name) for r in leaving if r.namespace == namespace}
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
    return Change(
        str(c.ref), Action.DELETE, mask_object(normalise(c.live)), None, (PRUNED,)
    )
