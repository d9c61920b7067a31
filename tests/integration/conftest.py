"""Fixtures for integration tests against the real control plane (DESIGN.md section 7).

``kubeconfig`` (session) starts the plane with ``scripts/control-plane up`` - building it
first on a fresh machine, reusing a running one otherwise - or takes the path in
ENVCTL_TEST_KUBECONFIG. ``api_client`` (session) is an official-client ApiClient for it;
``namespace`` (function) is a fresh namespace deleted after the test. Helpers for applying
objects and setting status live in tests/kubehelpers.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
CONTROL_PLANE = REPO / "scripts" / "control-plane"


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    """Path of a kubeconfig (cluster-admin) for the real control plane."""
    given = os.environ.get("ENVCTL_TEST_KUBECONFIG")
    if given:
        return given
    # stderr is inherited: the first build prints its progress there (visible with -s).
    proc = subprocess.run(
        [sys.executable, str(CONTROL_PLANE), "up"], stdout=subprocess.PIPE, text=True, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("KUBECONFIG=")]
    if proc.returncode != 0 or not lines:
        pytest.fail(
            f"`{CONTROL_PLANE} up` failed (exit {proc.returncode}); see its stderr above. "
            "Set ENVCTL_TEST_KUBECONFIG to use a plane that is already running.",
            pytrace=False,
        )
    return lines[-1].split("=", 1)[1]


@pytest.fixture(scope="session")
def api_client(kubeconfig: str) -> Iterator[client.ApiClient]:
    """A kubernetes.client.ApiClient for ``kubeconfig``."""
    api = config.new_client_from_config(config_file=kubeconfig)
    yield api
    api.close()


@pytest.fixture
def namespace(api_client: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """Name of a new, empty namespace for this test; deleted (without waiting) afterwards."""
    core = client.CoreV1Api(api_client)
    stem = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"t-{stem}-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"envctl.test/owner": "pytest"}}})
    yield name
    try:
        core.delete_namespace(name, propagation_policy="Background")
    except ApiException as e:
        if e.status != 404:
            raise
