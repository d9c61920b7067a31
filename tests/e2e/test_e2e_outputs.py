"""End-to-end: output changes are changes (issue 17, point 4).

A stack whose plan changes only outputs is applied, so its state holds the new outputs, and the
layers that consume them are re-planned with them. The real CLI, the embedded Terraform engine
and the real control plane, on a copy of the example environment.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness import Env, converge, describe

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-outputs")]


def add_label_stack(env: Env) -> None:
    """A module with outputs only (like cloudposse's null-label) and a layer that consumes it."""
    base = env.root / "environments" / env.name
    (base / "stacks" / "label").mkdir(parents=True)
    (base / "stacks" / "label" / "main.tf").write_text(
        'variable "env" {\n  type = string\n}\n\noutput "id" {\n  value = "${var.env}-web"\n}\n'
    )
    (base / "stacks" / "label" / "stack.yaml").write_text("inputs:\n  env: ${env.name}\n")
    (base / "layers" / "labels").mkdir(parents=True)
    (base / "layers" / "labels" / "layer.yaml").write_text(
        f"depends_on: [layer.platform]\nnamespace: {env.namespace}\nwait: false\n"
        "inputs:\n  id: ${stack.label.outputs.id}\n"
    )
    (base / "layers" / "labels" / "label.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: label\ndata:\n  ID: ${inputs.id}\n"
    )
    env.commit("a label module and its consumer")


def test_an_outputs_only_stack_feeds_a_layer_and_its_edit_reaches_it(example: Env) -> None:
    add_label_stack(example)
    r = example.run("apply", "-e", example.name, "--auto-approve")
    assert r.returncode == 0, describe(r)
    assert example.outputs("label") == {"id": f"{example.name}-web"}
    assert example.configmap("label") == {"ID": f"{example.name}-web"}
    r = example.run("plan", "-e", example.name, "--detailed-exitcode")
    assert r.returncode == 0, describe(r)  # the state holds the outputs: nothing left to do

    example.edit(f"environments/{example.name}/stacks/label/main.tf", '-web"', '-api"')
    example.commit("rename the label")
    r = example.run("plan", "-e", example.name, "--detailed-exitcode")
    assert r.returncode == 2, describe(r)
    assert f'~ output.id: "{example.name}-web" -> "{example.name}-api"' in r.stdout, r.stdout
    r = example.run("apply", "-e", example.name, "--auto-approve")
    assert r.returncode == 0, describe(r)
    assert example.outputs("label") == {"id": f"{example.name}-api"}
    assert example.configmap("label") == {"ID": f"{example.name}-api"}


def test_editing_an_output_of_a_stack_with_resources_reaches_its_consumer(example: Env) -> None:
    converge(example)
    old = example.outputs("database")["endpoint"]
    assert old.endswith(":5432")
    example.edit("modules/database/main.tf", '.internal:5432"', '.internal:6432"')
    example.commit("move the database port")

    r = example.run("plan", "-e", example.name, "--format", "json", "--detailed-exitcode")
    assert r.returncode == 2, describe(r)
    data = json.loads(r.stdout)
    nodes = {n["node"]: n for n in data["nodes"]}
    db = nodes["stack.database"]
    assert db["counts"] == {"add": 0, "change": 0, "destroy": 0, "replace": 0}
    assert db["status"] == "changes"
    assert [(c["address"], c["before"], c["after"]) for c in db["output_changes"]] == [
        ("output.endpoint", old, old.replace(":5432", ":6432"))
    ]
    # the new endpoint is known at plan time: the consumer is planned for real with it, not pending
    assert nodes["layer.app"]["pending_upstream"] == [], nodes["layer.app"]
    assert nodes["layer.app"]["counts"]["change"] == 1, nodes["layer.app"]

    plan = Path(example.root, data["plan_dir"])
    assert example.run("approve", str(plan), "--by", "e2e").returncode == 0
    r = example.run("apply", str(plan), "--approve")
    assert r.returncode == 0, describe(r)
    new = example.outputs("database")["endpoint"]
    assert new == old.replace(":5432", ":6432")
    assert example.configmap("web-config") == {"DATABASE_ENDPOINT": new, "ENVIRONMENT": example.name}
