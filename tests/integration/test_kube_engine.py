"""The Kubernetes engine against the real control plane: every point of issue 5 as a named scenario.

Each test gets its own namespace (``namespace`` fixture) and uses it as the environment name too,
so inventories never collide. Layers are written to a temp repo and rendered with the real
renderer; the cluster is the real kube-apiserver of ``scripts/control-plane``.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import crd_manifest
from kubehelpers import get, wait_for
from kubernetes import client

from envctl.core.changes import Action, NodePlan
from envctl.core.errors import ConfigError, EngineError, UnavailableError
from envctl.core.model import Environment, KubernetesSettings, LayerOutput, LayerSpec, Node
from envctl.kube import (
    ConflictError,
    KubeContext,
    apply_layer,
    drift_layer,
    plan_layer,
    read_inventory,
    read_layer_outputs,
    render_layer,
    wait_layer,
)
from envctl.kube.apply import _open_new_namespaces
from envctl.kube.diff import WaitsFor, prepare
from envctl.kube.inventory import write_inventory
from envctl.kube.objects import ObjRef
from envctl.repo.snapshot import WorkTreeSnapshot

pytestmark = pytest.mark.integration

KUBECTL = str(Path(sys.executable).parent / "kubectl")


class Layer:
    """A layer in a temp repo, rendered and converged against the real cluster."""

    def __init__(self, root: Path, kubeconfig: str, namespace: str, name: str = "app") -> None:
        self.root = root
        self.namespace = namespace
        self.name = name
        self.path = f"environments/{namespace}/layers/{name}"
        self.env = Environment(
            name=namespace,
            path=f"environments/{namespace}",
            kubernetes=KubernetesSettings(kubeconfig=kubeconfig),
        )
        self.ctx = KubeContext.from_env(self.env, None, concurrency=16)
        self.spec: dict[str, Any] = {"namespace": namespace, "wait": False}
        self.inputs: dict[str, Any] = {}

    def write(self, files: dict[str, str]) -> Layer:
        d = self.root / self.path
        if d.exists():
            for f in d.iterdir():
                f.unlink()
        d.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (d / name).write_text(text)
        return self

    @property
    def node(self) -> Node:
        return Node(
            id=f"layer.{self.name}",
            kind="layer",
            name=self.name,
            path=self.path,
            inputs={k: None for k in self.inputs},
            layer=LayerSpec(**self.spec),
        )

    def render(self) -> list[dict[str, Any]]:
        return render_layer(self.env, WorkTreeSnapshot(self.root), self.node, self.inputs)

    def plan(self, **kw: Any) -> NodePlan:
        return plan_layer(self.ctx, self.node, self.render(), **kw)

    def apply(self, **kw: Any) -> NodePlan:
        return apply_layer(self.ctx, self.node, self.render(), **kw)

    def drift(self) -> NodePlan:
        return drift_layer(self.ctx, self.node, self.render())


def actions(plan: NodePlan) -> dict[str, str]:
    return {c.address: c.action.value for c in plan.changes}


def cm(name: str, **data: str) -> str:
    body = "".join(f"\n  {k}: {json.dumps(v)}" for k, v in data.items())
    return f"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:{body or ' {}'}\n"


DEPLOYMENT = """---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: ${inputs.replicas}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:${inputs.tag}
        ports: [{containerPort: 80}]
"""
SERVICE = """---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
"""
CRD = """---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.${inputs.group}
spec:
  group: ${inputs.group}
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"""
WIDGET = """---
apiVersion: ${inputs.group}/v1
kind: Widget
metadata:
  name: w1
spec:
  size: 3
"""


@pytest.fixture
def layer(tmp_path: Path, kubeconfig: str, namespace: str, api_client: client.ApiClient) -> Iterator[Layer]:
    yield Layer(tmp_path, kubeconfig, namespace)
    drop_inventories(api_client, namespace)


def drop_inventories(api: client.ApiClient, env_name: str) -> None:
    """Delete the inventories a test's environment left in envctl-system."""
    client.CoreV1Api(api).delete_collection_namespaced_config_map(
        "envctl-system", label_selector=f"envctl.io/environment={env_name}"
    )


@pytest.fixture
def api(api_client: client.ApiClient) -> client.ApiClient:
    return api_client


def kubectl(kubeconfig: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KUBECTL, "--kubeconfig", kubeconfig, *args], input=stdin, capture_output=True, text=True, check=False
    )


# -- render + plan --------------------------------------------------------------------------


