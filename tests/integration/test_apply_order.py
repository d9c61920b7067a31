"""The apply order of a layer against the real control plane: what must exist before what.

After its CRDs and Namespaces, an apply writes a layer in a few tiers of kinds
(``envctl/kube/objects.py`` APPLY_TIERS), each tier one wave of concurrent requests. These
tests read the order the API server itself gave the writes (the ``resourceVersion`` of each
write's answer: etcd's revision, one global sequence), show that a webhook configuration that
would refuse the layer's own objects is written after all of them, and that a tier with
failures stops the apply with every failure and every applied object listed.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest
from kubehelpers import get, wait_for
from kubernetes import client
from kubernetes.client.rest import ApiException

from envctl.core.errors import EngineError
from envctl.core.model import Environment, KubernetesSettings, LayerSpec, Node
from envctl.kube import KubeContext, apply_layer, render_layer
from envctl.kube.client import Mapping_
from envctl.kube.objects import ObjRef, apply_tier
from envctl.repo.snapshot import WorkTreeSnapshot

pytestmark = pytest.mark.integration


class Recorded(KubeContext):
    """A KubeContext that keeps the ``resourceVersion`` the API server answered each write with."""

    revisions: dict[ObjRef, int]

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        object.__setattr__(self, "revisions", {})

    def apply_created(
        self, obj: Any, mapping: Mapping_, *, dry_run: bool, force: bool, metadata_only: bool = False
    ) -> tuple[dict[str, Any], bool]:
        out = super().apply_created(obj, mapping, dry_run=dry_run, force=force, metadata_only=metadata_only)
        if not dry_run:
            self.revisions[ObjRef.of(out[0])] = int(out[0]["metadata"]["resourceVersion"])
        return out


def converge(root: Path, kubeconfig: str, ns: str, docs: list[dict[str, Any]]) -> tuple[Recorded, Any]:
    """Write ``docs`` as layer ``app`` of environment ``ns`` and apply it; (context, result or error)."""
    path = f"environments/{ns}/layers/app"
    (root / path).mkdir(parents=True, exist_ok=True)
    (root / path / "app.yaml").write_text("".join(f"---\n{json.dumps(d)}\n" for d in docs))
    env = Environment(
        name=ns, path=f"environments/{ns}", kubernetes=KubernetesSettings(kubeconfig=kubeconfig)
    )
    node = Node(
        id="layer.app", kind="layer", name="app", path=path, layer=LayerSpec(namespace=ns, wait=False)
    )
    ctx = Recorded(env_name=ns, kubeconfig=kubeconfig)
    objects = render_layer(env, WorkTreeSnapshot(root), node, {})
    try:
        return ctx, apply_layer(ctx, node, objects)
    except EngineError as e:
        return ctx, e


@pytest.fixture
def ns(namespace: str, api_client: client.ApiClient) -> Any:
    yield namespace
    client.CoreV1Api(api_client).delete_collection_namespaced_config_map(
        "envctl-system", label_selector=f"envctl.io/environment={namespace}"
    )


def obj(api_version: str, kind: str, name: str, **body: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, **body}


def deployment(name: str, account: str = "default") -> dict[str, Any]:
    pod = {
        "serviceAccountName": account,
        "containers": [
            {"name": "web", "image": "nginx:1", "envFrom": [{"configMapRef": {"name": "settings"}}]}
        ],
    }
    return obj(
        "apps/v1",
        "Deployment",
        name,
        spec={
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod},
        },
    )


def install_bundle(ns: str) -> list[dict[str, Any]]:
    """An app as charts ship it: account, role and binding, config, service, workload, routing,
    a validating webhook whose backend is not running (failurePolicy Fail) that refuses every
    create and update of those kinds in the namespace."""
    rbac = "rbac.authorization.k8s.io"
    refuse = {
        "name": f"refuse.{ns}.envctl.test",
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "timeoutSeconds": 2,
        "clientConfig": {"service": {"namespace": ns, "name": "not-running", "path": "/validate"}},
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
        "rules": [
            {
                "apiGroups": ["", "apps", rbac, "networking.k8s.io", "policy"],
                "apiVersions": ["*"],
                "operations": ["CREATE", "UPDATE"],
                "resources": [
                    "serviceaccounts",
                    "configmaps",
                    "services",
                    "deployments",
                    "roles",
                    "rolebindings",
                    "networkpolicies",
                    "ingresses",
                    "poddisruptionbudgets",
                ],
            }
        ],
    }
    return [
        obj(
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfiguration",
            f"{ns}-refuse",
            webhooks=[refuse],
        ),
        deployment("web", account="web"),
        obj(
            "networking.k8s.io/v1",
            "Ingress",
            "web",
            spec={"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}},
        ),
        obj("v1", "Service", "web", spec={"selector": {"app": "web"}, "ports": [{"port": 80}]}),
        obj(
            f"{rbac}/v1",
            "RoleBinding",
            "web",
            roleRef={"apiGroup": rbac, "kind": "Role", "name": "web"},
            subjects=[{"kind": "ServiceAccount", "name": "web", "namespace": ns}],
        ),
        obj("v1", "ConfigMap", "settings", data={"LOG_LEVEL": "info"}),
        *(obj("v1", "ConfigMap", f"extra-{i}", data={"i": str(i)}) for i in range(3)),
        obj(
            f"{rbac}/v1",
            "Role",
            "web",
            rules=[{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
        ),
        obj("v1", "ServiceAccount", "web"),
        obj(
            "networking.k8s.io/v1",
            "NetworkPolicy",
            "web",
            spec={"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]},
        ),
        obj(
            "policy/v1",
            "PodDisruptionBudget",
            "web",
            spec={"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}},
        ),
    ]


def test_a_webhook_that_would_refuse_the_layers_own_objects_is_written_after_all_of_them(
    tmp_path: Path, kubeconfig: str, ns: str, api_client: client.ApiClient
) -> None:
    admission = client.AdmissionregistrationV1Api(api_client)
    try:
        ctx, result = converge(tmp_path, kubeconfig, ns, install_bundle(ns))
        assert not isinstance(result, Exception), result
        written = ctx.revisions
        assert len(written) == len(install_bundle(ns))
        # the server's own order: each tier's writes all came after every write of the tier before
        tiers = sorted({apply_tier(r.kind) for r in written})
        assert len(tiers) == 4  # roles/accounts/policies, config/bindings/services, workloads, webhooks
        for earlier, later in itertools.pairwise(tiers):
            last = max(v for r, v in written.items() if apply_tier(r.kind) == earlier)
            first = min(v for r, v in written.items() if apply_tier(r.kind) == later)
            assert last < first, (earlier, later, written)
        by_kind = {r.kind: v for r, v in written.items()}
        assert by_kind["Role"] < by_kind["RoleBinding"] and by_kind["ServiceAccount"] < by_kind["RoleBinding"]
        assert by_kind["Service"] < by_kind["Deployment"] and by_kind["Service"] < by_kind["Ingress"]
        assert all(v < by_kind["ValidatingWebhookConfiguration"] for r, v in written.items() if r.namespace)

        # ...and had it been written first, it would have refused them: it refuses them now
        def refused() -> bool:
            try:
                client.CoreV1Api(api_client).create_namespaced_config_map(
                    ns, {"metadata": {"name": "one-more"}}, dry_run="All"
                )
            except ApiException as e:
                return "failed calling webhook" in str(e.body)
            return False

        wait_for(refused, timeout=30, what="the webhook refusing a ConfigMap of the layer's namespace")
        assert get(api_client, deployment("web") | {"metadata": {"name": "web", "namespace": ns}}) is not None
    finally:
        try:
            admission.delete_validating_webhook_configuration(f"{ns}-refuse")
        except ApiException as e:
            if e.status != 404:
                raise


def free_node_ports(api_client: client.ApiClient, n: int) -> list[int]:
    used = {
        p.node_port
        for s in client.CoreV1Api(api_client).list_service_for_all_namespaces().items
        for p in (s.spec.ports or [])
        if p.node_port
    }
    return random.sample(sorted(set(range(30000, 32768)) - used), n)


def node_port_service(name: str, port: int) -> dict[str, Any]:
    spec = {"type": "NodePort", "selector": {"app": name}, "ports": [{"port": 80, "nodePort": port}]}
    return obj("v1", "Service", name, spec=spec)


def test_a_tier_with_failures_stops_the_apply_listing_every_failure_and_what_was_applied(
    tmp_path: Path, kubeconfig: str, ns: str, api_client: client.ApiClient
) -> None:
    # Two pairs of Services asking for the same node port: each passes its dry-run (nothing holds
    # the port yet); written at once, one of each pair is refused. Their tier fails as a whole.
    p1, p2 = free_node_ports(api_client, 2)
    services = [node_port_service("a1", p1), node_port_service("a2", p1)]
    services += [node_port_service("b1", p2), node_port_service("b2", p2)]
    docs = [
        obj("v1", "ServiceAccount", "web"),
        obj("v1", "ConfigMap", "settings", data={"LOG_LEVEL": "info"}),
        *services,
        deployment("web", account="web"),
    ]
    ctx, err = converge(tmp_path, kubeconfig, ns, docs)
    assert isinstance(err, EngineError), err
    assert err.message.startswith("apply failed part-way (4 of 7 applied): 2 object(s) failed to apply")
    assert err.message.count("provided port is already allocated") == 2
    assert err.detail is not None
    applied, not_applied = err.detail.split("not applied")
    live = {
        name
        for name in ("a1", "a2", "b1", "b2")
        if get(api_client, obj("v1", "Service", name) | {"metadata": {"name": name, "namespace": ns}})
    }
    assert len(live & {"a1", "a2"}) == 1 and len(live & {"b1", "b2"}) == 1
    for name in ("a1", "a2", "b1", "b2"):
        assert (f"  v1 Service {ns}/{name} (created)" in applied.splitlines()) == (name in live)
        assert (f"  v1 Service {ns}/{name}" in not_applied.splitlines()) == (name not in live)
    assert f"v1 ServiceAccount {ns}/web (created)" in applied
    assert f"v1 ConfigMap {ns}/settings (created)" in applied
    assert f"apps/v1 Deployment {ns}/web" in not_applied
    # nothing of the next tier was written
    assert get(api_client, deployment("web") | {"metadata": {"name": "web", "namespace": ns}}) is None
    assert {r.kind for r in ctx.revisions} == {"ServiceAccount", "ConfigMap", "Service"}

    # without the Services that lost, a re-run converges the rest
    kept = [d for d in docs if d["kind"] != "Service" or d["metadata"]["name"] in live]
    ctx, result = converge(tmp_path, kubeconfig, ns, kept)
    assert not isinstance(result, Exception), result
    assert get(api_client, deployment("web") | {"metadata": {"name": "web", "namespace": ns}}) is not None
