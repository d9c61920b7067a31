"""Kubernetes object identity, ordering, normalisation, diff and masking: pure helpers of the engine.

Imports only the standard library and ``envctl.core``; no ``kubernetes``, no network, so every
rule here (the kind order, the apply tiers, what counts as a change, how a Secret is masked) is
unit-tested offline.
Objects are plain ``dict`` values as the API server returns them in JSON.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from envctl.core.bundle import canonical, sha256
from envctl.core.changes import SENSITIVE, sensitive_marker

T = TypeVar("T")

# Labels and annotations envctl puts on every object it applies.
LABEL_ENV = "envctl.io/environment"
LABEL_LAYER = "envctl.io/layer"
ANNOTATION_INVENTORY = "envctl.io/inventory-id"
# set by render on objects decrypted from a SOPS file: names the file; their values were not plain in Git
ANNOTATION_SOPS = "envctl.io/sops-file"
# Per-object prune policy (Git side, read from the live object): "disabled" never prunes the
# object; "allow" lets envctl prune kinds it protects by default (CRDs, PVCs, Namespaces).
ANNOTATION_PRUNE = "envctl.io/prune"
FIELD_MANAGER = "envctl"
INVENTORY_NAMESPACE = "envctl-system"

# Kinds the API server serves cluster-scoped in every cluster. Used offline (render) to decide
# where a default namespace goes; online the REST mapping is the authority.
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "IngressClass",
        "RuntimeClass",
        "CSIDriver",
        "CSINode",
        "VolumeAttachment",
        "Node",
        "APIService",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "FlowSchema",
        "PriorityLevelConfiguration",
        "CertificateSigningRequest",
        "ComponentStatus",
        "ClusterTrustBundle",
        "DeviceClass",
        "IPAddress",
        "ServiceCIDR",
    }
)

# Kind order (Helm's install order, as flux's ssa uses): the order objects are listed in, and
# deletes (prune, destroy) run in reverse, one kind at a time. Unknown kinds (custom resources)
# rank after every built-in kind and before webhooks.
KIND_ORDER: tuple[str, ...] = (
    "CustomResourceDefinition",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
)
LAST_KINDS: tuple[str, ...] = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
STAGE_ONE_KINDS = frozenset({"CustomResourceDefinition", "Namespace"})

# Apply tiers: an apply sends each tier as one wave of concurrent requests, a wave starting when
# every request of the one before has answered (kube/apply.py::_apply_stage). A tier holds what
# the tiers after it need to exist before they are admitted or used; kinds share a tier when
# none of them needs another. Tiers 0 and 1 are stage one (CRDs one at a time, then Namespaces),
# applied and waited for before the rest is dry-run and applied. The rest:
#  2. classes, policy, identities, roles: PriorityClass/RuntimeClass (admission rejects a Pod
#     naming one that does not exist); Storage/IngressClass (a default class is set on a
#     PVC/Ingress only when it is created); PersistentVolume; ResourceQuota/LimitRange (enforced
#     and defaulted when an object is created, never afterwards); NetworkPolicy and
#     PodDisruptionBudget (they protect Pods from their first moment); ServiceAccount (a Pod naming
#     a missing one is rejected; a token Secret whose account does not exist is deleted by the
#     token controller); Role/ClusterRole (a binding's escalation check resolves the role it names);
#  3. what workloads read, mount, run as or are reached by: Secrets, ConfigMaps, PVCs, resource
#     claims, role bindings (a Pod's account has its rights when it starts), Services (a container
#     gets the environment variables of the Services that exist when it starts);
#  4. workloads and their routing: Pods and their controllers, HPAs, Ingresses;
#  5. OTHER_TIER, every kind not named here: custom resources (their controllers and webhooks may
#     read any built-in object) and built-in kinds with no such role;
#  6. ADMISSION_KINDS, last: webhook configurations, admission policies and APIServices, so a
#     webhook or policy whose backend the layer itself deploys never intercepts the layer's own
#     objects (flux: webhooks last; Helm: APIService, then webhooks, after every kind it knows).
# Flux's ssa ApplyAllStaged has three stages (CRDs/Namespaces/ClusterRoles, then kinds named
# *Class, then the rest sent one after the other in kind order); Helm sends kind by kind in its
# install order. Unlike flux, a custom kind named *Class stays in tier 5 with the other custom
# resources: it may reference built-in objects (a GatewayClass its parameters' ConfigMap).
# Deletes keep the reverse of KIND_ORDER, one kind at a time (kube/prune.py::delete_objects).
APPLY_TIERS: tuple[tuple[str, ...], ...] = (
    ("CustomResourceDefinition",),
    ("Namespace",),
    (
        "PriorityClass",
        "RuntimeClass",
        "StorageClass",
        "VolumeAttributesClass",
        "IngressClass",
        "DeviceClass",
        "PersistentVolume",
        "ResourceQuota",
        "LimitRange",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "ServiceAccount",
        "ClusterRole",
        "Role",
    ),
    (
        "Secret",
        "ConfigMap",
        "PersistentVolumeClaim",
        "ResourceClaimTemplate",
        "ResourceClaim",
        "ClusterRoleBinding",
        "RoleBinding",
        "Service",
    ),
    (
        "DaemonSet",
        "Pod",
        "ReplicationController",
        "ReplicaSet",
        "Deployment",
        "HorizontalPodAutoscaler",
        "StatefulSet",
        "Job",
        "CronJob",
        "Ingress",
    ),
)
ADMISSION_KINDS: tuple[str, ...] = (
    "APIService",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
    "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ValidatingWebhookConfiguration",
)
_TIER = {kind: i for i, kinds in enumerate(APPLY_TIERS) for kind in kinds}
OTHER_TIER = len(APPLY_TIERS)  # custom resources and built-in kinds not named above
_TIER.update(dict.fromkeys(ADMISSION_KINDS, OTHER_TIER + 1))

# Metadata the server owns; never part of a diff.
_SERVER_METADATA = (
    "managedFields",
    "resourceVersion",
    "generation",
    "uid",
    "creationTimestamp",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


@dataclass(frozen=True, order=True)
class ObjRef:
    """The identity of one object: ``apps/v1 Deployment app/web`` (cluster-scoped: ``v1 Namespace app``)."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0] if "/" in self.api_version else ""

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def group_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.api_version} {self.kind} {where}"

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjRef:
        meta = obj.get("metadata") or {}
        return cls(
            str(obj.get("apiVersion", "")),
            str(obj.get("kind", "")),
            str(meta.get("namespace") or ""),
            str(meta.get("name", "")),
        )

    def to_json(self) -> dict[str, str]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ObjRef:
        return cls(
            str(data["apiVersion"]), str(data["kind"]), str(data.get("namespace") or ""), str(data["name"])
        )


