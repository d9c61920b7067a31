"""Run a use case on a schedule (``drift --every``) until SIGTERM, surviving its errors."""

from __future__ import annotations

import random
import signal
import threading
from collections.abc import Callable

from envctl.core.durations import parse_duration
from envctl.core.errors import EnvctlError, ExitCode, UsageError


def every_interval(every: str) -> float:
    """Seconds of an ``--every`` value (``30s``, ``1h``); at least one second."""
    try:
        interval = parse_duration(every)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if interval < 1:
        raise UsageError("--every must be at least 1s")
    return interval


def repeat_until_sigterm(
    once: Callable[[], ExitCode],
    interval: float,
    report: Callable[[EnvctlError], None],
    progress: Callable[[str], None],
    stop: threading.Event | None = None,
) -> ExitCode:
    """Run ``once`` every ``interval`` seconds (10% jitter) until SIGTERM (or ``stop``); the exit
    code of the last run. An envctl error is reported and retried next time: the schedule stays
    alive through an unreachable cluster or a broken commit."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    code = ExitCode.OK
    while not stop.is_set():
        try:
            code = once()
        except EnvctlError as e:
            report(e)
            code = e.exit_code
        wait_s = interval * random.uniform(0.9, 1.1)
        progress(f"next drift check in {wait_s:.0f}s (SIGTERM to stop)")
        stop.wait(wait_s)
    return code
