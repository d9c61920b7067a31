"""Readiness waits against real rollouts: the plane's workload controllers, kube-scheduler and KWOK.

Every object here gets its status from its real controller (no hand-written status): pods are
scheduled on KWOK's simulated nodes and played Running and Ready (or, with the pod label
``stage.envctl.test/pod``, kept unready or failed; scripts/kwok-stages.yaml). ``apply_layer``
waits as ``envctl apply`` does, and must return only once the rollout finished — or fail with
the reason the controller gives.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubehelpers import get
from kubernetes import client

from envctl.core.errors import EngineError
from envctl.core.model import Environment, KubernetesSettings, LayerSpec, Node
from envctl.kube import KubeContext, apply_layer, render_layer
from envctl.kube.wait import readiness
from envctl.repo.snapshot import WorkTreeSnapshot

pytestmark = pytest.mark.integration


class Rollout:
    """One layer in a temp repo, applied with readiness waiting on, against the real plane."""

    def __init__(self, root: Path, kubeconfig: str, namespace: str) -> None:
        self.root, self.namespace = root, namespace
        self.path = f"environments/{namespace}/layers/app"
        self.env = Environment(
            name=namespace,
            path=f"environments/{namespace}",
            kubernetes=KubernetesSettings(kubeconfig=kubeconfig),
        )
        self.ctx = KubeContext.from_env(self.env, None)
        self.node = Node(
            id="layer.app",
            kind="layer",
            name="app",
            path=self.path,
            layer=LayerSpec(namespace=namespace, wait=True, wait_timeout=240),
        )

    def apply(self, manifest: str) -> None:
        d = self.root / self.path
        d.mkdir(parents=True, exist_ok=True)
        (d / "app.yaml").write_text(manifest)
        objects = render_layer(self.env, WorkTreeSnapshot(self.root), self.node, {})
        apply_layer(self.ctx, self.node, objects)


@pytest.fixture
def rollout(
    tmp_path: Path, kubeconfig: str, namespace: str, api_client: client.ApiClient
) -> Iterator[Rollout]:
    r = Rollout(tmp_path, kubeconfig, namespace)
    yield r
    r.ctx.close()
    client.CoreV1Api(api_client).delete_collection_namespaced_config_map(
        "envctl-system", label_selector=f"envctl.io/environment={namespace}"
    )


def workload(
    kind: str, *, replicas: int | None = 2, image: str = "nginx:1.26", extra: str = "", labels: str = ""
) -> str:
    spec_replicas = f"  replicas: {replicas}\n" if replicas is not None else ""
    return (
        f"apiVersion: apps/v1\nkind: {kind}\nmetadata: {{name: web}}\nspec:\n{spec_replicas}{extra}"
        "  selector: {matchLabels: {app: web}}\n"
        f"  template:\n    metadata: {{labels: {{app: web{labels}}}}}\n"
        f"    spec:\n      containers: [{{name: web, image: '{image}'}}]\n"
    )


def live(api: client.ApiClient, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any]:
    obj = get(
        api, {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": namespace}}
    )
    assert obj is not None, f"{kind} {namespace}/{name} is gone"
    return obj


def pods(api: client.ApiClient, namespace: str) -> list[client.V1Pod]:
    return list(client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=web").items)


def test_a_deployment_rolling_to_a_new_image_is_ready_only_when_every_pod_runs_it(
    rollout: Rollout, api_client: client.ApiClient
) -> None:
    ns = rollout.namespace
    rollout.apply(workload("Deployment", replicas=3, image="nginx:1.26"))
    rollout.apply(workload("Deployment", replicas=3, image="nginx:1.27"))

    dep = live(api_client, "apps/v1", "Deployment", ns, "web")
    assert readiness(dep).ready
    assert dep["status"]["updatedReplicas"] == 3 and dep["status"]["availableReplicas"] == 3
    sets = client.AppsV1Api(api_client).list_namespaced_replica_set(ns, label_selector="app=web").items
    by_image = {rs.spec.template.spec.containers[0].image: rs for rs in sets}
    assert set(by_image) == {"nginx:1.26", "nginx:1.27"}
    assert by_image["nginx:1.27"].status.ready_replicas == 3
    assert by_image["nginx:1.26"].spec.replicas == 0  # the old ReplicaSet was scaled down
    running = [p for p in pods(api_client, ns) if p.metadata.deletion_timestamp is None]
    assert {p.spec.containers[0].image for p in running} == {"nginx:1.27"}


def test_a_deployment_with_zero_replicas_is_ready(rollout: Rollout, api_client: client.ApiClient) -> None:
    rollout.apply(workload("Deployment", replicas=0))

    dep = live(api_client, "apps/v1", "Deployment", rollout.namespace, "web")
    assert dep["status"]["observedGeneration"] == dep["metadata"]["generation"]
    assert readiness(dep).ready
    assert pods(api_client, rollout.namespace) == []


def test_a_statefulset_is_ready_once_its_ordered_pods_run(
    rollout: Rollout, api_client: client.ApiClient
) -> None:
    rollout.apply(workload("StatefulSet", replicas=2, extra="  serviceName: web\n"))

    sts = live(api_client, "apps/v1", "StatefulSet", rollout.namespace, "web")
    assert sts["status"]["readyReplicas"] == 2
    assert sorted(p.metadata.name for p in pods(api_client, rollout.namespace)) == ["web-0", "web-1"]


def test_a_daemonset_runs_one_pod_on_each_simulated_node(
    rollout: Rollout, api_client: client.ApiClient
) -> None:
    rollout.apply(workload("DaemonSet", replicas=None))

    nodes = {n.metadata.name for n in client.CoreV1Api(api_client).list_node().items}
    ds = live(api_client, "apps/v1", "DaemonSet", rollout.namespace, "web")
    assert ds["status"]["desiredNumberScheduled"] == len(nodes) >= 2
    assert ds["status"]["numberAvailable"] == len(nodes)
    assert {p.spec.node_name for p in pods(api_client, rollout.namespace)} == nodes


def test_a_job_is_ready_when_complete(rollout: Rollout, api_client: client.ApiClient) -> None:
    rollout.apply(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate}\nspec:\n  completions: 2\n"
        "  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: m, image: busybox}]\n"
    )

    job = live(api_client, "batch/v1", "Job", rollout.namespace, "migrate")
    assert job["status"]["succeeded"] == 2
    assert {c["type"]: c["status"] for c in job["status"]["conditions"]}["Complete"] == "True"


def test_a_rollout_that_cannot_finish_fails_with_the_controllers_reason(rollout: Rollout) -> None:
    # KWOK runs these pods but never marks them Ready (a failing readiness probe); the
    # deployment controller gives up after progressDeadlineSeconds.
    never_ready = workload(
        "Deployment",
        replicas=2,
        extra="  progressDeadlineSeconds: 5\n",
        labels=", stage.envctl.test/pod: unready",
    )
    with pytest.raises(EngineError) as err:
        rollout.apply(never_ready)

    text = str(err.value)
    assert f"apps/v1 Deployment {rollout.namespace}/web: progress deadline exceeded" in text
    assert "has timed out progressing" in text
    assert "running, not ready: ContainersNotReady: readiness probe failed (simulated by KWOK)" in text
    assert "timed out after" not in text  # failed on the controller's verdict, not on envctl's timeout


def test_a_failing_job_fails_the_wait_with_the_pods_exit(rollout: Rollout) -> None:
    with pytest.raises(EngineError) as err:
        rollout.apply(
            "apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate}\nspec:\n  backoffLimit: 0\n"
            "  template:\n    metadata: {labels: {stage.envctl.test/pod: fail}}\n    spec:\n"
            "      restartPolicy: Never\n      containers: [{name: m, image: busybox}]\n"
        )

    text = str(err.value)
    assert f"batch/v1 Job {rollout.namespace}/migrate: job failed: BackoffLimitExceeded" in text
    assert "container m exited with 1: Error" in text
