"""The inventory of a layer: a ConfigMap in ``envctl-system`` listing every object the layer applied.

It is the only thing prune may delete. Writes use optimistic concurrency (``resourceVersion``):
a concurrent writer makes the write fail instead of losing entries.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from envctl.core.errors import EngineError
from envctl.kube.client import KubeContext, Mapping_
from envctl.kube.errors import ApiError, translate
from envctl.kube.objects import FIELD_MANAGER, INVENTORY_NAMESPACE, LABEL_ENV, LABEL_LAYER, ObjRef
from envctl.kube.render import label_value

_CONFIGMAPS = Mapping_("configmaps", True)
_NAMESPACES = Mapping_("namespaces", False)


@dataclass(frozen=True)
class Inventory:
    """Entries of one layer's inventory; ``resource_version`` None means it does not exist yet."""

    name: str
    entries: tuple[ObjRef, ...] = ()
    resource_version: str | None = None
    revision: str | None = None
    applied_at: str | None = None

    @property
    def exists(self) -> bool:
        return self.resource_version is not None


def inventory_name(env_name: str, node_id: str) -> str:
    """``<env>.<layer id>`` as a valid ConfigMap name, e.g. ``staging.layer.app``."""
    raw = f"{env_name}.{node_id}".lower()
    return re.sub(r"[^a-z0-9.-]", "-", raw).strip(".-")[:253]


def encode_entries(refs: Iterable[ObjRef]) -> str:
    return json.dumps([list(r.to_json().values()) for r in sorted(set(refs))], separators=(",", ":"))


def decode_entries(text: str) -> tuple[ObjRef, ...]:
    return tuple(ObjRef(str(a), str(k), str(ns), str(n)) for a, k, ns, n in json.loads(text or "[]"))


def _ref(name: str) -> ObjRef:
    return ObjRef("v1", "ConfigMap", INVENTORY_NAMESPACE, name)


def read_inventory(ctx: KubeContext, node_id: str) -> Inventory:
    name = inventory_name(ctx.env_name, node_id)
    try:
        cm = ctx.get(_ref(name), _CONFIGMAPS)
    except ApiError as e:
        raise translate(e, _ref(name), node=node_id) from e
    if cm is None:
        return Inventory(name)
    meta = cm.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    return Inventory(
        name,
        decode_entries((cm.get("data") or {}).get("objects", "[]")),
        str(meta.get("resourceVersion")),
        annotations.get("envctl.io/revision"),
        annotations.get("envctl.io/applied-at"),
    )


def _ensure_namespace(ctx: KubeContext, node_id: str) -> None:
    ref = ObjRef("v1", "Namespace", "", INVENTORY_NAMESPACE)
    try:
        if ctx.get(ref, _NAMESPACES) is None:
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": INVENTORY_NAMESPACE}}
            ctx.apply(body, _NAMESPACES, dry_run=False, force=False)
    except ApiError as e:
        raise translate(e, ref, node=node_id) from e


def write_inventory(
    ctx: KubeContext, node_id: str, previous: Inventory, entries: Iterable[ObjRef]
) -> Inventory:
    """Replace the inventory's entries; fails if someone else wrote it since ``previous`` was read."""
    refs = tuple(sorted(set(entries)))
    layer = node_id.split(".", 1)[-1]
    applied_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    annotations = {"envctl.io/applied-at": applied_at, "envctl.io/node": node_id}
    if ctx.revision:
        annotations["envctl.io/revision"] = ctx.revision
    meta: dict[str, Any] = {
        "name": previous.name,
        "namespace": INVENTORY_NAMESPACE,
        "labels": {
            LABEL_ENV: label_value(ctx.env_name),
            LABEL_LAYER: label_value(layer),
            "app.kubernetes.io/managed-by": FIELD_MANAGER,
        },
        "annotations": annotations,
    }
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        "data": {"objects": encode_entries(refs)},
    }
    ref = _ref(previous.name)
    try:
        if previous.exists:
            meta["resourceVersion"] = previous.resource_version
            doc = ctx.request(
                "PUT", ctx.path(ref, _CONFIGMAPS), body=body, query={"fieldManager": FIELD_MANAGER}
            )
        else:
            _ensure_namespace(ctx, node_id)
            doc = ctx.request(
                "POST",
                ctx.path(ref, _CONFIGMAPS, name=False),
                body=body,
                query={"fieldManager": FIELD_MANAGER},
            )
    except ApiError as e:
        if e.status == 409:
            # a write retried after its answer was lost (connection dropped) finds its own result
            now = read_inventory(ctx, node_id)
            if now.exists and now.entries == refs and now.applied_at == applied_at:
                return now
            raise EngineError(
                f"the inventory of {node_id} ({INVENTORY_NAMESPACE}/{previous.name}) changed while envctl "
                "was applying: another run is converging this layer",
                node=node_id,
                hint="re-run once the other run has finished",
            ) from e
        raise translate(e, ref, node=node_id) from e
    return Inventory(
        previous.name, refs, str((doc.get("metadata") or {}).get("resourceVersion")), ctx.revision, applied_at
    )


def delete_inventory(ctx: KubeContext, node_id: str, inventory: Inventory) -> None:
    """Delete the inventory ConfigMap (a layer deleted with nothing kept); gone already is fine."""
    ref = _ref(inventory.name)
    try:
        ctx.delete(ref, _CONFIGMAPS)
    except ApiError as e:
        raise translate(e, ref, node=node_id) from e


def inventoried_layers(ctx: KubeContext) -> list[str]:
    """Ids of the layers of this environment that have an inventory in the cluster."""
    selector = f"{LABEL_ENV}={label_value(ctx.env_name)},app.kubernetes.io/managed-by={FIELD_MANAGER}"
    path = f"/api/v1/namespaces/{INVENTORY_NAMESPACE}/configmaps"
    try:
        items = ctx.list_items(path, query={"labelSelector": selector})
    except ApiError as e:
        if e.status == 404:
            return []
        raise translate(e, None) from e
    out = []
    for cm in items:
        meta = cm.get("metadata") or {}
        node_id = str((meta.get("annotations") or {}).get("envctl.io/node") or "")
        # labels are shortened and sanitised: the name tells this environment's own inventories
        if node_id and meta.get("name") == inventory_name(ctx.env_name, node_id):
            out.append(node_id)
    return sorted(set(out))
