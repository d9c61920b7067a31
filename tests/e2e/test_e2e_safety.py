"""End-to-end: what envctl refuses, and how it behaves when runs collide, die or fail (issue 6, point 7).

Stale plans and wrong approvals are refused with nothing applied; two applies never run at once;
a killed run's lock expires; a failing node stops only its own branch.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from harness import GIT_ID, Env, describe, node_lines
from kubehelpers import wait_for
from prochelpers import descendants

pytestmark = pytest.mark.e2e

SLOW_STACK = """\
# Holds the environment lock long enough for a second run to collide with it.
resource "terraform_data" "slow" {
  provisioner "local-exec" {
    command = "sleep SECONDS"
  }
}
"""

FAILING_RESOURCE = """
resource "terraform_data" "broken" {
  provisioner "local-exec" {
    command = "exit 1"
  }
}
"""

# The stacks above run local-exec provisioners, which envctl refuses unless the environment allows them.
ALLOW_PROVISIONERS = "terraform:\n  allow_provisioners: true\n"


def assert_nothing_applied(env: Env) -> None:
    assert env.state_files() == [], "no Terraform state may be written"
    assert not env.namespace_exists(), "no Kubernetes object may be created"
    assert not (env.root / ".envctl" / "runs").exists(), "no run may start"


def test_an_approval_of_plan_a_is_refused_for_plan_b(example: Env) -> None:
    plan_a = example.plan_bundle()
    plan_b = example.plan_bundle()
    assert example.run("approve", str(plan_a), "--by", "alice").returncode == 0
    r = example.run("apply", str(plan_b), "--approve")
    assert r.returncode == 3, describe(r)
    assert plan_b.name in r.stderr, describe(r)
    # copying A's approval record next to B does not make it B's
    approvals = example.root / ".envctl" / "approvals"
    shutil.copy(approvals / f"{plan_a.name}.json", approvals / f"{plan_b.name}.json")
    r = example.run("apply", str(plan_b), "--approve")
    assert r.returncode == 3, describe(r)
    assert f"is for plan {plan_a.name}" in r.stderr, describe(r)
    assert_nothing_applied(example)


def test_a_plan_whose_commit_moved_is_refused(example: Env) -> None:
    plan = example.plan_bundle()
    assert example.run("approve", str(plan), "--by", "e2e").returncode == 0
    (example.root / "NOTES.md").write_text("someone else committed in the meantime\n")
    head = example.commit("an unrelated commit")
    r = example.run("apply", str(plan), "--approve")
    assert r.returncode == 4, describe(r)
    assert "commit" in r.stderr and head[:12] in r.stderr, describe(r)
    r = example.run("apply", str(plan), "--auto-approve")
    assert r.returncode == 4, describe(r)
    assert_nothing_applied(example)


def test_a_plan_whose_files_changed_in_the_working_tree_is_refused(example: Env) -> None:
    plan = example.plan_bundle()
    example.edit(f"environments/{example.name}/environment.yaml", "db_size: small", "db_size: large")
    r = example.run("apply", str(plan), "--auto-approve")
    assert r.returncode == 4, describe(r)
    assert_nothing_applied(example)


def flip_byte(path: Path, needle: bytes, offset: int) -> None:
    data = bytearray(path.read_bytes())
    at = data.index(needle) + offset
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_tampered_bundle_is_refused_with_nothing_applied(example: Env) -> None:
    plan = example.plan_bundle()
    assert example.run("approve", str(plan), "--by", "e2e").returncode == 0
    bundle = plan / "bundle.json"
    original = bundle.read_bytes()
    # one byte of a planned value: "10.10.0.0/24" becomes "10.10.0.1/24", still valid JSON
    flip_byte(bundle, b'"10.10.0.0/24"', 8)
    assert bundle.read_bytes() != original and json.loads(bundle.read_bytes())
    for args in (("--approve",), ("--auto-approve",)):
        r = example.run("apply", str(plan), *args)
        assert r.returncode == 4, describe(r)
        assert "modified" in r.stderr, describe(r)
    r = example.run("approve", str(plan), "--by", "e2e")
    assert r.returncode == 4, describe(r)
    assert_nothing_applied(example)


def test_a_tampered_saved_terraform_plan_is_refused(example: Env) -> None:
    plan = example.plan_bundle()
    data = json.loads((plan / "bundle.json").read_text())
    planfile = plan / data["nodes"]["stack.network"]["artifacts"]["planfile"]
    blob = bytearray(planfile.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    planfile.write_bytes(bytes(blob))
    r = example.run("apply", str(plan), "--auto-approve")
    assert r.returncode == 4, describe(r)
    assert "stack.network" in r.stderr and "modified" in r.stderr, describe(r)
    assert_nothing_applied(example)


def add_slow_stack(env: Env, seconds: int = 8, *, before: str | None = None) -> str:
    """A stack whose apply takes ``seconds``; returns the command its provisioner runs.

    ``before``: a stack of the example that then depends on it (so it is still to do while
    the slow stack applies).
    """
    slow = env.env_dir / "stacks" / "slow"
    slow.mkdir(parents=True)
    (slow / "main.tf").write_text(SLOW_STACK.replace("SECONDS", str(seconds)))
    if before is not None:
        with (env.env_dir / "stacks" / before / "stack.yaml").open("a") as f:
            f.write("depends_on: [stack.slow]\n")
    env.edit(f"environments/{env.name}/environment.yaml", "approval:", ALLOW_PROVISIONERS + "approval:")
    env.commit("a slow stack")
    return f"sleep {seconds}"


def finish(proc: subprocess.Popen[str], timeout: float) -> subprocess.CompletedProcess[str]:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def holder_pid(env: Env) -> int | None:
    raw = env.lease_holder()
    return int(json.loads(raw)["pid"]) if raw else None


def test_two_concurrent_applies_one_fails_naming_the_holder(example: Env, tmp_path: Path) -> None:
    add_slow_stack(example)
    # a second checkout of the same repository: only the Lease in the cluster can stop it
    other = Env(tmp_path / "other", example.name, example.kubeconfig, example.api)
    subprocess.run(["git", *GIT_ID, "clone", "-q", str(example.root), str(other.root)], check=True)

    first = example.popen("apply", "-e", example.name, "--auto-approve")
    try:
        wait_for(
            lambda: holder_pid(example) == first.pid or first.poll() is not None,
            timeout=60,
            interval=0.1,
            what="the Lease",
        )
        assert first.poll() is None, "the first apply ended before the second could collide with it"
        seconds = example.popen("apply", "-e", example.name, "--auto-approve")
        seconds_other = other.popen("apply", "-e", example.name, "--auto-approve")
        same_checkout = finish(seconds, 60)
        other_checkout = finish(seconds_other, 60)
        still_running = first.poll() is None
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 0, f"exit {first.returncode}\n{out}\n{err}"
    assert still_running, "the second applies waited for the first one instead of failing fast"
    for r in (same_checkout, other_checkout):
        assert r.returncode == 1, describe(r)
        assert f"environment {example.name} is locked by" in r.stderr, describe(r)
        assert f"pid {first.pid}" in r.stderr, describe(r)
        assert "Run " not in r.stdout, describe(r)
    assert not (other.root / ".envctl" / "state").exists(), "the refused run applied nothing"
    assert example.lease_holder() is None


@pytest.mark.parametrize("kill", ["envctl", "envctl and its Terraform worker"])
def test_a_killed_apply_leaves_a_lock_that_expires_and_a_rerun_converges(example: Env, kill: str) -> None:
    # killing envctl alone: long enough that the re-run takes the expired lock while the
    # orphaned Terraform worker still applies; the rest of the environment waits for it, so
    # the re-run has work to do however fast the killed run was
    sleeping = add_slow_stack(example, 12 if kill == "envctl" else 8, before="network")
    example.extra_env["ENVCTL_LOCK_LEASE_SECONDS"] = "5"
    victim = example.popen("apply", "-e", example.name, "--auto-approve")
    try:
        wait_for(
            lambda: any(sleeping in c for c in descendants(victim.pid).values()) or victim.poll() is not None,
            timeout=60,
            interval=0.1,
            what="stack.slow to be applying",
        )
        assert victim.poll() is None, "the apply ended before it could be killed"
        assert holder_pid(example) == victim.pid
    finally:
        # envctl's Terraform worker runs in a session of its own (so that a Ctrl-C lets it
        # finish): killing envctl alone orphans it; a crashed machine or container kills both
        targets = [victim.pid] + (list(descendants(victim.pid)) if kill != "envctl" else [])
        for pid in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    assert holder_pid(example) == victim.pid, "the dead run's Lease is still there"

    # --lock-timeout bounds the wait: the dead run's Lease must expire within it, or this apply fails
    r = example.run("apply", "-e", example.name, "--auto-approve", "--lock-timeout", "60")
    assert r.returncode == 0, describe(r)
    assert all(v.startswith("done") for v in node_lines(r.stdout).values()), describe(r)
    assert set(node_lines(r.stdout)) == {
        "layer.platform",
        "stack.network",
        "stack.database",
        "layer.app",
        "stack.slow",
    }, describe(r)
    endpoint = example.outputs("database")["endpoint"]
    assert example.configmap("web-config") == {"DATABASE_ENDPOINT": endpoint, "ENVIRONMENT": example.name}
    assert example.lease_holder() is None
    r = example.run("plan", "-e", example.name, "--detailed-exitcode")
    assert r.returncode == 0, describe(r)


def test_a_failing_node_skips_its_dependents_and_independent_branches_finish(example: Env) -> None:
    with (example.root / "modules" / "network" / "main.tf").open("a") as f:
        f.write(FAILING_RESOURCE)
    example.edit(
        f"environments/{example.name}/environment.yaml", "approval:", ALLOW_PROVISIONERS + "approval:"
    )
    example.commit("a network that cannot be built")
    r = example.run("apply", "-e", example.name, "--auto-approve")
    assert r.returncode == 5, describe(r)
    lines = node_lines(r.stdout)
    assert lines["stack.network"].startswith("failed"), describe(r)
    assert lines["stack.database"].startswith("skipped") and "stack.network" in lines["stack.database"]
    assert lines["layer.app"].startswith("skipped"), describe(r)
    assert lines["layer.platform"].startswith("done"), describe(r)
    assert (
        "Summary:" in r.stdout and "1 done" in r.stdout and "1 failed" in r.stdout and "2 skipped" in r.stdout
    )
    # the independent branch is in the cluster; the dependent one is not
    assert example.configmap("platform-settings") == {"environment": example.name, "log_level": "info"}
    assert example.configmap("web-config") is None
    assert not (example.root / ".envctl" / "state" / example.name / "database").exists()
    status = example.run("status", "-e", example.name)
    assert "layer.platform: converged at" in status.stdout, describe(status)
    assert "layer.app: never converged" in status.stdout, describe(status)
