"""End-to-end: Ctrl-C in each phase of ``envctl apply``, sent through a pseudo-terminal (issue 19).

The first interrupt stops scheduling, ends readiness waits at once (naming what was applied but is
not ready) and lets a running Terraform command finish; the second exits at once, releasing the
lock (file lock and Lease) and writing the journal. Afterwards drift and status agree with plan.

To hold each phase open without timing: the example's Deployment runs pods KWOK never marks
Ready (label ``stage.envctl.test/pod: unready``, scripts/kwok-stages.yaml) with a readiness
timeout of an hour, and a ``files`` stack writes 256 KiB with hashicorp/local into a named pipe
(FIFO) that the test opens but does not read until it chooses to: Terraform blocks in write().
Were an interrupt not to cut the wait, or the second not to exit at once, ``expect`` would time
out (pexpect's timeout, not an assertion on elapsed time).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from harness import Env, describe, finish
from kubehelpers import wait_for
from kubernetes import client

pytestmark = pytest.mark.e2e

FILES_STACK = """\
variable "path" {
  type = string
}

resource "local_file" "blob" {
  filename = var.path
  content  = format("%0262144d", 0)
}

output "path" {
  value = local_file.blob.filename
}
"""


def never_ready(env: Env) -> None:
    """Two replicas whose pods run but never become Ready; the layer waits up to an hour."""
    layer = f"environments/{env.name}/layers/app"
    env.edit(f"environments/{env.name}/environment.yaml", "replicas: 0", "replicas: 2")
    env.edit(
        f"{layer}/app.yaml",
        "      labels: {app: web}\n",
        "      labels: {app: web, stage.envctl.test/pod: unready}\n",
    )
    env.edit(f"{layer}/layer.yaml", "wait: {timeout: 2m}", "wait: {timeout: 1h}")
    env.commit("pods that never become ready")


class Fifo:
    """A named pipe Terraform writes into; ``opened`` once it does, ``drain`` lets it finish."""

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self.opened = threading.Event()
        self.fd: int | None = None
        self.thread = threading.Thread(target=self._open, daemon=True)
        self.thread.start()

    def _open(self) -> None:
        self.fd = os.open(self.path, os.O_RDONLY)  # returns once a writer opened the other end
        self.opened.set()

    def drain(self) -> int:
        assert self.fd is not None
        total = 0
        while chunk := os.read(self.fd, 1 << 16):
            total += len(chunk)
        os.close(self.fd)
        return total


def with_fifo_stack(env: Env, mirror: Path, fifo: Path) -> None:
    stack = env.env_dir / "stacks" / "files"
    stack.mkdir(parents=True)
    (stack / "main.tf").write_text(FILES_STACK)
    (stack / "stack.yaml").write_text(f"inputs:\n  path: {fifo}\n")
    # everything else waits for it, so an interrupt while it runs leaves nodes not started
    env.edit(
        f"environments/{env.name}/stacks/network/stack.yaml", "module:", "depends_on: [stack.files]\nmodule:"
    )
    env.edit(
        f"environments/{env.name}/layers/platform/layer.yaml",
        "prune: true",
        "depends_on: [stack.files]\nprune: true",
    )
    env.edit(
        f"environments/{env.name}/environment.yaml",
        "approval:",
        f"terraform:\n  plugin_dir: {mirror}\napproval:",
    )
    env.commit("a stack that writes into a named pipe")


def journal(env: Env) -> dict[str, object]:
    runs = sorted((env.root / ".envctl" / "runs" / env.name).glob("*.json"))
    assert runs, "no run journal was written"
    return dict(json.loads(runs[-1].read_text()))


def lock_is_free(env: Env) -> None:
    assert env.lease_holder() is None
    status = env.run("status", "-e", env.name, "--format", "json")
    assert status.returncode == 0, describe(status)
    assert json.loads(status.stdout)["lock"] is None


def test_the_first_interrupt_ends_a_readiness_wait_at_once_and_drift_agrees_with_plan(
    example: Env, api_client: client.ApiClient
) -> None:
    never_ready(example)
    apps = client.AppsV1Api(api_client)
    child = example.spawn("apply", "-e", example.name, "--auto-approve")

    def waiting() -> bool:
        deps = apps.list_namespaced_deployment(example.namespace).items if example.namespace_exists() else []
        return any((d.status.replicas or 0) == 2 for d in deps)

    wait_for(waiting, timeout=240, what="layer.app to be applied and its rollout under way")
    child.sendintr()
    child.expect_exact("interrupt: no new nodes will start")
    output = finish(child)

    assert child.exitstatus == 130, output
    assert "applied but not ready" in output, output
    assert f"apps/v1 Deployment {example.namespace}/web" in output, output
    assert "readiness probe failed (simulated by KWOK)" in output, output
    assert journal(example)["interrupted"] is True
    lock_is_free(example)

    # The objects were applied with this run's inputs: nothing to change, nothing stale.
    plan = example.run("plan", "-e", example.name, "--detailed-exitcode")
    assert plan.returncode == 0, describe(plan)
    drift = example.run("drift", "-e", example.name, "--format", "json")
    assert drift.returncode == 0, describe(drift)
    statuses = {n["node"]: n["status"] for n in json.loads(drift.stdout)["nodes"]}
    assert set(statuses.values()) == {"in-sync"}, statuses


def test_the_first_interrupt_lets_running_terraform_finish_and_starts_nothing_new(
    example: Env, plugin_mirror: Path, tmp_path: Path
) -> None:
    fifo = Fifo(tmp_path / "blob.fifo")
    with_fifo_stack(example, plugin_mirror, fifo.path)
    child = example.spawn("apply", "-e", example.name, "--auto-approve", "--parallelism", "1")
    try:
        assert fifo.opened.wait(240), "Terraform never opened the named pipe"
        child.sendintr()
        child.expect_exact("interrupt: no new nodes will start")
        assert fifo.drain() == 262144  # Terraform wrote its whole file after the interrupt
        output = finish(child)
    finally:
        child.close(force=True)

    assert child.exitstatus == 130, output
    nodes = dict(journal(example)["nodes"])  # type: ignore[arg-type]
    assert nodes["stack.files"]["status"] == "done", nodes
    state = json.loads(
        (example.root / ".envctl" / "state" / example.name / "files" / "terraform.tfstate").read_text()
    )
    assert [(r["type"], r["name"]) for r in state["resources"]] == [("local_file", "blob")]
    assert "not-started" in {n["status"] for n in nodes.values()}, nodes
    lock_is_free(example)


def test_the_second_interrupt_exits_at_once_releasing_the_lock_and_writing_the_journal(
    example: Env, plugin_mirror: Path, tmp_path: Path
) -> None:
    fifo = Fifo(tmp_path / "blob.fifo")
    with_fifo_stack(example, plugin_mirror, fifo.path)
    child = example.spawn("apply", "-e", example.name, "--auto-approve", "--parallelism", "1")
    try:
        assert fifo.opened.wait(240), "Terraform never opened the named pipe"
        child.sendintr()
        child.expect_exact("interrupt: no new nodes will start")
        child.sendintr()
        child.expect_exact("second interrupt: exiting now")
        # Terraform is still blocked writing into the pipe: envctl must not wait for it
        output = finish(child)
        assert child.exitstatus == 130, output
        lock_is_free(example)
        record = journal(example)
        assert record["interrupted"] is True and record.get("finished"), record
        nodes = dict(record["nodes"])  # type: ignore[call-overload]
        assert "exited" in nodes["stack.files"]["reason"], nodes
    finally:
        fifo.drain()  # let the orphaned Terraform command finish and its worker exit