def kind_rank(kind: str) -> int:
    """Position of a kind in KIND_ORDER (unknown kinds after it, LAST_KINDS last); deletes run
    in the reverse."""
    if kind in KIND_ORDER:
        return KIND_ORDER.index(kind)
    if kind in LAST_KINDS:
        return len(KIND_ORDER) + 1 + LAST_KINDS.index(kind)
    return len(KIND_ORDER)


def apply_tier(kind: str) -> int:
    """The tier (``APPLY_TIERS``) a kind is applied in: objects of a lower tier are written first."""
    return _TIER.get(kind, OTHER_TIER)


def apply_stages(items: Iterable[T], kind: Callable[[T], str]) -> list[list[T]]:
    """``items`` grouped into apply waves, one per tier in tier order; within a wave by kind
    order, then as given (so the first requests of a wave larger than the request pool follow
    the kind order). ``kind`` names an item's kind."""
    by_tier: dict[int, list[T]] = {}
    for item in items:
        by_tier.setdefault(apply_tier(kind(item)), []).append(item)
    return [sorted(by_tier[t], key=lambda i: kind_rank(kind(i))) for t in sorted(by_tier)]


def sort_for_delete(refs: Iterable[ObjRef]) -> list[ObjRef]:
    return sorted(refs, key=lambda r: (-kind_rank(r.kind), r))