def test_plans_creates_applies_them_and_replans_as_unchanged(layer: Layer, api: client.ApiClient) -> None:
    layer.inputs = {"replicas": 2, "tag": "1.27"}
    layer.write({"app.yaml": DEPLOYMENT + SERVICE + cm("settings", color="blue")})
    ns = layer.namespace
    plan = layer.plan()
    assert actions(plan) == {
        f"apps/v1 Deployment {ns}/web": "create",
        f"v1 Service {ns}/web": "create",
        f"v1 ConfigMap {ns}/settings": "create",
    }
    assert layer.plan().to_json() == plan.to_json(), "two plans of the same state must be identical"
    applied = layer.apply()
    assert {c.action for c in applied.changes} == {Action.CREATE}
    live = get(
        api, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns}}
    )
    assert live is not None and live["spec"]["replicas"] == 2
    assert {m["manager"] for m in live["metadata"]["managedFields"]} >= {"envctl"}
    again = layer.plan()
    assert not again.has_changes, actions(again)
    assert layer.plan().to_json() == again.to_json()


def test_plan_reports_changed_fields_by_path_and_apply_changes_only_those(
    layer: Layer, api: client.ApiClient
) -> None:
    layer.inputs = {"replicas": 2, "tag": "1.27"}
    layer.write({"app.yaml": DEPLOYMENT + cm("settings", color="blue")})
    layer.apply()
    layer.inputs = {"replicas": 3, "tag": "1.27"}
    plan = layer.plan()
    changes = {c.address: c for c in plan.changes}
    web = changes[f"apps/v1 Deployment {layer.namespace}/web"]
    assert web.action is Action.UPDATE
    assert web.fields == ("spec.replicas",)
    assert changes[f"v1 ConfigMap {layer.namespace}/settings"].action is Action.NOOP
    done = layer.apply()
    assert actions(done)[f"apps/v1 Deployment {layer.namespace}/web"] == "update"
    assert actions(done)[f"v1 ConfigMap {layer.namespace}/settings"] == "no-op"
    assert not layer.plan().has_changes


def test_one_invalid_object_fails_the_plan_and_nothing_is_applied(
    layer: Layer, api: client.ApiClient
) -> None:
    bad = "---\napiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec: {ports: [{port: 700000}]}\n"
    layer.write({"a.yaml": cm("good", a="1") + bad})
    with pytest.raises(ConfigError) as err:
        layer.plan()
    assert f"v1 Service {layer.namespace}/bad" in str(err.value)
    with pytest.raises(ConfigError):
        layer.apply()
    assert (
        get(
            api,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "good", "namespace": layer.namespace},
            },
        )
        is None
    )


def test_a_kind_whose_crd_is_in_the_cluster_but_not_served_yet_is_waited_for_not_failed(
    layer: Layer, api: client.ApiClient
) -> None:
    """A re-run right after a run interrupted in its CRD stage: the CRD exists, the kind is not
    served yet (here: discovery asked before the CRD was created). The plan waits for it."""
    group = f"{layer.namespace}.served.example.com"
    widget = f"apiVersion: {group}/v1\nkind: Widget\nmetadata: {{name: w1}}\nspec: {{field0: a}}\n"
    layer.write({"widget.yaml": widget})
    assert layer.ctx.mapping(f"{group}/v1", "Widget") is None  # discovery: not served (cached)
    ext = client.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition(crd_manifest(group, "widgets", "Widget"))
    try:
        [change] = layer.plan().changes
        assert change.action is Action.CREATE and change.reasons == (), change
        assert actions(layer.apply()) == {f"{group}/v1 Widget {layer.namespace}/w1": "create"}
        # a version the CRD does not serve is not waited for: the plain error
        layer.write({"widget.yaml": widget.replace(f"{group}/v1", f"{group}/v2")})
        with pytest.raises(ConfigError) as err:
            layer.plan()
        assert err.value.message.endswith(f"does not serve kind Widget in {group}/v2"), err.value.message
    finally:
        ext.delete_custom_resource_definition(f"widgets.{group}")


def test_unknown_kind_fails_the_plan_unless_an_upstream_is_pending(layer: Layer) -> None:
    layer.write({"w.yaml": "apiVersion: nope.example.com/v1\nkind: Gadget\nmetadata: {name: g}\n"})
    with pytest.raises(ConfigError, match="does not serve kind Gadget"):
        layer.plan()
    plan = layer.plan(upstream_pending=True)
    [change] = plan.changes
    assert change.action is Action.CREATE and "create after" in change.reasons[0]


