"""The embedded engine's pool of reusable worker processes: which worker a command gets, when a
new one starts, when an idle one stops. Bookkeeping only: it starts and stops workers through the
functions it is given, and reads the time only through its ``Clock``, so its decisions are
unit-tested with stand-in workers and a fake clock (tests/unit/test_tf_pool.py).

May import: the standard library.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

Key = tuple[tuple[str, str], ...]


def key_of(env: Mapping[str, str]) -> Key:
    """Workers are shared by commands with exactly the same environment (Terraform reads it at start)."""
    return tuple(sorted(env.items()))


class Worker(Protocol):
    """What the pool needs of a worker."""

    key: Key
    commands: int  # commands it has run
    idle_since: float  # the pool's clock when it last became idle

    def close_stdin(self) -> None: ...

    def close(self, *, kill: bool = False) -> None: ...


W = TypeVar("W", bound=Worker)


class Clock(Protocol):
    """The pool's time: ``now`` (seconds, monotonic), waiting on its condition, sleeping."""

    def now(self) -> float: ...

    def wait(self, cond: threading.Condition, timeout: float) -> None:
        """Wait on ``cond`` (held by the caller) until notified or ``timeout`` seconds passed."""
        ...

    def sleep(self, seconds: float) -> None: ...


class MonotonicClock:
    """The real clock."""

    def now(self) -> float:
        return time.monotonic()

    def wait(self, cond: threading.Condition, timeout: float) -> None:
        cond.wait(timeout)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True)
class PoolSettings:
    """``cores``: workers that may run at once before a command waits for one to come back;
    ``spawn_wait``: how long it waits; ``idle_seconds``: an idle worker (about 120 MiB) is stopped
    after this long; ``max_commands``: a worker is replaced after this many (bounds any memory
    Terraform keeps)."""

    cores: int
    spawn_wait: float = 0.25
    idle_seconds: float = 30.0
    max_commands: int = 200


@dataclass(frozen=True)
class PoolState:
    """A snapshot of the pool for tests and diagnostics."""

    live: int  # started and not yet stopped
    starting: int  # of those, started by prewarm and not yet idle
    busy: int  # running a command
    idle: int


