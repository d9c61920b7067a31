"""End-to-end: one review, one approval for a chain whose outputs are known only after apply
(issue 18, points 2 and 6).

A fresh chain of three stacks (real Terraform engine, ``terraform_data``): each reads an output of
the one before it that only its apply tells, so the plan shows stack.b and stack.c pending
upstream. ``envctl approve PLAN --pending creates`` lets their re-plans go when they only create:
the environment converges in ONE approval round (plan --out, approve, apply --approve). A later
change whose re-plan updates instead stops that branch (exit 3), shows the new plan and the exact
command that approves it, and that command converges the rest. A bound edited into the approval
record afterwards approves nothing.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from e2ehelpers import Env, describe

pytestmark = pytest.mark.e2e

LINK = """
variable "x" {
  type = string
}
resource "terraform_data" "v" {
  input = var.x
}
output "v" {
  value = terraform_data.v.output  # known only after apply whenever the input changes
}
"""


def chain(env: Env, first: str) -> None:
    """The environment as three stacks a -> b -> c (no layers)."""
    shutil.rmtree(env.env_dir / "layers")
    shutil.rmtree(env.env_dir / "stacks")
    inputs = {"a": first, "b": "${stack.a.outputs.v}-b", "c": "${stack.b.outputs.v}-c"}
    for name, x in inputs.items():
        d = env.env_dir / "stacks" / name
        d.mkdir(parents=True)
        (d / "main.tf").write_text(LINK)
        (d / "stack.yaml").write_text(f"inputs:\n  x: {json.dumps(x)}\n")
    env.commit(f"a chain of three stacks starting at {first}")


def plan_out(env: Env, name: str) -> Path:
    """``envctl plan --out DIR`` (as a CI pipeline runs it) and that directory."""
    r = env.run("plan", "-e", env.name, "--out", name)
    assert r.returncode == 0 and (env.root / name / "bundle.json").is_file(), describe(r)
    return env.root / name


def state_input(env: Env, stack: str) -> str:
    return str(env.outputs(stack)["v"])


def test_a_fresh_chain_converges_in_one_approval_round(example: Env) -> None:
    chain(example, "one")
    plan = plan_out(example, "p1")
    nodes = json.loads((plan / "bundle.json").read_text())["nodes"]
    assert sorted(n for n, p in nodes.items() if p["pending_upstream"]) == ["stack.b", "stack.c"], nodes

    r = example.run("approve", str(plan), "--by", "ci", "--pending", "creates", "--format", "json")
    assert r.returncode == 0, describe(r)
    assert json.loads(r.stdout)["pending"] == "creates"
    r = example.run("apply", str(plan), "-e", example.name, "--approve", "--format", "json")
    assert r.returncode == 0, describe(r)
    assert "needs approval" not in r.stdout + r.stderr
    result = json.loads(r.stdout)
    assert result["pending"] == "creates"
    assert {n["node"]: n["status"] for n in result["nodes"]} == dict.fromkeys(
        ("stack.a", "stack.b", "stack.c"), "done"
    )
    assert [state_input(example, s) for s in "abc"] == ["one", "one-b", "one-b-c"]


def test_a_re_plan_beyond_the_bound_stops_its_branch_and_names_the_command(example: Env) -> None:
    chain(example, "one")
    r = example.run("apply", "-e", example.name, "--auto-approve")
    assert r.returncode == 0, describe(r)
    example.edit(f"environments/{example.name}/stacks/a/stack.yaml", '"one"', '"two"')
    example.commit("a one-variable change upstream")
    plan = plan_out(example, "p2")
    r = example.run("approve", str(plan), "--by", "ci", "--pending", "creates")
    assert r.returncode == 0, describe(r)
    assert "only create" in r.stdout

    r = example.run("apply", str(plan), "-e", example.name, "--approve")
    assert r.returncode == 3, describe(r)
    out = r.stdout + r.stderr
    # stack.a converged; stack.b's re-plan updates (beyond creates): held, with its new plan shown
    assert state_input(example, "a") == "two" and state_input(example, "b") == "one-b"
    assert re.search(r"stack\.b: blocked.*changed after re-planning", r.stdout), out
    assert re.search(r"stack\.c: skipped", r.stdout), out
    held = r.stdout[r.stdout.index("stack.b (held) would now:") :]
    assert "~ terraform_data.v (update)" in held and '"one-b" -> "two-b"' in held, out
    # ... and the exact command that approves it
    m = re.search(
        r"needs approval: (envctl approve \S+ --pending updates --by NAME && envctl apply [^)\n]+)", out
    )
    assert m, out
    approve_cmd, apply_cmd = m.group(1).replace("NAME", "ci").split(" && ")
    r = example.run(*approve_cmd.split()[1:])
    assert r.returncode == 0, describe(r)
    r = example.run(*apply_cmd.split()[1:])
    assert r.returncode == 0, describe(r)
    assert [state_input(example, s) for s in "abc"] == ["two", "two-b", "two-b-c"]


def test_a_bound_widened_in_the_approval_record_approves_nothing(example: Env) -> None:
    chain(example, "one")
    plan = plan_out(example, "p3")
    r = example.run("approve", str(plan), "--by", "ci", "--pending", "creates")
    assert r.returncode == 0, describe(r)
    [record] = (example.root / ".envctl" / "approvals").glob("*.json")
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "pending": "any"}))

    r = example.run("apply", str(plan), "-e", example.name, "--approve")
    assert r.returncode == 3, describe(r)
    assert "changed after it was recorded" in r.stderr, describe(r)
    assert example.state_files() == []


def test_apply_may_narrow_a_recorded_bound_but_never_widen_it(example: Env) -> None:
    chain(example, "one")
    plan = plan_out(example, "p4")
    r = example.run("approve", str(plan), "--by", "ci", "--pending", "creates")
    assert r.returncode == 0, describe(r)
    r = example.run("apply", str(plan), "-e", example.name, "--approve", "--pending", "any")
    assert r.returncode == 3, describe(r)
    assert "not --pending any" in r.stderr, describe(r)
    assert example.state_files() == []
