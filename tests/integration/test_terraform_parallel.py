"""Several stacks plan at once with the embedded engine; how many processes, how much memory.

The numbers in docs/terraform.md come from this test (run it with ``-s`` to see them).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tfhelpers import build_tool, context, stack, write_tree

from envctl.core.changes import Action
from envctl.terraform import plan_stack
from envctl.terraform.engines import STATS

pytestmark = pytest.mark.integration

N = int(os.environ.get("ENVCTL_MEASURE_STACKS", "4"))
STACK = """
variable "n" { type = number }
resource "terraform_data" "one" { input = var.n }
resource "terraform_data" "two" { input = "${var.n}-two" }
output "n" { value = terraform_data.one.output }
"""


class RssSampler:
    """Samples the resident memory of this process's children (and theirs) from /proc."""

    def __init__(self) -> None:
        self.peak_per_process: dict[int, int] = {}
        self.peak_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            parents: dict[int, int] = {}
            rss: dict[int, int] = {}
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry}/status") as f:
                        fields = dict(line.split(":", 1) for line in f if ":" in line)
                except OSError:
                    continue
                parents[int(entry)] = int(fields.get("PPid", "0").strip())
                rss[int(entry)] = int(fields.get("VmRSS", "0 kB").split()[0] or 0)
            ours = {p for p, pp in parents.items() if pp == me}
            ours |= {p for p, pp in parents.items() if pp in ours}
            total = 0
            for p in ours:
                self.peak_per_process[p] = max(self.peak_per_process.get(p, 0), rss.get(p, 0))
                total += rss.get(p, 0)
            self.peak_total = max(self.peak_total, total)
            time.sleep(0.02)


def _plan_all(tmp_path: Path, tag: str, **settings: str) -> tuple[int, int, float, RssSampler]:
    nodes = tuple(stack(f"s{i}") for i in range(N))
    ctx = context(tmp_path, nodes=nodes, **settings)
    ctx.get_engine().version()  # asked once per engine; not part of the per-stack count
    before, before_commands = STATS.started, STATS.commands
    start = time.monotonic()
    with RssSampler() as sampler, ThreadPoolExecutor(max_workers=N) as pool:
        plans = list(pool.map(lambda n: plan_stack(ctx, n, {"n": 1}, tmp_path / tag), nodes))
    elapsed = time.monotonic() - start
    assert all([c.action for c in p.changes] == [Action.CREATE, Action.CREATE] for p in plans)
    return STATS.started - before, STATS.commands - before_commands, elapsed, sampler


@pytest.mark.parametrize("engine", ["embedded", "cli"])
def test_plans_many_stacks_in_parallel(tmp_path: Path, engine: str) -> None:
    """cli: one process per command. embedded: workers reused across commands and plans."""
    write_tree(tmp_path, {f"environments/dev/stacks/s{i}/main.tf": STACK for i in range(N)})
    settings = {"engine": engine}
    if engine == "cli":
        settings["binary"] = str(build_tool("tofu"))
    first, first_commands, t1, s1 = _plan_all(tmp_path, "p1", **settings)
    again, again_commands, t2, s2 = _plan_all(tmp_path, "p2", **settings)
    assert first_commands == 3 * N, "a fresh workspace: init + plan + show per stack"
    assert again_commands == 2 * N, "an initialised workspace: plan + show per stack"
    if engine == "cli":
        assert (first, again) == (first_commands, again_commands), "one process per command"
    else:
        assert 1 <= first <= N, "at most one worker per stack running at once"
        assert again == 0, "the second plan reuses the idle workers"
    peak = max(s1.peak_per_process.values()) // 1024
    together = max(s1.peak_total, s2.peak_total) // 1024
    print(
        f"\n[{engine}] {N} stacks: first plan {first_commands} commands in {first} processes, {t1:.2f}s; "
        f"re-plan {again_commands} commands in {again} new processes, {t2:.2f}s; "
        f"peak RSS per process {peak} MiB, peak RSS of all at once {together} MiB"
    )