# -- apply: staging, CRDs, conflicts ---------------------------------------------------------


def test_a_crd_and_its_custom_resource_in_one_layer(layer: Layer, api: client.ApiClient) -> None:
    group = f"{layer.namespace}.example.com"
    layer.inputs = {"group": group}
    layer.write({"crd.yaml": CRD, "widget.yaml": WIDGET})
    plan = layer.plan()
    widget = next(c for c in plan.changes if "Widget" in c.address)
    assert widget.action is Action.CREATE
    assert widget.reasons == (f"create after CustomResourceDefinition widgets.{group}",)
    done = layer.apply()
    assert {c.action for c in done.changes} == {Action.CREATE}
    live = get(
        api,
        {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": "w1", "namespace": layer.namespace},
        },
    )
    assert live is not None and live["spec"]["size"] == 3
    assert not layer.plan().has_changes
    # Clean up the cluster-scoped CRD (prune keeps CRDs by design).
    client.ApiextensionsV1Api(api).delete_custom_resource_definition(f"widgets.{group}")


def test_namespace_and_its_objects_in_one_layer_are_staged(
    tmp_path: Path, kubeconfig: str, namespace: str, api: client.ApiClient
) -> None:
    layer = Layer(tmp_path, kubeconfig, namespace)
    target = f"{namespace}-own"
    layer.spec["namespace"] = target
    layer.write(
        {
            "ns.yaml": f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {target}}}\n",
            "cm.yaml": cm("c", a="1"),
        }
    )
    plan = layer.plan()
    assert actions(plan)[f"v1 ConfigMap {target}/c"] == "create"
    layer.apply()
    assert (
        get(api, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": target}})
        is not None
    )
    client.CoreV1Api(api).delete_namespace(target)


def test_git_wins_a_conflict_the_plan_lists_as_a_take_over_with_both_values(
    layer: Layer, kubeconfig: str, api: client.ApiClient
) -> None:
    ns = layer.namespace
    other = (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: shared, namespace: {ns}}}\n"
        "data: {color: blue, size: big}\n"
    )
    proc = kubectl(kubeconfig, "apply", "--server-side", "--field-manager=other", "-f", "-", stdin=other)
    assert proc.returncode == 0, proc.stderr
    layer.write({"cm.yaml": cm("shared", color="red")})
    plan = layer.plan()
    [change] = plan.changes
    assert change.manager == "other"
    assert change.reasons == ("takes .data.color from other (blue → red)",)
    assert not any("apply will fail" in n for n in plan.notes)
    layer.apply()
    live = get(
        api, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared", "namespace": ns}}
    )
    # the field Git sets is Git's again; the one only the other manager sets is left alone
    assert live is not None and live["data"] == {"color": "red", "size": "big"}


def test_a_layer_that_refuses_conflicts_reports_and_stops(
    layer: Layer, kubeconfig: str, api: client.ApiClient
) -> None:
    ns = layer.namespace
    other = (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: shared, namespace: {ns}}}\n"
        "data: {color: blue}\n"
    )
    proc = kubectl(kubeconfig, "apply", "--server-side", "--field-manager=other", "-f", "-", stdin=other)
    assert proc.returncode == 0, proc.stderr
    layer.spec["conflicts"] = "refuse"
    layer.write({"cm.yaml": cm("shared", color="red")})
    plan = layer.plan()
    assert any("apply will fail (conflicts: refuse)" in n for n in plan.notes), plan.notes
    with pytest.raises(ConflictError) as err:
        layer.apply()
    assert ".data.color" in str(err.value) and "other" in str(err.value)
    live = get(
        api, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared", "namespace": ns}}
    )
    assert live is not None and live["data"]["color"] == "blue"


def test_prunes_an_object_removed_from_git(layer: Layer, api: client.ApiClient) -> None:
    ns = layer.namespace
    layer.write({"a.yaml": cm("keep", a="1") + cm("drop", b="2")})
    layer.apply()
    inv = read_inventory(layer.ctx, "layer.app")
    assert {r.name for r in inv.entries} == {"keep", "drop"}
    layer.write({"a.yaml": cm("keep", a="1")})
    plan = layer.plan()
    assert actions(plan)[f"v1 ConfigMap {ns}/drop"] == "delete"
    done = layer.apply()
    assert actions(done)[f"v1 ConfigMap {ns}/drop"] == "delete"
    assert (
        get(api, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "drop", "namespace": ns}})
        is None
    )
    assert {r.name for r in read_inventory(layer.ctx, "layer.app").entries} == {"keep"}
    assert not layer.plan().has_changes


