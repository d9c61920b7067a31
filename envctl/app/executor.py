"""Run work over the graph: a bounded thread pool driving the core's ready queue, and Ctrl-C.

The scheduling decisions are the core's (``core.schedule.ReadyQueue``); this module only runs
the work of ready nodes on threads and feeds their outcomes back.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager

from envctl.app.session import Progress, Session
from envctl.core.errors import EnvctlError
from envctl.core.schedule import ReadyQueue, Status


def run_graph(
    s: Session,
    nodes: list[str],
    work: Callable[[str], Status],
    stop_event: threading.Event | None = None,
    needs: Callable[[str, str], bool] | None = None,
    edges: Iterable[tuple[str, str]] | None = None,
) -> ReadyQueue:
    """Run ``work`` over ``nodes`` with a ready queue and ``s.parallelism`` threads.

    ``needs(u, d)``: whether ``d`` must wait for ``u`` (default: every edge of the graph);
    ``edges``: the ``(first, then)`` pairs to use instead of the graph's (deletions reverse them).
    """
    edges = [
        (u, d)
        for (u, d) in (s.graph.edges if edges is None else edges)
        if u in nodes and d in nodes and (needs is None or needs(u, d))
    ]
    queue = ReadyQueue.build(nodes, edges)
    running: dict[Future[Status], str] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, s.parallelism))
    try:
        while True:
            if stop_event is not None and stop_event.is_set():
                queue.stop()
            for n in queue.ready():
                if len(running) >= max(1, s.parallelism):
                    break
                queue.start(n)
                running[pool.submit(work, n)] = n
            if not running:
                break
            done, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
            for fut in done:
                n = running.pop(fut)
                try:
                    result = fut.result()
                except EnvctlError as e:
                    queue.mark(n, Status.FAILED, e.message)
                    continue
                queue.mark(n, result)
    except BaseException:
        # The second Ctrl-C: leave the running work behind instead of waiting for it (a readiness
        # wait, a Terraform command); its threads end with the process (cli.main exits at once).
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    queue.close()
    return queue


@contextmanager
def interrupts(
    stop: threading.Event, progress: Progress, on_first: Callable[[], None] | None = None
) -> Iterator[None]:
    """First Ctrl-C: stop scheduling, call ``on_first`` (cancel readiness waits), let running
    Terraform commands finish. Second: raise KeyboardInterrupt at once (the caller releases the
    lock and writes the journal on its way out; running work is left behind)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            progress(
                "second interrupt: exiting now; a running Terraform command finishes on its own "
                "and writes its state"
            )
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a third must not cut the journal and unlock
            raise KeyboardInterrupt
        stop.set()
        if on_first is not None:
            on_first()
        progress(
            "interrupt: no new nodes will start; readiness waits stop now; running Terraform "
            "commands finish (Ctrl-C again to exit now)"
        )

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
