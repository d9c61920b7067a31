"""The embedded engine's worker pool: which worker a command gets, and when a new one starts.

Pure bookkeeping with stand-in workers and a fake clock: no Terraform process is started and no
test depends on how fast this machine is (the integration tests in test_terraform_parallel.py
run real workers). Time moves only when a test advances it; a test that expects the pool to wait
sees it waiting (``clock.waiting``) and then decides what happens: a worker comes back, or the
wait runs out.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from envctl.terraform.pool import Key, PoolSettings, PoolState, WorkerPool, key_of

ENV_A = {"TF_CLI_CONFIG_FILE": "a"}
ENV_B = {"TF_CLI_CONFIG_FILE": "b"}
SPAWN_WAIT = 0.25
IDLE_SECONDS = 30.0


class FakeClock:
    """Time that moves only by ``advance``; ``waiting`` is set while the pool waits on it."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.waiting = threading.Event()
        self.waits = 0
        self._cond: threading.Condition | None = None
        self.reaper_asleep = threading.Event()
        self.reaper_wakes = threading.Event()

    def now(self) -> float:
        return self.t

    def wait(self, cond: threading.Condition, timeout: float) -> None:
        self._cond = cond
        self.waits += 1
        self.waiting.set()
        cond.wait()  # until a worker comes back (notify) or the test advances the clock

    def sleep(self, seconds: float) -> None:
        # the reaper's sleep: the test decides when it wakes, by advancing the clock
        self.reaper_asleep.set()
        self.reaper_wakes.wait()
        self.reaper_wakes.clear()

    def advance(self, seconds: float) -> None:
        self.t += seconds
        if self._cond is not None:
            with self._cond:
                self._cond.notify_all()


class FakeWorker:
    def __init__(self, env: Mapping[str, str], cwd: Path) -> None:
        self.key: Key = key_of(env)
        self.commands = 0
        self.idle_since = 0.0
        self.closed = threading.Event()
        self.killed = False

    def close_stdin(self) -> None:
        return None

    def close(self, *, kill: bool = False) -> None:
        self.killed = kill
        self.closed.set()


class Pool:
    def __init__(self, cores: int = 2) -> None:
        self.clock = FakeClock()
        self.started: list[FakeWorker] = []
        self.starts_done = threading.Event()  # cleared: a worker being started is still loading
        self.starts_done.set()
        self.pool = WorkerPool(
            self.start,
            PoolSettings(cores=cores, spawn_wait=SPAWN_WAIT, idle_seconds=IDLE_SECONDS),
            self.clock,
        )

    def start(self, env: Mapping[str, str], cwd: Path) -> FakeWorker:
        assert self.starts_done.wait(30)
        w = FakeWorker(env, cwd)
        self.started.append(w)
        return w

    def running(self, env: Mapping[str, str] = ENV_A, *, seconds_ago: float = 0.0) -> FakeWorker:
        """A worker in a command that started ``seconds_ago``."""
        self.clock.t -= seconds_ago
        w = self.pool.acquire(env, Path("/"))
        self.clock.t += seconds_ago
        return w

    def in_thread(self, fn: Callable[[], FakeWorker]) -> tuple[threading.Thread, list[FakeWorker]]:
        out: list[FakeWorker] = []
        t = threading.Thread(target=lambda: out.append(fn()))
        t.start()
        return t, out


@pytest.fixture
def p() -> Pool:
    return Pool()


def test_an_idle_worker_of_the_same_environment_is_reused(p: Pool) -> None:
    w = p.running()
    p.pool.release(w)
    assert p.pool.acquire(ENV_A, Path("/")) is w
    assert p.pool.state().live == 1 and len(p.started) == 1


def test_below_one_worker_per_core_a_new_one_starts_at_once(p: Pool) -> None:
    first = p.running()
    second = p.pool.acquire(ENV_A, Path("/"))
    assert second is not first
    assert p.clock.waits == 0, "it did not wait"
    assert p.pool.state().live == 2


def test_at_one_worker_per_core_a_returning_worker_is_awaited(p: Pool) -> None:
    busy = p.running()  # a short command (a plan, say) that just started
    p.running()
    t, got = p.in_thread(lambda: p.pool.acquire(ENV_A, Path("/")))
    assert p.clock.waiting.wait(30), "the pool never waited"
    p.pool.release(busy)
    t.join(30)
    assert got == [busy]
    assert p.pool.state().live == 2 and len(p.started) == 2


def test_at_one_worker_per_core_a_wait_that_runs_out_starts_another(p: Pool) -> None:
    p.running()
    p.running()
    t, got = p.in_thread(lambda: p.pool.acquire(ENV_A, Path("/")))
    assert p.clock.waiting.wait(30), "the pool never waited"
    p.clock.advance(SPAWN_WAIT)
    t.join(30)
    assert got and got[0] is p.started[-1]
    assert p.pool.state().live == 3


def test_when_every_worker_is_in_a_long_command_another_starts_at_once(p: Pool) -> None:
    p.running(seconds_ago=5.0)  # applies waiting on the cloud
    p.running(seconds_ago=1.0)
    p.pool.acquire(ENV_A, Path("/"))
    assert p.clock.waits == 0, "it did not wait"
    assert p.pool.state().live == 3


def test_a_worker_still_starting_is_awaited(p: Pool) -> None:
    p.running(seconds_ago=5.0)  # in a long command: not worth waiting for
    p.starts_done.clear()  # the next worker takes a while to load
    p.pool.prewarm(ENV_B, Path("/"), 2)
    assert p.pool.state().starting == 1
    t, got = p.in_thread(lambda: p.pool.acquire(ENV_A, Path("/")))
    assert p.clock.waiting.wait(30), "it waited for the worker being started"
    p.starts_done.set()  # the prewarmed worker (of another environment) becomes idle, makes room
    t.join(30)
    prewarmed, mine = p.started[1], p.started[2]
    assert got == [mine] and prewarmed.key == key_of(ENV_B)
    assert prewarmed.closed.is_set()


def test_an_idle_worker_of_another_environment_makes_room(p: Pool) -> None:
    other = p.running(ENV_B)
    p.running()
    p.pool.release(other)
    mine = p.pool.acquire(ENV_A, Path("/"))
    assert p.clock.waits == 0
    assert other.closed.is_set() and mine is not other
    assert p.pool.state() == PoolState(live=2, starting=0, busy=2, idle=0)


def test_a_worker_is_replaced_after_its_command_budget(p: Pool) -> None:
    w = p.running()
    w.commands = p.pool.settings.max_commands
    p.pool.release(w)
    assert w.closed.is_set() and not w.killed
    assert p.pool.state().live == 0


def test_a_worker_whose_command_failed_is_killed(p: Pool) -> None:
    w = p.running()
    p.pool.discard(w)
    assert w.killed
    assert p.pool.state() == PoolState(live=0, starting=0, busy=0, idle=0)


def test_idle_workers_are_stopped_after_the_idle_time(p: Pool) -> None:
    w = p.running()
    p.pool.release(w)  # starts the reaper, which sleeps
    assert p.clock.reaper_asleep.wait(30)
    p.clock.reaper_asleep.clear()
    p.clock.t += IDLE_SECONDS + 1
    p.clock.reaper_wakes.set()
    assert w.closed.wait(30), "the reaper stopped the idle worker"
    assert p.pool.state().idle == 0
