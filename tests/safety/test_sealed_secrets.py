"""SealedSecrets converge: the real Sealed Secrets controller unseals what envctl applies.

The controller (built from github.com/bitnami-labs/sealed-secrets, unmodified) runs against the
test control plane in the environment's namespace (``secrethelpers.SealedSecretsController``);
``kubeseal`` seals a Secret with the controller's certificate, and the SealedSecret goes into a
layer of the example environment. validate accepts it (it is not plaintext); apply returns only
once the controller has unsealed it (condition ``Synced``), so the Secret holds the value the
moment apply exits; a new sealed value rolls out the same way; drift does not report the Secret
the controller owns, whatever its data.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import Env, assert_no_traceback, live
from kubehelpers import get
from kubernetes import client
from secrethelpers import SealedSecretsController, install_crd

pytestmark = pytest.mark.safety

SEALED_FILE = "layers/platform/db-credentials.sealed.yaml"


@pytest.fixture
def controller(
    example: Env, api_client: client.ApiClient, kubeconfig: str, tmp_path: Path
) -> Iterator[SealedSecretsController]:
    """The environment applied once (its namespace exists), the CRD installed and a controller
    watching the namespace; stopped afterwards."""
    install_crd(api_client)
    first = example.apply()
    assert first.returncode == 0, str(first)
    ctl = SealedSecretsController(api_client, kubeconfig, example.namespace, tmp_path / "controller")
    ctl.workdir.mkdir()
    ctl.start()
    yield ctl
    ctl.stop()


def _seal(repo: Env, ctl: SealedSecretsController, password: str) -> dict[str, Any]:
    sealed = ctl.seal(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "db-credentials", "namespace": repo.namespace},
            "type": "Opaque",
            "stringData": {"password": password},
        }
    )
    repo.write(SEALED_FILE, yaml.safe_dump(sealed))
    repo.commit("sealed secret")
    return sealed


def _password(api: client.ApiClient, repo: Env) -> str:
    secret = live(api, "Secret", repo.namespace, "db-credentials")
    assert secret is not None, "the controller has not unsealed the SealedSecret into a Secret"
    return base64.b64decode(secret["data"]["password"]).decode()


def test_a_layer_with_sealed_secrets_converges(
    example: Env, api_client: client.ApiClient, controller: SealedSecretsController
) -> None:
    first, second = f"sealed-{uuid.uuid4().hex}", f"sealed-{uuid.uuid4().hex}"
    sealed = _seal(example, controller, first)
    assert first not in yaml.safe_dump(sealed), "kubeseal left the value in the clear"

    validate = example.run("validate", "-e", example.name)
    assert validate.returncode == 0, f"a SealedSecret is not a plaintext Secret:\n{validate}"

    applied = example.apply()
    assert applied.returncode == 0, str(applied)
    # apply waited for the controller: the Secret is there the moment apply returns
    assert _password(api_client, example) == first
    live_sealed = get(api_client, {**sealed, "metadata": {**sealed["metadata"]}})
    assert live_sealed is not None
    conds = {c["type"]: c["status"] for c in live_sealed["status"]["conditions"]}
    assert conds.get("Synced") == "True"

    # a new sealed value: apply waits for the new generation to be unsealed
    _seal(example, controller, second)
    plan = example.plan("--detailed-exitcode")
    assert plan.returncode == 2, str(plan)
    applied = example.apply()
    assert applied.returncode == 0, str(applied)
    assert _password(api_client, example) == second

    # the Secret belongs to the controller: drift ignores it, whatever its data
    client.CoreV1Api(api_client).patch_namespaced_secret(
        "db-credentials", example.namespace, {"metadata": {"labels": {"touched": "yes"}}}
    )
    drift = example.run("drift", "-e", example.name, "--format", "json")
    assert drift.returncode == 0, f"drift reported the controller's Secret:\n{drift}"
    assert_no_traceback(drift)
    for run in (validate, plan, applied, drift):
        assert first not in run.output and second not in run.output


def test_a_sealed_secret_no_controller_unseals_fails_the_wait_naming_it(
    example: Env, api_client: client.ApiClient, controller: SealedSecretsController
) -> None:
    _seal(example, controller, f"sealed-{uuid.uuid4().hex}")
    controller.stop()
    layer = example.path("layers/platform/layer.yaml")
    layer.write_text(layer.read_text().replace("wait: {timeout: 2m}", "wait: {timeout: 5s}"))
    example.commit("short wait, no controller")
    run = example.apply()
    assert run.returncode != 0, str(run)
    assert_no_traceback(run)
    assert "SealedSecret" in run.stderr and "db-credentials" in run.stderr, str(run)
    assert "is the Sealed Secrets controller running" in run.stderr, str(run)
    assert live(api_client, "Secret", example.namespace, "db-credentials") is None
