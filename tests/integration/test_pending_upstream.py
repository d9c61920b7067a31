"""A node is pending upstream only when an input's value is unknown until apply (issue 18, point 1).

Real Terraform engine, ``terraform_data`` resources, local state. ``stack.net`` has an output
computed from a variable (known when planned) and one from a resource id (known only after
apply): a consumer of the first is planned for real, with the value the plan says; a consumer
of the second is pending upstream; and one approval of the plan converges the known branch
without a re-plan.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from tfhelpers import write_tree

from envctl.app.apply import apply_bundle
from envctl.app.plan import plan_environment
from envctl.app.session import Session
from envctl.core.approval import Consent
from envctl.core.changes import Action
from envctl.core.graph import EnvGraph
from envctl.core.schedule import Status
from envctl.repo import WorkTreeSnapshot, load_environment

pytestmark = pytest.mark.integration

NET = """
variable "label" { type = string }
resource "terraform_data" "vpc" { input = var.label }
output "label" { value = "net-${var.label}" }
output "id" { value = terraform_data.vpc.id }
"""
CONSUMER = """
variable "x" { type = string }
resource "terraform_data" "v" { input = var.x }
"""


def environment(root: Path, label: str) -> None:
    write_tree(
        root,
        {
            "environments/dev/environment.yaml": "name: dev\n",
            "environments/dev/stacks/net/main.tf": NET,
            "environments/dev/stacks/net/stack.yaml": f"inputs:\n  label: {label}\n",
            "environments/dev/stacks/known/main.tf": CONSUMER,
            "environments/dev/stacks/known/stack.yaml": "inputs:\n  x: ${stack.net.outputs.label}\n",
            "environments/dev/stacks/unknown/main.tf": CONSUMER,
            "environments/dev/stacks/unknown/stack.yaml": "inputs:\n  x: ${stack.net.outputs.id}\n",
        },
    )


def session(root: Path, events: list[str]) -> Session:
    snapshot = WorkTreeSnapshot(root)
    g = EnvGraph(load_environment(snapshot, "dev"))
    lock = threading.Lock()

    def progress(msg: str) -> None:
        with lock:
            events.append(msg)

    return Session(root, snapshot, g.env, g, parallelism=3, progress=progress)


def test_a_consumer_of_known_outputs_is_planned_for_real_and_applied_as_planned(tmp_path: Path) -> None:
    environment(tmp_path, "a")
    events: list[str] = []
    s = session(tmp_path, events)
    result = plan_environment(s)
    assert not result.errors, result.errors
    plans = result.bundle.nodes
    known, unknown = plans["stack.known"], plans["stack.unknown"]
    assert not known.pending_upstream, known
    [create] = [c for c in known.changes if c.action.changes]
    assert create.action is Action.CREATE and create.after["input"] == "net-a", create
    assert unknown.pending_upstream == ("x",)
    assert set(result.needs_approval) == {"stack.net", "stack.known", "stack.unknown"}

    res = apply_bundle(
        s, result.bundle, result.plan_dir, consent=Consent.of_bundle(result.bundle), prompt=None
    )
    st = {n: r.status for n, r in res.results.items()}
    # the known branch converged on the one approval, with the plan that was shown
    assert st["stack.net"] is Status.DONE and st["stack.known"] is Status.DONE, res.results
    assert not any(e.startswith("stack.known: re-planning") for e in events), events
    # the unknown one was re-planned once the id existed: a plan nobody saw, so it is held
    assert st["stack.unknown"] is Status.BLOCKED, res.results
    assert any(e.startswith("stack.unknown: re-planning") for e in events), events


def test_a_known_output_change_shows_the_consumers_real_update(tmp_path: Path) -> None:
    environment(tmp_path, "a")
    s = session(tmp_path, [])
    first = plan_environment(s)
    res = apply_bundle(s, first.bundle, first.plan_dir, consent=Consent(everything=True), prompt=None)
    assert {r.status for r in res.results.values()} == {Status.DONE}, res.results

    environment(tmp_path, "b")  # a one-variable change upstream
    second = plan_environment(session(tmp_path, []))
    assert not second.errors, second.errors
    known = second.bundle.nodes["stack.known"]
    assert not known.pending_upstream, known
    [update] = [c for c in known.changes if c.action.changes]
    assert update.action in (Action.UPDATE, Action.REPLACE), update
    assert (update.before["input"], update.after["input"]) == ("net-a", "net-b")
    # the vpc is updated in place: its id stays and is known, so its consumer has nothing to do
    assert "id" not in second.bundle.nodes["stack.net"].outputs_unknown
    assert not second.bundle.nodes["stack.unknown"].has_changes


SECRET = "s3cret-known-at-plan-7f1c"


def test_a_sensitive_output_known_at_plan_time_is_planned_with_and_never_shown(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "environments/dev/environment.yaml": "name: dev\n",
            "environments/dev/stacks/db/main.tf": """
                variable "p" {
                  type      = string
                  sensitive = true
                }
                resource "terraform_data" "db" { input = "db" }
                output "password" {
                  value     = "pw-${var.p}"
                  sensitive = true
                }
                """,
            "environments/dev/stacks/db/stack.yaml": f"inputs:\n  p: {SECRET}\n",
            "environments/dev/stacks/app/main.tf": CONSUMER,
            "environments/dev/stacks/app/stack.yaml": "inputs:\n  x: ${stack.db.outputs.password}\n",
        },
    )
    result = plan_environment(session(tmp_path, []))
    assert not result.errors, result.errors
    app = result.bundle.nodes["stack.app"]
    assert not app.pending_upstream, app
    assert [c.action for c in app.changes if c.action.changes] == [Action.CREATE]
    stored = (result.plan_dir / "bundle.json").read_text()
    assert SECRET not in stored and SECRET not in repr(result.bundle), stored
