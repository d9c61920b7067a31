"""Fixtures for the drift tests: the CLI on an isolated, applied copy of the example environment.

``applied`` (and its variants) is the example plus the ``files`` stack, copied under a unique name
and applied; all come from tests/harness.py.
"""

from harness import (  # noqa: F401  (fixtures)
    api_client,
    applied,
    applied_in_cluster_state,
    applied_with_consumer,
    example,
    kubeconfig,
    make_env,
    plugin_mirror,
    webhook,
)
