"""Fixtures for the end-to-end tests: the real ``envctl`` CLI on the example environment.

``kubeconfig`` (session) starts the real control plane with ``scripts/control-plane up`` (or
takes ENVCTL_TEST_KUBECONFIG), as tests/integration does. ``example`` (function) is a fresh,
never-applied copy of ``environments/dev`` + ``modules/`` in its own Git repository with a
unique environment name; its namespace, inventories and Lease are deleted afterwards.
``rollout`` plays the Deployment controller the control plane does not run (see e2ehelpers).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2ehelpers import CONTROL_PLANE, Env, Rollout, make_env
from kubernetes import client, config


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
    api = config.new_client_from_config(config_file=kubeconfig)
    yield api
    api.close()


@pytest.fixture(scope="session")
def rollout(api_client: client.ApiClient) -> Iterator[Rollout]:
    r = Rollout(api_client)
    yield r
    r.close()


@pytest.fixture
def example(tmp_path: Path, kubeconfig: str, api_client: client.ApiClient, rollout: Rollout) -> Iterator[Env]:
    """A fresh, never-applied copy of the example environment."""
    env = make_env(tmp_path, kubeconfig, api_client)
    rollout.watch(env.namespace)
    yield env
    rollout.forget(env.namespace)
    env.cleanup()
