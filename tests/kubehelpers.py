"""Helpers for tests that talk to the real control plane (scripts/control-plane).

The plane runs every workload controller, kube-scheduler and KWOK's simulated nodes: a
Deployment's or Job's status comes from its real controller. To keep a workload unready or
make it fail, use a constraint no node meets (a nodeSelector) or KWOK's stages (pod label
``stage.envctl.test/pod: unready|fail``, see scripts/kwok-stages.yaml) — never hand-written
status. ``set_status`` is for custom resources that have no controller on the plane, where
the test stands in for the operator.

Imports only the official ``kubernetes`` client; used by tests/integration and tests/e2e.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.resource import Resource

T = TypeVar("T")
FIELD_MANAGER = "envctl-test"

_dynamic_clients: weakref.WeakKeyDictionary[ApiClient, DynamicClient] = weakref.WeakKeyDictionary()


def dynamic(api_client: ApiClient) -> DynamicClient:
    """The dynamic client over ``api_client``, built once (its discovery cache is per client)."""
    client = _dynamic_clients.get(api_client)
    if client is None:
        client = _dynamic_clients[api_client] = DynamicClient(api_client)
    return client


def as_dict(api_client: ApiClient, obj: Any) -> dict[str, Any]:
    """A manifest dict from a dict, a typed model (V1Deployment, ...) or a dynamic ResourceInstance."""
    if isinstance(obj, Mapping):
        return dict(obj)
    if hasattr(obj, "to_dict") and hasattr(obj, "attributes"):  # dynamic ResourceInstance
        return dict(obj.to_dict())
    return dict(api_client.sanitize_for_serialization(obj))


def resource_for(api_client: ApiClient, obj: Mapping[str, Any]) -> Resource:
    """The API resource serving ``obj``, by its apiVersion and kind (discovery; refreshed on a miss)."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not api_version or not kind:
        raise ValueError(f"object needs apiVersion and kind to be found: {obj.get('metadata')}")
    return dynamic(api_client).resources.get(api_version=api_version, kind=kind)


def apply(
    api_client: ApiClient,
    manifest: Mapping[str, Any],
    *,
    field_manager: str = FIELD_MANAGER,
    dry_run: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Server-side apply ``manifest`` and return the object the server answers with."""
    body = dict(manifest)
    md = body["metadata"]
    result = resource_for(api_client, body).server_side_apply(
        body=body,
        name=md["name"],
        namespace=md.get("namespace"),
        field_manager=field_manager,
        force_conflicts=force or None,
        dry_run="All" if dry_run else None,
    )
    return dict(result.to_dict())


def get(api_client: ApiClient, obj: Any) -> dict[str, Any] | None:
    """The live object, or None when it does not exist."""
    body = as_dict(api_client, obj)
    md = body["metadata"]
    try:
        live = resource_for(api_client, body).get(name=md["name"], namespace=md.get("namespace"))
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    return dict(live.to_dict())


def set_status(api_client: ApiClient, obj: Any, status: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``status`` through the status subresource (JSON merge patch): a custom resource's operator.

    Only for kinds no controller on the plane owns; a workload's status belongs to its controller.

    ``obj`` names the object: a dict, a typed model or a dynamic ResourceInstance carrying
    apiVersion, kind, metadata.name and, if namespaced, metadata.namespace. Lists in
    ``status`` (conditions) replace the live ones. Returns the updated object.

        set_status(api, widget, {"conditions": [{"type": "Ready", "status": "True"}]})
    """
    body = as_dict(api_client, obj)
    md = body["metadata"]
    resource = resource_for(api_client, body)
    if "status" not in resource.subresources:
        raise ValueError(f"{body['apiVersion']} {body['kind']} has no status subresource")
    updated = resource.subresources["status"].patch(
        body={"status": dict(status)},
        name=md["name"],
        namespace=md.get("namespace"),
        content_type="application/merge-patch+json",
    )
    return dict(updated.to_dict())


def wait_for(check: Callable[[], T], *, timeout: float = 60.0, interval: float = 0.2, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or check}")
        time.sleep(interval)
