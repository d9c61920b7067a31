"""Fixtures for the safety suite (issue 8): isolated copies of the example environment.

Every test gets its own Git repository in a temporary directory holding ``modules/`` and a
copy of ``environments/dev`` under a unique environment name, whose namespace ``app-dev`` is
renamed to ``app-<name>``; the ``envctl`` CLI runs on it as a subprocess with ``KUBECONFIG``
pointing at the real control plane. Everything the environment created in the cluster (its
namespace, inventory ConfigMaps and lock Lease in ``envctl-system``) is deleted afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from integration.conftest import api_client, kubeconfig, namespace  # noqa: F401
from kubernetes import client
from safetyhelpers import EnvRepo, cleanup_cluster, make_repo, unique_name


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "safety: slow safety test (faults, concurrency, hostile input, secret canaries)"
    )


@pytest.fixture
def make_env(
    tmp_path: Path, kubeconfig: str, api_client: client.ApiClient
) -> Iterator[Any]:
    """A factory of isolated environment repos: ``make_env(name=None, source="dev")``."""
    made: list[str] = []

    def factory(name: str | None = None, *, source: str = "dev", where: str = "repo") -> EnvRepo:
        name = name or unique_name()
        made.append(name)
        return make_repo(tmp_path / where, name, kubeconfig, source=source)

    yield factory
    cleanup_cluster(api_client, made)


@pytest.fixture
def envrepo(make_env: Any) -> EnvRepo:
    """One isolated copy of the example environment (not applied yet)."""
    repo: EnvRepo = make_env()
    return repo
