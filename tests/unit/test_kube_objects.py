"""Pure rules of the Kubernetes engine: addresses, kind order, normalisation, diff, Secret masking."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from envctl.core.changes import Action
from envctl.core.errors import ConfigError, UnavailableError
from envctl.kube.diff import object_change
from envctl.kube.errors import ApiError, ConflictError, conflicts_of, status_error, translate
from envctl.kube.objects import (
    ADMISSION_KINDS,
    APPLY_TIERS,
    KIND_ORDER,
    LAST_KINDS,
    STAGE_ONE_KINDS,
    ObjRef,
    apply_stages,
    apply_tier,
    diff_paths,
    managers_of,
    normalise,
    sort_for_delete,
)

DEPLOY: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "web",
        "namespace": "app",
        "uid": "u",
        "resourceVersion": "7",
        "generation": 2,
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "managedFields": [{"manager": "envctl"}],
        "annotations": {"deployment.kubernetes.io/revision": "1"},
    },
    "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}},
    "status": {"replicas": 2},
}


def test_addresses_read_like_kubectl() -> None:
    assert str(ObjRef.of(DEPLOY)) == "apps/v1 Deployment app/web"
    assert str(ObjRef("v1", "Namespace", "", "app")) == "v1 Namespace app"


def waves(kinds: list[str]) -> list[list[str]]:
    return apply_stages(kinds, lambda k: k)


def test_crds_and_namespaces_first_webhooks_last_deletes_reversed() -> None:
    refs = [
        ObjRef("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "", "w"),
        ObjRef("example.com/v1", "Widget", "app", "w"),
        ObjRef("apps/v1", "Deployment", "app", "web"),
        ObjRef("v1", "ConfigMap", "app", "c"),
        ObjRef("v1", "Namespace", "", "app"),
        ObjRef("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "widgets.example.com"),
    ]
    stages = apply_stages(refs, lambda r: r.kind)
    kinds = [r.kind for stage in stages for r in stage]
    assert kinds == [
        "CustomResourceDefinition",
        "Namespace",
        "ConfigMap",
        "Deployment",
        "Widget",
        "ValidatingWebhookConfiguration",
    ]
    assert [len(s) for s in stages] == [1] * 6
    assert [r.kind for r in sort_for_delete(refs)] == list(reversed(kinds))


def test_stage_one_is_crds_alone_then_namespaces() -> None:
    # CRDs are applied one at a time (kube/apply.py::ONE_AT_A_TIME): no other kind in their wave
    assert APPLY_TIERS[:2] == (("CustomResourceDefinition",), ("Namespace",))
    assert {*APPLY_TIERS[0], *APPLY_TIERS[1]} == STAGE_ONE_KINDS


# (what must exist, what is admitted or used only once it does)
NEEDED_BEFORE = [
    ("Role", "RoleBinding"),  # the binding's escalation check resolves the role
    ("ClusterRole", "ClusterRoleBinding"),
    ("ClusterRole", "RoleBinding"),
    ("ServiceAccount", "Secret"),  # a token Secret of a missing account is deleted
    ("ServiceAccount", "Pod"),  # a Pod naming a missing account is rejected
    ("ServiceAccount", "RoleBinding"),
    ("PriorityClass", "Pod"),
    ("PriorityClass", "Deployment"),
    ("RuntimeClass", "Job"),
    ("StorageClass", "PersistentVolumeClaim"),  # the default class is set on create
    ("PersistentVolume", "PersistentVolumeClaim"),
    ("LimitRange", "PersistentVolumeClaim"),
    ("LimitRange", "Pod"),
    ("ResourceQuota", "ConfigMap"),
    ("ResourceQuota", "Service"),
    ("NetworkPolicy", "Deployment"),
    ("PodDisruptionBudget", "StatefulSet"),
    ("ConfigMap", "Deployment"),
    ("Secret", "StatefulSet"),
    ("PersistentVolumeClaim", "StatefulSet"),
    ("RoleBinding", "Deployment"),
    ("Service", "Deployment"),  # environment variables of the Services that exist
    ("Service", "Ingress"),
    ("IngressClass", "Ingress"),
    ("Deployment", "Widget"),  # custom resources after every built-in they may reference
    ("Service", "Widget"),
    ("Widget", "ValidatingWebhookConfiguration"),  # webhooks never intercept the layer's own objects
    ("Widget", "MutatingWebhookConfiguration"),
    ("Ingress", "APIService"),
    ("Deployment", "ValidatingAdmissionPolicyBinding"),
]


@pytest.mark.parametrize(("first", "then"), NEEDED_BEFORE)
def test_what_an_object_needs_is_applied_in_an_earlier_wave(first: str, then: str) -> None:
    assert apply_tier(first) < apply_tier(then)
    assert waves([then, first]) == [[first], [then]]


def test_kinds_that_need_none_of_each_other_share_a_wave() -> None:
    kinds = [
        "ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration", "ServiceAccount", "Role", "RoleBinding", "ConfigMap",
        "Secret", "Service", "Deployment", "StatefulSet", "NetworkPolicy", "PodDisruptionBudget",
        "HorizontalPodAutoscaler", "CronJob", "Ingress", "Widget0",
    ]  # fmt: skip
    # bench B8's install bundle: 18 kinds after its Namespace, once 18 waves, now 5
    assert waves(kinds) == [
        ["NetworkPolicy", "PodDisruptionBudget", "ServiceAccount", "ClusterRole", "Role"],
        ["Secret", "ConfigMap", "ClusterRoleBinding", "RoleBinding", "Service"],
        ["Deployment", "HorizontalPodAutoscaler", "StatefulSet", "CronJob", "Ingress"],
        ["Widget0"],
        ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"],
    ]


def test_unknown_kinds_go_after_every_built_in_kind_and_before_admission_kinds() -> None:
    named = [k for tier in APPLY_TIERS for k in tier]
    # custom resources, a custom kind named *Class (unlike flux), built-ins with no role here
    for kind in ("Widget", "GatewayClass", "Certificate", "Endpoints", "Lease", ""):
        assert all(apply_tier(k) < apply_tier(kind) for k in named), kind
        assert all(apply_tier(kind) < apply_tier(k) for k in ADMISSION_KINDS), kind
        assert apply_tier(kind) == apply_tier("Widget")
    assert len({apply_tier(k) for k in ADMISSION_KINDS}) == 1


def test_every_kind_of_the_kind_order_has_a_named_tier() -> None:
    named = {k for tier in APPLY_TIERS for k in tier} | set(ADMISSION_KINDS)
    assert set(KIND_ORDER) | set(LAST_KINDS) <= named
    assert sum(len(t) for t in APPLY_TIERS) + len(ADMISSION_KINDS) == len(named)  # each kind once


def test_a_wave_lists_its_objects_by_kind_order_then_as_given() -> None:
    objs = [("Role", "r1"), ("ServiceAccount", "a"), ("Role", "r0"), ("ServiceAccount", "b")]
    assert apply_stages(objs, lambda o: o[0]) == [
        [("ServiceAccount", "a"), ("ServiceAccount", "b"), ("Role", "r1"), ("Role", "r0")]
    ]


def test_deletes_keep_the_reverse_kind_order_one_kind_at_a_time() -> None:
    kinds = [*KIND_ORDER, "Widget", *LAST_KINDS]
    refs = [ObjRef("v1", k, "", "x") for k in kinds]
    assert [r.kind for r in sort_for_delete(refs)] == list(reversed(kinds))


def test_normalise_drops_server_fields_and_status() -> None:
    n = normalise(DEPLOY)
    assert n is not None
    assert "status" not in n
    assert set(n["metadata"]) == {"name", "namespace"}


def test_unchanged_object_is_a_no_op_even_when_server_metadata_moved() -> None:
    after = copy.deepcopy(DEPLOY)
    after["metadata"]["resourceVersion"] = "8"
    after["metadata"]["generation"] = 3
    after["status"] = {"replicas": 0}
    change = object_change(ObjRef.of(DEPLOY), DEPLOY, after)
    assert change.action is Action.NOOP


def test_changed_field_paths_are_listed() -> None:
    after = copy.deepcopy(DEPLOY)
    after["spec"]["replicas"] = 3
    after["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    after["metadata"]["labels"] = {"a": "b"}
    change = object_change(ObjRef.of(DEPLOY), DEPLOY, after)
    assert change.action is Action.UPDATE
    assert change.fields == (
        "metadata.labels",
        "spec.replicas",
        "spec.template.spec.containers[0].image",
    )
    assert object_change(ObjRef.of(DEPLOY), None, after).action is Action.CREATE


def test_diff_paths_quote_keys_with_dots() -> None:
    assert diff_paths({"a": {"x.y/z": 1}}, {"a": {"x.y/z": 2}}) == ['a["x.y/z"]']


def _secret(**data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "app"}, "data": data}


def test_secret_values_never_appear_in_a_change() -> None:
    before, after = (
        _secret(password="aHVudGVyMg==", user="YWRtaW4="),
        _secret(password="c3dvcmRmaXNo", user="YWRtaW4="),
    )
    change = object_change(ObjRef.of(before), before, after)
    text = json.dumps(change.to_json())
    for value in ("aHVudGVyMg==", "c3dvcmRmaXNo", "YWRtaW4=", "hunter2", "swordfish", "admin"):
        assert value not in text
    assert change.action is Action.UPDATE
    assert change.fields == ("data.password",)
    assert change.after["data"]["password"].startswith("(sensitive, changed) sha256:")
    assert change.after["data"]["user"] == "(sensitive)"
    assert change.before["data"]["password"] == "(sensitive)"
    created = object_change(ObjRef.of(after), None, after)
    assert "c3dvcmRmaXNo" not in json.dumps(created.to_json())


def test_the_manager_of_a_changed_field_comes_from_managed_fields() -> None:
    live = copy.deepcopy(DEPLOY)
    live["metadata"]["managedFields"] = [
        {
            "manager": "envctl",
            "operation": "Apply",
            "time": "2026-01-01T00:00:00Z",
            "fieldsV1": {"f:spec": {"f:template": {}}},
        },
        {
            "manager": "kubectl-edit",
            "operation": "Update",
            "time": "2026-01-02T00:00:00Z",
            "fieldsV1": {"f:spec": {"f:replicas": {}}},
        },
        {
            "manager": "other",
            "operation": "Apply",
            "time": "2026-01-03T00:00:00Z",
            "fieldsV1": {
                "f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"web"}': {"f:image": {}}}}}}
            },
        },
    ]
    owners = managers_of(live, ["spec.replicas", "spec.template.spec.containers[0].image", "metadata.labels"])
    assert owners == {"spec.replicas": "kubectl-edit", "spec.template.spec.containers[0].image": "other"}


def test_api_errors_translate_by_status_and_name_the_object() -> None:
    ref = ObjRef.of(DEPLOY)
    conflict = ApiError(
        409,
        "Conflict",
        "Apply failed with 1 conflict",
        [
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "other" using apps/v1',
                "field": ".spec.replicas",
            }
        ],
    )
    assert [(c.path, c.manager) for c in conflicts_of(conflict)] == [("spec.replicas", "other")]
    err = translate(conflict, ref, node="layer.app")
    assert isinstance(err, ConflictError)
    assert "spec.replicas" in str(err) and "other" in str(err) and "apps/v1 Deployment app/web" in str(err)
    invalid = translate(ApiError(422, "Invalid", "spec.replicas: Invalid value: -1", []), ref)
    assert isinstance(invalid, ConfigError) and "apps/v1 Deployment app/web" in str(invalid)
    assert isinstance(translate(ApiError(0, "Unavailable", "connection refused"), ref), UnavailableError)
    scrubbed = translate(ApiError(422, "Invalid", "bad value hunter2"), ref, secrets=["hunter2"])
    assert "hunter2" not in str(scrubbed)


def test_a_missing_namespace_is_read_from_the_status_details_not_the_message() -> None:
    body = (
        b'{"kind":"Status","status":"Failure","message":"the server could not find it",'
        b'"reason":"NotFound","details":{"name":"app","kind":"namespaces"},"code":404}'
    )
    err = status_error(404, "Not Found", body)
    assert err.missing_namespace == "app"
    assert "create the namespace" in (translate(err, ObjRef.of(DEPLOY)).hint or "")
    # the words alone decide nothing: a 404 about another kind names no missing namespace
    other = status_error(
        404, "Not Found", b'{"message":"namespaces \\"app\\" not found","details":{"kind":"pods"}}'
    )
    assert other.missing_namespace is None
    assert "create the namespace" not in (translate(other, ObjRef.of(DEPLOY)).hint or "")


def test_importing_the_engine_does_not_import_the_kubernetes_client() -> None:
    import subprocess
    import sys

    code = "import sys, envctl.kube; print('kubernetes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_replacement_lists_only_fields_git_sets() -> None:
    live = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j", "namespace": "a"},
        "spec": {
            "backoffLimit": 6,
            "template": {"spec": {"containers": [{"name": "m", "image": "b:1", "x": 1}]}},
        },
    }
    desired = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j", "namespace": "a"},
        "spec": {"template": {"spec": {"containers": [{"name": "m", "image": "b:2"}]}}},
    }
    change = object_change(ObjRef.of(live), live, desired, replace=True)
    assert change.action is Action.REPLACE
    assert change.fields == ("spec.template.spec.containers[0].image",)
