"""Fixtures for integration tests against the real control plane (DESIGN.md section 7).

``kubeconfig`` (session, from tests/harness.py) starts the plane with ``scripts/control-plane up``
- building it first on a fresh machine, reusing a running one otherwise - or takes the path in
ENVCTL_TEST_KUBECONFIG. ``api_client`` (session, harness.py) is an official-client ApiClient for it;
``namespace`` (function) is a fresh namespace deleted after the test. Helpers for applying
objects and setting status live in tests/kubehelpers.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from harness import api_client, kubeconfig  # noqa: F401  (fixtures)
from kubernetes import client
from kubernetes.client.rest import ApiException


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
