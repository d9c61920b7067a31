"""End-to-end: ``envctl rollback`` through the real CLI, the real Terraform engine and the real
plane (issue 17 point 3). Commit 2 changes a layer and a stack input and is applied; a rollback
(by default and with ``--to``) plans commit 1 as a rollback; the hints it prints are run as a user
copies them (``--rev`` included) and the live world ends as commit 1 left it; the journal and
``status`` call the run a rollback. A layer and a stack added after the target are deleted by the
rollback (the planning of nodes removed from Git, issue 17 point 1)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from harness import Env, converge, describe, envctl_command

pytestmark = pytest.mark.e2e


def run_hint(env: Env, command: str) -> subprocess.CompletedProcess[str]:
    """Run a command envctl printed, as a user pastes it into a shell (NAME: their name)."""
    assert command.startswith("envctl "), command
    bindir = str(Path(envctl_command()[0]).parent)
    environ = env.environ()
    environ["PATH"] = f"{bindir}{os.pathsep}{environ.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-c", command.replace("--by NAME", "--by e2e")],
        cwd=env.root,
        env=environ,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def line_after(label: str, text: str) -> str:
    m = re.search(rf"^{re.escape(label)}: (.+)$", text, re.M)
    assert m, f"no '{label}:' line in\n{text}"
    return m.group(1).strip()


def last_journal(env: Env) -> dict[str, Any]:
    journals = [json.loads(p.read_text()) for p in (env.root / ".envctl" / "runs" / env.name).glob("*.json")]
    return max(journals, key=lambda j: str(j["started"]))


def world(env: Env) -> tuple[str, dict[str, str] | None, dict[str, str] | None]:
    return (
        env.outputs("database")["endpoint"],
        env.configmap("web-config"),
        env.configmap("platform-settings"),
    )


def test_rollback_plans_commit_1_and_its_copied_hints_bring_the_world_back(example: Env) -> None:
    env = example
    first = env.git("rev-parse", "HEAD")
    converge(env)
    before = world(env)
    assert before[2] == {"environment": env.name, "log_level": "info"}

    # commit 2: a layer and a stack input change, applied
    env.edit(f"environments/{env.name}/layers/platform/config.yaml", "log_level: info", "log_level: debug")
    env.edit(
        f"environments/{env.name}/stacks/database/stack.yaml", "name: ${env.name}", "name: ${env.name}-v2"
    )
    second = env.commit("debug logging, renamed database")
    converge(env)
    after = world(env)
    assert after[0] != before[0] and after[0].startswith(f"{env.name}-v2-db.")
    assert after[1] == {"DATABASE_ENDPOINT": after[0], "ENVIRONMENT": env.name}
    assert after[2] == {"environment": env.name, "log_level": "debug"}

    # the default target comes from the journal: commit 1, the last one fully converged before 2
    r = env.run("rollback", "-e", env.name, "--format", "json")
    assert r.returncode == 0, describe(r)
    data = json.loads(r.stdout)
    assert data["commit"] == first and data["rev"] == first
    assert data["rollback"] == {"to": first, "from": second}
    assert data["needs_approval"] == ["stack.database"]
    nodes = {n["node"]: n for n in data["nodes"]}
    assert nodes["layer.platform"]["counts"]["change"] == 1
    assert (
        nodes["stack.database"]["counts"]["change"] == 1
        and "endpoint" in nodes["stack.database"]["outputs_changing"]
    )
    assert nodes["layer.app"]["status"] == "pending upstream"
    assert f"--rev {first}" in data["commands"]["apply"]
    assert world(env) == after, "a rollback plan changes nothing"
    # like plan: --detailed-exitcode says "changes" with exit 2, for a pipeline to branch on
    assert env.run("rollback", "-e", env.name, "--detailed-exitcode").returncode == 2

    # --to names the commit; the text plan says it is a rollback and how to apply it
    r = env.run("rollback", "-e", env.name, "--to", first[:10])
    assert r.returncode == 0, describe(r)
    assert (
        r.stdout.startswith(f"Rollback plan {env.name}-")
        and f"back to {first[:12]} from {second[:12]}" in r.stdout
    )
    apply_with = line_after("Apply it with", r.stdout)
    assert apply_with.endswith(f"-e {env.name} --rev {first}")

    # the hint as copied: not a terminal, so the layer-only change is written and the database is
    # held for approval (exit 3, not a stale plan, exit 4); stderr says how to approve the rest
    r = run_hint(env, apply_with)
    assert r.returncode == 3, describe(r)
    m = re.search(r"to approve them: (envctl .+)$", r.stderr, re.M)
    assert m, describe(r)
    approve_with = m.group(1)
    assert f"--rev {first} --approve --resume" in approve_with
    assert env.configmap("platform-settings") == before[2]
    assert env.outputs("database")["endpoint"] == after[0], "the held stack was not applied"

    r = run_hint(env, approve_with)
    assert r.returncode == 0, describe(r)
    assert world(env) == before, "the live world is what commit 1 left"

    journal = last_journal(env)
    assert journal["kind"] == "rollback" and journal["rollback"] == {"to": first, "from": second}
    assert journal["commit"] == first
    assert {n: e["status"] for n, e in journal["nodes"].items()} == dict.fromkeys(nodes, "done")
    r = env.run("status", "-e", env.name)
    assert r.returncode == 0, describe(r)
    assert "last run " in r.stdout and f"at {first[:12]} (a rollback from {second[:12]})" in r.stdout

    # the environment matches commit 1 now: rolling back to it again finds nothing to do
    r = env.run("plan", "-e", env.name, "--rev", first, "--detailed-exitcode")
    assert r.returncode == 0, describe(r)


def test_a_plan_made_with_rev_says_how_to_apply_it_and_that_command_works(example: Env) -> None:
    env = example
    env.edit(f"environments/{env.name}/layers/platform/config.yaml", "log_level: info", "log_level: warn")
    first = env.commit("warn logging")
    env.edit(f"environments/{env.name}/layers/platform/config.yaml", "log_level: warn", "log_level: error")
    env.commit("error logging")
    r = env.run("plan", "-e", env.name, "--rev", "HEAD~1", "--target", "layer.platform")
    assert r.returncode == 0, describe(r)
    apply_with = line_after("Apply it with", r.stdout)
    assert f"--rev {first}" in apply_with and "Without a terminal" not in r.stdout  # no approval needed
    r = run_hint(env, apply_with)
    assert r.returncode == 0, describe(r)
    assert env.configmap("platform-settings") == {"environment": env.name, "log_level": "warn"}


def test_a_rollback_removes_the_layer_and_stack_added_after_the_target(example: Env) -> None:
    env = example
    first = env.git("rev-parse", "HEAD")
    converge(env)
    before_objects = env.object_names()
    layer_dir = env.env_dir / "layers" / "extra"
    layer_dir.mkdir()
    (layer_dir / "layer.yaml").write_text(
        f"depends_on: [layer.platform]\nnamespace: {env.namespace}\nprune: true\n"
    )
    (layer_dir / "extra.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra-settings\ndata:\n  added: later\n"
    )
    stack_dir = env.env_dir / "stacks" / "cache"
    stack_dir.mkdir()
    (stack_dir / "main.tf").write_text(
        'resource "terraform_data" "cache" {\n  input = "cache"\n}\n\n'
        'output "id" {\n  value = terraform_data.cache.id\n}\n'
    )
    second = env.commit("an extra layer and a cache stack")
    converge(env)
    assert "ConfigMap/extra-settings" in env.object_names()
    assert (env.root / ".envctl" / "state" / env.name / "cache" / "terraform.tfstate").is_file()

    r = env.run("rollback", "-e", env.name, "--format", "json")
    assert r.returncode == 0, describe(r)
    data = json.loads(r.stdout)
    assert data["rollback"] == {"to": first, "from": second}
    nodes = {n["node"]: n for n in data["nodes"]}
    assert nodes["layer.extra"]["deletion"] == "removed from Git"
    assert [c["address"] for c in nodes["layer.extra"]["changes"]] == [
        f"v1 ConfigMap {env.namespace}/extra-settings"
    ]
    assert nodes["stack.cache"]["deletion"] == "removed from Git"
    assert nodes["stack.cache"]["counts"]["destroy"] == 1
    assert "stack.cache" in data["needs_approval"]

    r = run_hint(env, data["commands"]["approve_and_apply"])
    assert r.returncode == 0, describe(r)
    assert env.object_names() == before_objects
    state = env.root / ".envctl" / "state" / env.name / "cache" / "terraform.tfstate"
    assert not state.exists() or json.loads(state.read_text()).get("resources") == []
    journal = last_journal(env)
    assert journal["kind"] == "rollback" and journal["rollback"] == {"to": first, "from": second}
    status = json.loads(env.run("status", "-e", env.name, "--format", "json").stdout)
    assert status["removed_from_git"] == {}
