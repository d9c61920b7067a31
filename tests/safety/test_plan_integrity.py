"""Plan integrity: a plan is applied exactly as it was planned and approved, or not at all.

A tampered bundle, a plan of another environment, a replayed plan and an approval recorded
for a different plan are each refused before any engine runs: no Terraform state is written
and nothing is created in the cluster.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from harness import Env, assert_no_traceback, live
from kubernetes import client

pytestmark = pytest.mark.safety


def _plan(repo: Env) -> Path:
    run = repo.plan()
    assert run.returncode == 0, str(run)
    dirs = repo.plans()
    assert dirs, str(run)
    return max(dirs, key=lambda p: p.stat().st_mtime)


def _assert_nothing_applied(repo: Env, api: client.ApiClient) -> None:
    assert repo.state_files() == [], f"Terraform state was written: {repo.state_files()}"
    assert live(api, "Namespace", "", repo.namespace) is None, f"namespace {repo.namespace} was created"


def _flip_value_byte(bundle: Path) -> None:
    """Change one character inside a JSON string value: the file stays valid JSON."""
    raw = bundle.read_bytes()
    data = json.loads(raw)
    created = data["created"]
    i = raw.index(created.encode())
    pos = i + len(created) - 2
    old = raw[pos : pos + 1]
    new = b"1" if old != b"1" else b"2"
    bundle.write_bytes(raw[:pos] + new + raw[pos + 1 :])
    json.loads(bundle.read_bytes())


def _flip_tfplan_byte(plan_dir: Path) -> None:
    files = sorted((plan_dir / "stacks").glob("*.tfplan"))
    assert files, f"no saved Terraform plan under {plan_dir}"
    raw = bytearray(files[0].read_bytes())
    raw[len(raw) // 2] ^= 0x01
    files[0].write_bytes(bytes(raw))


def _flip_node_change(bundle: Path) -> None:
    """Edit a planned change (a live value the engine would apply) and keep the JSON valid."""
    data = json.loads(bundle.read_text())
    text = json.dumps(data)
    assert "10.10.0.0/16" in text
    bundle.write_text(json.dumps(json.loads(text.replace("10.10.0.0/16", "10.10.0.0/17", 1)), indent=2))


@pytest.mark.parametrize("how", ["bundle-value-byte", "bundle-change", "tfplan-bit"])
def test_refuses_a_tampered_plan_bundle(example: Env, api_client: client.ApiClient, how: str) -> None:
    plan_dir = _plan(example)
    if how == "bundle-value-byte":
        _flip_value_byte(plan_dir / "bundle.json")
    elif how == "bundle-change":
        _flip_node_change(plan_dir / "bundle.json")
    else:
        _flip_tfplan_byte(plan_dir)
    run = example.apply(str(plan_dir))
    assert run.returncode == 4, str(run)
    assert_no_traceback(run)
    _assert_nothing_applied(example, api_client)


def test_refuses_a_plan_of_environment_a_applied_to_b(make_env: Any, api_client: client.ApiClient) -> None:
    a: Env = make_env()
    b: Env = make_env()  # same repository, second environment
    assert a.root == b.root
    plan_dir = _plan(a)
    run = b.run("apply", "-e", b.name, str(plan_dir), "--auto-approve")
    assert run.returncode == 64, str(run)
    assert_no_traceback(run)
    assert a.name in run.output and b.name in run.output, str(run)
    _assert_nothing_applied(a, api_client)
    _assert_nothing_applied(b, api_client)
    # the same holds for approve -e B
    approve = b.run("approve", str(plan_dir), "-e", b.name)
    assert approve.returncode == 64, str(approve)


def test_refuses_a_replayed_plan(example: Env, api_client: client.ApiClient) -> None:
    plan_dir = _plan(example)
    first = example.apply(str(plan_dir))
    assert first.returncode == 0, str(first)
    states = {p: p.read_bytes() for p in example.state_files()}
    assert states
    cm = live(api_client, "ConfigMap", example.namespace, "platform-settings")
    assert cm is not None
    # someone changes the live object; a replay of the old plan must not "restore" anything
    client.CoreV1Api(api_client).patch_namespaced_config_map(
        "platform-settings", example.namespace, {"data": {"log_level": "debug"}}
    )
    replay = example.apply(str(plan_dir))
    assert replay.returncode == 4, str(replay)
    assert_no_traceback(replay)
    assert {p: p.read_bytes() for p in example.state_files()} == states, "the replay touched Terraform state"
    after = live(api_client, "ConfigMap", example.namespace, "platform-settings")
    assert after is not None and after["data"]["log_level"] == "debug", "the replay applied the layer"


@pytest.mark.parametrize("how", ["approve-other-plan", "copied-approval-file"])
def test_refuses_an_approval_presented_with_a_different_plan(
    example: Env, api_client: client.ApiClient, how: str
) -> None:
    approved = _plan(example)
    rec = example.run("approve", str(approved), "--by", "alice")
    assert rec.returncode == 0, str(rec)
    env_yaml = example.path("environment.yaml")
    env_yaml.write_text(env_yaml.read_text().replace("10.10.0.0/16", "10.99.0.0/16"))
    example.commit("different network")
    other = _plan(example)
    assert other != approved
    if how == "copied-approval-file":
        approvals = example.dotdir / "approvals"
        src = approvals / f"{approved.name}.json"
        assert src.is_file(), sorted(approvals.iterdir())
        (approvals / f"{other.name}.json").write_bytes(src.read_bytes())
    run = example.run("apply", "-e", example.name, str(other), "--approve")
    assert run.returncode == 3, str(run)
    assert_no_traceback(run)
    _assert_nothing_applied(example, api_client)
