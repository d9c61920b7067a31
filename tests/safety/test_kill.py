"""``kill -9`` at random points of an apply loses nothing: a re-run converges.

Each iteration changes the environment (a Terraform input and a layer value), starts
``envctl apply``, kills its whole process group with SIGKILL after a random delay between 0
and the time an apply normally takes, waits for the Terraform command it had running to finish
(envctl's workers run in sessions of their own, so a killed envctl lets Terraform finish
writing its state, which Terraform rewrites in place), then checks what is left behind: every
Terraform state and every envctl file still parses, no resource or object exists twice, and a
re-run (which waits for the dead run's Lease to expire) converges to exactly what Git says.
ENVCTL_SAFETY_KILLS sets the number of iterations (default 20); ENVCTL_SAFETY_SEED the seed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from typing import Any

import pytest
from harness import SYSTEM_NAMESPACE, Env, live
from kubernetes import client
from prochelpers import descendants, wait_gone

pytestmark = pytest.mark.safety

KILLS = int(os.environ.get("ENVCTL_SAFETY_KILLS", "20"))
LEASE = {"ENVCTL_LOCK_LEASE_SECONDS": "3"}
EXPECTED_RESOURCES = {
    "network": {"module.network.terraform_data.vpc": 1, "module.network.terraform_data.subnet": 2},
    "database": {"module.database.terraform_data.db": 1},
}


def _set_iteration(repo: Env, i: int) -> None:
    env_yaml = repo.path("environment.yaml")
    text = env_yaml.read_text()
    lines = [f"  db_size: size-{i}" if line.startswith("  db_size:") else line for line in text.splitlines()]
    env_yaml.write_text("\n".join(lines) + "\n")
    config = repo.path("layers/platform/config.yaml")
    lines = [
        f"  log_level: level-{i}" if "log_level:" in ln else ln for ln in config.read_text().splitlines()
    ]
    config.write_text("\n".join(lines) + "\n")
    repo.commit(f"iteration {i}")


def _check_files(repo: Env, when: str) -> None:
    """Every JSON file envctl wrote parses; every Terraform state parses and has no duplicate."""
    for path in repo.dotdir.rglob("*.json"):
        if "/work/" in path.as_posix() and "/.terraform/" in path.as_posix():
            continue
        try:
            json.loads(path.read_bytes() or b"<empty>")
        except ValueError as e:
            pytest.fail(f"{when}: {path.relative_to(repo.root)} is not valid JSON ({e})")
    for path in repo.state_files():
        try:
            state = json.loads(path.read_bytes())
        except ValueError as e:
            pytest.fail(f"{when}: Terraform state {path.relative_to(repo.root)} does not parse ({e})")
        stack = path.parent.name
        addresses = Counter(
            f"{r.get('module', '')}.{r['type']}.{r['name']}".lstrip(".")
            for r in state.get("resources", [])
            if r.get("mode") == "managed"
        )
        dupes = [a for a, n in addresses.items() if n > 1]
        assert not dupes, f"{when}: {path} lists {dupes} more than once"
        for r in state.get("resources", []):
            if r.get("mode") != "managed":
                continue
            addr = f"{r.get('module', '')}.{r['type']}.{r['name']}".lstrip(".")
            want = EXPECTED_RESOURCES.get(stack, {}).get(addr)
            if want is not None:
                assert len(r["instances"]) <= want, f"{when}: {addr} has {len(r['instances'])} instances"


def _check_cluster(repo: Env, api: client.ApiClient, i: int | None) -> None:
    core = client.CoreV1Api(api)
    if live(api, "Namespace", "", repo.namespace) is not None:
        names = Counter(cm.metadata.name for cm in core.list_namespaced_config_map(repo.namespace).items)
        assert set(names) <= {"platform-settings", "web-config", "kube-root-ca.crt"}, names
    inventories = core.list_namespaced_config_map(
        SYSTEM_NAMESPACE, label_selector=f"envctl.io/environment={repo.name}"
    ).items
    layer_names = Counter(cm.metadata.name for cm in inventories)
    assert len(inventories) <= 2, f"more than one inventory per layer: {layer_names}"
    if i is not None:
        cm = live(api, "ConfigMap", repo.namespace, "platform-settings")
        assert cm is not None and cm["data"]["log_level"] == f"level-{i}", cm
        web = live(api, "ConfigMap", repo.namespace, "web-config")
        assert web is not None, "layer.app was not converged"
        for kind, name in (("Deployment", "web"), ("Service", "web")):
            assert live(api, kind, repo.namespace, name) is not None, f"{kind} {name} missing"


def _state_outputs(repo: Env) -> dict[str, Any]:
    out = {}
    for path in repo.state_files():
        state = json.loads(path.read_bytes())
        out[path.parent.name] = state.get("resources")
    return out


def test_kill_9_at_random_points_of_an_apply_loses_nothing(
    example: Env, api_client: client.ApiClient
) -> None:
    seed = int(os.environ.get("ENVCTL_SAFETY_SEED", str(int(time.time()))))
    rng = random.Random(seed)
    first = example.apply(env=LEASE)
    assert first.returncode == 0, str(first)
    typical = max(first.seconds, 1.0)
    log: list[str] = [f"seed {seed}, typical apply {typical:.1f}s"]
    for i in range(1, KILLS + 1):
        _set_iteration(example, i)
        delay = rng.uniform(0.0, typical)
        proc = example.popen("apply", "-e", example.name, "--auto-approve", env=LEASE)
        try:
            proc.wait(timeout=delay)
            finished = True
        except Exception:
            finished = False
            orphans = list(descendants(proc.pid))  # Terraform workers run in sessions of their own
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            # a killed envctl lets the Terraform command it started finish and write its state
            # (Terraform rewrites its state file in place): what is left is judged after that
            left = wait_gone(orphans, timeout=90)
            assert not left, f"iteration {i}: Terraform workers still running 90 s after the kill: {left}"
        _, err = proc.communicate()
        log.append(f"#{i}: killed after {delay:.2f}s" if not finished else f"#{i}: finished before the kill")
        when = f"iteration {i} ({log[-1]}, {'; '.join(log[:1])})"
        _check_files(example, when)
        _check_cluster(example, api_client, None)
        rerun = example.run(
            "apply", "-e", example.name, "--auto-approve", "--lock-timeout", "30", env=LEASE, timeout=120
        )
        assert rerun.returncode == 0, (
            f"{when}: the re-run did not converge\n{rerun}\nkilled run stderr:\n{err}"
        )
        _check_files(example, when + " after the re-run")
        _check_cluster(example, api_client, i)
    check = example.plan("--detailed-exitcode", env=LEASE)
    assert check.returncode == 0, f"not converged after {KILLS} kills ({log})\n{check}"
    status = example.run("status", "-e", example.name, "--format", "json")
    assert status.returncode == 0, str(status)
    assert json.loads(status.stdout)["lock"] is None, status.stdout
