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
        # stack.network is applied; stack.database's real plan is shown and approved separately
        child.expect_exact("stack.database changed after its upstream was applied.")
        before = child.before
        child.expect_exact(f"Type '{example.name}' to approve: ")
        assert "module.database.terraform_data.db (create)" in before, before
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
