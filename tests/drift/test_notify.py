"""Webhook notifications, received by a real HTTP server on 127.0.0.1 in the test process.

``envctl drift --notify`` posts an alert with a Slack-compatible ``text`` to every webhook in
``environment.yaml``; a webhook that fails (HTTP 500, or nobody listening) shows in the report and
makes the exit code 1. ``envctl apply`` posts a convergence notice. No secret in any payload.
"""

from __future__ import annotations

import json
import socket

import pytest
from harness import CANARY, Env, WebhookServer, assert_no_canary, describe, intrude

pytestmark = pytest.mark.e2e


def test_drift_notify_posts_an_alert_to_each_configured_webhook(
    applied: Env, webhook: WebhookServer
) -> None:
    applied.set_environment(notifications=[{"webhook": webhook.url}])
    intrude(applied, "web-config", {"DATABASE_ENDPOINT": "evil.example.com:5432"})
    (applied.files_dir / "token.txt").write_text(CANARY + "-tampered")
    proc = applied.drift("--notify")
    assert proc.returncode == 2, describe(proc)
    assert f"notification to {webhook.url}: delivered" in proc.stdout

    [got] = webhook.received
    body = got.body
    assert got.path == "/hook"
    assert body["event"] == "drift"
    assert body["environment"] == applied.name
    assert applied.name in body["text"] and "layer.app" in body["text"] and "stack.files" in body["text"]
    assert body["drift"] is True and body["exit_code"] == 2
    nodes = {n["node"]: n for n in body["nodes"]}
    assert set(nodes) == {"layer.platform", "layer.app", "stack.network", "stack.database", "stack.files"}
    assert nodes["layer.app"]["status"] == "drifted"
    assert nodes["layer.app"]["objects"] == [
        {"address": f"v1 ConfigMap {applied.namespace}/web-config", "action": "update", "manager": "intruder"}
    ]
    assert nodes["stack.files"]["status"] == "drifted"
    assert [o["address"] for o in nodes["stack.files"]["objects"]] == ["local_sensitive_file.token"]
    assert nodes["layer.platform"]["status"] == "in-sync"
    assert_no_canary(json.dumps(body), *applied.printed)


def test_no_drift_sends_no_alert(applied: Env, webhook: WebhookServer) -> None:
    applied.set_environment(notifications=[{"webhook": webhook.url}])
    proc = applied.drift("--notify")
    assert proc.returncode == 0, describe(proc)
    assert webhook.received == []


def test_without_notify_the_configured_webhooks_are_not_called(
    applied: Env, webhook: WebhookServer
) -> None:
    applied.set_environment(notifications=[{"webhook": webhook.url}])
    intrude(applied, "web-config", {"DATABASE_ENDPOINT": "evil.example.com:5432"})
    assert applied.drift().returncode == 2
    assert webhook.received == []


def test_a_webhook_answering_500_is_retried_and_shows_in_the_report_and_exit_code(
    applied: Env,
) -> None:
    intrude(applied, "web-config", {"DATABASE_ENDPOINT": "evil.example.com:5432"})
    with WebhookServer(status=500) as failing:
        proc = applied.drift("--webhook", failing.url)
        assert len(failing.received) == 3, "three attempts with backoff"
    assert proc.returncode == 1, describe(proc)
    assert f"notification to {failing.url}: FAILED after 3 attempt(s) (HTTP 500)" in proc.stdout
    assert "layer.app: drifted" in proc.stdout

    with WebhookServer(status=500) as failing:
        code, report = applied.drift_json("--webhook", failing.url)
    assert code == 1 and report["exit_code"] == 1 and report["errors"] is True
    [delivery] = report["notifications"]
    assert delivery == {"url": failing.url, "ok": False, "attempts": 3, "detail": "HTTP 500"}

    with WebhookServer(status=500) as failing:
        md = applied.drift("--format", "markdown", "--webhook", failing.url)
    assert md.returncode == 1 and f"Notification to {failing.url} failed: HTTP 500" in md.stdout

    with WebhookServer(status=500) as failing:
        page = applied.drift("--format", "html", "--webhook", failing.url)
    assert page.returncode == 1 and "FAILED after 3 attempt(s) (HTTP 500)" in page.stdout

    status = applied.run("status", "-e", applied.name, "--format", "json")
    assert status.returncode == 0, describe(status)
    assert '"exit_code": 1' in status.stdout, "status records the run's final exit code"


def test_a_webhook_nobody_listens_on_fails_the_run(applied: Env, webhook: WebhookServer) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    intrude(applied, "web-config", {"DATABASE_ENDPOINT": "evil.example.com:5432"})
    proc = applied.drift("--webhook", closed, "--webhook", webhook.url)
    assert proc.returncode == 1, describe(proc)
    assert f"notification to {closed}: FAILED after 3 attempt(s)" in proc.stdout
    assert f"notification to {webhook.url}: delivered" in proc.stdout
    assert len(webhook.received) == 1, "one failing webhook does not stop the others"


def test_apply_posts_a_convergence_notice(applied: Env, webhook: WebhookServer) -> None:
    applied.set_environment(notifications=[{"webhook": webhook.url}])
    intrude(applied, "platform-settings", {"log_level": "debug"}, manager="intruder")
    kube_force = applied.root / "environments" / applied.name / "layers" / "platform" / "layer.yaml"
    kube_force.write_text(kube_force.read_text() + "force: true\n")
    proc = applied.apply()
    assert proc.returncode == 0, describe(proc)
    [got] = webhook.received
    assert got.body["event"] == "apply" and got.body["outcome"] == "success"
    assert got.body["environment"] == applied.name
    assert applied.name in got.body["text"] and "success" in got.body["text"]
    assert {n["node"] for n in got.body["nodes"]} >= {"layer.platform"}
    assert_no_canary(json.dumps(got.body))
