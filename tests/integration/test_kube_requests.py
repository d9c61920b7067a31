"""How many API requests a layer's plan, apply and drift send, against the real control plane.

Issue 9 (bench B5/B6): a create costs one dry-run and one apply per object, an object in sync
costs no request at all (a LIST per kind and namespace proves it unchanged from managedFields),
and drift dry-runs only the objects that may differ. Every request goes through
``KubeContext.request``; these tests count them and fail if a per-object request comes back.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from envctl.core.changes import Action, NodePlan
from envctl.core.model import Environment, KubernetesSettings, LayerSpec, Node
from envctl.kube import ConflictError, KubeContext, apply_layer, drift_layer, plan_layer, render_layer
from envctl.kube.errors import ApiError
from envctl.repo.snapshot import WorkTreeSnapshot

pytestmark = pytest.mark.integration

KUBECTL = str(Path(sys.executable).parent / "kubectl")
CMS, DEPLOYS, SERVICES = 40, 4, 4
OBJECTS = CMS + DEPLOYS + SERVICES  # plus the Namespace


class Counted(KubeContext):
    """A KubeContext that counts its requests by kind: dry-run, apply, get, list, other."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        object.__setattr__(self, "counts", Counter())
        object.__setattr__(self, "_count_lock", threading.Lock())

    def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        query = kw.get("query") or {}
        if method == "PATCH":
            what = "dry-run" if query.get("dryRun") else "apply"
        elif method == "POST" and query.get("dryRun"):
            what = "create dry-run"  # a large object the LISTs do not show
        elif method == "GET" and ("/namespaces/" in path or path.count("/") > 3):
            what = "list" if "labelSelector" in query or "limit" in query else "get"
        else:
            what = "other"  # discovery, inventory writes, deletes
        with self._count_lock:  # type: ignore[attr-defined]
            self.counts[what] += 1  # type: ignore[attr-defined]
            if kw.get("accept", "application/json") != "application/json":
                self.counts[f"{what} (metadata only)"] += 1  # type: ignore[attr-defined]
        return super().request(method, path, **kw)

    def watch_until(self, *args: Any, **kw: Any) -> dict[str, Any] | None:
        with self._count_lock:  # type: ignore[attr-defined]
            self.counts["watch"] += 1  # type: ignore[attr-defined]
        return super().watch_until(*args, **kw)

    def take(self) -> Counter[str]:
        with self._count_lock:  # type: ignore[attr-defined]
            out = Counter(self.counts)  # type: ignore[attr-defined]
            self.counts.clear()  # type: ignore[attr-defined]
        return out


def manifests(ns: str, gen: int = 0, modified: frozenset[int] = frozenset()) -> str:
    docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}]
    for i in range(CMS):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"cm-{i:03d}"},
                "data": {"key": f"value-{i}", "version": f"v{gen if i in modified else 0}"},
            }
        )
    container = {"name": "app", "image": "img:1", "ports": [{"containerPort": 80}]}
    for i in range(DEPLOYS):
        labels = {"app": f"d-{i}"}
        docs.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": f"d-{i}"},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [container]},
                    },
                },
            }
        )
    for i in range(SERVICES):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"svc-{i}"},
                "spec": {"selector": {"app": f"d-{i}"}, "ports": [{"port": 80, "targetPort": 8080}]},
            }
        )
    return "".join("---\n" + json.dumps(d) + "\n" for d in docs)


class Layer:
    def __init__(self, root: Path, kubeconfig: str, env_name: str, ns: str) -> None:
        self.root, self.ns = root, ns
        self.path = f"environments/{env_name}/layers/objs"
        settings = KubernetesSettings(kubeconfig=kubeconfig)
        self.env = Environment(name=env_name, path=f"environments/{env_name}", kubernetes=settings)
        self.ctx = Counted(env_name=env_name, kubeconfig=kubeconfig, concurrency=16)
        self.node = Node(
            id="layer.objs",
            kind="layer",
            name="objs",
            path=self.path,
            inputs={},
            layer=LayerSpec(namespace=ns, wait=False),
        )

    def write(self, gen: int = 0, modified: frozenset[int] = frozenset()) -> None:
        d = self.root / self.path
        d.mkdir(parents=True, exist_ok=True)
        (d / "objects.yaml").write_text(manifests(self.ns, gen, modified))

    def objects(self) -> list[dict[str, Any]]:
        return render_layer(self.env, WorkTreeSnapshot(self.root), self.node, {})

    def plan(self) -> NodePlan:
        return plan_layer(self.ctx, self.node, self.objects())

    def apply(self) -> NodePlan:
        return apply_layer(self.ctx, self.node, self.objects())

    def drift(self) -> NodePlan:
        return drift_layer(self.ctx, self.node, self.objects())