def test_prune_skips_objects_that_lost_the_layer_labels(layer: Layer, api: client.ApiClient) -> None:
    ns = layer.namespace
    layer.write({"a.yaml": cm("keep", a="1") + cm("adopted", b="2")})
    layer.apply()
    client.CoreV1Api(api).patch_namespaced_config_map(
        "adopted", ns, {"metadata": {"labels": {"envctl.io/layer": "someone-else"}}}
    )
    layer.write({"a.yaml": cm("keep", a="1")})
    plan = layer.plan()
    assert f"v1 ConfigMap {ns}/adopted" not in actions(plan)
    assert any("labels" in n for n in plan.notes)
    layer.apply()
    assert (
        get(api, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "adopted", "namespace": ns}})
        is not None
    )


def test_an_empty_render_refuses_to_prune_without_allow_empty(layer: Layer, api: client.ApiClient) -> None:
    ns = layer.namespace
    layer.write({"a.yaml": cm("one", a="1")})
    layer.apply()
    layer.write({})
    with pytest.raises(ConfigError, match="renders no objects"):
        layer.plan()
    with pytest.raises(ConfigError) as err:
        layer.apply()
    assert err.value.hint is not None and "--allow-empty" in err.value.hint
    assert (
        get(api, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "one", "namespace": ns}})
        is not None
    )
    done = layer.apply(allow_empty=True)
    assert actions(done) == {f"v1 ConfigMap {ns}/one": "delete"}


def test_a_namespace_holding_other_objects_is_not_pruned(
    tmp_path: Path, kubeconfig: str, namespace: str, api: client.ApiClient
) -> None:
    layer = Layer(tmp_path, kubeconfig, namespace)
    target = f"{namespace}-p"
    layer.spec["namespace"] = target
    layer.write(
        {
            "ns.yaml": f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {target}}}\n",
            "cm.yaml": cm("c", a="1"),
        }
    )
    layer.apply()
    client.CoreV1Api(api).create_namespaced_config_map(
        target, {"metadata": {"name": "not-ours"}, "data": {"x": "1"}}
    )
    layer.write({"other.yaml": cm("z", a="1").replace("name: z", f"name: z\n  namespace: {namespace}")})
    plan = layer.plan()
    assert actions(plan)[f"v1 ConfigMap {target}/c"] == "delete"
    assert f"v1 Namespace {target}" not in actions(plan)
    assert any("still holds other objects" in n and "not-ours" in n for n in plan.notes)
    layer.apply()
    assert client.CoreV1Api(api).read_namespace(target).status.phase == "Active"
    client.CoreV1Api(api).delete_namespace(target)


def test_a_namespace_the_plan_kept_is_not_pruned_by_the_apply_and_stays_recorded(
    tmp_path: Path, kubeconfig: str, namespace: str, api: client.ApiClient
) -> None:
    layer = Layer(tmp_path, kubeconfig, namespace)
    target = f"{namespace}-k"
    core = client.CoreV1Api(api)
    layer.write({"ns.yaml": f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {target}}}\n"})
    layer.apply()
    core.create_namespaced_config_map(target, {"metadata": {"name": "not-ours"}, "data": {"x": "1"}})
    layer.write({"other.yaml": cm("z", a="1").replace("name: z", f"name: z\n  namespace: {namespace}")})
    plan = layer.plan()
    assert f"v1 Namespace {target}" not in actions(plan)  # kept: it holds not-ours
    # not-ours goes before the apply: the apply still does what the approved plan said
    core.delete_namespaced_config_map("not-ours", target)
    planned = frozenset(c.address for c in plan.changes if c.action.value == "delete")
    done = layer.apply(planned_deletes=planned)
    assert f"v1 Namespace {target}" not in actions(done)
    assert core.read_namespace(target).status.phase == "Active"
    inventory = read_inventory(layer.ctx, "layer.app")
    assert any(e.kind == "Namespace" and e.name == target for e in inventory.entries)  # still recorded
    assert actions(layer.plan())[f"v1 Namespace {target}"] == "delete"  # the next plan lists it again
    core.delete_namespace(target)


def test_inventory_writes_use_optimistic_concurrency(layer: Layer) -> None:
    layer.write({"a.yaml": cm("one", a="1")})
    layer.apply()
    stale = read_inventory(layer.ctx, "layer.app")
    write_inventory(layer.ctx, "layer.app", stale, ())
    with pytest.raises(EngineError, match="another run"):
        write_inventory(layer.ctx, "layer.app", stale, stale.entries)


