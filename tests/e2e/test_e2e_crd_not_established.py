"""End-to-end: a CRD the API server never establishes, applied one at a time and watched.

CRDs are applied one after the other, each watched from its apply until Established. A CRD whose
names clash with an existing CRD of its group (the naming controller sets NamesAccepted=False)
never becomes Established: ``envctl apply`` must stop with a clear error naming the CRD and the
clash, exit 1 (DESIGN §2: the only node failed), and never wait out the layer's timeout; the
layer that uses the kind is skipped.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Env, assert_no_traceback, crd_manifest, describe
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.e2e


@pytest.fixture
def clash(tmp_path: Path, kubeconfig: str, api_client: client.ApiClient) -> Iterator[Env]:
    """An environment whose layer ``crds`` adds ``gizmos.GROUP`` of kind Widget, a kind the CRD
    ``widgets.GROUP`` (already in the cluster, not envctl's) serves; ``app`` uses kind Gizmo."""
    name = f"clash-{uuid.uuid4().hex[:8]}"
    group = f"{name}.clash.envctl.test"
    env = Env(tmp_path / "repo", name, kubeconfig, api_client)
    ext = client.ApiextensionsV1Api(api_client)
    ext.create_custom_resource_definition(crd_manifest(group, "widgets", "Widget"))
    env.write("environment.yaml", f"name: {name}\napproval:\n  required_for: [none]\n")
    env.write("layers/crds/layer.yaml", "wait: {timeout: 600s}\n")
    env.write("layers/app/layer.yaml", f"namespace: {env.namespace}\ndepends_on: [layer.crds]\nwait: false\n")
    (env.root / ".gitignore").write_text(".envctl/\n")
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=env.root, check=True)
    yield env
    env.cleanup()
    for plural in ("widgets", "gizmos"):
        try:
            ext.delete_custom_resource_definition(f"{plural}.{group}")
        except ApiException as e:
            if e.status != 404:
                raise


def write(env: Env, big: bool) -> str:
    group = f"{env.name}.clash.envctl.test"
    # kind Widget: taken by widgets.GROUP
    bad = crd_manifest(group, "gizmos", "Widget", fields=600 if big else 1)
    env.write("layers/crds/crds.yaml", json.dumps(bad) + "\n")
    app = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": env.namespace}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}},
    ]
    env.write("layers/app/app.yaml", "".join("---\n" + json.dumps(o) + "\n" for o in app))
    env.commit("a CRD whose kind is taken")
    return f"gizmos.{group}"


@pytest.mark.parametrize("big", [True, False], ids=["large-crd", "small-crd"])
def test_a_crd_whose_names_are_not_accepted_fails_clearly_without_waiting_out_the_timeout(
    clash: Env, big: bool
) -> None:
    name = write(clash, big)
    # the layer's own timeout is 600 s: a hang fails the run's 300 s first
    r = clash.run("apply", "-e", clash.name, "--auto-approve", timeout=300)
    assert r.returncode == 1, describe(r)
    assert_no_traceback(r)
    assert name in r.output, describe(r)
    assert "names not accepted" in r.output and "Widget" in r.output, describe(r)
    assert "timed out" not in r.output, describe(r)
    assert not clash.namespace_exists(), "the layer after the failed one must not be applied"
