"""End-to-end: Helm charts as layers (issue 21) on the real plane with its workload controllers
and KWOK nodes, so the chart's pre-install hook Job really runs: render offline, plan, apply, re-plan
clean, drift; values and template changes planned as object updates with --changed-since; a changed
hook Job re-created; a failing hook stops the apply before the chart's other objects.
"""

from __future__ import annotations

import pytest
from harness import Env, describe
from helmhelpers import (
    changes_of,
    configmap,
    crd_group,
    drift,
    job,
    plan_json,
    widget,
)
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-helm")]


def test_a_chart_layer_renders_offline_plans_applies_and_replans_clean(chart_env: Env) -> None:
    env, ns = chart_env, chart_env.namespace
    # validate renders the chart with no cluster at all
    r = env.run("validate", "-e", env.name, env={"KUBECONFIG": "/nonexistent"})
    assert r.returncode == 0, describe(r)

    data = plan_json(env)
    planned = changes_of(data, "layer.platform")
    assert planned == {f"v1 Namespace {ns}": "create"}
    assert "layer.web" in {n["node"] for n in data["nodes"]}

    r = env.run("apply", "-e", env.name, "--auto-approve")
    assert r.returncode == 0, describe(r)

    cm = configmap(env, "shop-web")
    assert cm == {
        "greeting": "hello",  # values file over the chart's values.yaml
        "dbHost": f"db.{env.name}.internal",  # a stack output, through the graph
        "replicasType": "float64",  # ${env.vars.replicas} stayed a number (JSON numbers are float64 in helm)
        "tags": "blue,green",  # a list input stayed a list
        "namespace": ns,  # --namespace from layer.yaml
    }
    assert configmap(env, "shop-cache") == {"size": "large"}  # the subchart, with the parent's values
    w = widget(env, "shop-web")  # the CRD from crds/ went first, then its custom resource
    assert w is not None and w["spec"]["size"] == 3
    migrate = job(env, "shop-web-migrate")
    assert migrate is not None and migrate.status.succeeded == 1  # the hook ran, and was waited for
    assert (migrate.metadata.annotations or {})["helm.sh/hook"] == "pre-install,pre-upgrade"
    with pytest.raises(ApiException) as e:  # the test hook was skipped
        client.CoreV1Api(env.api).read_namespaced_pod("shop-web-smoke", ns)
    assert e.value.status == 404
    # no Helm release state: the inventory is the release
    secrets = client.CoreV1Api(env.api).list_namespaced_secret(ns, label_selector="owner=helm").items
    assert secrets == []

    # a second plan finds nothing to do, and the chart's objects are in sync
    r = env.run("plan", "-e", env.name, "--detailed-exitcode")
    assert r.returncode == 0, describe(r)
    assert drift(env) == (0, "in-sync", [])

    # drift: another manager edits a value the chart sets
    client.CoreV1Api(env.api).patch_namespaced_config_map(
        "shop-web", ns, {"data": {"greeting": "tampered"}}, field_manager="intruder"
    )
    assert drift(env) == (2, "drifted", [f"v1 ConfigMap {ns}/shop-web"])


def test_chart_and_values_changes_show_as_object_changes_and_changed_since_follows_them(
    chart_env: Env,
) -> None:
    env = chart_env
    r = env.run("apply", "-e", env.name, "--auto-approve")
    assert r.returncode == 0, describe(r)
    base = env.git("rev-parse", "HEAD")

    env.edit(f"environments/{env.name}/layers/web/values.yaml", "greeting: hello", "greeting: bonjour")
    env.edit("charts/web/charts/cache/templates/cm.yaml", "size: {{", "tier: gold\n  size: {{")
    env.commit("new greeting, a new key in the subchart")

    data = plan_json(env, "--changed-since", base)
    assert {n["node"] for n in data["nodes"]} == {"layer.web"}  # the chart outside the layer dir counts
    assert changes_of(data, "layer.web") == {
        f"v1 ConfigMap {env.namespace}/shop-web": "update",
        f"v1 ConfigMap {env.namespace}/shop-cache": "update",
    }

    env.edit("charts/web/templates/widget.yaml", "size: {{ .Values.replicas }}", "size: 7")
    env.commit("a template change")
    data = plan_json(env, "--changed-since", "HEAD~1")
    assert changes_of(data, "layer.web") == {
        f"v1 ConfigMap {env.namespace}/shop-web": "update",
        f"v1 ConfigMap {env.namespace}/shop-cache": "update",
        f"{crd_group(env.name)}/v1 Widget {env.namespace}/shop-web": "update",
    }
    # a hook whose Job template changes is re-created (helm's before-hook-creation), no force needed
    env.edit("charts/web/templates/migrate-job.yaml", 'command: ["true"]', 'command: ["true", "v2"]')
    env.commit("a new migration")
    data = plan_json(env)
    assert changes_of(data, "layer.web")[f"batch/v1 Job {env.namespace}/shop-web-migrate"] == "replace"
    old_uid = job(env, "shop-web-migrate").metadata.uid  # type: ignore[union-attr]
    r = env.run("apply", "-e", env.name, "--auto-approve")
    assert r.returncode == 0, describe(r)
    rerun = job(env, "shop-web-migrate")
    assert rerun is not None and rerun.metadata.uid != old_uid and rerun.status.succeeded == 1
    assert widget(env, "shop-web")["spec"]["size"] == 7  # type: ignore[index]

    # a commit that touches neither the chart nor its values selects nothing
    (env.root / "README.md").write_text("notes\n")
    head = env.commit("docs")
    data = plan_json(env, "--changed-since", head + "~1")
    assert data["nodes"] == []


def test_a_failing_pre_install_hook_stops_the_apply_before_the_other_objects(chart_env: Env) -> None:
    env = chart_env
    # KWOK's stage of the test plane (scripts/kwok-stages.yaml) fails a pod with this label at once
    env.edit(
        "charts/web/templates/migrate-job.yaml",
        "    spec:\n      restartPolicy: Never",
        "    metadata:\n      labels: {stage.envctl.test/pod: fail}\n    spec:\n      restartPolicy: Never",
    )
    env.commit("a migration that fails")
    r = env.run("apply", "-e", env.name, "--auto-approve")
    assert r.returncode == 5, describe(r)  # partial: the stack and the namespace were applied
    assert f"batch/v1 Job {env.namespace}/shop-web-migrate" in r.stderr and "job failed" in r.stderr, (
        describe(r)
    )
    failed = job(env, "shop-web-migrate")
    assert failed is not None and (failed.status.failed or 0) >= 1
    # the hook ran first: nothing else of the chart was written
    assert configmap(env, "shop-web") is None
    assert configmap(env, "shop-cache") is None
    assert widget(env, "shop-web") is None
