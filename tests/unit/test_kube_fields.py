"""``unchanged_by_apply``: when a server-side apply provably changes nothing, from managedFields alone.

The live objects below are what kube-apiserver 1.37 answers after envctl applied the desired
object (managedFields copied from real answers). Every case that must be dry-run is a False.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from envctl.core.changes import Action, Change
from envctl.kube.diff import object_change
from envctl.kube.fields import apply_entry, equal, unchanged_by_apply
from envctl.kube.objects import ObjRef

M = "envctl"
LABELS = {"envctl.io/environment": "dev", "envctl.io/layer": "app"}
F_LABELS = {"f:labels": {".": {}, "f:envctl.io/environment": {}, "f:envctl.io/layer": {}}}


def entry(fields: dict[str, Any], manager: str = M, api_version: str = "v1", **kw: Any) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": "Apply",
        "apiVersion": api_version,
        "time": "2026-11-28T19:30:15Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
        **kw,
    }


def cm_pair() -> tuple[dict[str, Any], dict[str, Any]]:
    desired = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "a", "namespace": "ns", "labels": dict(LABELS)},
        "data": {"k": "v", "n": "1"},
    }
    live = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "a",
            "namespace": "ns",
            "uid": "u",
            "resourceVersion": "289",
            "labels": dict(LABELS),
            "managedFields": [entry({"f:data": {".": {}, "f:k": {}, "f:n": {}}, "f:metadata": F_LABELS})],
        },
        "data": {"k": "v", "n": "1"},
    }
    return desired, live


def svc_pair() -> tuple[dict[str, Any], dict[str, Any]]:
    desired = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s", "namespace": "ns"},
        "spec": {"selector": {"a": "b"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    fields = {
        "f:spec": {
            "f:ports": {'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:port": {}, "f:targetPort": {}}},
            "f:selector": {},
        }
    }
    live = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s", "namespace": "ns", "managedFields": [entry(fields)]},
        "spec": {
            "ports": [{"protocol": "TCP", "port": 80, "targetPort": 8080}],
            "selector": {"a": "b"},
            "clusterIP": "10.0.0.209",
            "type": "ClusterIP",
            "sessionAffinity": "None",
        },
        "status": {"loadBalancer": {}},
    }
    return desired, live


def deploy_pair() -> tuple[dict[str, Any], dict[str, Any]]:
    desired = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "ns"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "d"}},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {"containers": [{"name": "app", "image": "img:1", "args": ["--a", "--b"]}]},
            },
        },
    }
    fields = {
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {
                    "f:containers": {'k:{"name":"app"}': {".": {}, "f:args": {}, "f:image": {}, "f:name": {}}}
                },
            },
        }
    }
    live = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "d",
            "namespace": "ns",
            "generation": 1,
            "managedFields": [
                entry(fields, api_version="apps/v1"),
                entry({"f:status": {"f:replicas": {}}}, manager="controller", operation="Update"),
            ],
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "d"}},
            "strategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "img:1",
                            "args": ["--a", "--b"],
                            "imagePullPolicy": "IfNotPresent",
                            "terminationMessagePath": "/dev/termination-log",
                        }
                    ],
                    "restartPolicy": "Always",
                },
            },
        },
        "status": {"observedGeneration": 1},
    }
    return desired, live


@pytest.mark.parametrize("pair", [cm_pair, svc_pair, deploy_pair])
def test_an_object_as_applied_is_proved_unchanged(pair: Any) -> None:
    desired, live = pair()
    assert unchanged_by_apply(desired, live, M)


def test_no_live_object_or_no_apply_entry_of_the_manager_is_never_unchanged() -> None:
    desired, live = cm_pair()
    assert not unchanged_by_apply(desired, None, M)
    assert not unchanged_by_apply(desired, live, "someone-else")
    live["metadata"]["managedFields"][0]["operation"] = "Update"  # adopted, never applied by envctl
    assert not unchanged_by_apply(desired, live, M)


def test_a_value_changed_by_another_manager_is_not_unchanged() -> None:
    desired, live = cm_pair()
    live["data"]["k"] = "tampered"
    assert not unchanged_by_apply(desired, live, M)


def test_a_field_envctl_owns_but_git_dropped_is_not_unchanged() -> None:
    desired, live = cm_pair()
    del desired["data"]["n"]  # the apply would remove data.n
    assert not unchanged_by_apply(desired, live, M)


def test_a_field_git_added_is_not_unchanged_even_with_the_same_live_value() -> None:
    desired, live = cm_pair()
    live["data"]["extra"] = "x"  # someone else's key
    assert unchanged_by_apply(desired, live, M)  # not ours: untouched by the apply
    desired["data"]["extra"] = "x"  # now ours too: the apply claims it (shared ownership)
    assert not unchanged_by_apply(desired, live, M)


def test_ownership_taken_by_another_manager_is_not_unchanged() -> None:
    desired, live = cm_pair()
    del live["metadata"]["managedFields"][0]["fieldsV1"]["f:data"]["f:k"]
    assert not unchanged_by_apply(desired, live, M)


def test_values_of_another_json_type_are_not_equal() -> None:
    desired, live = cm_pair()
    desired["data"]["n"] = 1
    assert not unchanged_by_apply(desired, live, M)
    assert not equal(True, 1) and not equal(1, 1.0) and equal({"a": [1]}, {"a": [1]})


def test_an_atomic_map_or_list_must_equal_the_live_value_as_a_whole() -> None:
    desired, live = svc_pair()
    live["spec"]["selector"]["extra"] = "x"  # atomic map: the apply would drop the extra key
    assert not unchanged_by_apply(desired, live, M)
    desired, live = deploy_pair()
    live["spec"]["template"]["spec"]["containers"][0]["args"].append("--c")
    assert not unchanged_by_apply(desired, live, M)


def test_list_items_added_removed_or_reordered_are_not_unchanged() -> None:
    desired, live = svc_pair()
    live["spec"]["ports"].append({"protocol": "TCP", "port": 81, "targetPort": 81})
    assert not unchanged_by_apply(desired, live, M)
    desired, live = svc_pair()
    desired["spec"]["ports"].append({"port": 81})
    assert not unchanged_by_apply(desired, live, M)
    desired, live = svc_pair()
    desired["spec"]["ports"][0]["port"] = 81  # the keyed item no longer matches
    assert not unchanged_by_apply(desired, live, M)


def test_an_item_whose_defaulted_key_changed_is_not_unchanged() -> None:
    desired, live = svc_pair()
    live["spec"]["ports"][0]["protocol"] = "UDP"  # the item envctl owns (port 80 TCP) is gone
    assert not unchanged_by_apply(desired, live, M)


def test_another_api_version_identity_or_status_in_git_is_not_unchanged() -> None:
    desired, live = deploy_pair()
    live["metadata"]["managedFields"][0]["apiVersion"] = "apps/v1beta2"
    assert not unchanged_by_apply(desired, live, M)
    desired, live = cm_pair()
    desired["metadata"]["namespace"] = "other"
    assert not unchanged_by_apply(desired, live, M)
    desired, live = cm_pair()
    desired["status"] = {}
    assert not unchanged_by_apply(desired, live, M)


def test_two_apply_entries_or_malformed_fields_are_not_read() -> None:
    desired, live = cm_pair()
    live2 = copy.deepcopy(live)
    live2["metadata"]["managedFields"].append(copy.deepcopy(live2["metadata"]["managedFields"][0]))
    assert apply_entry(live2, M) is None and not unchanged_by_apply(desired, live2, M)
    live["metadata"]["managedFields"][0]["fieldsV1"]["f:data"]["f:k"] = "x"
    assert not unchanged_by_apply(desired, live, M)


def test_a_status_subresource_entry_of_the_manager_is_ignored() -> None:
    desired, live = cm_pair()
    live["metadata"]["managedFields"].append(entry({"f:status": {}}, subresource="status"))
    assert unchanged_by_apply(desired, live, M)


def test_the_change_of_an_object_proved_unchanged_is_what_its_diff_would_say() -> None:
    for pair in (cm_pair, svc_pair, deploy_pair):
        _, live = pair()
        ref = ObjRef.of(live)
        assert object_change(ref, live, live) == Change(str(ref), Action.NOOP, None, None)


def env_pair(group_version: str, live_ref: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    env = [{"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]
    desired = {
        "apiVersion": group_version,
        "kind": "Deployment",
        "metadata": {"name": "a", "namespace": "ns"},
        "spec": {"env": env},
    }
    fields = {
        "f:spec": {"f:env": {'k:{"name":"NS"}': {".": {}, "f:name": {}, "f:valueFrom": {"f:fieldRef": {}}}}}
    }
    live = copy.deepcopy(desired)
    live["metadata"]["managedFields"] = [entry(fields, api_version=group_version)]
    live["spec"]["env"][0]["valueFrom"]["fieldRef"] = live_ref
    return desired, live


def test_an_atomic_value_differing_only_by_a_known_server_default_is_unchanged() -> None:
    desired, live = env_pair("apps/v1", {"apiVersion": "v1", "fieldPath": "metadata.namespace"})
    assert unchanged_by_apply(desired, live, M)
    # another value than the default: applying would remove it
    desired, live = env_pair("apps/v1", {"apiVersion": "v2", "fieldPath": "metadata.namespace"})
    assert not unchanged_by_apply(desired, live, M)
    # a custom resource gets no defaults: the extra key was applied once and is dropped now
    desired, live = env_pair("example.com/v1", {"apiVersion": "v1", "fieldPath": "metadata.namespace"})
    assert not unchanged_by_apply(desired, live, M)


def test_webhook_rules_with_the_defaulted_scope_and_an_empty_map_are_unchanged() -> None:
    rule = {"apiGroups": ["x"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["y"]}
    desired = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "a"},
        "webhooks": [{"name": "w.example.com", "rules": [rule]}],
        "extra": {},
    }
    fields = {
        "f:extra": {},
        "f:webhooks": {'k:{"name":"w.example.com"}': {".": {}, "f:name": {}, "f:rules": {}}},
    }
    live = copy.deepcopy(desired)
    del live["extra"]  # an empty map is stored as absent
    live["metadata"]["managedFields"] = [entry(fields, api_version=desired["apiVersion"])]
    live["webhooks"][0]["rules"][0]["scope"] = "*"
    assert unchanged_by_apply(desired, live, M)
    live["webhooks"][0]["rules"][0]["scope"] = "Namespaced"
    assert not unchanged_by_apply(desired, live, M)