@pytest.fixture
def layer(tmp_path: Path, kubeconfig: str, namespace: str, api_client: client.ApiClient) -> Iterator[Layer]:
    ns = f"{namespace}-own"[:63]
    out = Layer(tmp_path, kubeconfig, namespace, ns)
    yield out
    core = client.CoreV1Api(api_client)
    core.delete_collection_namespaced_config_map(
        "envctl-system", label_selector=f"envctl.io/environment={namespace}"
    )
    core.delete_namespace(ns, propagation_policy="Background")


def changed(plan: NodePlan) -> dict[str, str]:
    return {c.address: c.action.value for c in plan.changes if c.action.changes}


def test_create_sends_one_dry_run_and_one_apply_per_object(layer: Layer) -> None:
    layer.write()
    layer.ctx.take()
    plan = layer.plan()
    assert plan.counts.add == OBJECTS + 1
    planned = layer.ctx.take()
    # the namespace does not exist: its objects need no request to be planned as "create after"
    assert planned["dry-run"] == 1 and planned["get"] <= 2 and planned["list"] == 0, planned
    done = layer.apply()
    assert done.counts.add == OBJECTS + 1
    applied = layer.ctx.take()
    assert applied["apply"] == OBJECTS + 1, applied
    assert applied["dry-run"] <= OBJECTS + 2, applied
    assert applied["get"] <= 4, applied  # the namespace, its readiness, the inventory
    assert sum(applied.values()) <= 2 * OBJECTS + 20, applied


def test_an_unchanged_layer_is_planned_and_applied_without_a_request_per_object(layer: Layer) -> None:
    layer.write()
    layer.apply()
    layer.ctx.take()
    plan = layer.plan()
    assert plan.counts.total == 0 and len(plan.changes) == OBJECTS + 1
    planned = layer.ctx.take()
    assert planned["dry-run"] == 0 and planned["apply"] == 0, planned
    assert sum(planned.values()) <= 10, planned  # a GET of the namespace, a LIST per kind, inventory
    assert layer.apply().counts.total == 0
    applied = layer.ctx.take()
    assert applied["dry-run"] == 0 and applied["apply"] == 0 and sum(applied.values()) <= 10, applied


def test_only_modified_objects_are_dry_run_and_applied(layer: Layer) -> None:
    layer.write()
    layer.apply()
    modified = frozenset({1, 7, 30})
    layer.write(1, modified)
    layer.ctx.take()
    plan = layer.plan()
    assert sorted(changed(plan)) == sorted(f"v1 ConfigMap {layer.ns}/cm-{i:03d}" for i in modified)
    planned = layer.ctx.take()
    assert planned["dry-run"] == len(modified) and planned["get"] <= 2, planned  # namespace, inventory
    layer.apply()
    applied = layer.ctx.take()
    assert applied["dry-run"] == len(modified) and applied["apply"] == len(modified), applied


def test_drift_dry_runs_only_what_may_differ_and_names_the_other_manager(
    layer: Layer, kubeconfig: str, api_client: client.ApiClient
) -> None:
    layer.write()
    layer.apply()
    core = client.CoreV1Api(api_client)
    tampered = subprocess.run(
        [KUBECTL, "--kubeconfig", kubeconfig, "-n", layer.ns, "patch", "configmap", "cm-003",
         "--type=merge", "-p", '{"data": {"version": "tampered"}}', "--field-manager=intruder"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert tampered.returncode == 0, tampered.stderr
    core.delete_namespaced_config_map("cm-009", layer.ns)
    # labels removed by hand: not in the labelled LIST any more, found by its dry-run + GET
    core.patch_namespaced_config_map(
        "cm-011", layer.ns, {"metadata": {"labels": {"envctl.io/layer": None, "envctl.io/environment": None}}}
    )
    layer.ctx.take()
    drift = {c.address: c for c in layer.drift().changes if c.action.changes}
    counts = layer.ctx.take()
    name = f"v1 ConfigMap {layer.ns}/cm-"
    assert sorted(drift) == [f"{name}003", f"{name}009", f"{name}011"]
    assert drift[f"{name}003"].manager == "intruder" and drift[f"{name}003"].fields == ("data.version",)
    assert drift[f"{name}009"].action is Action.CREATE
    assert drift[f"{name}011"].action is Action.UPDATE
    # one dry-run each, forced: cm-003's conflict with the intruder costs no second dry-run (the
    # intruder is named from managedFields)
    assert counts["dry-run"] == 3 and counts["get"] <= 3, counts
    assert sum(counts.values()) <= 12, counts


def test_an_object_created_without_labels_is_adopted_not_recreated(
    layer: Layer, api_client: client.ApiClient
) -> None:
    layer.write()
    layer.apply()
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(
        layer.ns, {"metadata": {"name": "cm-100"}, "data": {"key": "value-100", "version": "v0"}}
    )
    d = layer.root / layer.path
    (d / "extra.yaml").write_text(
        json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-100"},
                    "data": {"key": "value-100", "version": "v0"}})
    )  # fmt: skip
    plan = {c.address: c for c in layer.plan().changes}
    extra = plan[f"v1 ConfigMap {layer.ns}/cm-100"]
    assert extra.action is Action.UPDATE  # labels added, envctl takes ownership; not a create
    assert extra.before is not None