# -- wait --------------------------------------------------------------------------------------


def test_wait_lists_every_object_not_ready_and_succeeds_once_rolled_out(
    layer: Layer, api: client.ApiClient
) -> None:
    def manifests(node_selector: str, suspend: str) -> str:
        return (
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n"
            "  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n"
            f"    spec:\n      nodeSelector: {node_selector}\n"
            "      containers: [{name: web, image: nginx}]\n"
            "---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate}\n"
            f"spec:\n  suspend: {suspend}\n  template:\n    spec:\n"
            "      restartPolicy: Never\n      containers: [{name: m, image: busybox}]\n"
        )

    # No simulated node carries this label, so the scheduler cannot place the pods.
    layer.write({"app.yaml": manifests("{envctl.test/no-such-node: 'true'}", "true")})
    layer.apply()
    ns = layer.namespace
    core = client.CoreV1Api(api)

    def unschedulable() -> bool:
        pods = core.list_namespaced_pod(ns, label_selector="app=web").items
        return len(pods) == 2 and all(
            any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in p.status.conditions or [])
            for p in pods
        )

    wait_for(unschedulable, timeout=120, what="the scheduler to report both pods Unschedulable")
    with pytest.raises(EngineError) as err:
        wait_layer(layer.ctx, layer.node, layer.render(), timeout=1)
    text = str(err.value)
    assert "timed out" in text and "2 object(s)" in text
    assert f"apps/v1 Deployment {ns}/web: 0 of 2 replicas available" in text
    assert "not scheduled: Unschedulable: 0/3 nodes are available" in text
    assert "didn't match Pod's node affinity/selector" in text
    assert f"batch/v1 Job {ns}/migrate: job is suspended" in text

    layer.write({"app.yaml": manifests("{}", "false")})
    layer.spec.update(wait=True, wait_timeout=180)
    layer.apply()  # returns once the Deployment rolled out and the Job completed

    dep = client.AppsV1Api(api).read_namespaced_deployment("web", ns)
    assert dep.status.available_replicas == 2 and dep.status.observed_generation == dep.metadata.generation
    job = client.BatchV1Api(api).read_namespaced_job("migrate", ns)
    assert any(c.type == "Complete" and c.status == "True" for c in job.status.conditions)


# -- drift -------------------------------------------------------------------------------------


def test_drift_names_the_manager_that_changed_a_field_missing_objects_and_objects_left_git(
    layer: Layer, kubeconfig: str, api: client.ApiClient
) -> None:
    ns = layer.namespace
    layer.inputs = {"replicas": 2, "tag": "1.27"}
    layer.write(
        {"app.yaml": DEPLOYMENT + cm("settings", color="blue") + cm("gone", a="1") + cm("old", a="1")}
    )
    layer.apply()
    assert not any(c.action.changes for c in layer.drift().changes)
    patch = (
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {ns}}}\n"
        "spec: {replicas: 5}\n"
    )
    proc = kubectl(
        kubeconfig,
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        "-",
        stdin=patch,
    )
    assert proc.returncode == 0, proc.stderr
    client.CoreV1Api(api).delete_namespaced_config_map("gone", ns)
    layer.write({"app.yaml": DEPLOYMENT + cm("settings", color="blue") + cm("gone", a="1")})
    drift = {c.address: c for c in layer.drift().changes}
    web = drift[f"apps/v1 Deployment {ns}/web"]
    assert web.action is Action.UPDATE and web.manager == "other"
    assert web.fields == ("spec.replicas",)
    assert web.reasons[0].startswith("spec.replicas changed by other")
    assert drift[f"v1 ConfigMap {ns}/gone"].action is Action.CREATE
    assert drift[f"v1 ConfigMap {ns}/old"].action is Action.DELETE
    assert drift[f"v1 ConfigMap {ns}/settings"].action is Action.NOOP


# -- outputs -----------------------------------------------------------------------------------


def test_layer_outputs_are_read_from_live_objects(layer: Layer) -> None:
    layer.write({"a.yaml": cm("settings", color="blue") + SERVICE})
    layer.spec["outputs"] = {
        "color": LayerOutput(object="v1/ConfigMap/settings", path=".data.color"),
        "ip": LayerOutput(object=f"v1/Service/{layer.namespace}/web", path=".spec.clusterIP"),
    }
    plan = layer.plan()
    assert plan.outputs_unknown == ("color", "ip")
    layer.apply()
    outs = read_layer_outputs(layer.ctx, layer.node)
    assert outs["color"] == "blue"
    assert outs["ip"].count(".") == 3
    layer.spec["outputs"] = {"x": LayerOutput(object="v1/ConfigMap/settings", path=".data.missing")}
    with pytest.raises(EngineError, match="no value at"):
        read_layer_outputs(layer.ctx, layer.node)


