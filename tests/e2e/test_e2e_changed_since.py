"""End-to-end: ``--changed-since`` follows every file a node reads, through the real CLI on the
real plane: a kustomize base and a component outside the layer directory (issue 17, point 5).
Charts and values files are covered in test_e2e_helm_hooks.py, module sources in unit tests."""

from __future__ import annotations

import json
from typing import Any

import pytest
from harness import Env, converge, describe

pytestmark = pytest.mark.e2e

BASE_CM = """apiVersion: v1
kind: ConfigMap
metadata:
  name: shared-base
  namespace: ${inputs.namespace}
data:
  level: one
"""


def plan_nodes(env: Env, *args: str) -> dict[str, dict[str, str]]:
    r = env.run("plan", "-e", env.name, "--format", "json", *args)
    assert r.returncode in (0, 2), describe(r)
    data: dict[str, Any] = json.loads(r.stdout)
    return {
        n["node"]: {c["address"]: c["action"] for c in n.get("changes") or [] if c["action"] != "no-op"}
        for n in data["nodes"]
    }


def test_an_edit_to_a_kustomize_base_outside_the_layer_selects_the_layer(example: Env) -> None:
    env = example
    converge(env)
    platform = env.env_dir / "layers" / "platform"
    (platform / "kustomization.yaml").write_text(
        "resources: [namespaces.yaml, config.yaml, ../../../../bases/shared]\n"
    )
    (env.root / "bases" / "shared").mkdir(parents=True)
    (env.root / "bases" / "shared" / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    (env.root / "bases" / "shared" / "cm.yaml").write_text(BASE_CM)
    env.commit("platform: a kustomization with a shared base")
    r = env.run("apply", "-e", env.name, "--auto-approve")
    assert r.returncode == 0, describe(r)

    env.edit("bases/shared/cm.yaml", "level: one", "level: two")
    env.commit("the shared base changes")
    nodes = plan_nodes(env, "--changed-since", "HEAD~1")
    assert "layer.platform" in nodes  # it used to be a clean plan: only the layer dir was followed
    assert "stack.network" not in nodes and "stack.database" not in nodes
    assert nodes["layer.platform"] == {f"v1 ConfigMap {env.namespace}/shared-base": "update"}

    (env.root / "bases" / "unrelated.yaml").write_text("a: 1\n")
    env.commit("a file nothing reads")
    assert plan_nodes(env, "--changed-since", "HEAD~1") == {}
