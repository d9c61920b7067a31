"""A large object that does not exist yet is validated by a dry-run create, and that refuses all
that the apply creating it would refuse - against the real API server.

``envctl.kube.diff`` validates a large new object (a CRD's schema) with a dry-run POST instead of
a dry-run server-side apply: the API server spends far less on it (no field-management pass over
the applied configuration). Server-side apply refuses some objects a create lets through - the
same key twice in an associative list, an item without its key, ``metadata.managedFields`` or
``metadata.uid`` in the body - so only the kinds whose associative lists envctl checks itself take
that path, and only without those hazards. These tests hold the server to it: its OpenAPI names
no other associative list for those kinds, each hazard in a large object is refused before
anything of the layer is written, and the guarantee of a layer (one bad object: nothing written)
holds.
"""

from __future__ import annotations

import copy
import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from envctl.core.changes import Action
from envctl.core.errors import EnvctlError
from envctl.core.model import Environment, KubernetesSettings, LayerSpec, Node
from envctl.kube import KubeContext, apply_layer, plan_layer, render_layer
from envctl.kube.diff import (
    ASSOCIATIVE_LISTS,
    BRIEF_ABOVE,
    CRD_ASSOCIATIVE_LISTS,
    CREATE_VALIDATED,
    SCHEMA_RULES,
    validated_by_create,
)
from envctl.kube.objects import ObjRef
from envctl.repo.snapshot import WorkTreeSnapshot

pytestmark = pytest.mark.integration


class Counted(KubeContext):
    """A KubeContext that counts dry-runs by verb: ``create`` (POST) and ``apply`` (PATCH)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        object.__setattr__(self, "counts", Counter())
        object.__setattr__(self, "_count_lock", threading.Lock())

    def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        if (kw.get("query") or {}).get("dryRun"):
            with self._count_lock:  # type: ignore[attr-defined]
                self.counts[{"POST": "create", "PATCH": "apply"}.get(method, method)] += 1  # type: ignore[attr-defined]
        return super().request(method, path, **kw)


def big_crd(group: str, kind: str = "Gadget") -> dict[str, Any]:
    """A CRD whose schema makes it larger than BRIEF_ABOVE (a real operator's CRD is 400-800 KB)."""
    props = {
        f"field{i}": {"type": "string", "description": f"field {i} of the gadget, " + "words " * 30}
        for i in range(600)
    }
    plural = kind.lower() + "s"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": kind + "List"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "nested": {"type": "object", "properties": props},
                                        "items": {
                                            "type": "array",
                                            "x-kubernetes-list-type": "map",
                                            "x-kubernetes-list-map-keys": ["name"],
                                            "items": {
                                                "type": "object",
                                                "required": ["name"],
                                                "properties": {"name": {"type": "string"}},
                                            },
                                        },
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


BLOB = "x" * (BRIEF_ABOVE + 1000)


def big_configmap(name: str = "big") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"blob": BLOB}}


def big_deployment() -> dict[str, Any]:
    labels = {"app": "big"}
    container = {"name": "app", "image": "registry.invalid/app:1", "env": [{"name": "A", "value": "1"}]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "big", "annotations": {"blob": BLOB}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


OWNER = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "name": "owner",
    "uid": "0b7c1f0e-0000-4000-8000-000000000001",
}
CONDITION = {
    "type": "Established",
    "status": "True",
    "reason": "InitialNamesAccepted",
    "message": "the initial names have been accepted",
    "lastTransitionTime": "2026-01-01T00:00:00Z",
}