def normalise(obj: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The comparable part of an object: no status, no server-owned metadata, no empty maps.

    A new top level and ``metadata``; everything below shares the given object's values (a deep
    copy of a large CRD costs more than its whole diff). Neither is changed in place afterwards.
    """
    if obj is None:
        return None
    out = dict(obj)
    out.pop("status", None)
    meta = dict(out.get("metadata") or {})
    for key in _SERVER_METADATA:
        meta.pop(key, None)
    annotations = dict(meta.get("annotations") or {})
    # kubectl's client-side bookkeeping; not something a user changes on purpose.
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    annotations.pop("deployment.kubernetes.io/revision", None)
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    if not meta.get("labels"):
        meta.pop("labels", None)
    out["metadata"] = meta
    return out


def _join(path: str, key: str) -> str:
    if key.replace("-", "").replace("_", "").isalnum():
        return f"{path}.{key}" if path else key
    return f'{path}["{key}"]'


def diff_paths(before: Any, after: Any, path: str = "") -> list[str]:
    """Field paths (``spec.replicas``, ``data.key``, ``spec.containers[0].image``) that differ."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[str] = []
        for key in sorted(set(before) | set(after), key=str):
            if key not in before or key not in after:
                out.append(_join(path, str(key)))
            else:
                out.extend(diff_paths(before[key], after[key], _join(path, str(key))))
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        out = []
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            out.extend(diff_paths(b, a, f"{path}[{i}]"))
        return out
    return [] if before == after else [path or "."]


_UNSET = object()


