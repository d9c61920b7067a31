"""What drift says when it cannot look: never "no drift", never a plain "drift".

An unreachable API server and rejected credentials are errors (exit 69 or 1) with a report naming
the nodes that could not be checked; an apply holding the environment's lock makes the run report
"apply in progress, skipped".
"""

from __future__ import annotations

import datetime as dt
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import Env, describe
from kubernetes import client
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.e2e


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rewrite_kubeconfig(src: str, dst: Path, *, server: str | None = None, token: str | None = None) -> str:
    kc = yaml.safe_load(Path(src).read_text())
    for c in kc["clusters"]:
        if server:
            c["cluster"]["server"] = server
    for u in kc["users"]:
        if token:
            u["user"] = {"token": token}
    dst.write_text(yaml.safe_dump(kc))
    return str(dst)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_an_unreachable_api_server_is_an_error_not_in_sync_or_drift(
    applied: Env, tmp_path: Path, fmt: str
) -> None:
    bad = rewrite_kubeconfig(
        applied.kubeconfig, tmp_path / "kubeconfig", server=f"https://127.0.0.1:{closed_port()}"
    )
    out = tmp_path / "report"
    proc = applied.drift("--format", fmt, "--output", str(out), env={"KUBECONFIG": bad})
    assert proc.returncode in (1, 69), describe(proc)
    assert proc.returncode == 69, "an unreachable API server is 'unavailable' (69)\n" + describe(proc)
    text = out.read_text()
    for layer in ("layer.platform", "layer.app"):
        assert layer in text
    if fmt == "json":
        report = json.loads(text)
        status = {n["node"]: n["status"] for n in report["nodes"]}
        assert status["layer.platform"] == status["layer.app"] == "error", status
        assert report["exit_code"] == 69 and report["errors"] is True
    else:
        assert "unreachable" in text


def test_rejected_credentials_are_an_error_not_in_sync(applied: Env, tmp_path: Path) -> None:
    bad = rewrite_kubeconfig(applied.kubeconfig, tmp_path / "kubeconfig", token="expired-token")
    proc = applied.drift("--format", "json", env={"KUBECONFIG": bad})
    assert proc.returncode in (1, 69), describe(proc)
    report = json.loads(proc.stdout)
    assert {n["node"] for n in report["nodes"] if n["status"] == "error"} == {"layer.platform", "layer.app"}


def hold_lease(api: client.ApiClient, env: str, holder: dict[str, object]) -> None:
    """Take the environment's Lease the way a running apply on another machine holds it."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body: Any = {
        "metadata": {"name": f"envctl-lock-{env}"},
        "spec": {
            "holderIdentity": json.dumps(holder),
            "leaseDurationSeconds": 120,
            "acquireTime": stamp,
            "renewTime": stamp,
        },
    }
    leases = client.CoordinationV1Api(api)
    try:
        leases.create_namespaced_lease("envctl-system", body)
    except ApiException as e:
        if e.status != 409:
            raise
        leases.patch_namespaced_lease(f"envctl-lock-{env}", "envctl-system", {"spec": body["spec"]})


def test_an_apply_holding_the_lock_makes_drift_skip_not_report_in_sync(
    applied: Env, api_client: client.ApiClient
) -> None:
    hold_lease(api_client, applied.name, {"holder": "alice@laptop", "pid": 4242, "run": "r-1"})
    proc = applied.drift()
    assert "apply in progress" in proc.stdout and "skipped" in proc.stdout, describe(proc)
    assert "alice@laptop" in proc.stdout
    assert "in-sync" not in proc.stdout
    code, report = applied.drift_json()
    assert report["skipped_reason"] and "apply in progress" in report["skipped_reason"]
    assert report["nodes"] == []
    assert code == report["exit_code"]
