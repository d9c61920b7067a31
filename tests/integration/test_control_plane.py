"""The real control plane does what envctl's Kubernetes half relies on.

Server-side apply with a field manager, dry runs, CRDs, namespace deletion and garbage
collection, workload controllers with kube-scheduler and KWOK's simulated nodes (Deployments
roll out, Jobs complete or fail), kubectl access, reuse and restart of the plane by `up`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubehelpers import FIELD_MANAGER, apply, get, set_status, wait_for
from kubernetes import client
from kubernetes.dynamic.exceptions import ResourceNotFoundError

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def managers(obj: dict[str, Any]) -> dict[str, str]:
    return {e["manager"]: e["operation"] for e in obj["metadata"].get("managedFields") or []}


def configmap(namespace: str, name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def test_server_side_apply_of_a_namespace_records_the_field_manager(api_client: client.ApiClient) -> None:
    name = unique("ssa")
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"team": "a"}}}
    try:
        apply(api_client, manifest, field_manager="envctl")

        live = client.CoreV1Api(api_client).read_namespace(name)
        assert live.metadata.labels["team"] == "a"
        entries = {m.manager: m for m in live.metadata.managed_fields}
        assert entries["envctl"].operation == "Apply"
        assert "f:team" in entries["envctl"].fields_v1["f:metadata"]["f:labels"]
    finally:
        client.CoreV1Api(api_client).delete_namespace(name)


def test_server_side_apply_of_a_configmap_is_idempotent_and_owned(
    api_client: client.ApiClient, namespace: str
) -> None:
    first = apply(api_client, configmap(namespace, "settings", mode="fast"), field_manager="envctl")
    again = apply(api_client, configmap(namespace, "settings", mode="fast"), field_manager="envctl")

    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    live = client.CoreV1Api(api_client).read_namespaced_config_map("settings", namespace)
    assert live.data == {"mode": "fast"}
    assert [(m.manager, m.operation) for m in live.metadata.managed_fields] == [("envctl", "Apply")]


def test_a_conflicting_apply_by_another_manager_is_refused_unless_forced(
    api_client: client.ApiClient, namespace: str
) -> None:
    apply(api_client, configmap(namespace, "shared", mode="fast"), field_manager="envctl")

    with pytest.raises(client.ApiException) as refused:
        apply(api_client, configmap(namespace, "shared", mode="slow"), field_manager="someone-else")
    assert refused.value.status == 409

    forced = apply(
        api_client, configmap(namespace, "shared", mode="slow"), field_manager="someone-else", force=True
    )
    assert forced["data"] == {"mode": "slow"}
    assert managers(forced) == {"someone-else": "Apply"}


def test_a_dry_run_apply_leaves_nothing_behind(api_client: client.ApiClient, namespace: str) -> None:
    ns_name = unique("dry")
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns_name}}
    cm = configmap(namespace, "would-be", key="value")

    answered_ns = apply(api_client, ns, dry_run=True)
    answered_cm = apply(api_client, cm, dry_run=True)

    assert answered_ns["metadata"]["name"] == ns_name
    assert answered_cm["data"] == {"key": "value"}
    assert FIELD_MANAGER in managers(answered_cm)
    assert get(api_client, ns) is None
    assert get(api_client, cm) is None


def test_a_crd_becomes_established_and_its_custom_resource_can_be_applied(
    api_client: client.ApiClient, namespace: str
) -> None:
    group = f"{unique('g')}.envctl.test"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                        }
                    },
                }
            ],
        },
    }
    ext = client.ApiextensionsV1Api(api_client)
    try:
        apply(api_client, crd)

        def established() -> bool:
            conditions = ext.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions or []
            return any(c.type == "Established" and c.status == "True" for c in conditions)

        wait_for(established, timeout=30, what="the CRD to be Established")

        widget = {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": "w1", "namespace": namespace},
            "spec": {"size": 3},
        }
        applied = wait_for(lambda: _apply_when_served(api_client, widget), timeout=30, what="Widget apply")
        assert applied["spec"] == {"size": 3}
        assert FIELD_MANAGER in managers(applied)

        ready = {"conditions": [{"type": "Ready", "status": "True", "reason": "Test", "message": ""}]}
        set_status(api_client, widget, ready)
        assert get(api_client, widget)["status"] == ready
    finally:
        ext.delete_custom_resource_definition(crd["metadata"]["name"])


def _apply_when_served(api_client: client.ApiClient, obj: dict[str, Any]) -> dict[str, Any] | None:
    # Discovery can lag the Established condition by a moment.
    try:
        return apply(api_client, obj)
    except ResourceNotFoundError:
        return None
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def test_deleting_a_namespace_finishes(api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    name = unique("doomed")
    apply(api_client, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    apply(api_client, configmap(name, "content", key="value"))

    core.delete_namespace(name)

    wait_for(
        lambda: (
            get(api_client, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}) is None
        ),
        timeout=60,
        what=f"namespace {name} to be gone",
    )


def test_garbage_collection_deletes_dependents(api_client: client.ApiClient, namespace: str) -> None:
    owner = apply(api_client, configmap(namespace, "owner"))
    dependent = configmap(namespace, "dependent")
    dependent["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    ]
    apply(api_client, dependent)

    client.CoreV1Api(api_client).delete_namespaced_config_map("owner", namespace)

    wait_for(lambda: get(api_client, dependent) is None, timeout=60, what="the dependent to be collected")


def test_a_deployment_rolls_out_on_the_simulated_nodes(api_client: client.ApiClient, namespace: str) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]},
            },
        },
    }
    apply(api_client, deployment)
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)

    def available() -> bool:
        status = apps.read_namespaced_deployment("web", namespace).status
        return status.available_replicas == 2 and status.updated_replicas == 2

    wait_for(available, timeout=120, what="the deployment controller to report 2 available replicas")
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 2
    nodes = {n.metadata.name for n in core.list_node().items}
    for pod in pods:
        assert pod.spec.node_name in nodes  # bound by kube-scheduler
        assert pod.status.phase == "Running"  # played by KWOK
        assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
    assert all(n.metadata.annotations.get("kwok.x-k8s.io/node") == "fake" for n in core.list_node().items)


def test_a_job_completes_and_a_pod_labelled_fail_fails(api_client: client.ApiClient, namespace: str) -> None:
    def job(name: str, labels: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "m", "image": "busybox"}]},
                },
            },
        }

    apply(api_client, job("ok", {}))
    apply(api_client, job("broken", {"stage.envctl.test/pod": "fail"}))
    batch = client.BatchV1Api(api_client)

    def condition(name: str, ctype: str) -> bool:
        conditions = batch.read_namespaced_job(name, namespace).status.conditions or []
        return any(c.type == ctype and c.status == "True" for c in conditions)

    wait_for(lambda: condition("ok", "Complete"), timeout=120, what="job ok to complete")
    wait_for(lambda: condition("broken", "Failed"), timeout=120, what="job broken to fail")
    assert not condition("ok", "Failed") and not condition("broken", "Complete")


def test_kubectl_reaches_the_plane(kubeconfig: str) -> None:
    venv_kubectl = Path(sys.executable).with_name("kubectl")
    kubectl = str(venv_kubectl) if venv_kubectl.exists() else shutil.which("kubectl") or "kubectl"
    proc = subprocess.run(
        [kubectl, "--kubeconfig", kubeconfig, "get", "ns", "default"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "default" in proc.stdout


@pytest.mark.skipif("ENVCTL_TEST_KUBECONFIG" in os.environ, reason="the plane was not started by this run")
def test_a_second_up_reuses_the_running_plane(kubeconfig: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "control-plane"), "up"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"KUBECONFIG={kubeconfig}"]
    assert "reusing the running control plane" in proc.stderr


@pytest.mark.skipif("ENVCTL_TEST_KUBECONFIG" in os.environ, reason="the plane was not started by this run")
def test_up_restarts_a_plane_of_an_older_configuration(tmp_path: Path) -> None:
    script = [sys.executable, str(REPO / "scripts" / "control-plane")]
    env = {**os.environ, "ENVCTL_PLANE_DIR": str(tmp_path / "plane")}
    try:
        first = subprocess.run(
            [*script, "up"], capture_output=True, text=True, env=env, timeout=300, check=False
        )
        assert first.returncode == 0, first.stderr
        state_file = tmp_path / "plane" / "state.json"
        state = json.loads(state_file.read_text())
        state["config"] = "an-older-configuration"
        state_file.write_text(json.dumps(state))

        second = subprocess.run(
            [*script, "up"], capture_output=True, text=True, env=env, timeout=300, check=False
        )

        assert second.returncode == 0, second.stderr
        assert "older configuration: restarting it" in second.stderr
        fresh = json.loads(state_file.read_text())
        assert fresh["config"] != "an-older-configuration"
        assert fresh["server"] != state["server"]
        status = subprocess.run([*script, "status"], capture_output=True, text=True, env=env, check=False)
        assert status.returncode == 0, status.stdout
        assert "kwok" in status.stdout and "kube-scheduler" in status.stdout
    finally:
        subprocess.run([*script, "down"], capture_output=True, env=env, timeout=120, check=False)
