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
from typing import Any

import pytest
from drifthelpers import Example, WebhookServer, cleanup_cluster, describe, write_repo
from integration.conftest import api_client, kubeconfig  # noqa: F401  (fixtures)
from kubernetes import client
from tfhelpers import build_tool


@pytest.fixture(scope="session")
def plugin_mirror() -> Path:
    """The filesystem mirror holding hashicorp/local (built once, cached)."""
    return build_tool("provider-local")


def _example(
    tmp_path: Path, kube: str, api: client.ApiClient, mirror: Path, **options: Any
) -> Iterator[Example]:
    env = f"dr{uuid.uuid4().hex[:8]}"
    root, files_dir = tmp_path / "repo", tmp_path / "files"
    root.mkdir()
    files_dir.mkdir()
    write_repo(root, env, files_dir, mirror, **options)
    ex = Example(root, env, kube, files_dir, f"app-{env}")
    try:
        proc = ex.run("apply", "--auto-approve")
        assert proc.returncode == 0, f"apply of the example failed:\n{describe(proc)}"
        yield ex
    finally:
        cleanup_cluster(api, env)


@pytest.fixture
def example(
    tmp_path: Path,
    kubeconfig: str,
    api_client: client.ApiClient,
    plugin_mirror: Path,
) -> Iterator[Example]:
    """The example environment plus the ``files`` stack, copied under a unique name and applied."""
    yield from _example(tmp_path, kubeconfig, api_client, plugin_mirror)


@pytest.fixture
def example_in_cluster_state(
    tmp_path: Path,
    kubeconfig: str,
    api_client: client.ApiClient,
    plugin_mirror: Path,
) -> Iterator[Example]:
    """The example exactly as deploy/ expects it: Terraform state in the cluster, no extra stack."""
    yield from _example(tmp_path, kubeconfig, api_client, plugin_mirror, files=False, backend="kubernetes")


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with WebhookServer() as server:
        yield server


@pytest.fixture
def example_with_consumer(
    tmp_path: Path,
    kubeconfig: str,
    api_client: client.ApiClient,
    plugin_mirror: Path,
) -> Iterator[Example]:
    """The example plus ``layer.greeting``, which consumes an output of ``stack.files``."""
    yield from _example(tmp_path, kubeconfig, api_client, plugin_mirror, consumer=True)