# -- secrets -----------------------------------------------------------------------------------


def test_a_secret_value_never_appears_in_any_output(
    layer: Layer, api: client.ApiClient, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    first, second = f"s3cr3t-{uuid.uuid4().hex}", f"t0psecret-{uuid.uuid4().hex}"
    forms = [first, second, *(base64.b64encode(v.encode()).decode() for v in (first, second))]
    secret = (
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\n"
        "stringData:\n  password: ${inputs.pw}\n  user: admin\n"
    )
    layer.spec["allow_secrets"] = True
    layer.write({"s.yaml": secret})
    seen: list[str] = []
    layer.inputs = {"pw": first}
    seen.append(json.dumps(layer.plan().to_json()))
    seen.append(json.dumps(layer.apply().to_json()))
    seen.append(json.dumps(layer.plan().to_json()))
    layer.inputs = {"pw": second}
    changed = layer.plan()
    [c] = changed.changes
    assert c.action is Action.UPDATE
    assert c.after["data"]["password"].startswith("(sensitive, changed) sha256:")
    assert c.after["data"]["user"] == "(sensitive)"
    seen.append(json.dumps(changed.to_json()))
    seen.append(json.dumps(layer.apply().to_json()))
    client.CoreV1Api(api).patch_namespaced_secret(
        "db", layer.namespace, {"data": {"password": base64.b64encode(first.encode()).decode()}}
    )
    seen.append(json.dumps(layer.drift().to_json()))
    layer.write({"s.yaml": secret + "  bad key!: x\n"})
    try:
        layer.plan()
    except Exception as e:
        seen.append(str(e) + str(getattr(e, "detail", "")))
    out = capsys.readouterr()
    seen += [out.out, out.err, caplog.text]
    blob = "\n".join(seen)
    for form in forms:
        assert form not in blob


# -- speed -------------------------------------------------------------------------------------


def test_a_500_object_layer_applies_and_replans_as_entirely_unchanged(
    layer: Layer, record_property: Callable[[str, Any], None]
) -> None:
    layer.write(
        {
            f"cm{i // 100}.yaml": "".join(
                cm(f"c{j:03d}", idx=str(j), text="x" * 64) for j in range(i, i + 100)
            )
            for i in range(0, 500, 100)
        }
    )
    objects = layer.render()
    assert len(objects) == 500
    t0 = time.perf_counter()
    plan = plan_layer(layer.ctx, layer.node, objects)
    t1 = time.perf_counter()
    done = apply_layer(layer.ctx, layer.node, objects)
    t2 = time.perf_counter()
    again = plan_layer(layer.ctx, layer.node, objects)
    t3 = time.perf_counter()
    assert plan.counts.add == 500
    assert done.counts.add == 500
    assert again.counts.total == 0 and len(again.changes) == 500
    assert all(c.action is Action.NOOP for c in again.changes)
    timings = {"plan_s": round(t1 - t0, 2), "apply_s": round(t2 - t1, 2), "replan_s": round(t3 - t2, 2)}
    record_property("timings", timings)
    print(f"\n500 objects: {timings}")


# -- comparison with kubectl ------------------------------------------------------------------


def test_kubectl_diff_server_side_reports_nothing_after_envctl_applies(
    tmp_path: Path, layer: Layer, kubeconfig: str, api: client.ApiClient
) -> None:
    group = f"{layer.namespace}.example.com"
    layer.inputs = {"replicas": 2, "tag": "1.27", "group": group, "pw": "hunter2"}
    secret = (
        "---\napiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: '${inputs.pw}'}\n"
    )
    layer.spec["allow_secrets"] = True
    # the rollout settled first: the deployment controller writing status mid-diff moves resourceVersion
    layer.spec.update(wait=True, wait_timeout=180)
    layer.write(
        {
            "app.yaml": DEPLOYMENT + SERVICE + cm("settings", color="blue") + secret,
            "crd.yaml": CRD,
            "w.yaml": WIDGET,
        }
    )
    layer.apply()
    rendered = tmp_path / "rendered.json"
    rendered.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": layer.render()}))
    proc = kubectl(kubeconfig, "diff", "--server-side", "--field-manager=envctl", "-f", str(rendered))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""
    client.ApiextensionsV1Api(api).delete_custom_resource_definition(f"widgets.{group}")


# -- errors ------------------------------------------------------------------------------------


def test_an_unreachable_cluster_is_unavailable_not_an_empty_plan(tmp_path: Path, layer: Layer) -> None:
    cfg = tmp_path / "dead.kubeconfig"
    cfg.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
    )
    layer.write({"a.yaml": cm("one", a="1")})
    ctx = KubeContext(env_name=layer.namespace, kubeconfig=str(cfg), connect_timeout=1.0)
    with pytest.raises(UnavailableError):
        plan_layer(ctx, layer.node, layer.render())