def _crd_with_rules(group: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    crd = big_crd(group)
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["nested"][SCHEMA_RULES] = rules
    return crd


# (name, the bad large object, whether a dry-run create alone would let it through)
def hazards(group: str) -> list[tuple[str, dict[str, Any], bool]]:
    crd = big_crd(group)
    out: list[tuple[str, dict[str, Any], bool]] = []
    c = copy.deepcopy(crd)
    c["metadata"]["finalizers"] = ["example.com/keep", "example.com/keep"]
    out.append(("crd-finalizer-twice", c, True))
    c = copy.deepcopy(crd)
    c["status"] = {"conditions": [CONDITION, {**CONDITION, "message": "again"}]}
    out.append(("crd-condition-twice", c, True))
    c = copy.deepcopy(crd)
    c["metadata"]["managedFields"] = [
        {"manager": "someone", "operation": "Apply", "apiVersion": "apiextensions.k8s.io/v1",
         "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}
    ]  # fmt: skip
    out.append(("crd-managed-fields", c, True))
    c = copy.deepcopy(crd)
    c["metadata"]["uid"] = OWNER["uid"]  # an apply takes it as a precondition: 409 uid mismatch
    out.append(("crd-uid", c, True))
    out.append(("crd-rule-twice", _crd_with_rules(group, [{"rule": "true"}, {"rule": "true"}]), False))
    out.append(("crd-rule-without-rule", _crd_with_rules(group, [{"message": "no rule"}]), False))
    c = copy.deepcopy(crd)
    c["spec"]["unknownField"] = True
    out.append(("crd-unknown-field", c, False))
    cm = big_configmap()
    cm["metadata"]["ownerReferences"] = [OWNER, {**OWNER, "name": "owner-again"}]
    out.append(("configmap-owner-twice", cm, True))
    cm = big_configmap()
    cm["metadata"]["uid"] = OWNER["uid"]  # a create replaces it; an apply takes it as a precondition
    out.append(("configmap-uid", cm, True))
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "big"}, "data": {}}
    secret["metadata"]["finalizers"] = ["example.com/keep", "example.com/keep"]
    secret["metadata"]["annotations"] = {"blob": BLOB}
    out.append(("secret-finalizer-twice", secret, True))
    dep = big_deployment()
    dep["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "A", "value": "2"})
    out.append(("deployment-env-twice", dep, True))
    return out


HAZARDS = [name for name, _, _ in hazards("example.com")]


class Layer:
    def __init__(self, root: Path, kubeconfig: str, name: str) -> None:
        self.root, self.ns = root, name
        self.path = f"environments/{name}/layers/big"
        settings = KubernetesSettings(kubeconfig=kubeconfig)
        self.env = Environment(name=name, path=f"environments/{name}", kubernetes=settings)
        self.ctx = Counted(env_name=name, kubeconfig=kubeconfig)
        self.node = Node(
            id="layer.big",
            kind="layer",
            name="big",
            path=self.path,
            inputs={},
            layer=LayerSpec(namespace=name, wait=True),
        )

    def objects(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        d = self.root / self.path
        d.mkdir(parents=True, exist_ok=True)
        (d / "objects.yaml").write_text("".join("---\n" + json.dumps(o) + "\n" for o in docs))
        return render_layer(self.env, WorkTreeSnapshot(self.root), self.node, {})


@pytest.fixture
def layer(tmp_path: Path, kubeconfig: str, namespace: str, api_client: client.ApiClient) -> Iterator[Layer]:
    yield Layer(tmp_path, kubeconfig, namespace)
    client.CoreV1Api(api_client).delete_collection_namespaced_config_map(
        "envctl-system", label_selector=f"envctl.io/environment={namespace}"
    )


SCHEMA_PROPS = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"


def _associative(schemas: dict[str, Any], name: str, path: tuple[str, ...], out: dict[Any, Any]) -> None:
    """Every associative list (``x-kubernetes-list-type`` map or set) reachable from schema ``name``,
    by field path; a nested JSONSchemaProps (a CRD's schema, recursive) is marked, not walked."""
    for prop, sub in (schemas[name].get("properties") or {}).items():
        here = (*path, prop)
        if sub.get("x-kubernetes-list-type") in ("map", "set"):
            out[here] = tuple(sub.get("x-kubernetes-list-map-keys") or ())
        for ref in _refs(sub):
            if ref == SCHEMA_PROPS:
                out[(*here, "<JSONSchemaProps>")] = "schema"
            else:
                _associative(schemas, ref, here, out)


def _refs(schema: Any) -> list[str]:
    if isinstance(schema, dict):
        if "$ref" in schema:
            return [str(schema["$ref"]).rsplit("/", 1)[-1]]
        return [r for v in schema.values() for r in _refs(v)]
    if isinstance(schema, list):
        return [r for v in schema for r in _refs(v)]
    return []


def test_the_kinds_validated_by_a_create_have_only_the_associative_lists_envctl_checks(
    kubeconfig: str,
) -> None:
    """If a later API server gives ConfigMap, Secret or CustomResourceDefinition another
    associative list, this fails: envctl would have to check it before choosing a create."""
    ctx = KubeContext(env_name="openapi", kubeconfig=kubeconfig)
    docs = {
        "": ctx.request("GET", "/openapi/v3/api/v1"),
        "apiextensions.k8s.io": ctx.request("GET", "/openapi/v3/apis/apiextensions.k8s.io/v1"),
    }
    assert {g for g, _ in CREATE_VALIDATED} == set(docs)
    schema_at = ("spec", "versions", "schema", "openAPIV3Schema", "<JSONSchemaProps>")
    expected: dict[str, dict[Any, Any]] = {
        "ConfigMap": dict(ASSOCIATIVE_LISTS),
        "Secret": dict(ASSOCIATIVE_LISTS),
        "CustomResourceDefinition": {**ASSOCIATIVE_LISTS, **CRD_ASSOCIATIVE_LISTS, schema_at: "schema"},
    }
    for group, kind in CREATE_VALIDATED:
        schemas = docs[group]["components"]["schemas"]
        name = next(
            n for n, s in schemas.items()
            if {"group": group, "version": "v1", "kind": kind}
            in (s.get("x-kubernetes-group-version-kind") or [])
        )  # fmt: skip
        found: dict[Any, Any] = {}
        _associative(schemas, name, (), found)
        assert found == expected[kind], (kind, found)
    # JSONSchemaProps (a CRD's schema, at any depth): its only associative list is the rules
    found = {}
    _associative(docs["apiextensions.k8s.io"]["components"]["schemas"], SCHEMA_PROPS, (), found)
    assert {p: k for p, k in found.items() if k != "schema"} == {(SCHEMA_RULES,): ("rule",)}


@pytest.mark.parametrize("hazard", HAZARDS)
def test_a_large_new_object_an_apply_would_refuse_is_refused_before_anything_is_written(
    layer: Layer, api_client: client.ApiClient, hazard: str
) -> None:
    group = f"{layer.ns}.create.envctl.test"[:60]
    _, bad, create_accepts = next(h for h in hazards(group) if h[0] == hazard)
    first = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "first"}, "data": {"a": "1"}}
    objects = layer.objects([first, bad])
    rendered = next(o for o in objects if o["metadata"]["name"] != "first")
    assert len(json.dumps(rendered)) > BRIEF_ABOVE
    if create_accepts:  # the hole this guards: a dry-run create alone would let it through
        assert not validated_by_create(rendered)
        ref, mapping = layer.ctx.resolve(ObjRef.of(rendered)) or (None, None)
        assert ref is not None and mapping is not None
        body = {**rendered, "metadata": {**rendered["metadata"], "namespace": ref.namespace}}
        layer.ctx.validate_create(body if mapping.namespaced else rendered, mapping)
    with pytest.raises(EnvctlError) as planned:
        plan_layer(layer.ctx, layer.node, objects)
    with pytest.raises(EnvctlError) as applied:
        apply_layer(layer.ctx, layer.node, objects)
    for err in (planned.value, applied.value):
        assert str(ObjRef.of(rendered).name) in str(err), err
    core = client.CoreV1Api(api_client)
    assert [
        c.metadata.name
        for c in core.list_namespaced_config_map(layer.ns).items
        if c.metadata.name != "kube-root-ca.crt"
    ] == []
    assert (
        core.list_namespaced_config_map(
            "envctl-system", label_selector=f"envctl.io/environment={layer.ns}"
        ).items
        == []
    )
    with pytest.raises(ApiException) as gone:
        client.ApiextensionsV1Api(api_client).read_custom_resource_definition(f"gadgets.{group}")
    assert gone.value.status == 404


