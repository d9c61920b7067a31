"""``--converge`` repairs drifted nodes through the normal apply path; ``--every`` keeps watching.

A layer whose object was deleted is re-created; a field another manager took is taken back (Git
wins, as ``envctl apply`` does) unless the layer says ``conflicts: refuse``, in which case the
converge fails, which the report and the exit code (1) show. A drifted stack under a policy that
needs approval is held (exit 3) with the command that approves it. The next drift run then
exits 0 (or still 2).
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import pytest
from harness import Env, describe, envctl_command, intrude, kubectl

pytestmark = pytest.mark.e2e


def live_endpoint(applied: Env) -> str:
    out = kubectl(
        applied.kubeconfig, "-n", applied.namespace, "get", "configmap", "web-config", "-o", "json"
    )
    return str(json.loads(out)["data"]["DATABASE_ENDPOINT"])


def test_converge_recreates_a_deleted_object_and_the_next_run_exits_0(applied: Env) -> None:
    kubectl(applied.kubeconfig, "-n", applied.namespace, "delete", "configmap", "web-config")
    proc = applied.drift("--converge")
    assert proc.returncode == 2, describe(proc)  # drift was found (and repaired)
    assert "layer.app: converge done" in proc.stdout, describe(proc)
    assert live_endpoint(applied).endswith(".internal:5432")
    again = applied.drift()
    assert again.returncode == 0, describe(again)


def test_converge_takes_back_a_field_another_manager_took(applied: Env) -> None:
    intrude(applied, "web-config", {"DATABASE_ENDPOINT": "evil.example.com:5432"})
    code, report = applied.drift_json("--converge")
    assert code == 2
    [app] = [n for n in report["nodes"] if n["node"] == "layer.app"]
    reasons = [r for c in app["changes"] for r in c["reasons"]]
    assert any(
        r.startswith("data.DATABASE_ENDPOINT changed by intruder")
        and ": live evil.example.com:5432, Git " in r
        and r.endswith(".internal:5432")
        for r in reasons
    ), reasons
    assert report["converge"] == {"notes": ["layer.app: converge done"], "failed": False, "held": []}
    assert live_endpoint(applied).endswith(".internal:5432")
    again = applied.drift()
    assert again.returncode == 0, describe(again)


def test_a_converge_that_fails_shows_in_the_report_and_exits_1(applied: Env) -> None:
    layer = applied.root / "environments" / applied.name / "layers" / "app" / "layer.yaml"
    layer.write_text(layer.read_text() + "conflicts: refuse\n")
    intrude(applied, "web-config", {"DATABASE_ENDPOINT": "evil.example.com:5432"})
    proc = applied.drift("--converge")
    assert proc.returncode == 1, describe(proc)
    assert "converge (FAILED for some nodes):" in proc.stdout
    assert "layer.app: converge failed" in proc.stdout and "intruder" in proc.stdout
    assert live_endpoint(applied) == "evil.example.com:5432"
    md = applied.drift("--converge", "--format", "markdown")
    assert md.returncode == 1 and "#### converge (failed for some nodes)" in md.stdout, describe(md)
    page = applied.drift("--converge", "--format", "html")
    assert page.returncode == 1 and '<h2 id="converge">Converge (failed for some nodes)</h2>' in page.stdout
    assert applied.drift().returncode == 2


def test_converge_holds_a_drifted_stack_for_approval_and_names_the_command(applied: Env) -> None:
    (applied.files_dir / "greeting.txt").unlink()
    proc = applied.drift("--converge")
    assert proc.returncode == 3, describe(proc)
    assert "stack.files: not converged: needs approval: envctl approve " in proc.stdout, describe(proc)
    assert not (applied.files_dir / "greeting.txt").exists()
    assert applied.drift().returncode == 2


def test_every_checks_repeatedly_until_sigterm(applied: Env) -> None:
    proc = subprocess.Popen(
        [*envctl_command(), "drift", "-e", applied.name, "--every", "1s"],
        cwd=applied.root,
        env=applied.environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout = proc.stdout
        assert stdout is not None
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")), daemon=True)
        reader.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if sum(line.startswith("Drift report for environment") for line in list(lines)) >= 2:
                break
            time.sleep(0.2)
        assert sum(line.startswith("Drift report for environment") for line in list(lines)) >= 2, lines
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        reader.join(timeout=10)
        assert proc.stderr is not None
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "next drift check in" in err
