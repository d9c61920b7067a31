"""The example environment's layers against the real control plane, and kubectl as a referee.

Loads ``environments/dev`` with the real loader, resolves the layers' inputs (the database
endpoint stands in for ``stack.database``), moves the example's namespace to a unique one so tests
can run in parallel, then plans, applies, compares with ``kubectl diff --server-side``, prunes and
reports drift.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from envctl.core.changes import Action
from envctl.core.errors import Location
from envctl.core.model import Environment, KubernetesSettings, Node, Ref
from envctl.core.refs import substitute_value
from envctl.kube import KubeContext, apply_layer, drift_layer, plan_layer, render_layer
from envctl.repo.loader import load_environment
from envctl.repo.snapshot import WorkTreeSnapshot

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
KUBECTL = str(Path(sys.executable).parent / "kubectl")


def resolved_inputs(env: Environment, node: Node, namespace: str) -> dict[str, Any]:
    def resolve(ref: Ref) -> Any:
        if ref.kind == "output":
            return "db.example.internal:5432"
        if ref.kind == "env":
            return env.name
        return env.vars[ref.name]

    inputs = {k: substitute_value(v, resolve, Location(node.path)) for k, v in node.inputs.items()}
    if "namespace" in inputs:
        inputs["namespace"] = namespace
    return inputs


def test_example_layers_plan_apply_match_kubectl_prune_and_drift(
    kubeconfig: str, api_client: client.ApiClient, tmp_path: Path
) -> None:
    snapshot = WorkTreeSnapshot(REPO)
    loaded = load_environment(snapshot, "dev")
    suffix = uuid.uuid4().hex[:6]
    namespace = f"app-dev-{suffix}"
    env = dataclasses.replace(
        loaded, name=f"dev-{suffix}", kubernetes=KubernetesSettings(kubeconfig=kubeconfig)
    )
    ctx = KubeContext.from_env(env, snapshot)
    layers = []
    for node_id in ("layer.platform", "layer.app"):
        node = loaded.nodes[node_id]
        assert node.layer is not None
        if node.layer.namespace:
            node = dataclasses.replace(node, layer=dataclasses.replace(node.layer, namespace=namespace))
        objects = render_layer(env, snapshot, node, resolved_inputs(env, node, namespace))
        # The example's namespace name is literal in namespaces.yaml: make it unique for this run.
        objects = json.loads(json.dumps(objects).replace('"app-dev"', json.dumps(namespace)))
        layers.append((node, objects))
    try:
        for node, objects in layers:
            plan = plan_layer(ctx, node, objects)
            assert plan.changes and all(c.action is Action.CREATE for c in plan.changes)
            apply_layer(ctx, node, objects, wait=False)
            assert not plan_layer(ctx, node, objects).has_changes

        rendered = tmp_path / "rendered.json"
        items = [o for _, objects in layers for o in objects]
        rendered.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        proc = subprocess.run(
            [
                KUBECTL,
                "--kubeconfig",
                kubeconfig,
                "diff",
                "--server-side",
                "--field-manager=envctl",
                "-f",
                str(rendered),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert (proc.returncode, proc.stdout) == (0, ""), proc.stdout + proc.stderr

        app, app_objects = layers[1]
        without_service = [o for o in app_objects if o["kind"] != "Service"]
        plan = plan_layer(ctx, app, without_service)
        assert {c.address: c.action for c in plan.changes if c.action.changes} == {
            f"v1 Service {namespace}/web": Action.DELETE
        }
        apply_layer(ctx, app, without_service, wait=False)
        client.AppsV1Api(api_client).patch_namespaced_deployment(
            "web",
            namespace,
            {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}},
        )
        drift = {c.address: c for c in drift_layer(ctx, app, without_service).changes if c.action.changes}
        web = drift[f"apps/v1 Deployment {namespace}/web"]
        assert web.fields == ("spec.template.spec.containers[0].image",)
        assert web.manager is not None and web.manager != "envctl"
    finally:
        core = client.CoreV1Api(api_client)
        core.delete_namespace(namespace, propagation_policy="Background")
        core.delete_collection_namespaced_config_map(
            "envctl-system", label_selector=f"envctl.io/environment={env.name}"
        )
