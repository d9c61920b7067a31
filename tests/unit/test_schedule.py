"""The ready queue: a node starts as soon as its own dependencies are done, failures skip dependents."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envctl.core.schedule import ReadyQueue, Status

EDGES = [("a", "c"), ("b", "c"), ("c", "d"), ("x", "y")]


def queue() -> ReadyQueue:
    return ReadyQueue.build(["a", "b", "c", "d", "x", "y"], EDGES)


def test_starts_a_node_as_soon_as_its_own_dependencies_are_done_not_by_level() -> None:
    q = queue()
    assert q.ready() == ["a", "b", "x"]
    for n in ("a", "b", "x"):
        q.start(n)
    q.mark("x", Status.DONE)
    # y depends only on x: ready while a and b still run
    assert q.ready() == ["y"]


def test_a_failure_skips_every_dependent_and_independent_branches_finish() -> None:
    q = queue()
    for n in ("a", "b", "x"):
        q.start(n)
    q.mark("a", Status.FAILED, "boom")
    q.mark("b", Status.DONE)
    q.mark("x", Status.DONE)
    q.start("y")
    q.mark("y", Status.DONE)
    assert q.status["c"] is Status.SKIPPED and q.status["d"] is Status.SKIPPED
    assert "a failed" in q.reason["c"] and "c skipped" in q.reason["d"]
    assert q.finished


def test_blocked_node_skips_dependents() -> None:
    q = ReadyQueue.build(["a", "b"], [("a", "b")])
    q.start("a")
    q.mark("a", Status.BLOCKED, "needs approval")
    assert q.status["b"] is Status.SKIPPED


def test_stop_schedules_nothing_new_and_close_marks_not_started() -> None:
    q = queue()
    q.start("a")
    q.stop()
    assert q.ready() == []
    q.mark("a", Status.DONE)
    assert q.finished
    q.close()
    assert q.status["b"] is Status.NOT_STARTED and q.status["a"] is Status.DONE


def test_refuses_to_start_a_node_that_is_not_ready() -> None:
    q = queue()
    with pytest.raises(ValueError):
        q.start("c")
    with pytest.raises(ValueError):
        q.mark("a", Status.DONE)


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=1, max_value=25), st.randoms(use_true_random=False), st.data())
def test_every_node_ends_final_and_never_runs_before_its_dependencies(
    n: int, rnd: random.Random, data: st.DataObject
) -> None:
    nodes = [f"n{i}" for i in range(n)]
    edges = [(nodes[i], nodes[j]) for i in range(n) for j in range(i + 1, n) if rnd.random() < 0.2]
    fail = set(data.draw(st.sets(st.sampled_from(nodes), max_size=3)))
    q = ReadyQueue.build(nodes, edges)
    finished_order: list[str] = []
    while not q.finished:
        ready = q.ready()
        pick = rnd.sample(ready, k=min(len(ready), 2))
        for p in pick:
            q.start(p)
        for p in pick:
            assert all(q.status[u] is Status.DONE for u, d in edges if d == p)
            q.mark(p, Status.FAILED if p in fail else Status.DONE)
            finished_order.append(p)
    q.close()
    assert all(s.final for s in q.status.values())
    for u, d in edges:
        if q.status[d] is Status.DONE:
            assert finished_order.index(u) < finished_order.index(d)
        if q.status[u] is not Status.DONE:
            assert q.status[d] is not Status.DONE