def test_an_apply_reuses_its_plans_dry_runs_unless_the_object_changed_since(
    layer: Layer, api_client: client.ApiClient
) -> None:
    core = client.CoreV1Api(api_client)
    layer.write()
    layer.apply()
    modified = frozenset({2, 5})
    layer.write(1, modified)
    objects = layer.objects()
    plan_layer(layer.ctx, layer.node, objects)
    # another manager changes one of them between the plan and the apply (a field envctl lacks)
    core.patch_namespaced_config_map("cm-005", layer.ns, {"data": {"extra": "added-in-between"}})
    layer.ctx.take()
    done = apply_layer(layer.ctx, layer.node, objects, reuse_plan=True)
    counts = layer.ctx.take()
    assert counts["apply"] == 2, counts
    assert counts["dry-run"] == 1, counts  # cm-005 only: cm-002 is at the version its plan saw
    live = core.read_namespaced_config_map("cm-005", layer.ns)
    assert live.data == {"key": "value-5", "version": "v1", "extra": "added-in-between"}
    assert len([c for c in done.changes if c.action.changes]) == 2
    # under conflicts: refuse, a conflict that appears between plan and apply is still found
    # before the first write
    refuse = LayerSpec(namespace=layer.ns, wait=False, conflicts="refuse")
    layer.node = dataclasses.replace(layer.node, layer=refuse)
    layer.write(2, modified)
    objects = layer.objects()
    plan_layer(layer.ctx, layer.node, objects)
    core.patch_namespaced_config_map("cm-002", layer.ns, {"data": {"version": "theirs"}})
    layer.ctx.take()
    with pytest.raises(ConflictError, match="cm-002"):
        apply_layer(layer.ctx, layer.node, objects, reuse_plan=True)
    assert layer.ctx.take()["apply"] == 0
    assert core.read_namespaced_config_map("cm-005", layer.ns).data["version"] == "v1"
    # without reuse_plan every modified object is dry-run again
    plan_layer(layer.ctx, layer.node, objects)
    layer.ctx.take()
    with pytest.raises(ConflictError):
        apply_layer(layer.ctx, layer.node, objects)
    assert layer.ctx.take()["dry-run"] == 3  # both, and cm-002 again with force for its conflict


def crd(group: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}},
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}
            ],
        },
    }


def write_docs(layer: Layer, docs: list[dict[str, Any]]) -> None:
    d = layer.root / layer.path
    d.mkdir(parents=True, exist_ok=True)
    (d / "objects.yaml").write_text("".join("---\n" + json.dumps(doc) + "\n" for doc in docs))


def test_cluster_scoped_objects_are_listed_and_a_planned_create_is_not_dry_run_again(
    layer: Layer, api_client: client.ApiClient
) -> None:
    group = f"{layer.ns}.requests.envctl.test"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": f"{layer.ns}-reader"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
    }
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "1"}}
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": layer.ns}}
    write_docs(layer, [namespace, crd(group), role, cm])
    try:
        objects = layer.objects()
        layer.ctx.take()
        plan_layer(layer.ctx, layer.node, objects)
        planned = layer.ctx.take()
        assert planned["dry-run"] == 3, planned  # the Namespace, the CRD, the ClusterRole
        done = apply_layer(layer.ctx, layer.node, objects, reuse_plan=True)
        assert done.counts.add == 4
        applied = layer.ctx.take()
        # the plan's dry-runs of the three creates stand (a GET each shows the CRD and the
        # ClusterRole still absent); only the ConfigMap, which waited for its namespace, is dry-run
        assert applied["dry-run"] == 1 and applied["apply"] == 4, applied
        # nothing in the layer uses the CRD's kind: it is not waited for before the rest
        assert applied["watch"] == 0, applied
        # in sync: proven from the LISTs, the cluster-scoped kinds' included; no dry-run
        plan = plan_layer(layer.ctx, layer.node, objects)
        assert plan.counts.total == 0 and len(plan.changes) == 4
        replanned = layer.ctx.take()
        assert replanned["dry-run"] == 0 and replanned["list"] == 3, replanned
        assert sum(replanned.values()) <= 6, replanned  # + GET namespace, GET inventory (+ discovery)
        # an apply right after that plan re-reads nothing it would not change
        assert apply_layer(layer.ctx, layer.node, objects, reuse_plan=True).counts.total == 0
        again = layer.ctx.take()
        assert again["dry-run"] == 0 and again["list"] == 0 and again["apply"] == 0, again
    finally:
        rbac = client.RbacAuthorizationV1Api(api_client)
        rbac.delete_cluster_role(role["metadata"]["name"])
        client.ApiextensionsV1Api(api_client).delete_custom_resource_definition(f"widgets.{group}")


