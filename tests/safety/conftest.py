"""Fixtures for the safety suite (issue 8): isolated copies of the example environment.

``example`` (one fresh, never-applied copy) and ``make_env`` (a factory of them) come from
tests/harness.py, with the real control plane (``kubeconfig``, ``api_client``).
"""

import pytest
from harness import api_client, example, kubeconfig, make_env  # noqa: F401  (fixtures)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "safety: slow safety test (faults, concurrency, hostile input, secret canaries)"
    )
