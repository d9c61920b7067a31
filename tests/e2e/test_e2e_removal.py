"""End-to-end: what leaves Git leaves the world, and ``envctl destroy`` (issue 17, points 1, 2, 7).

The real CLI, the real Terraform engine and the real control plane, on copies of the example
environment (``stack.network`` -> ``stack.database`` -> ``layer.app`` <- ``layer.platform``, the
platform layer owning the app's Namespace). Everything a test claims is checked by listing what
is left: objects, inventories, the Lease, Terraform states and workspaces.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from e2ehelpers import SYSTEM_NAMESPACE, Env, converge, describe
from kubernetes import client

pytestmark = pytest.mark.e2e


def plan_json(env: Env, *args: str) -> dict[str, Any]:
    r = env.run("plan", "-e", env.name, "--format", "json", *args)
    assert r.returncode == 0, describe(r)
    data: dict[str, Any] = json.loads(r.stdout)
    return data


def nodes_of(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["node"]: n for n in plan["nodes"]}


def inventories(env: Env) -> list[str]:
    cms = client.CoreV1Api(env.api).list_namespaced_config_map(
        SYSTEM_NAMESPACE, label_selector=f"envctl.io/environment={env.name}"
    )
    return sorted(c.metadata.name for c in cms.items)


def envctl_dirs(env: Env, kind: str) -> list[str]:
    base = env.root / ".envctl" / kind / env.name
    return sorted(p.name for p in base.iterdir()) if base.exists() else []


def foreign_configmap(env: Env, name: str = "not-envctls") -> None:
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"x": "y"})
    client.CoreV1Api(env.api).create_namespaced_config_map(env.namespace, body)


def test_a_layer_removed_from_git_is_planned_deleted_and_forgotten(example: Env) -> None:
    env = example
    converge(env)
    assert "Deployment/web" in env.object_names()
    env.git("rm", "-q", "-r", f"environments/{env.name}/layers/app")
    env.commit("remove the app layer")

    drift = env.run("drift", "-e", env.name, "--format", "json")
    assert drift.returncode == 2, describe(drift)  # still live although Git no longer has it
    app_drift = {n["node"]: n for n in json.loads(drift.stdout)["nodes"]}["layer.app"]
    assert app_drift["status"] == "drifted" and len(app_drift["changes"]) == 3
    text = env.run("plan", "-e", env.name)
    assert text.returncode == 0, describe(text)
    assert "REMOVED FROM GIT" in text.stdout
    assert f"- apps/v1 Deployment {env.namespace}/web (delete)" in text.stdout
    app = nodes_of(plan_json(env))["layer.app"]
    assert app["deletion"] == "removed from Git"
    assert set(app["depends_on"]) == {"layer.platform", "stack.database"}  # recorded at its converge
    assert {c["address"] for c in app["changes"]} == {
        f"v1 ConfigMap {env.namespace}/web-config",
        f"apps/v1 Deployment {env.namespace}/web",
        f"v1 Service {env.namespace}/web",
    }

    r = env.run("apply", "-e", env.name, "--auto-approve")
    assert r.returncode == 0, describe(r)
    assert env.object_names() == {"ConfigMap/platform-settings"}
    assert inventories(env) == [f"{env.name}.layer.platform"]
    status = json.loads(env.run("status", "-e", env.name, "--format", "json").stdout)
    assert status["removed_from_git"] == {}
    again = env.run("plan", "-e", env.name, "--detailed-exitcode")
    assert again.returncode == 0, describe(again)
    assert "layer.app" not in again.stdout


def test_a_removed_stack_is_destroyed_with_its_last_config_after_the_layer_that_used_it(example: Env) -> None:
    env = example
    converge(env)
    assert "database" in envctl_dirs(env, "state")
    env.git(
        "rm", "-q", "-r", f"environments/{env.name}/layers/app", f"environments/{env.name}/stacks/database"
    )
    env.edit(f"environments/{env.name}/environment.yaml", "[terraform]", "[terraform, kubernetes-delete]")
    env.commit("remove the database and its consumer; deletions of objects need approval too")

    plan = nodes_of(plan_json(env))
    db = plan["stack.database"]
    assert db["deletion"] == "removed from Git" and db["depends_on"] == ["stack.network"]
    assert db["changes"] and {c["action"] for c in db["changes"]} == {"delete"}
    assert (
        "stack.database"
        in json.loads(env.run("plan", "-e", env.name, "--format", "json").stdout)["needs_approval"]
    )  # the default policy: every Terraform change needs a human

    held = env.run("apply", "-e", env.name)  # not a terminal, no approval: nothing of it is written
    assert held.returncode == 3, describe(held)
    assert "database" in envctl_dirs(env, "state") and "Deployment/web" in env.object_names()

    r = env.run("apply", "-e", env.name, "--auto-approve")
    assert r.returncode == 0, describe(r)
    progress = r.stderr
    assert "layer.app: deleted" in progress and "stack.database: destroying" in progress, describe(r)
    assert progress.index("layer.app: deleted") < progress.index("stack.database: destroying")
    assert envctl_dirs(env, "state") == ["network"] and "database" not in envctl_dirs(env, "work")
    assert "Deployment/web" not in env.object_names()
    assert env.run("plan", "-e", env.name, "--detailed-exitcode").returncode == 0


def test_a_kept_namespace_stays_listed_and_is_never_deleted_behind_the_plans_back(example: Env) -> None:
    env = example
    converge(env)
    foreign_configmap(env)
    env.git("rm", "-q", "-r", f"environments/{env.name}/layers")
    env.commit("remove every layer")

    saved = env.plan()
    bundle = json.loads((saved / "bundle.json").read_text())
    platform = bundle["nodes"]["layer.platform"]
    assert [k for k in platform["kept"] if k.startswith(f"v1 Namespace {env.namespace}: kept")], platform
    assert f"v1 ConfigMap {env.namespace}/not-envctls" in platform["kept"][0]
    # the foreign object goes after planning: the apply must still do what the plan said
    client.CoreV1Api(env.api).delete_namespaced_config_map("not-envctls", env.namespace)
    r = env.run("apply", "-e", env.name, str(saved), "--auto-approve")
    assert r.returncode == 0, describe(r)
    assert env.namespace_exists()
    assert env.object_names() == set()
    assert inventories(env) == [f"{env.name}.layer.platform"]  # still recording the kept Namespace

    later = nodes_of(plan_json(env))
    # the namespace is empty now: the next plan deletes it, and then nothing is left of the layer
    assert [c["address"] for c in later["layer.platform"]["changes"]] == [f"v1 Namespace {env.namespace}"]
    r = env.run("apply", "-e", env.name, "--auto-approve")
    assert r.returncode == 0, describe(r)
    assert not env.namespace_exists() and inventories(env) == []
    assert env.run("plan", "-e", env.name, "--detailed-exitcode").returncode == 0


def test_a_kept_namespace_is_listed_in_every_later_plan(example: Env) -> None:
    env = example
    converge(env)
    foreign_configmap(env)
    env.git("rm", "-q", "-r", f"environments/{env.name}/layers")
    env.commit("remove every layer")
    r = env.run("apply", "-e", env.name, "--auto-approve")
    assert r.returncode == 0, describe(r)
    assert env.namespace_exists() and env.object_names() == {"ConfigMap/not-envctls"}
    for _ in range(2):
        text = env.run("plan", "-e", env.name)
        assert text.returncode == 0, describe(text)
        assert f"= v1 Namespace {env.namespace}: kept: the namespace still holds other objects" in text.stdout
        assert "Kept (listed above, until removed or adopted): layer.platform" in text.stdout
        drift = env.run("drift", "-e", env.name, "--format", "json")
        assert drift.returncode == 0, describe(drift)  # nothing to converge: kept, listed
        platform = {n["node"]: n for n in json.loads(drift.stdout)["nodes"]}["layer.platform"]
        assert platform["notes"][0] == "removed from Git"
        assert platform["notes"][1].startswith(f"kept: v1 Namespace {env.namespace}: kept"), platform


def test_destroy_target_deletes_the_node_and_its_dependents_only(example: Env) -> None:
    env = example
    converge(env)
    unknown = env.run("destroy", "-e", env.name, "--target", "stack.nope")
    assert unknown.returncode == 64, describe(unknown)
    assert "stack.database" in unknown.stderr and "layer.platform" in unknown.stderr

    held = env.run("destroy", "-e", env.name, "--target", "stack.database")
    assert held.returncode == 3, describe(held)
    assert "Deployment/web" in env.object_names()  # nothing deleted without the approval

    r = env.run("destroy", "-e", env.name, "--target", "stack.database", "--auto-approve", "--format", "json")
    assert r.returncode == 0, describe(r)
    result = json.loads(r.stdout)
    assert {n["node"]: n["status"] for n in result["nodes"]} == {
        "layer.app": "done",
        "stack.database": "done",
    }
    assert env.object_names() == {"ConfigMap/platform-settings"}
    assert envctl_dirs(env, "state") == ["network"]
    assert inventories(env) == [f"{env.name}.layer.platform"]


def test_a_preview_environment_created_and_destroyed_three_times_leaves_nothing(example: Env) -> None:
    env = example
    for _ in range(3):
        converge(env)
        assert env.namespace_exists() and env.state_files()
        r = env.run("destroy", "-e", env.name, "--auto-approve")
        assert r.returncode == 0, describe(r)
        assert not env.namespace_exists()
        assert inventories(env) == []
        assert env.lease_holder() is None
        leases = client.CoordinationV1Api(env.api).list_namespaced_lease(SYSTEM_NAMESPACE).items
        assert f"envctl-lock-{env.name}" not in {lease.metadata.name for lease in leases}
        assert env.state_files() == [] and envctl_dirs(env, "work") == []
        assert not (env.root / ".envctl" / "locks" / f"{env.name}.lock").exists()
        status = json.loads(env.run("status", "-e", env.name, "--format", "json").stdout)
        assert status["removed_from_git"] == {}
        assert set(status["never_converged"]) == {
            "stack.network",
            "stack.database",
            "layer.platform",
            "layer.app",
        }


def _crd(group: str) -> str:
    return f"""apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  scope: Namespaced
  names: {{kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
"""


def inventory_entries(env: Env, layer: str) -> str:
    cm = client.CoreV1Api(env.api).read_namespaced_config_map(f"{env.name}.layer.{layer}", SYSTEM_NAMESPACE)
    return str((cm.data or {}).get("objects", ""))


def test_a_crd_without_the_prune_annotation_is_kept_recorded_and_listed_until_allowed(example: Env) -> None:
    env = example
    group = f"{env.name}.e2e.envctl.io"  # cluster-scoped: a group of this test's own
    crd_name = f"widgets.{group}"
    ext = client.ApiextensionsV1Api(env.api)
    (env.env_dir / "layers" / "platform" / "crd.yaml").write_text(_crd(group))
    env.commit("a CRD in the platform layer")
    try:
        converge(env)
        (env.env_dir / "layers" / "platform" / "crd.yaml").unlink()
        env.commit("the CRD leaves Git")
        kept_note = (
            f"apiextensions.k8s.io/v1 CustomResourceDefinition {crd_name}: kept: a CustomResourceDefinition"
        )
        for _ in range(2):  # the apply keeps it recorded, so the next plan lists it again
            text = env.run("plan", "-e", env.name)
            assert text.returncode == 0 and kept_note in text.stdout, describe(text)
            r = env.run("apply", "-e", env.name, "--auto-approve")
            assert r.returncode == 0, describe(r)
            assert ext.read_custom_resource_definition(crd_name).metadata.name == crd_name
            assert crd_name in inventory_entries(env, "platform")

        env.git("rm", "-q", "-r", f"environments/{env.name}/layers")
        env.commit("remove every layer")
        r = env.run("apply", "-e", env.name, "--auto-approve")
        assert r.returncode == 0, describe(r)
        assert not env.namespace_exists()  # empty once the app's objects went: deleted
        assert inventory_entries(env, "platform") == json.dumps(
            [["apiextensions.k8s.io/v1", "CustomResourceDefinition", "", crd_name]], separators=(",", ":")
        )
        platform = nodes_of(plan_json(env))["layer.platform"]
        assert platform["status"] == "removed from git: kept" and platform["kept"][0].startswith(
            f"apiextensions.k8s.io/v1 CustomResourceDefinition {crd_name}: kept"
        )

        # the user allows it: the next plan deletes it, and nothing is left of the layer
        ext.patch_custom_resource_definition(
            crd_name, {"metadata": {"annotations": {"envctl.io/prune": "allow"}}}
        )
        assert [c["address"] for c in nodes_of(plan_json(env))["layer.platform"]["changes"]] == [
            f"apiextensions.k8s.io/v1 CustomResourceDefinition {crd_name}"
        ]
        r = env.run("apply", "-e", env.name, "--auto-approve")
        assert r.returncode == 0, describe(r)
        assert crd_name not in {c.metadata.name for c in ext.list_custom_resource_definition().items}
        assert inventories(env) == []
    finally:
        with contextlib.suppress(client.ApiException):
            ext.delete_custom_resource_definition(crd_name)