class WorkerPool(Generic[W]):
    """Reusable workers by environment; ``start(env, cwd)`` makes a new one."""

    def __init__(
        self,
        start: Callable[[Mapping[str, str], Path], W],
        settings: PoolSettings,
        clock: Clock | None = None,
    ) -> None:
        self._start_worker = start
        self.settings = settings
        self.clock: Clock = clock or MonotonicClock()
        self._idle: dict[Key, list[W]] = {}
        self._lock = threading.Lock()
        self._returned = threading.Condition(self._lock)
        self._live = 0
        self._starting = 0
        self._busy: dict[W, float] = {}  # worker -> when its command started
        self._reaper: threading.Thread | None = None

    def state(self) -> PoolState:
        with self._lock:
            idle = sum(len(ws) for ws in self._idle.values())
            return PoolState(self._live, self._starting, len(self._busy), idle)

    def idle_workers(self) -> list[W]:
        with self._lock:
            return [w for ws in self._idle.values() for w in ws]

    def acquire(self, env: Mapping[str, str], cwd: Path) -> W:
        """A worker for ``env`` (an idle one, or a new one), marked busy."""
        worker = self.take(key_of(env))
        if worker is None:
            worker = self._start(env, cwd)
        self._mark_busy(worker)
        return worker

    def acquire_any(self) -> W | None:
        """Any idle worker (for a command whose answer does not depend on the environment)."""
        with self._lock:
            worker = self._pop_any_idle()
        if worker is not None:
            self._mark_busy(worker)
        return worker

    def release(self, worker: W) -> None:
        """The command is done: the worker goes back to the idle ones (or stops when worn out)."""
        with self._lock:
            self._busy.pop(worker, None)
        if worker.commands >= self.settings.max_commands:
            self._stop(worker)
        else:
            self._give_back(worker)

    def discard(self, worker: W) -> None:
        """The command failed in a way that leaves the worker unusable: kill it."""
        with self._lock:
            self._busy.pop(worker, None)
        self._stop(worker, kill=True)

    def _mark_busy(self, worker: W) -> None:
        with self._lock:
            self._busy[worker] = self.clock.now()

    def _start(self, env: Mapping[str, str], cwd: Path) -> W:
        """A new worker; ``_live`` was already counted for it by ``take``/``prewarm``."""
        try:
            return self._start_worker(env, cwd)
        except BaseException:
            with self._lock:
                self._live -= 1
            raise

    def _give_back(self, worker: W) -> None:
        worker.idle_since = self.clock.now()
        with self._lock:
            self._idle.setdefault(worker.key, []).append(worker)
            self._returned.notify()
            if self._reaper is None or not self._reaper.is_alive():
                self._reaper = threading.Thread(target=self._reap, name="envctl-tf-reaper", daemon=True)
                self._reaper.start()

    def prewarm(
        self,
        env: Mapping[str, str],
        cwd: Path,
        count: int,
        *,
        beyond_cores: bool = False,
        errors: tuple[type[BaseException], ...] = (OSError,),
    ) -> None:
        """Start workers for ``env`` in the background until ``count`` are live.

        At most one per core unless ``beyond_cores``. A worker that fails to start (``errors``)
        is not reported here: the command that needs it says why.
        """
        with self._lock:
            n = max(0, (count if beyond_cores else min(count, self.settings.cores)) - self._live)
            self._live += n
            self._starting += n

        def start() -> None:
            try:
                with contextlib.suppress(*errors):
                    self._give_back(self._start(env, cwd))
            finally:
                with self._lock:
                    self._starting -= 1
                    self._returned.notify_all()

        for _ in range(n):
            threading.Thread(target=start, name="envctl-tf-prewarm", daemon=True).start()

    def take(self, key: Key) -> W | None:
        """An idle worker for this environment; None means: start one (counted as live).

        With at least one worker per core already running, wait briefly for one to come back
        while any worker is starting or has been busy for less than ``spawn_wait``: starting a
        worker costs more CPU than a small plan, so on a small machine more workers than cores
        only make short commands slower. When every worker is in a long command (an apply
        waiting on the cloud), a new one starts at once.
        """
        cores, spawn_wait = self.settings.cores, self.settings.spawn_wait
        deadline = self.clock.now() + spawn_wait
        other: W | None = None
        with self._lock:
            while True:
                idle = self._idle.get(key)
                if idle:
                    return idle.pop()
                now = self.clock.now()
                left = deadline - now
                if self._live >= cores and left > 0:
                    other = self._pop_any_idle()
                soon = self._starting > 0 or any(now - t < spawn_wait for t in self._busy.values())
                if self._live < cores or left <= 0 or other is not None or not soon:
                    self._live += 1
                    break
                self.clock.wait(self._returned, left)
        if other is not None:  # an idle worker of another environment makes room for this one
            self._stop(other)
        return None

    def _pop_any_idle(self) -> W | None:
        """The longest-idle worker of any environment, taken out of the pool (lock held)."""
        for key, workers in self._idle.items():
            if workers:
                w = workers.pop(0)
                if not workers:
                    del self._idle[key]
                return w
        return None

    def _stop(self, worker: W, *, kill: bool = False) -> None:
        with self._lock:
            self._live -= 1
        worker.close(kill=kill)

    def _reap(self) -> None:
        """Stop workers idle for longer than ``idle_seconds``; end when none is idle."""
        idle_seconds = self.settings.idle_seconds
        while True:
            self.clock.sleep(idle_seconds / 3)
            cutoff = self.clock.now() - idle_seconds
            with self._lock:
                old = [w for ws in self._idle.values() for w in ws if w.idle_since < cutoff]
                for key in list(self._idle):
                    self._idle[key] = [w for w in self._idle[key] if w.idle_since >= cutoff]
                    if not self._idle[key]:
                        del self._idle[key]
                done = not self._idle
                if done:
                    self._reaper = None
            for w in old:
                self._stop(w)
            if done:
                return

    def close(self) -> None:
        """Stop every idle worker (running commands keep theirs until they finish)."""
        with self._lock:
            workers = [w for ws in self._idle.values() for w in ws]
            self._idle.clear()
            self._live -= len(workers)
        for w in workers:  # all of them are told first, then each is waited for
            w.close_stdin()
        for w in workers:
            w.close()
