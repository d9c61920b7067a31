"""End-to-end: a layer that creates its own Namespace and holds an object the API server refuses.

Objects in a namespace that does not exist yet cannot be dry-run at plan time (the API server
refuses a dry-run in a missing namespace). The plan says so; the apply creates the Namespace, dry-runs
the objects in it, and when one is refused deletes the Namespace it created again (waiting until it
is gone): nothing is left behind, the exit code is the refused object's, the inventory is as before,
and a re-apply after the fix converges at once. A Namespace envctl did not create in this run (one
that already existed) is never deleted (one another actor creates between plan and apply:
tests/integration/test_kube_engine.py).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Env, assert_no_traceback, describe, live
from kubernetes import client

pytestmark = pytest.mark.e2e

BAD = {"replicas": -1}  # refused by the API server's validation (422 Invalid): exit 78


def deployment(spec_extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
            **spec_extra,
        },
    }


@pytest.fixture
def env(tmp_path: Path, kubeconfig: str, api_client: client.ApiClient) -> Iterator[Env]:
    name = f"newns-{uuid.uuid4().hex[:8]}"
    env = Env(tmp_path / "repo", name, kubeconfig, api_client)
    env.write("environment.yaml", f"name: {name}\napproval:\n  required_for: [none]\n")
    env.write("layers/app/layer.yaml", f"namespace: {env.namespace}\nwait: false\n")
    (env.root / ".gitignore").write_text(".envctl/\n")
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=env.root, check=True)
    yield env
    env.cleanup()


def write_layer(env: Env, extra: dict[str, Any]) -> None:
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": env.namespace}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}},
        deployment(extra),
    ]
    env.write("layers/app/app.yaml", "".join("---\n" + json.dumps(o) + "\n" for o in objects))
    env.commit("the app layer")


def inventory(env: Env) -> dict[str, Any] | None:
    return live(env.api, "ConfigMap", "envctl-system", f"{env.name}.layer.app")


def test_a_refused_object_in_a_namespace_the_layer_creates_leaves_nothing_behind(env: Env) -> None:
    write_layer(env, BAD)
    plan = env.plan()
    assert plan.returncode == 0, describe(plan)
    # the plan says which objects it could not validate, and why
    assert "could not be validated yet" in plan.output, describe(plan)
    assert f"Namespace {env.namespace}" in plan.output, describe(plan)

    r = env.apply()
    assert r.returncode == 1, describe(r)  # DESIGN §2: the only node failed
    assert_no_traceback(r)
    # the node's error names its kind, not an exit code the command does not exit with
    assert "(invalid-configuration)" in r.output and "exit 78" not in r.output, describe(r)
    assert f"apps/v1 Deployment {env.namespace}/web" in r.output, describe(r)
    assert "nothing was applied" in r.output, describe(r)
    assert "part-way" not in r.output, describe(r)
    assert f"v1 Namespace {env.namespace}" in r.output and "deleted again" in r.output, describe(r)
    # gone, not Terminating: the apply waited for the namespace controller
    assert not env.namespace_exists(), "the Namespace the failed apply created was left behind"
    assert inventory(env) is None, "the inventory lists objects that were never applied"

    # fixed: the very next apply converges (no Terminating namespace in its way)
    write_layer(env, {"replicas": 1})
    again = env.apply()
    assert again.returncode == 0, describe(again)
    assert env.object_names() == {"ConfigMap/settings", "Deployment/web"}
    assert env.plan("--detailed-exitcode").returncode == 0


def test_a_namespace_that_already_existed_is_never_deleted(env: Env) -> None:
    write_layer(env, {"replicas": 1})
    assert env.apply().returncode == 0
    uid = live(env.api, "Namespace", "", env.namespace)["metadata"]["uid"]  # type: ignore[index]
    write_layer(env, BAD)
    r = env.apply()
    assert r.returncode == 78, describe(r)  # refused by the plan's dry-run: nothing written
    assert_no_traceback(r)
    assert f"apps/v1 Deployment {env.namespace}/web" in r.output, describe(r)
    ns = live(env.api, "Namespace", "", env.namespace)
    assert ns is not None and ns["metadata"]["uid"] == uid
    assert "deletionTimestamp" not in ns["metadata"]
    assert env.configmap("settings") == {"a": "1"}