def test_a_crd_its_layer_uses_is_watched_until_established_not_polled(
    layer: Layer, api_client: client.ApiClient
) -> None:
    group = f"{layer.ns}.watch.envctl.test"
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": layer.ns}}
    widget = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}}
    write_docs(layer, [namespace, crd(group), widget])
    try:
        layer.ctx.take()
        done = apply_layer(layer.ctx, layer.node, layer.objects())
        assert done.counts.add == 3
        counts = layer.ctx.take()
        assert counts["watch"] >= 1, counts  # the CRD, until Established
        assert counts["get"] <= 3, counts  # namespace, inventory: no polls re-reading the CRD
        assert counts["dry-run"] == 3 and counts["apply"] == 3, counts
    finally:
        client.ApiextensionsV1Api(api_client).delete_custom_resource_definition(f"widgets.{group}")


def test_a_large_create_is_validated_without_its_body_coming_back_and_a_large_adoption_is_diffed(
    layer: Layer, kubeconfig: str, api_client: client.ApiClient
) -> None:
    layer.write()
    layer.apply()
    big = "x" * 100_000  # each object is over the 64 KiB above which a create's dry-run is brief
    docs = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name},
            "data": {"blob": big, "v": "git"},
        }
        for name in ("big-new", "big-unlabelled")
    ]
    (layer.root / layer.path / "big.yaml").write_text("".join("---\n" + json.dumps(d) + "\n" for d in docs))
    client.CoreV1Api(api_client).create_namespaced_config_map(
        layer.ns, {"metadata": {"name": "big-unlabelled"}, "data": {"blob": big, "v": "live"}}
    )
    layer.ctx.take()
    plan = {c.address: c for c in layer.plan().changes if c.action.changes}
    counts = layer.ctx.take()
    name = f"v1 ConfigMap {layer.ns}/big-"
    assert sorted(plan) == [f"{name}new", f"{name}unlabelled"]
    assert plan[f"{name}new"].action is Action.CREATE
    assert plan[f"{name}new"].after is not None and plan[f"{name}new"].after["data"]["v"] == "git"
    # the unlabelled one exists: its diff comes from a second, full dry-run
    adopted = plan[f"{name}unlabelled"]
    assert adopted.action is Action.UPDATE and "data.v" in adopted.fields, adopted
    assert adopted.before is not None and adopted.before["data"]["v"] == "live"
    assert adopted.after is not None and adopted.after["data"]["v"] == "git"
    # both are validated by a dry-run create, metadata only; the unlabelled one answers 409
    # AlreadyExists and is dry-run as an apply: brief (200, it exists), then in full for its diff
    assert counts["create dry-run"] == 2 and counts["create dry-run (metadata only)"] == 2, counts
    assert counts["dry-run (metadata only)"] == 1 and counts["dry-run"] == 2, counts
    layer.apply()
    got = client.CoreV1Api(api_client).read_namespaced_config_map("big-unlabelled", layer.ns)
    assert got.data["v"] == "git" and got.data["blob"] == big


