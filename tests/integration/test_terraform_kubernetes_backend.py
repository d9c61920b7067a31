"""``terraform.backend: kubernetes``: state in a Secret of the real control plane, with locking.

Uses the session control plane of tests/harness.py (``kubeconfig``, ``api_client``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from tfhelpers import context, stack, write_tree

from envctl.core.errors import StalePlanError
from envctl.core.model import KubernetesSettings
from envctl.terraform import apply_stack, plan_stack, read_outputs
from envctl.terraform.workspace import STATE_NAMESPACE

pytestmark = pytest.mark.integration

CANARY = "canary-kube-backend-0d9e"


@pytest.fixture
def state_namespace(api_client: client.ApiClient) -> Iterator[client.CoreV1Api]:
    core = client.CoreV1Api(api_client)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=STATE_NAMESPACE)))
    except ApiException as e:
        if e.status != 409:
            raise
    yield core


def test_state_lives_in_a_secret_of_the_cluster(
    tmp_path: Path, kubeconfig: str, state_namespace: client.CoreV1Api
) -> None:
    env_name = f"kb{uuid.uuid4().hex[:8]}"
    write_tree(
        tmp_path,
        {
            f"environments/{env_name}/stacks/app/main.tf": """
                variable "v" { type = string }
                variable "secret" {
                  type      = string
                  sensitive = true
                }
                resource "terraform_data" "a" { input = var.v }
                output "v" { value = terraform_data.a.output }
                output "secret" {
                  value     = var.secret
                  sensitive = true
                }
            """
        },
    )
    node = stack("app", env_name)
    ctx = context(tmp_path, env_name, nodes=(node,), backend="kubernetes")
    ctx = replace(ctx, env=replace(ctx.env, kubernetes=KubernetesSettings(kubeconfig=kubeconfig)))

    first = plan_stack(ctx, node, {"v": "one", "secret": CANARY}, tmp_path / "p1")
    other = plan_stack(ctx, node, {"v": "two", "secret": CANARY}, tmp_path / "p2")
    outputs = apply_stack(ctx, node, Path(first.artifacts["planfile"]))
    assert outputs["v"].value == "one" and outputs["secret"].sensitive
    assert CANARY not in str(outputs) + str(first.to_json())

    secret = state_namespace.read_namespaced_secret(f"tfstate-default-{env_name}-app", STATE_NAMESPACE)
    assert "tfstate" in (secret.data or {})
    assert not (tmp_path / ".envctl/state").exists(), "no local state with the kubernetes backend"

    with pytest.raises(StalePlanError):
        apply_stack(ctx, node, Path(other.artifacts["planfile"]))
    assert read_outputs(ctx, node)["v"].value == "one"
    state_namespace.delete_namespaced_secret(f"tfstate-default-{env_name}-app", STATE_NAMESPACE)