def diff_values(before: Any, after: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """``(path, before, after)`` of each field that differs, paths as :func:`diff_paths` names them;
    a side that lacks the field holds :data:`UNSET`."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[tuple[str, Any, Any]] = []
        for key in sorted(set(before) | set(after), key=str):
            child = _join(path, str(key))
            if key not in before or key not in after:
                out.append((child, before.get(key, UNSET), after.get(key, UNSET)))
            else:
                out.extend(diff_values(before[key], after[key], child))
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        out = []
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            out.extend(diff_values(b, a, f"{path}[{i}]"))
        return out
    return [] if before == after else [(path or ".", before, after)]


UNSET: Any = _UNSET


def value_text(value: Any, limit: int = 60) -> str:
    """A field value as one short line: JSON, ``unset`` for a missing field, cut at ``limit``."""
    import json

    if value is UNSET:
        return "unset"
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


def project(live: Any, desired: Any) -> Any:
    """``live`` reduced to the keys ``desired`` has (recursively): server defaults drop out of a diff."""
    if isinstance(live, dict) and isinstance(desired, dict):
        return {k: project(live[k], desired[k]) for k in desired if k in live}
    if isinstance(live, list) and isinstance(desired, list) and len(live) == len(desired):
        return [project(a, b) for a, b in zip(live, desired, strict=True)]
    return live


def is_secret(obj: Mapping[str, Any] | None) -> bool:
    return bool(obj) and obj is not None and obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1"


def _secret_values_map(obj: Mapping[str, Any] | None) -> dict[str, Any]:
    """``data`` merged with base64-encoded ``stringData``, the way the server stores a Secret."""
    import base64

    if obj is None:
        return {}
    out: dict[str, Any] = dict(obj.get("data") or {})
    for k, v in (obj.get("stringData") or {}).items():
        out[k] = base64.b64encode(str(v).encode()).decode()
    return out


def mask_secret_pair(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Mask ``data``/``stringData`` of a Secret pair: ``(sensitive)`` or ``(sensitive, changed) sha256:…``.

    Values are compared as the server stores them (``stringData`` folded into ``data``), so a value
    moved from ``stringData`` to ``data`` unchanged is not reported as changed.
    """
    b_vals, a_vals = _secret_values_map(before), _secret_values_map(after)
    b = copy.deepcopy(dict(before)) if before is not None else None
    a = copy.deepcopy(dict(after)) if after is not None else None
    for key in ("data", "stringData"):
        if b is not None and isinstance(b.get(key), dict):
            b[key] = {k: SENSITIVE for k in b[key]}
        if a is not None and isinstance(a.get(key), dict):
            a[key] = {k: sensitive_marker(b_vals.get(k), a_vals.get(k)) for k in a[key]}
    return b, a


def mask_object(obj: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """An object safe to show or store: Secret values replaced by markers, the rest unchanged."""
    if obj is None:
        return None
    if is_secret(obj):
        return mask_secret_pair(None, obj)[1]
    return dict(obj)


def secret_values(obj: Mapping[str, Any]) -> Iterator[str]:
    """Every secret value of an object (raw ``data`` and ``stringData``); used to scrub error text."""
    if not is_secret(obj):
        return
    for key in ("data", "stringData"):
        for v in (obj.get(key) or {}).values():
            if isinstance(v, str) and v:
                yield v


def fields_v1_paths(fields: Mapping[str, Any], path: str = "") -> Iterator[str]:
    """Leaf paths of a managedFields ``fieldsV1`` set, in the same notation as :func:`diff_paths`.

    ``f:spec`` -> ``spec``; list items keyed ``k:{"name":"web"}`` or ``v:...`` are folded into ``[*]``
    because diff paths use indexes; a caller matches paths with :func:`path_matches`.
    """
    leaf = True
    for key, sub in fields.items():
        if key == ".":
            continue
        leaf = False
        if key.startswith("f:"):
            child = _join(path, key[2:])
        elif key.startswith(("k:", "v:", "i:")):
            child = f"{path}[*]"
        else:
            continue
        if isinstance(sub, dict) and sub:
            yield from fields_v1_paths(sub, child)
        else:
            yield child
    if leaf and path:
        yield path


def path_matches(owned: str, changed: str) -> bool:
    """True when a managedFields path covers (or is covered by) a diff path; ``[*]`` matches any index."""
    import re

    pattern = re.escape(owned).replace(re.escape("[*]"), r"\[\d+\]")
    return bool(re.fullmatch(pattern + r"(\..*|\[.*)?", changed)) or bool(
        re.fullmatch(re.escape(changed) + r"(\..*|\[.*)?", owned.replace("[*]", "[0]"))
    )


def managers_of(
    live: Mapping[str, Any], paths: Iterable[str], *, exclude: str = FIELD_MANAGER
) -> dict[str, str]:
    """For each changed path, the field manager (other than ``exclude``) that owns it, from managedFields."""
    entries = []
    for mf in (live.get("metadata") or {}).get("managedFields") or []:
        manager = str(mf.get("manager", ""))
        if manager == exclude:
            continue
        owned = list(fields_v1_paths(mf.get("fieldsV1") or {}))
        entries.append((manager, owned, str(mf.get("time", ""))))
    # The most recent writer wins when several managers share a path.
    entries.sort(key=lambda e: e[2], reverse=True)
    out: dict[str, str] = {}
    for p in paths:
        for manager, owned, _ in entries:
            if any(path_matches(o, p) for o in owned):
                out[p] = manager
                break
    return out


def owned_by_envctl(live: Mapping[str, Any] | None) -> bool:
    """Whether envctl's field manager applied (server-side) to this live object."""
    for mf in (live or {}).get("metadata", {}).get("managedFields") or []:
        if mf.get("manager") == FIELD_MANAGER and mf.get("operation") == "Apply":
            return True
    return False


class Rendered(list[dict[str, Any]]):
    """A layer's rendered objects with ``digest``: the sha256 of their canonical JSON (the
    ``envctl.core.bundle.canonical`` form of the list), made while render measured each object.

    One serialisation of a layer's objects per render: the plan's ``objects_sha256`` and the
    key its dry-runs are kept under for the apply are this digest, not a dump of their own.
    Objects are not edited after render (their hash at plan time is compared with the hash at
    apply time); a list that is not a ``Rendered`` is hashed when asked.
    """

    digest: str

    @classmethod
    def of(cls, objects: Iterable[dict[str, Any]], forms: Iterable[bytes]) -> Rendered:
        """``objects`` with the digest of ``forms``, their canonical JSON, one per object."""
        h = hashlib.sha256(b"[")
        for i, form in enumerate(forms):
            h.update(b"," + form if i else form)
        h.update(b"]")
        out = cls(objects)
        out.digest = h.hexdigest()
        return out


def objects_digest(objects: Sequence[Mapping[str, Any]]) -> str:
    """sha256 of the canonical JSON of ``objects`` (a list), computed once per render."""
    if isinstance(objects, Rendered):
        return objects.digest
    return sha256(canonical(list(objects)))
