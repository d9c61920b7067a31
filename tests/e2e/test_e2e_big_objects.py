"""End-to-end: large new objects (operator-sized CRDs) through ``envctl apply`` on the real plane.

A large object that does not exist yet is validated by a dry-run create where that refuses all an
apply would (``envctl.kube.diff.validated_by_create``); one an apply alone would refuse - here a
finalizer listed twice, which a create accepts - must still stop the whole run before anything is
written. Once fixed, the CRDs are applied one at a time and established before the layer that
uses them starts.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Env, crd_manifest, describe
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.e2e


@pytest.fixture
def big_env(tmp_path: Path, kubeconfig: str, api_client: client.ApiClient) -> Iterator[Env]:
    name = f"big-{uuid.uuid4().hex[:8]}"
    env = Env(tmp_path / "repo", name, kubeconfig, api_client)
    env.write("environment.yaml", f"name: {name}\napproval:\n  required_for: [none]\n")
    env.write("layers/crds/layer.yaml", "wait: {timeout: 120s}\n")
    env.write("layers/app/layer.yaml", f"namespace: {env.namespace}\ndepends_on: [layer.crds]\nwait: false\n")
    app = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": env.namespace}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}},
        {
            "apiVersion": f"{name}.big.envctl.test/v1",
            "kind": "Gadget0",
            "metadata": {"name": "g"},
            "spec": {},
        },
    ]
    env.write("layers/app/app.yaml", "".join("---\n" + json.dumps(o) + "\n" for o in app))
    (env.root / ".gitignore").write_text(".envctl/\n")
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=env.root, check=True)
    yield env
    env.cleanup()
    api = client.ApiextensionsV1Api(api_client)
    for i in range(3):
        try:
            api.delete_custom_resource_definition(f"gadget{i}s.{name}.big.envctl.test")
        except ApiException as e:
            if e.status != 404:
                raise


def write_crds(env: Env, finalizer_twice: bool) -> None:
    crds = [
        crd_manifest(f"{env.name}.big.envctl.test", f"gadget{i}s", f"Gadget{i}", fields=600) for i in range(3)
    ]
    if finalizer_twice:  # a create accepts it, server-side apply refuses it
        crds[1]["metadata"]["finalizers"] = ["example.com/keep", "example.com/keep"]
    env.write("layers/crds/crds.yaml", "".join("---\n" + json.dumps(o) + "\n" for o in crds))
    env.commit("crds")


def crds_of(env: Env) -> list[str]:
    found = client.ApiextensionsV1Api(env.api).list_custom_resource_definition().items
    return sorted(c.metadata.name for c in found if c.spec.group == f"{env.name}.big.envctl.test")


def test_a_large_crd_only_an_apply_refuses_stops_the_run_before_any_write_and_applies_once_fixed(
    big_env: Env,
) -> None:
    env = big_env
    write_crds(env, finalizer_twice=True)
    r = env.apply()
    assert r.returncode == 1, describe(r)
    assert f"gadget1s.{env.name}.big.envctl.test" in r.output and "duplicate" in r.output, describe(r)
    assert crds_of(env) == [], "no CRD may be written"
    assert not env.namespace_exists(), "nothing of the downstream layer may be written"
    inventories = client.CoreV1Api(env.api).list_namespaced_config_map(
        "envctl-system", label_selector=f"envctl.io/environment={env.name}"
    )
    assert inventories.items == [], "no inventory may be written"

    write_crds(env, finalizer_twice=False)
    r = env.apply()
    assert r.returncode == 0, describe(r)
    assert crds_of(env) == [f"gadget{i}s.{env.name}.big.envctl.test" for i in range(3)]
    for name in crds_of(env):
        got = client.ApiextensionsV1Api(env.api).read_custom_resource_definition(name)
        assert any(c.type == "Established" and c.status == "True" for c in got.status.conditions), name
    assert env.configmap("settings") == {"a": "1"}
