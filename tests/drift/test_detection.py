"""Drift detection on the example environment: who changed what, in every format, read-only.

Runs the envctl CLI as a subprocess on an applied copy of the example (see conftest.py) against
the real control plane and the real Terraform engine with hashicorp/local.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from harness import CANARY, Env, assert_no_canary, describe, intrude, kubectl, versions
from kubernetes import client

pytestmark = pytest.mark.e2e

FORMATS = ("text", "json", "markdown", "html")


def node(report: dict[str, Any], node_id: str) -> dict[str, Any]:
    return next(n for n in report["nodes"] if n["node"] == node_id)


def test_an_in_sync_environment_exits_0_in_every_format(applied: Env) -> None:
    for fmt in FORMATS:
        proc = applied.drift("--format", fmt)
        assert proc.returncode == 0, describe(proc)
        for n in ("layer.platform", "layer.app", "stack.network", "stack.database", "stack.files"):
            assert n in proc.stdout
    code, report = applied.drift_json()
    assert code == 0
    assert {n["status"] for n in report["nodes"]} == {"in-sync"}
    assert report["format_version"] == "1" and report["type"] == "drift"


def test_an_edit_by_another_field_manager_is_drift_naming_node_object_and_manager(applied: Env) -> None:
    intrude(applied, "web-config", {"DATABASE_ENDPOINT": "evil.example.com:5432"})
    address = f"v1 ConfigMap {applied.namespace}/web-config"
    for fmt in FORMATS:
        proc = applied.drift("--format", fmt)
        assert proc.returncode == 2, describe(proc)
        for word in ("layer.app", address, "intruder"):
            assert word in proc.stdout, f"{fmt} report does not name {word!r}:\n{proc.stdout}"
    code, report = applied.drift_json()
    assert code == 2 and report["drift"] is True and report["exit_code"] == 2
    app = node(report, "layer.app")
    assert app["status"] == "drifted"
    [change] = app["changes"]
    assert change["address"] == address
    assert change["manager"] == "intruder"
    assert any("DATABASE_ENDPOINT" in r for r in change["reasons"]), change
    assert {n["node"]: n["status"] for n in report["nodes"] if n["node"] != "layer.app"} == {
        "layer.platform": "in-sync",
        "stack.network": "in-sync",
        "stack.database": "in-sync",
        "stack.files": "in-sync",
    }
    assert_no_canary(*applied.printed)


def test_a_deleted_object_is_drift(applied: Env) -> None:
    kubectl(applied.kubeconfig, "-n", applied.namespace, "delete", "service", "web")
    code, report = applied.drift_json()
    assert code == 2
    app = node(report, "layer.app")
    assert app["status"] == "drifted"
    assert [c["address"] for c in app["changes"]] == [f"v1 Service {applied.namespace}/web"]
    assert app["changes"][0]["action"] == "create"


@pytest.mark.parametrize("how", ["changed", "deleted"])
def test_a_local_file_changed_outside_terraform_is_drift_naming_the_resource(
    applied: Env, how: str
) -> None:
    greeting = applied.files_dir / "greeting.txt"
    assert greeting.read_text() == f"hello from {applied.name}"
    if how == "changed":
        greeting.write_text("edited by hand\n")
    else:
        greeting.unlink()
    for fmt in FORMATS:
        proc = applied.drift("--format", fmt)
        assert proc.returncode == 2, describe(proc)
        assert "stack.files" in proc.stdout and "local_file.greeting" in proc.stdout, proc.stdout
    code, report = applied.drift_json()
    assert code == 2
    files = node(report, "stack.files")
    assert files["status"] == "drifted"
    assert [c["address"] for c in files["changes"]] == ["local_file.greeting"]
    assert node(report, "layer.app")["status"] == "in-sync"
    assert_no_canary(*applied.printed)


def test_a_secret_changed_outside_terraform_is_drift_that_never_shows_the_secret(
    applied: Env, tmp_path: Path
) -> None:
    (applied.files_dir / "token.txt").write_text(CANARY + "-tampered")
    intrude(applied, "web-config", {"DATABASE_ENDPOINT": "evil.example.com:5432"})
    for fmt in FORMATS:
        out = tmp_path / f"report.{fmt}"
        proc = applied.drift("--format", fmt, "--output", str(out))
        assert proc.returncode == 2, describe(proc)
        text = out.read_text()
        assert "local_sensitive_file.token" in text
        assert_no_canary(text)
    proc = applied.run("status", "-e", applied.name)
    assert_no_canary(*applied.printed)
    for p in (applied.root / ".envctl" / "drift").rglob("*"):
        if p.is_file():
            assert_no_canary(p.read_text())


def _world(applied: Env, api: client.ApiClient) -> dict[str, Any]:
    """Everything drift must not write: state files, inventories, lock Lease, live objects."""
    core = client.CoreV1Api(api)
    seen: dict[str, Any] = {}
    for p in sorted((applied.root / ".envctl" / "state").rglob("*")):
        if p.is_file():
            seen[str(p)] = p.read_bytes()
    inventories = versions(core.list_namespaced_config_map("envctl-system").items, f"{applied.name}.")
    seen.update({f"inventory {name}": rv for name, rv in inventories.items()})
    leases = client.CoordinationV1Api(api).list_namespaced_lease("envctl-system").items
    seen["lease"] = versions(leases, f"envctl-lock-{applied.name}")
    for kind in ("configmaps", "services", "deployments.apps"):
        out = kubectl(
            applied.kubeconfig,
            "-n",
            applied.namespace,
            "get",
            kind,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.metadata.resourceVersion} {end}",
        )
        seen[kind] = out
    seen["namespace"] = versions([core.read_namespace(applied.namespace)])
    seen["files"] = sorted((p.name, p.read_bytes()) for p in applied.files_dir.iterdir())
    return seen


def test_drift_writes_nothing_to_state_inventory_or_cluster(
    applied: Env, api_client: client.ApiClient
) -> None:
    before = _world(applied, api_client)
    assert any(k.endswith("terraform.tfstate") for k in before) and any(
        k.startswith("inventory ") for k in before
    ), before.keys()
    for fmt in FORMATS:
        assert applied.drift("--format", fmt).returncode == 0
    assert _world(applied, api_client) == before

    # Drifted too: a refresh-only plan that sees a deleted file must not save the refreshed state.
    (applied.files_dir / "greeting.txt").unlink()
    intrude(applied, "web-config", {"DATABASE_ENDPOINT": "evil.example.com:5432"})
    before = _world(applied, api_client)
    for fmt in FORMATS:
        assert applied.drift("--format", fmt).returncode == 2
    assert _world(applied, api_client) == before
