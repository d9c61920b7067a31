"""Issue 16: a sensitive Terraform output goes only where a Secret's values go, and a plan id
never names a path.

A stack with a sensitive output feeds a layer; the layer puts it into a ConfigMap: validate and
plan refuse it (exit 78) naming the output and the object, before anything is applied, and the
value is printed nowhere. A forged bundle whose id is ``../../..`` (its fingerprint recomputed)
is refused by apply, and nothing is written outside ``.envctl/``.
"""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest
from harness import Env, assert_no_traceback, live
from kubernetes import client

from envctl.core.bundle import PlanBundle

pytestmark = pytest.mark.safety

CANARY = f"SENSITIVE-{uuid.uuid4().hex}"


def _sensitive_into_configmap(repo: Env, *, allowed: bool = False) -> None:
    repo.write(
        "stacks/vault/main.tf",
        # (a resource too: a stack whose only change is a new output is planned as "no changes")
        'resource "terraform_data" "token" {}\n'
        f'output "token" {{\n  value     = "{CANARY}"\n  sensitive = true\n}}\n',
    )
    repo.write(
        "layers/platform/leak.yaml",
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: leak\n  namespace: {repo.namespace}\n"
        "data:\n  token: ${inputs.token}\n",
    )
    layer = repo.path("layers/platform/layer.yaml")
    text = layer.read_text().replace("inputs:\n", "inputs:\n  token: ${stack.vault.outputs.token}\n", 1)
    if allowed:
        text += f"sensitive_allowed: [v1/ConfigMap/{repo.namespace}/leak:.data.token]\n"
    layer.write_text(text)
    repo.commit("sensitive output into a ConfigMap")


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_a_sensitive_output_into_a_configmap_is_refused(
    example: Env, api_client: client.ApiClient, command: str
) -> None:
    _sensitive_into_configmap(example)
    run = example.run(command, "-e", example.name)
    assert run.returncode == 78, str(run)
    assert_no_traceback(run)
    assert "stack.vault.outputs.token" in run.stderr, str(run)
    assert f"v1 ConfigMap {example.namespace}/leak" in run.stderr, str(run)
    assert CANARY not in run.output
    assert example.state_files() == []
    assert live(api_client, "Namespace", "", example.namespace) is None


def test_a_sensitive_output_into_a_configmap_is_refused_once_its_value_is_known(
    example: Env, api_client: client.ApiClient
) -> None:
    """With the stack applied (the value known), the apply that would write it stops at 78."""
    _sensitive_into_configmap(example, allowed=True)
    first = example.apply()
    assert first.returncode == 0, str(first)
    layer = example.path("layers/platform/layer.yaml")
    layer.write_text("\n".join(ln for ln in layer.read_text().splitlines() if "sensitive_allowed" not in ln))
    example.commit("no longer allowed")
    run = example.plan()
    assert run.returncode == 78, str(run)
    assert "stack.vault.outputs.token" in run.stderr and CANARY not in run.output, str(run)


def test_a_bundle_whose_id_escapes_is_refused(example: Env, api_client: client.ApiClient) -> None:
    run = example.plan()
    assert run.returncode == 0, str(run)
    [plan_dir] = example.plans()
    bundle = plan_dir / "bundle.json"
    forged = dataclasses.replace(PlanBundle.from_json(json.loads(bundle.read_text())), id="../../../escaped")
    bundle.write_text(json.dumps(forged.to_json(), indent=2))  # fingerprint recomputed
    run = example.apply(str(plan_dir))
    assert run.returncode == 4, str(run)
    assert_no_traceback(run)
    assert "not valid" in run.stderr, str(run)
    assert [p for p in example.root.parent.rglob("escaped*")] == []
    assert example.state_files() == []
    assert live(api_client, "Namespace", "", example.namespace) is None
