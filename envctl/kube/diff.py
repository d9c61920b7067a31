"""Server-side dry-run diff: what applying each rendered object would change, as ``Change`` values.

Every object is dry-run applied (``dryRun=All``, field manager ``envctl``) concurrently and the
result compared with the live object after normalisation (no status, no server-owned metadata),
so defaults the server fills in never show as changes. ``object_change`` is the pure half.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from envctl.core.changes import Action, Change
from envctl.core.errors import ConfigError, EnvctlError
from envctl.kube.client import (
    ApiError,
    ConflictError,
    FieldConflict,
    KubeContext,
    Mapping_,
    conflicts_of,
    translate,
)
from envctl.kube.objects import (
    LABEL_ENV,
    LABEL_LAYER,
    ObjRef,
    diff_paths,
    is_secret,
    mask_object,
    mask_secret_pair,
    normalise,
    project,
    secret_values,
)


@dataclass
class Prepared:
    """One rendered object after its dry-run: identity, mapping, live and would-be state.

    ``pending``: why it cannot be dry-run yet (its CRD or Namespace is created by this layer first).
    ``replace``: an immutable field changes and the layer allows force: delete and re-create.
    """

    obj: dict[str, Any]
    ref: ObjRef
    mapping: Mapping_ | None = None
    live: dict[str, Any] | None = None
    dry: dict[str, Any] | None = None
    pending: str | None = None
    replace: bool = False
    conflicts: list[FieldConflict] = field(default_factory=list)
    change: Change | None = None


def object_change(
    ref: ObjRef,
    live: Mapping[str, Any] | None,
    merged: Mapping[str, Any] | None,
    *,
    conflicts: Sequence[FieldConflict] = (),
    replace: bool = False,
) -> Change:
    """The change from ``live`` to ``merged`` (the dry-run result); values masked for Secrets."""
    before, after = normalise(live), normalise(merged)
    if is_secret(before) or is_secret(after):
        shown_before, shown_after = mask_secret_pair(before, after)
    else:
        shown_before, shown_after = before, after
    reasons = tuple(f"conflict: .{c.path} is owned by {c.manager}" for c in conflicts)
    manager = conflicts[0].manager if conflicts else None
    if before is None:
        return Change(str(ref), Action.CREATE, None, shown_after, reasons, (), manager)
    paths = tuple(diff_paths(project(before, after) if replace else before, after))
    if replace:
        return Change(
            str(ref),
            Action.REPLACE,
            shown_before,
            shown_after,
            (*reasons, "an immutable field changes"),
            paths,
            manager,
        )
    if not paths:
        return Change(str(ref), Action.NOOP, None, None, reasons, (), manager)
    return Change(str(ref), Action.UPDATE, shown_before, shown_after, reasons, paths, manager)


def crd_kinds(objects: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """(group, kind) -> CRD name, for every CRD among the objects."""
    out = {}
    for o in objects:
        if o.get("kind") == "CustomResourceDefinition":
            spec = o.get("spec") or {}
            kind = str((spec.get("names") or {}).get("kind", ""))
            out[(str(spec.get("group", "")), kind)] = str((o.get("metadata") or {}).get("name", ""))
    return out


def layer_namespaces(objects: Sequence[Mapping[str, Any]]) -> set[str]:
    return {
        str(o["metadata"]["name"])
        for o in objects
        if o.get("kind") == "Namespace" and o.get("apiVersion") == "v1"
    }


def prepare(
    ctx: KubeContext,
    node_id: str,
    objects: Sequence[Mapping[str, Any]],
    *,
    force: bool,
    upstream_pending: bool = False,
    upstream_objects: Sequence[Mapping[str, Any]] = (),
) -> list[Prepared]:
    """Dry-run every object concurrently; raise the first failure (in render order) naming its object.

    CRDs and Namespaces among ``upstream_objects`` (rendered objects of upstream layers) count as
    coming: objects that need them are planned as "create after", not failed.
    """
    crds = crd_kinds([*objects, *upstream_objects])
    namespaces = layer_namespaces([*objects, *upstream_objects])
    items = [Prepared(copy.deepcopy(dict(o)), ObjRef.of(o)) for o in objects]
    known = prefetch_live(ctx, node_id, items)

    def one(p: Prepared) -> Prepared:
        dry_run_one(
            ctx,
            node_id,
            p,
            force=force,
            crds=crds,
            namespaces=namespaces,
            upstream_pending=upstream_pending,
            known_live=known,
        )
        return p

    results = ctx.parallel(one, items)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return items


def prefetch_live(
    ctx: KubeContext, node_id: str, items: Sequence[Prepared], *, min_group: int = 8
) -> dict[ObjRef, dict[str, Any]]:
    """Live objects fetched by one LIST per kind and namespace (label selector of this layer).

    Only for groups of at least ``min_group`` objects, where one LIST beats many GETs; an object
    the LIST does not return (unlabelled, or absent) is still read with its own GET later.
    """
    groups: dict[tuple[str, str], tuple[ObjRef, Mapping_, str]] = {}
    sizes: dict[tuple[str, str], int] = {}
    for p in items:
        labels = (p.obj.get("metadata") or {}).get("labels") or {}
        selector = ",".join(f"{k}={labels[k]}" for k in (LABEL_ENV, LABEL_LAYER) if k in labels)
        if not selector:
            continue
        try:
            resolved = ctx.resolve(p.ref)
        except ApiError as e:
            raise translate(e, p.ref, node=node_id) from e
        if resolved is None:
            continue
        ref, mapping = resolved
        key = (ctx.path(ref, mapping, name=False), selector)
        groups[key] = (ref, mapping, selector)
        sizes[key] = sizes.get(key, 0) + 1
    wanted = [key for key, n in sizes.items() if n >= min_group]

    def fetch(key: tuple[str, str]) -> list[dict[str, Any]]:
        return ctx.list_items(key[0], query={"labelSelector": key[1]})

    known: dict[ObjRef, dict[str, Any]] = {}
    for key, result in zip(wanted, ctx.parallel(fetch, wanted), strict=True):
        if isinstance(result, BaseException):
            continue  # a GET per object will follow and report any real problem
        api_version = groups[key][0].api_version
        for item in result:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", groups[key][0].kind)
            known[ObjRef.of(item)] = item
    return known


def dry_run_one(
    ctx: KubeContext,
    node_id: str,
    p: Prepared,
    *,
    force: bool,
    crds: Mapping[tuple[str, str], str] | None = None,
    namespaces: set[str] | None = None,
    upstream_pending: bool = False,
    known_live: Mapping[ObjRef, dict[str, Any]] | None = None,
) -> None:
    """Fill ``p`` with mapping, live object and dry-run result (or a pending reason)."""
    secrets = list(secret_values(p.obj))
    p.pending = None
    try:
        resolved = ctx.resolve(p.ref)
        if resolved is None:
            crd = (crds or {}).get((p.ref.group, p.ref.kind))
            if crd is not None:
                p.pending = f"create after CustomResourceDefinition {crd}"
            elif upstream_pending:
                p.pending = f"create after the upstream node that serves {p.ref.group_kind}"
            else:
                raise ConfigError(
                    f"{p.ref}: the cluster does not serve kind {p.ref.kind} in {p.ref.api_version}",
                    node=node_id,
                    hint="is its CustomResourceDefinition applied (by this layer or one it depends on)?",
                )
            p.change = Change(str(p.ref), Action.CREATE, None, mask_object(p.obj), (p.pending,))
            return
        p.ref, p.mapping = resolved
        meta = p.obj.setdefault("metadata", {})
        if p.mapping.namespaced:
            meta["namespace"] = p.ref.namespace
        else:
            meta.pop("namespace", None)
        p.live = (known_live or {}).get(p.ref) or ctx.get(p.ref, p.mapping)
        try:
            p.dry = ctx.apply(p.obj, p.mapping, dry_run=True, force=False)
        except ApiError as e:
            if e.status == 409 and conflicts_of(e):
                p.conflicts = conflicts_of(e)
                p.dry = ctx.apply(p.obj, p.mapping, dry_run=True, force=True)
            elif e.status == 422 and "immutable" in e.message and force and p.live is not None:
                p.replace = True
                p.dry = normalise(p.obj)
            elif (
                e.status == 404
                and p.live is None
                and f'namespaces "{p.ref.namespace}" not found' in e.message
            ):
                # Its namespace comes from this layer's first stage or from an upstream layer.
                known = p.ref.namespace in (namespaces or set())
                p.pending = f"create after Namespace {p.ref.namespace}" + (
                    "" if known else " (not in the cluster yet)"
                )
                p.change = Change(
                    str(p.ref), Action.CREATE, None, mask_object(normalise(p.obj)), (p.pending,)
                )
                return
            else:
                raise
        # A create shows the object as rendered: server-assigned values (a Service's clusterIP)
        # would differ between two plans and make a plan's fingerprint unstable.
        shown = p.dry if p.live is not None else p.obj
        p.change = object_change(p.ref, p.live, shown, conflicts=p.conflicts, replace=p.replace)
    except ApiError as e:
        raise translate(e, p.ref, node=node_id, secrets=secrets) from e
    except EnvctlError:
        raise


def conflict_error(node_id: str, prepared: Sequence[Prepared]) -> ConflictError | None:
    """One error listing every field conflict of a layer (None when there are none)."""
    lines = [f"{p.ref}: .{c.path} (owned by {c.manager})" for p in prepared for c in p.conflicts]
    if not lines:
        return None
    return ConflictError(
        f"field conflicts with other managers in {len(lines)} field(s): " + "; ".join(lines),
        node=node_id,
        conflicts=[c for p in prepared for c in p.conflicts],
        hint="drop the fields from Git, let the other manager release them, or set force: true in layer.yaml",
    )