def _broken_kubeconfig(kubeconfig: str, tmp_path: Path, how: str) -> Path:
    """A copy of the control plane's kubeconfig with a wrong CA or a wrong token, context renamed."""
    import yaml

    doc = yaml.safe_load(Path(kubeconfig).read_text())
    cluster, user = doc["clusters"][0]["cluster"], doc["users"][0]["user"]
    if how == "ca":  # the client certificate is no CA of the server's certificate
        cluster["certificate-authority-data"] = user["client-certificate-data"]
    else:
        doc["users"][0]["user"] = {"token": "not-a-valid-token"}
    doc["contexts"][0]["name"] = doc["current-context"] = f"ctx-wrong-{how}"
    cfg = tmp_path / f"wrong-{how}.kubeconfig"
    cfg.write_text(yaml.safe_dump(doc))
    return cfg


@pytest.mark.parametrize(
    ("how", "named"),
    [("ca", "TLS verification of the Kubernetes API server failed"), ("token", "authentication")],
)
def test_tls_and_authentication_failures_are_named_with_the_context(
    tmp_path: Path, layer: Layer, kubeconfig: str, how: str, named: str
) -> None:
    cfg = _broken_kubeconfig(kubeconfig, tmp_path, how)
    layer.write({"a.yaml": cm("one", a="1")})
    ctx = KubeContext(env_name=layer.namespace, kubeconfig=str(cfg), connect_timeout=5.0)
    with pytest.raises(UnavailableError) as err:
        plan_layer(ctx, layer.node, layer.render())
    e = err.value
    assert e.exit_code == 69
    assert named in e.message and f"ctx-wrong-{how}" in e.message, e.message
    assert "is the cluster running" not in f"{e.message} {e.hint}"
    assert "not-a-valid-token" not in f"{e.message} {e.hint} {e.detail}"


def test_every_connection_shares_one_tls_context_that_verifies_the_server(kubeconfig: str) -> None:
    import ssl

    ctx = KubeContext(env_name="tls-shared", kubeconfig=kubeconfig, concurrency=4)
    kw = ctx.api.rest_client.pool_manager.connection_pool_kw
    shared = kw["ssl_context"]
    assert shared.verify_mode is ssl.CERT_REQUIRED
    assert not {"ca_certs", "ca_cert_data", "cert_file", "key_file"} & set(
        kw
    )  # loaded once, not per connection
    answers = ctx.parallel(lambda _: ctx.request("GET", "/version"), list(range(8)))
    assert all(isinstance(a, dict) and a.get("gitVersion") for a in answers), answers
    pool = ctx.api.rest_client.pool_manager.connection_from_url(ctx.api.configuration.host)
    assert pool.num_connections >= 2  # several connections, each verified with the one context


def test_an_immutable_field_change_is_refused_or_replaced_with_recreate(
    layer: Layer, api: client.ApiClient
) -> None:
    job = (
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate}\nspec:\n  template:\n    spec:\n"
        "      restartPolicy: Never\n      containers: [{name: m, image: 'busybox:${inputs.tag}'}]\n"
    )
    layer.inputs = {"tag": "1.36"}
    layer.write({"job.yaml": job})
    layer.apply()
    ref = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate", "namespace": layer.namespace},
    }
    uid = get(api, ref)["metadata"]["uid"]  # type: ignore[index]
    layer.inputs = {"tag": "1.37"}
    with pytest.raises(ConfigError, match="immutable") as err:
        layer.plan()
    assert f"batch/v1 Job {layer.namespace}/migrate" in str(err.value)
    assert "recreate: true" in str(err.value.hint)
    layer.spec["recreate"] = True
    [change] = layer.plan().changes
    assert change.action is Action.REPLACE
    # the plan says why, naming the field the API server calls immutable
    assert change.reasons == ("immutable field .spec.template changes: deleted and re-created",), change
    done = layer.apply()
    assert [c.action for c in done.changes] == [Action.REPLACE]
    live = get(api, ref)
    assert live is not None and live["metadata"]["uid"] != uid
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.37"