def test_large_new_objects_are_validated_by_a_create_then_applied_and_established(
    layer: Layer, api_client: client.ApiClient
) -> None:
    group = f"{layer.ns}.create.envctl.test"[:60]
    crd = _crd_with_rules(group, [{"rule": "true", "message": "always"}])  # each rule once: no hazard
    objects = layer.objects([big_configmap(), crd])
    try:
        plan = plan_layer(layer.ctx, layer.node, objects)
        assert {c.action for c in plan.changes} == {Action.CREATE}
        assert layer.ctx.counts == {"create": 2}, layer.ctx.counts  # type: ignore[attr-defined]
        done = apply_layer(layer.ctx, layer.node, objects, reuse_plan=True)
        assert done.counts.add == 2
        assert layer.ctx.counts == {"create": 2}, layer.ctx.counts  # type: ignore[attr-defined]
        live = client.ApiextensionsV1Api(api_client).read_custom_resource_definition(f"gadgets.{group}")
        assert any(c.type == "Established" and c.status == "True" for c in live.status.conditions)
        assert client.CoreV1Api(api_client).read_namespaced_config_map("big", layer.ns).data["blob"] == BLOB
    finally:
        try:
            client.ApiextensionsV1Api(api_client).delete_custom_resource_definition(f"gadgets.{group}")
        except ApiException as e:
            if e.status != 404:
                raise


def test_a_large_object_that_exists_after_all_is_dry_run_as_an_apply_and_adopted(
    layer: Layer, api_client: client.ApiClient
) -> None:
    """The LISTs do not show an object without the layer's labels: the create answers 409
    AlreadyExists, and the apply's dry-run takes over, showing the diff of the adoption."""
    client.CoreV1Api(api_client).create_namespaced_config_map(
        layer.ns, {"metadata": {"name": "big"}, "data": {"blob": BLOB, "v": "live"}}
    )
    cm = big_configmap()
    cm["data"]["v"] = "git"
    plan = plan_layer(layer.ctx, layer.node, layer.objects([cm]))
    (change,) = plan.changes
    assert change.action is Action.UPDATE and "data.v" in change.fields, change
    assert change.before is not None and change.before["data"]["v"] == "live"
    assert layer.ctx.counts["create"] == 1 and layer.ctx.counts["apply"] >= 1, layer.ctx.counts  # type: ignore[attr-defined]
