"""Planning waits for an upstream plan only when it needs its outputs (or is a layer).

A bare ``depends_on`` between stacks orders their applies, not their plans: those plans run
at once. A stack that reads an upstream output waits for that upstream's plan, and shows
"pending upstream" while the value is unknown.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from tfhelpers import write_tree

from envctl.app.plan import plan_environment
from envctl.app.session import Session
from envctl.core.graph import EnvGraph
from envctl.repo import WorkTreeSnapshot, load_environment

pytestmark = pytest.mark.integration

SLOW = """
resource "terraform_data" "v" { input = "a" }
output "v" { value = terraform_data.v.output }
"""
LEAF = """
variable "x" {
  type    = string
  default = "none"
}
resource "terraform_data" "v" { input = var.x }
"""


def test_depends_on_alone_does_not_serialise_plans(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "environments/dev/environment.yaml": "name: dev\napproval:\n  required_for: []\n",
            "environments/dev/stacks/a/main.tf": SLOW,
            "environments/dev/stacks/b/main.tf": LEAF,
            "environments/dev/stacks/b/stack.yaml": "depends_on: [stack.a]\n",
            "environments/dev/stacks/c/main.tf": LEAF,
            "environments/dev/stacks/c/stack.yaml": "inputs:\n  x: ${stack.a.outputs.v}\n",
        },
    )
    snapshot = WorkTreeSnapshot(tmp_path)
    g = EnvGraph(load_environment(snapshot, "dev"))
    events: list[str] = []
    lock = threading.Lock()

    def progress(msg: str) -> None:
        with lock:
            events.append(msg)

    s = Session(tmp_path, snapshot, g.env, g, parallelism=3, progress=progress)
    result = plan_environment(s)
    assert not result.errors, result.errors

    def at(prefix: str) -> int:
        return next(i for i, e in enumerate(events) if e.startswith(prefix))

    a_done = at("stack.a: planned")
    assert at("stack.b: planning") < a_done, f"b waited for a's plan: {events}"
    assert at("stack.c: planning") > a_done, f"c needs a's output, so it waits: {events}"
    plans = result.bundle.nodes
    assert plans["stack.c"].pending_upstream == ("x",)
    assert not plans["stack.b"].pending_upstream and plans["stack.b"].has_changes
