"""Prune never deletes by accident.

After a full converge of the example environment, layer.app is broken in one of the ways that
make a renderer return nothing (an empty layer, a bad kustomization, an unreadable file) or its
inventory is lost; a new apply must delete nothing, and say why it did not converge.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from harness import APP_OBJECTS, SYSTEM_NAMESPACE, Env, assert_no_traceback, live
from kubernetes import client

pytestmark = pytest.mark.safety


def _converged(repo: Env) -> None:
    run = repo.apply()
    assert run.returncode == 0, str(run)


def _assert_nothing_deleted(repo: Env, api: client.ApiClient, context: str) -> None:
    everything = [("Namespace", repo.namespace), ("ConfigMap", "platform-settings"), *APP_OBJECTS]
    for kind, name in everything:
        obj = live(api, kind, repo.namespace, name)
        assert obj is not None, f"{kind} {name} was deleted\n{context}"
        assert not obj["metadata"].get("deletionTimestamp"), f"{kind} {name} is being deleted\n{context}"


def empty_layer(repo: Env) -> None:
    repo.path("layers/app/app.yaml").unlink()


def kustomization_missing_resource(repo: Env) -> None:
    repo.write("layers/app/kustomization.yaml", "resources:\n  - does-not-exist.yaml\n")


def kustomization_invalid(repo: Env) -> None:
    repo.write("layers/app/kustomization.yaml", "resources: [app.yaml\nthis is: not: yaml\n")


def kustomization_empty_output(repo: Env) -> None:
    repo.write("layers/app/kustomization.yaml", "resources: []\n")


def manifest_not_utf8(repo: Env) -> None:
    repo.write("layers/app/app.yaml", b"\xff\xfe\x00apiVersion: v1\x00\x81\x82\n")


def manifest_dangling_symlink(repo: Env) -> None:
    repo.path("layers/app/app.yaml").unlink()
    os.symlink("missing-target.yaml", repo.path("layers/app/app.yaml"))


BREAKAGES: dict[str, tuple[Callable[[Env], None], str]] = {
    "empty-layer": (empty_layer, r"empty|zero|no objects|allow_empty"),
    "kustomization-missing-resource": (kustomization_missing_resource, r"kustomiz"),
    "kustomization-invalid-yaml": (kustomization_invalid, r"yaml|kustomiz"),
    "kustomization-renders-nothing": (kustomization_empty_output, r"empty|zero|no objects|allow_empty"),
    "manifest-not-utf8": (manifest_not_utf8, r"utf|decode|read|yaml"),
    "manifest-dangling-symlink": (manifest_dangling_symlink, r"app\.yaml"),
}


@pytest.mark.parametrize("case", list(BREAKAGES))
def test_a_broken_layer_deletes_nothing(example: Env, api_client: client.ApiClient, case: str) -> None:
    import re

    _converged(example)
    breakage, pattern = BREAKAGES[case]
    breakage(example)
    example.commit(case)
    plan = example.plan()
    assert not re.search(r"^\s*- .*\(delete\)", plan.stdout, re.MULTILINE), f"plan deletes:\n{plan}"
    run = example.apply()
    assert_no_traceback(run)
    _assert_nothing_deleted(example, api_client, str(run))
    assert run.returncode != 0, f"a broken layer.app was reported as converged:\n{run}"
    assert "layer.app" in run.output or "layers/app" in run.output, str(run)
    assert re.search(pattern, run.output, re.IGNORECASE), f"no clear reason (/{pattern}/):\n{run}"


def test_an_unreadable_manifest_deletes_nothing(example: Env, api_client: client.ApiClient) -> None:
    _converged(example)
    # a FIFO where the manifest was: unreadable for everyone, root included (chmod 0 is not)
    manifest = example.path("layers/app/app.yaml")
    content = manifest.read_bytes()
    manifest.unlink()
    os.mkfifo(manifest)
    try:
        run = example.apply()
    finally:
        manifest.unlink()
        manifest.write_bytes(content)
    assert_no_traceback(run)
    _assert_nothing_deleted(example, api_client, str(run))
    assert run.returncode != 0, str(run)


def test_a_lost_inventory_deletes_nothing(example: Env, api_client: client.ApiClient) -> None:
    _converged(example)
    core = client.CoreV1Api(api_client)
    inventories = core.list_namespaced_config_map(
        SYSTEM_NAMESPACE, label_selector=f"envctl.io/environment={example.name}"
    ).items
    app_inventory = [cm.metadata.name for cm in inventories if cm.metadata.name.endswith("layer.app")]
    assert app_inventory, [cm.metadata.name for cm in inventories]
    core.delete_namespaced_config_map(app_inventory[0], SYSTEM_NAMESPACE)
    # the Service leaves Git: with the inventory lost, envctl cannot know it ever owned it
    app = example.path("layers/app/app.yaml")
    docs = app.read_text().split("\n---\n")
    app.write_text("\n---\n".join(d for d in docs if "kind: Service" not in d))
    example.commit("drop the service")
    run = example.apply()
    assert_no_traceback(run)
    _assert_nothing_deleted(example, api_client, str(run))
    assert "inventory" in run.output.lower(), f"no warning that the inventory was missing:\n{run}"