def test_objects_in_a_namespace_an_upstream_layer_creates_plan_as_create_after(
    tmp_path: Path, kubeconfig: str, namespace: str, api: client.ApiClient
) -> None:
    layer = Layer(tmp_path, kubeconfig, namespace)
    layer.spec["namespace"] = f"{namespace}-later"
    layer.write({"cm.yaml": cm("c", a="1")})
    plan = layer.plan()
    [change] = plan.changes
    assert change.action is Action.CREATE
    assert change.reasons == (f"create after Namespace {namespace}-later (not in the cluster yet)",)
    [note] = plan.notes
    assert f"Namespace {namespace}-later does not exist and nothing creates it" in note
    upstream = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"{namespace}-later"}}]
    [note] = layer.plan(upstream_objects=upstream).notes
    assert "once the upstream layer that creates it is applied" in note
    assert f"v1 ConfigMap {namespace}-later/c" in note
    with pytest.raises(EngineError, match="do not exist") as err:
        layer.apply()
    assert "nothing was applied" in str(err.value)
    assert read_inventory(layer.ctx, "layer.app").entries == ()


BAD_DEPLOYMENT = DEPLOYMENT.replace("${inputs.replicas}", "-1").replace("${inputs.tag}", "1.27")


def test_a_refused_object_in_a_namespace_the_layer_creates_writes_nothing(
    tmp_path: Path, kubeconfig: str, namespace: str, api: client.ApiClient
) -> None:
    layer = Layer(tmp_path, kubeconfig, namespace)
    own = f"{namespace}-own"
    layer.spec["namespace"] = own
    layer.write(
        {"app.yaml": f"---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {own}\n" + BAD_DEPLOYMENT}
    )
    plan = layer.plan()
    assert any("could not be validated yet" in n and f"Namespace {own}" in n for n in plan.notes), plan.notes
    with pytest.raises(ConfigError, match="nothing was applied") as err:
        layer.apply()
    assert f"v1 Namespace {own}: created by this apply to dry-run the objects in it, deleted again" in str(
        err.value.detail
    )
    assert "part-way" not in err.value.message
    assert get(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": own}}) is None
    assert not read_inventory(layer.ctx, "layer.app").exists


def test_a_namespace_another_actor_creates_between_plan_and_apply_is_never_deleted(
    tmp_path: Path, kubeconfig: str, namespace: str, api: client.ApiClient
) -> None:
    """The apply's Namespace request answers 200, not 201: not created by this run, not removed."""
    layer = Layer(tmp_path, kubeconfig, namespace)
    own = f"{namespace}-theirs"
    layer.spec["namespace"] = own
    layer.write(
        {"app.yaml": f"---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {own}\n" + BAD_DEPLOYMENT}
    )
    objects = layer.render()
    prepared = prepare(layer.ctx, "layer.app", objects, recreate=False)  # the plan: namespace missing
    assert [p.waits_for for p in prepared if p.ref.kind == "Deployment"] == [WaitsFor.NAMESPACE]
    core = client.CoreV1Api(api)
    uid = core.create_namespace({"metadata": {"name": own}}).metadata.uid  # another actor, meanwhile
    try:
        applied: dict[ObjRef, Any] = {}
        with pytest.raises(ConfigError) as err:
            _open_new_namespaces(layer.ctx, layer.node, prepared, objects, applied)
        assert f"v1 Namespace {own}: existed before this apply (not created by it): kept" in str(
            err.value.detail
        )
        ns = core.read_namespace(own)
        assert ns.metadata.uid == uid and ns.metadata.deletion_timestamp is None
    finally:
        core.delete_namespace(own)


def test_a_custom_resource_whose_crd_an_upstream_layer_renders(layer: Layer) -> None:
    group = f"{layer.namespace}.example.com"
    layer.inputs = {"group": group}
    layer.write({"widget.yaml": WIDGET})
    upstream = Layer(layer.root, "", layer.namespace, name="crds")
    upstream.inputs = {"group": group}
    upstream.env = layer.env
    upstream.write({"crd.yaml": CRD})
    [change] = plan_layer(layer.ctx, layer.node, layer.render(), upstream_objects=upstream.render()).changes
    assert change.reasons == (f"create after CustomResourceDefinition widgets.{group}",)
