"""Plaintext ``kind: Secret`` in Git is refused unless the layer allows it; values are never echoed.

The refusal names the file and the key, never the value (neither as written nor base64).
"""

from __future__ import annotations

import base64
import uuid

import pytest
from harness import Env, assert_no_traceback, live
from kubernetes import client

pytestmark = pytest.mark.safety

VALUE = f"SECRET-CANARY-{uuid.uuid4().hex}"
B64 = base64.b64encode(VALUE.encode()).decode()


def _secret(repo: Env, field: str) -> str:
    rel = "layers/platform/secret.yaml"
    value = B64 if field == "data" else VALUE
    repo.write(
        rel,
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: db-credentials\n  namespace: {repo.namespace}\n"
        f"type: Opaque\n{field}:\n  password: {value}\n",
    )
    repo.commit("plaintext secret")
    return rel


def _assert_value_hidden(text: str) -> None:
    assert VALUE not in text, "the secret value was echoed"
    assert B64 not in text, "the base64 secret value was echoed"


@pytest.mark.parametrize("command", ["validate", "plan", "apply"])
@pytest.mark.parametrize("field", ["data", "stringData"])
def test_refuses_a_plaintext_secret_naming_file_and_key_only(
    example: Env, api_client: client.ApiClient, field: str, command: str
) -> None:
    rel = _secret(example, field)
    args = [command, "-e", example.name] + (["--auto-approve"] if command == "apply" else [])
    run = example.run(*args)
    assert run.returncode == 78, str(run)
    assert_no_traceback(run)
    assert "secret.yaml" in run.stderr, f"the file is not named:\n{run}"
    assert rel.split("/")[0] in run.stderr or "layer.platform" in run.stderr, str(run)
    assert "password" in run.stderr, f"the key is not named:\n{run}"
    _assert_value_hidden(run.output)
    assert live(api_client, "Secret", example.namespace, "db-credentials") is None


@pytest.mark.parametrize("field", ["data", "stringData"])
def test_an_allowed_secret_is_applied_without_echoing_its_value(
    example: Env, api_client: client.ApiClient, field: str
) -> None:
    _secret(example, field)
    layer = example.path("layers/platform/layer.yaml")
    layer.write_text(layer.read_text() + "allow_secrets: true\n")
    example.commit("allow secrets")
    run = example.apply()
    assert run.returncode == 0, str(run)
    _assert_value_hidden(run.output)
    secret = live(api_client, "Secret", example.namespace, "db-credentials")
    assert secret is not None and secret["data"]["password"] == B64
