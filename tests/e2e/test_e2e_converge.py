"""End-to-end: plan, approve, apply and status of the example environment (issue 6, point 7).

The real CLI on a copy of the example environment, the embedded Terraform engine and the real
control plane. Read-only assertions on a converged environment share one (``converged``).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import Env, converge, copy_example, describe, node_lines
from kubernetes import client

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-converge")]

NODES = ("layer.platform", "stack.network", "stack.database", "layer.app")


def test_plan_shows_creates(example: Env) -> None:
    r = example.run("plan", "-e", example.name, "--detailed-exitcode")
    assert r.returncode == 2, describe(r)
    out = r.stdout
    for resource in (
        "module.network.terraform_data.vpc",
        "module.network.terraform_data.subnet[0]",
        "module.network.terraform_data.subnet[1]",
    ):
        assert f"+ {resource} (create)" in out, out
    assert f"+ v1 Namespace {example.namespace} (create)" in out, out
    assert f"+ v1 ConfigMap {example.namespace}/platform-settings (create)" in out, out
    # the table rows (other lines may start with a node id, e.g. the --pending hint)
    rows = [line.split() for line in out.splitlines() if line.startswith(NODES)]
    table = {r[0]: r[1:] for r in rows if len(r) > 1 and r[1].isdigit()}
    assert table["stack.network"][:4] == ["3", "0", "0", "0"], out
    assert table["layer.platform"][:4] == ["2", "0", "0", "0"], out
    # what waits for stack.network's vpc_id is pending upstream: never a false "no changes"
    assert " ".join(table["stack.database"][4:]) == "pending upstream", out
    assert " ".join(table["layer.app"][4:]) == "pending upstream", out
    assert "Approval required for: stack.network, stack.database" in out, out
    # planning changes nothing
    assert example.state_files() == []
    assert not example.namespace_exists()


def test_plan_json_is_versioned_and_names_pending_inputs(example: Env) -> None:
    r = example.run("plan", "-e", example.name, "--format", "json")
    assert r.returncode == 0, describe(r)
    data = json.loads(r.stdout)
    assert data["format_version"] == "1" and data["type"] == "plan"
    assert data["environment"] == example.name and data["has_changes"] is True
    nodes = {n["node"]: n for n in data["nodes"]}
    assert set(nodes) == set(NODES)
    assert nodes["stack.database"]["pending_upstream"] == ["vpc_id"]
    assert nodes["layer.app"]["pending_upstream"] == ["db_endpoint"]
    assert nodes["stack.network"]["counts"]["add"] == 3
    assert Path(example.root, data["plan_dir"], "bundle.json").is_file()


def test_apply_without_terminal_writes_only_what_needs_no_approval_and_exits_3(example: Env) -> None:
    plan = example.plan_bundle()
    r = example.run("apply", str(plan))
    assert r.returncode == 3, describe(r)
    assert "need approval and this is not a terminal" in r.stderr, describe(r)
    lines = node_lines(r.stdout)
    # the one gate: the stacks (policy terraform) are held, what waits for them is skipped, the
    # layer that needs no approval is written
    assert lines["stack.network"].startswith("blocked"), describe(r)
    assert "(needs approval: envctl approve " in lines["stack.network"], describe(r)
    assert lines["stack.database"].startswith("skipped (upstream stack.network blocked)"), describe(r)
    assert lines["layer.app"].startswith("skipped"), describe(r)
    assert lines["layer.platform"].startswith("done"), describe(r)
    assert example.state_files() == []
    assert example.object_names() == {"ConfigMap/platform-settings"}
    # the command printed with the held nodes approves exactly this plan and finishes it
    found = re.search(
        r"to approve them: (envctl approve \S+ --by NAME) && (envctl apply .*)$", r.stderr, re.M
    )
    assert found is not None, describe(r)
    approve = [*found.group(1).split()[1:-1], "e2e"]
    assert example.run(*approve).returncode == 0
    resumed = example.run(*found.group(2).split()[1:])
    lines = node_lines(resumed.stdout)
    assert lines["layer.platform"].startswith("done") and "resumed" in lines["layer.platform"], lines
    assert lines["stack.network"].startswith("done"), describe(resumed)
    # stack.database was approved while pending upstream: its real plan is new, so it is held again,
    # with the command that lets a re-plan like it (a create) go: the plan approved --pending creates
    assert lines["stack.database"].startswith("blocked"), describe(resumed)
    assert " --pending creates --by NAME && envctl apply " in lines["stack.database"], describe(resumed)
    assert resumed.returncode == 3, describe(resumed)


def test_apply_with_a_recorded_approval_needs_approve(example: Env) -> None:
    plan = example.plan_bundle()
    assert example.run("approve", str(plan), "--by", "e2e").returncode == 0
    r = example.run("apply", str(plan))  # a recorded approval is only used with --approve
    assert r.returncode == 3, describe(r)
    assert example.state_files() == []


@dataclass
class Converged:
    env: Env
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]
    second_plan: Path


# session scope: built once per worker even when xdist interleaves this group with other tests
@pytest.fixture(scope="session")
def converged(
    tmp_path_factory: pytest.TempPathFactory, kubeconfig: str, api_client: client.ApiClient
) -> Iterator[Converged]:
    """The example environment, approved and applied by the recorded-approval route (two rounds)."""
    env = copy_example(tmp_path_factory.mktemp("converged") / "repo", kubeconfig, api_client)
    try:
        runs = []
        for _ in range(2):
            plan = env.plan_bundle()
            r = env.run("approve", str(plan), "--by", "e2e")
            assert r.returncode == 0, describe(r)
            runs.append((plan, env.run("apply", str(plan), "--approve")))
        yield Converged(env, runs[0][1], runs[1][1], runs[1][0])
    finally:
        env.cleanup()


def test_approve_then_apply_converges_everything(converged: Converged) -> None:
    env = converged.env
    # First round: stack.database was pending upstream when approved; once stack.network is
    # applied its real plan (a create) differs from what was approved, so that branch stops
    # with exit 3 and asks for a new approval instead of applying unreviewed infrastructure.
    first = converged.first
    assert first.returncode == 3, describe(first)
    lines = node_lines(first.stdout)
    assert lines["stack.network"].startswith("done"), describe(first)
    assert lines["layer.platform"].startswith("done"), describe(first)
    assert lines["stack.database"].startswith("blocked"), describe(first)
    assert lines["layer.app"].startswith("skipped"), describe(first)
    # Second round: plan, approve, apply converges the rest.
    second = converged.second
    assert second.returncode == 0, describe(second)
    assert all(node_lines(second.stdout)[n].startswith("done") for n in NODES), describe(second)

    assert env.object_names() == {
        "ConfigMap/platform-settings",
        "ConfigMap/web-config",
        "Deployment/web",
        "Service/web",
    }
    endpoint = env.outputs("database")["endpoint"]
    assert endpoint.startswith(f"{env.name}-db.vpc-") and endpoint.endswith(".internal:5432")
    assert env.configmap("web-config") == {"DATABASE_ENDPOINT": endpoint, "ENVIRONMENT": env.name}
    assert env.configmap("platform-settings") == {"environment": env.name, "log_level": "info"}
    assert env.lease_holder() is None, "the lock is released after the run"


def test_a_second_plan_finds_nothing_to_do(converged: Converged) -> None:
    env = converged.env
    r = env.run("plan", "-e", env.name, "--detailed-exitcode")
    assert r.returncode == 0, describe(r)
    assert "No changes." in r.stdout, describe(r)


def test_status_shows_converged_nodes(converged: Converged) -> None:
    env = converged.env
    head = env.git("rev-parse", "HEAD")
    r = env.run("status", "-e", env.name)
    assert r.returncode == 0, describe(r)
    for n in NODES:
        assert re.search(rf"^\s+{re.escape(n)}: converged at {head[:12]} on \S+", r.stdout, re.M), r.stdout
    assert "lock: free" in r.stdout, r.stdout
    r = env.run("status", "-e", env.name, "--format", "json")
    assert r.returncode == 0, describe(r)
    data = json.loads(r.stdout)
    assert data["lock"] is None
    assert {n: v["commit"] for n, v in data["nodes"].items()} == dict.fromkeys(NODES, head)


def test_the_same_plan_applied_twice_is_refused(converged: Converged) -> None:
    env = converged.env
    plan = converged.second_plan
    # even with a fresh approval: a plan is applied once
    assert env.run("approve", str(plan), "--by", "e2e").returncode == 0
    runs_before = sorted((env.root / ".envctl" / "runs").rglob("*.json"))
    r = env.run("apply", str(plan), "--approve")
    assert r.returncode == 4, describe(r)
    assert "already applied" in r.stderr, describe(r)
    assert sorted((env.root / ".envctl" / "runs").rglob("*.json")) == runs_before


def test_a_changed_stack_output_marks_the_layer_pending_and_apply_delivers_it(example: Env) -> None:
    converge(example)
    old = example.outputs("database")["endpoint"]
    assert example.configmap("web-config")["DATABASE_ENDPOINT"] == old  # type: ignore[index]
    example.edit(
        f"environments/{example.name}/stacks/database/stack.yaml", "name: ${env.name}", "name: ${env.name}-v2"
    )
    example.commit("rename the database")

    r = example.run("plan", "-e", example.name, "--format", "json", "--detailed-exitcode")
    assert r.returncode == 2, describe(r)
    data = json.loads(r.stdout)
    nodes = {n["node"]: n for n in data["nodes"]}
    assert nodes["stack.database"]["counts"]["change"] + nodes["stack.database"]["counts"]["replace"] == 1
    assert "endpoint" in nodes["stack.database"]["outputs_changing"]
    assert nodes["layer.app"]["status"] == "pending upstream"
    assert nodes["layer.app"]["pending_upstream"] == ["db_endpoint"]
    assert nodes["stack.network"]["counts"] == {"add": 0, "change": 0, "destroy": 0, "replace": 0}
    assert data["needs_approval"] == ["stack.database"]

    plan = Path(example.root, data["plan_dir"])
    assert example.run("approve", str(plan), "--by", "e2e").returncode == 0
    r = example.run("apply", str(plan), "--approve")
    assert r.returncode == 0, describe(r)
    new = example.outputs("database")["endpoint"]
    assert new != old and new.startswith(f"{example.name}-v2-db.")
    assert example.configmap("web-config") == {"DATABASE_ENDPOINT": new, "ENVIRONMENT": example.name}


def test_rev_plans_what_the_commit_holds_not_the_working_tree(example: Env) -> None:
    env_yaml = f"environments/{example.name}/environment.yaml"
    first = example.git("rev-parse", "HEAD")
    example.edit(env_yaml, "cidr: 10.10.0.0/16", "cidr: 10.20.0.0/16")
    second = example.commit("move the network")
    example.edit(env_yaml, "cidr: 10.20.0.0/16", "cidr: 10.30.0.0/16")  # uncommitted

    def planned_cidr(*args: str) -> tuple[str, dict[str, object]]:
        r = example.run("plan", "-e", example.name, "--format", "json", *args)
        assert r.returncode == 0, describe(r)
        data = json.loads(r.stdout)
        vpc = next(
            c
            for n in data["nodes"]
            if n["node"] == "stack.network"
            for c in n["changes"]
            if c["address"] == "module.network.terraform_data.vpc"
        )
        return str(vpc["after"]["input"]["cidr"]), data

    cidr, data = planned_cidr()
    assert cidr == "10.30.0.0/16" and data["dirty"] is True and data["commit"] == second
    cidr, data = planned_cidr("--rev", "HEAD")
    assert cidr == "10.20.0.0/16" and data["dirty"] is False and data["commit"] == second
    cidr, data = planned_cidr("--rev", first)
    assert cidr == "10.10.0.0/16" and data["commit"] == first
