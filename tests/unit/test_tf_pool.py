"""The embedded engine's worker pool: which worker a command gets, and when a new one starts.

Pure bookkeeping with stand-in workers: no Terraform process is started here (the integration
tests in test_terraform_parallel.py run real ones).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from envctl.terraform import engines
from envctl.terraform.engines import EmbeddedEngine

KEY_A = (("TF_CLI_CONFIG_FILE", "a"),)
KEY_B = (("TF_CLI_CONFIG_FILE", "b"),)


class FakeWorker:
    def __init__(self) -> None:
        self.closed = False
        self.idle_since = time.monotonic()

    def close(self, *, kill: bool = False) -> None:
        self.closed = True


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> EmbeddedEngine:
    monkeypatch.setattr(engines, "_CORES", 2)
    monkeypatch.setattr(engines, "_SPAWN_WAIT_SECONDS", 0.2)
    return EmbeddedEngine()


def _idle(engine: EmbeddedEngine, key: Any, worker: FakeWorker) -> None:
    engine._idle.setdefault(key, []).append(worker)  # type: ignore[arg-type]


def test_an_idle_worker_of_the_same_environment_is_reused(engine: EmbeddedEngine) -> None:
    w = FakeWorker()
    engine._live = 1
    _idle(engine, KEY_A, w)
    assert engine._take(KEY_A) is w
    assert engine._live == 1


def test_below_one_worker_per_core_a_new_one_starts_at_once(engine: EmbeddedEngine) -> None:
    engine._live = 1
    t0 = time.monotonic()
    assert engine._take(KEY_A) is None
    assert time.monotonic() - t0 < 0.1
    assert engine._live == 2


def _busy(engine: EmbeddedEngine, seconds_ago: float) -> None:
    engine._busy[FakeWorker()] = time.monotonic() - seconds_ago  # type: ignore[index]


def test_at_one_worker_per_core_a_returning_worker_is_awaited(engine: EmbeddedEngine) -> None:
    engine._live = 2
    _busy(engine, 0.0)  # a short command (a plan, say) that just started
    w = FakeWorker()

    def give_back() -> None:
        time.sleep(0.05)
        with engine._pool_lock:
            _idle(engine, KEY_A, w)
            engine._returned.notify()

    threading.Thread(target=give_back).start()
    assert engine._take(KEY_A) is w
    assert engine._live == 2


def test_at_one_worker_per_core_a_long_wait_starts_another(engine: EmbeddedEngine) -> None:
    engine._live = 2
    _busy(engine, 0.0)
    t0 = time.monotonic()
    assert engine._take(KEY_A) is None
    assert 0.15 <= time.monotonic() - t0 < 1.0
    assert engine._live == 3


def test_when_every_worker_is_in_a_long_command_another_starts_at_once(engine: EmbeddedEngine) -> None:
    engine._live = 2
    _busy(engine, 5.0)  # applies waiting on the cloud
    _busy(engine, 1.0)
    t0 = time.monotonic()
    assert engine._take(KEY_A) is None
    assert time.monotonic() - t0 < 0.1
    assert engine._live == 3


def test_a_worker_still_starting_is_awaited(engine: EmbeddedEngine) -> None:
    engine._live = 2
    engine._starting = 1
    _busy(engine, 5.0)
    t0 = time.monotonic()
    assert engine._take(KEY_A) is None
    assert time.monotonic() - t0 >= 0.15, "it waited for the worker being started"


def test_an_idle_worker_of_another_environment_makes_room(engine: EmbeddedEngine) -> None:
    other = FakeWorker()
    engine._live = 2
    _idle(engine, KEY_B, other)
    t0 = time.monotonic()
    assert engine._take(KEY_A) is None
    assert time.monotonic() - t0 < 0.1
    assert other.closed
    assert engine._live == 2, "one stopped, one to start"
    assert not engine._idle
