"""Fixtures for the drift tests: the CLI on an isolated, applied copy of the example environment.

``example`` copies the example environment under a unique name (drifthelpers.write_repo), applies
it with ``envctl apply --auto-approve``, and deletes its namespace, inventories and lock Lease
afterwards. The control plane comes from the integration fixtures (``scripts/control-plane up``,
or the kubeconfig in ENVCTL_TEST_KUBECONFIG); hashicorp/local from
``scripts/build-terraform-tools provider-local``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from drifthelpers import Example, WebhookServer, cleanup_cluster, describe, write_repo
from integration.conftest import api_client, kubeconfig  # noqa: F401  (fixtures)
from kubernetes import client
from tfhelpers import build_tool


@pytest.fixture(scope="session")
def plugin_mirror() -> Path:
    """The filesystem mirror holding hashicorp/local (built once, cached)."""
    return build_tool("provider-local")


@pytest.fixture
def example(
    tmp_path: Path,
    kubeconfig: str,  # noqa: F811
    api_client: client.ApiClient,  # noqa: F811
    plugin_mirror: Path,
) -> Iterator[Example]:
    """The example environment, copied under a unique name and applied."""
    env = f"dr{uuid.uuid4().hex[:8]}"
    root, files_dir = tmp_path / "repo", tmp_path / "files"
    root.mkdir()
    files_dir.mkdir()
    write_repo(root, env, files_dir, plugin_mirror)
    ex = Example(root, env, kubeconfig, files_dir, f"app-{env}")
    try:
        proc = ex.run("apply", "--auto-approve")
        assert proc.returncode == 0, f"apply of the example failed:\n{describe(proc)}"
        yield ex
    finally:
        cleanup_cluster(api_client, env)


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with WebhookServer() as server:
        yield server
