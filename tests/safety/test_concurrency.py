"""Two applies on one environment at the same moment: exactly one proceeds, the other names the holder.

Two variants: both runs in one checkout (the kernel file lock answers), and runs from two
checkouts of the same environment (only the Lease in the cluster can answer). Each iteration
changes a layer value, so the live object shows that exactly one run applied.
ENVCTL_SAFETY_CONCURRENT sets the number of iterations (default 10).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
from typing import Any

import pytest
from harness import Env, git, live
from kubernetes import client

pytestmark = pytest.mark.safety

ITERATIONS = int(os.environ.get("ENVCTL_SAFETY_CONCURRENT", "10"))


def _layers_only(repo: Env) -> None:
    shutil.rmtree(repo.env_dir / "stacks")
    shutil.rmtree(repo.env_dir / "layers" / "app")
    repo.commit("layers only")


def _set_value(repo: Env, i: int) -> None:
    config = repo.path("layers/platform/config.yaml")
    lines = [
        f"  log_level: level-{i}" if "log_level:" in ln else ln for ln in config.read_text().splitlines()
    ]
    config.write_text("\n".join(lines) + "\n")
    repo.commit(f"iteration {i}")


def _latest_plan(repo: Env) -> str:
    run = repo.plan()
    assert run.returncode == 0, str(run)
    return str(max(repo.plans(), key=lambda p: p.stat().st_mtime))


def _race(runs: list[tuple[Env, str]]) -> list[tuple[subprocess.Popen[str], str, str]]:
    procs = [repo.popen("apply", "-e", repo.name, plan, "--auto-approve") for repo, plan in runs]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        done.append((p, out, err))
    return done


def _judge(done: list[tuple[subprocess.Popen[str], str, str]], i: int) -> bool:
    """True when the runs overlapped (one locked out), False when they ran one after the other."""
    codes = sorted(p.returncode for p, _, _ in done)
    report = "\n".join(f"pid {p.pid} exit {p.returncode}\n{out}\n{err}" for p, out, err in done)
    if codes == [0, 4] and any("already applied" in e or "changed since the plan" in e for _, _, e in done):
        # the runs did not overlap: the second took the lock after the first had finished and
        # refused its now stale plan; still exactly one applied
        return False
    assert codes == [0, 1], f"iteration {i}: expected exactly one run to proceed\n{report}"
    winner = next(p for p, _, _ in done if p.returncode == 0)
    loser_err = next(err for p, _, err in done if p.returncode == 1)
    assert "locked by" in loser_err, f"iteration {i}: the loser does not say who holds the lock\n{report}"
    assert f"pid {winner.pid}" in loser_err, f"iteration {i}: the holder is not named\n{report}"
    return True


def test_concurrent_applies_in_one_checkout(example: Env, api_client: client.ApiClient) -> None:
    _layers_only(example)
    overlapped = 0
    for i in range(1, ITERATIONS + 1):
        _set_value(example, i)
        plan = _latest_plan(example)
        overlapped += _judge(_race([(example, plan), (example, plan)]), i)
        cm = live(api_client, "ConfigMap", example.namespace, "platform-settings")
        assert cm is not None and cm["data"]["log_level"] == f"level-{i}"
    assert overlapped, "the runs never overlapped: the test proved nothing"


def _two_checkouts(make_env: Any) -> tuple[Env, Env]:
    a: Env = make_env(where="a")
    _layers_only(a)
    b_root = a.root.parent / "b"
    git(a.root.parent, "clone", "-q", str(a.root), str(b_root))
    return a, dataclasses.replace(a, root=b_root, printed=[])


def test_concurrent_applies_from_two_checkouts(make_env: Any, api_client: client.ApiClient) -> None:
    """Started at the same moment; when the two runs overlap, the loser names the holder."""
    a, b = _two_checkouts(make_env)
    overlapped = 0
    for i in range(1, ITERATIONS + 1):
        _set_value(a, i)
        git(b.root, "pull", "-q", "--ff-only")
        plans = [(a, _latest_plan(a)), (b, _latest_plan(b))]
        overlapped += _judge(_race(plans), i)
        cm = live(api_client, "ConfigMap", a.namespace, "platform-settings")
        assert cm is not None and cm["data"]["log_level"] == f"level-{i}"
    assert overlapped, "the runs never overlapped: the test proved nothing"


def test_a_second_checkout_is_refused_while_the_lease_is_held(
    make_env: Any, api_client: client.ApiClient
) -> None:
    """Deterministic overlap: the first run is frozen (SIGSTOP) while it holds the Lease."""
    a, b = _two_checkouts(make_env)
    for i in range(1, min(ITERATIONS, 3) + 1):
        _set_value(a, i)
        git(b.root, "pull", "-q", "--ff-only")
        plan_a, plan_b = _latest_plan(a), _latest_plan(b)
        first = a.popen("apply", "-e", a.name, plan_a, "--auto-approve")
        assert first.stderr is not None
        seen = []
        for line in first.stderr:
            seen.append(line)
            if "applying" in line:
                break
        os.kill(first.pid, signal.SIGSTOP)
        try:
            second = b.run("apply", "-e", b.name, plan_b, "--auto-approve", timeout=60)
        finally:
            os.kill(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=120)
        report = (
            f"first (pid {first.pid}) exit {first.returncode}\n{out}\n{''.join(seen)}{err}\nsecond: {second}"
        )
        assert first.returncode == 0, report
        assert second.returncode == 1, report
        assert "locked by" in second.stderr and f"pid {first.pid}" in second.stderr, report
        cm = live(api_client, "ConfigMap", a.namespace, "platform-settings")
        assert cm is not None and cm["data"]["log_level"] == f"level-{i}"
