"""End-to-end: the interactive approval, driven through a pseudo-terminal (issue 6, point 7).

On a terminal ``envctl apply`` shows the plan and asks the user to type the environment name; when
stack.database is re-planned after stack.network is applied, its real plan was never shown, so
it asks again before applying it.
"""

from __future__ import annotations

import re

import pexpect
import pytest
from harness import Env

pytestmark = pytest.mark.e2e


def test_the_prompt_asks_for_the_environment_name_and_applies(example: Env) -> None:
    child = example.spawn("apply", "-e", example.name)
    try:
        child.expect(r"NODE\s+ADD\s+CHANGE")  # the plan is shown before the question
        child.expect(f"envctl will change stack.network, stack.database in environment {example.name}")
        child.expect_exact(f"Type '{example.name}' to approve: ")
        child.sendline(example.name)
        # the --pending choice: ask again (the default) about re-planned nodes
        child.expect(r"stack\.database\S* .*will be re-planned once their upstream is applied\.")
        child.expect_exact("[ask/creates/updates/any] (default ask): ")
        child.sendline("")
        # stack.network is applied; stack.database's real plan is shown and approved separately
        child.expect_exact("stack.database changed after its upstream was applied.")
        before = child.before
        child.expect_exact(f"Type '{example.name}' to approve: ")
        asking = child.before
        assert "module.database.terraform_data.db (create)" in before, before
        # the re-planned node's plan carries its blast radius, like every plan shown for approval
        assert "Blast radius:" in before and "1 node(s) change: stack.database" in before, before
        # nothing converging in parallel prints while the question waits for its answer
        assert not PROGRESS.search(asking), asking
        child.sendline(example.name)
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    output = child.before or ""
    assert child.exitstatus == 0, f"exit {child.exitstatus}, signal {child.signalstatus}\n{output}"
    for n in ("layer.platform", "stack.network", "stack.database", "layer.app"):
        assert re.search(rf"{re.escape(n)}: done", output), output
    endpoint = example.outputs("database")["endpoint"]
    assert example.configmap("web-config") == {"DATABASE_ENDPOINT": endpoint, "ENVIRONMENT": example.name}


PROGRESS = re.compile(r"^(layer|stack)\.\S+: (planning|planned|applying|converged|re-planning)", re.M)


def test_the_prompt_offers_a_bound_and_a_re_plan_within_it_goes_without_asking(example: Env) -> None:
    child = example.spawn("apply", "-e", example.name)
    try:
        child.expect_exact(f"Type '{example.name}' to approve: ")
        child.sendline(example.name)
        child.expect_exact("[ask/creates/updates/any] (default ask): ")
        question = child.before or ""
        assert "creates" in question and "any" in question, question
        assert not PROGRESS.search(question), question  # the prompt is never interleaved
        child.sendline("creates")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    output = child.before or ""
    assert child.exitstatus == 0, f"exit {child.exitstatus}, signal {child.signalstatus}\n{output}"
    # stack.database was re-planned (it only creates: within the bound) and never asked about again
    assert "stack.database: re-planning with the new upstream outputs" in output, output
    assert "changed after its upstream was applied" not in output, output
    assert "Type '" not in output, output
    assert re.search(r"stack\.database: done", output), output
    endpoint = example.outputs("database")["endpoint"]
    assert example.configmap("web-config") == {"DATABASE_ENDPOINT": endpoint, "ENVIRONMENT": example.name}


def test_a_wrong_answer_applies_nothing(example: Env) -> None:
    child = example.spawn("apply", "-e", example.name)
    try:
        child.expect_exact(f"Type '{example.name}' to approve: ")
        child.sendline("yes")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 3, child.before
    assert "not approved" in (child.before or "")
    assert example.state_files() == []
    assert not example.namespace_exists()