class InFlight(Counted):
    """Counted, also recording the most CRD applies (writes) ever in flight at once."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        object.__setattr__(self, "flying", 0)
        object.__setattr__(self, "most", 0)

    def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        write = (
            method == "PATCH"
            and "/customresourcedefinitions/" in path
            and not (kw.get("query") or {}).get("dryRun")
        )
        if write:
            with self._count_lock:  # type: ignore[attr-defined]
                object.__setattr__(self, "flying", self.flying + 1)  # type: ignore[attr-defined]
                object.__setattr__(self, "most", max(self.most, self.flying))  # type: ignore[attr-defined]
        try:
            return super().request(method, path, **kw)
        finally:
            if write:
                with self._count_lock:  # type: ignore[attr-defined]
                    object.__setattr__(self, "flying", self.flying - 1)  # type: ignore[attr-defined]


def test_crds_are_applied_one_at_a_time_each_watched_from_its_apply_until_established(
    layer: Layer, api_client: client.ApiClient
) -> None:
    groups = [f"{layer.ns}.g{i}.envctl.test" for i in range(3)]
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": layer.ns}}
    write_docs(layer, [namespace, *(crd(g) for g in groups)])
    layer.ctx = InFlight(env_name=layer.ctx.env_name, kubeconfig=layer.ctx.kubeconfig, concurrency=16)
    node = dataclasses.replace(layer.node, layer=LayerSpec(namespace=layer.ns, wait=True))
    api = client.ApiextensionsV1Api(api_client)
    try:
        done = apply_layer(layer.ctx, node, layer.objects())
        assert done.counts.add == 4
        counts = layer.ctx.take()
        assert layer.ctx.most == 1, "CRDs were applied concurrently"  # type: ignore[attr-defined]
        # one watch per CRD, started by its apply; the readiness wait took their answers
        assert counts["watch"] == 3 and counts["apply"] == 4, counts
        for g in groups:
            conditions = api.read_custom_resource_definition(f"widgets.{g}").status.conditions
            assert any(c.type == "Established" and c.status == "True" for c in conditions), g
    finally:
        for g in groups:
            api.delete_custom_resource_definition(f"widgets.{g}")


def test_a_kind_an_upstream_crd_serves_is_waited_for_in_discovery_before_anything_is_written(
    layer: Layer, api_client: client.ApiClient
) -> None:
    """The API server lists a new CRD's kind in discovery a moment after the CRD is Established:
    the layer after the one that created it asks again, not fail. Here the CRD is created (as an
    upstream layer would) the moment discovery first says its group-version is not served."""
    group = f"{layer.ns}.late.envctl.test"
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": layer.ns}}
    widget = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}}
    write_docs(layer, [namespace, widget])
    api = client.ApiextensionsV1Api(api_client)
    created: list[str] = []
    real = layer.ctx.request

    def request(method: str, path: str, **kw: Any) -> dict[str, Any]:
        try:
            return real(method, path, **kw)
        except ApiError as e:
            if path == f"/apis/{group}/v1" and e.status == 404 and not created:
                created.append(api.create_custom_resource_definition(crd(group)).metadata.name)
            raise

    object.__setattr__(layer.ctx, "request", request)
    try:
        done = apply_layer(layer.ctx, layer.node, layer.objects())
        assert created, "discovery was never asked before the CRD existed"
        assert {c.address for c in done.changes if c.action is Action.CREATE} == {
            f"v1 Namespace {layer.ns}",
            f"{group}/v1 Widget {layer.ns}/w",
        }
        got = client.CustomObjectsApi(api_client).get_namespaced_custom_object(
            group, "v1", layer.ns, "widgets", "w"
        )
        assert got["spec"] == {"size": 1}
    finally:
        api.delete_custom_resource_definition(f"widgets.{group}")


def test_an_object_created_between_the_plan_and_the_apply_is_found_and_dry_run_again(
    layer: Layer, api_client: client.ApiClient
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": layer.ns}})
    cms = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n}, "data": {"key": n}}
        for n in ("cm-a", "cm-b", "cm-c")
    ]
    write_docs(layer, cms)
    objects = layer.objects()
    assert plan_layer(layer.ctx, layer.node, objects).counts.add == 3
    # another actor creates one of them meanwhile, without the layer's labels
    core.create_namespaced_config_map(layer.ns, {"metadata": {"name": "cm-b"}, "data": {"other": "theirs"}})
    layer.ctx.take()
    done = apply_layer(layer.ctx, layer.node, objects, reuse_plan=True)
    counts = layer.ctx.take()
    actions = {c.address: c.action for c in done.changes}
    assert actions == {
        f"v1 ConfigMap {layer.ns}/cm-a": Action.CREATE,
        f"v1 ConfigMap {layer.ns}/cm-b": Action.UPDATE,  # adopted, not "created"
        f"v1 ConfigMap {layer.ns}/cm-c": Action.CREATE,
    }
    # one GET per planned create settles it; only the one found is dry-run again; no LIST
    assert counts["dry-run"] == 1 and counts["list"] == 0 and counts["apply"] == 3, counts
    assert core.read_namespaced_config_map("cm-b", layer.ns).data == {"key": "cm-b", "other": "theirs"}
