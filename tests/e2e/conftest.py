"""Fixtures for the end-to-end tests: the real ``envctl`` CLI on the example environment.

The environment fixtures (``example``, ``make_env``, the control plane) come from tests/harness.py;
the chart-layer fixtures (a Helm chart, an OCI registry) from tests/e2e/helmhelpers.py.
"""

from harness import api_client, example, kubeconfig, make_env, plugin_mirror  # noqa: F401  (fixtures)
from helmhelpers import chart_env, registry, tools  # noqa: F401  (chart-layer fixtures)
