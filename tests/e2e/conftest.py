"""Fixtures for the end-to-end tests: the real ``envctl`` CLI on the example environment.

``kubeconfig`` (session) starts the real control plane with ``scripts/control-plane up`` (or
takes ENVCTL_TEST_KUBECONFIG), as tests/integration does. ``example`` (function) is a fresh,
never-applied copy of ``environments/dev`` + ``modules/`` in its own Git repository with a
unique environment name; its namespace, inventories and Lease are deleted afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2ehelpers import Env, make_env
from helmhelpers import chart_env, registry, tools  # noqa: F401  (chart-layer fixtures)
from integration.conftest import api_client, kubeconfig  # noqa: F401  (shared fixtures)
from kubernetes import client


@pytest.fixture
def example(tmp_path: Path, kubeconfig: str, api_client: client.ApiClient) -> Iterator[Env]:
    """A fresh, never-applied copy of the example environment."""
    env = make_env(tmp_path, kubeconfig, api_client)
    yield env
    env.cleanup()
