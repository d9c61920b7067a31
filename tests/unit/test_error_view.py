"""How an error reads on a terminal: the exit code it names is the one the command exits with."""

from __future__ import annotations

from envctl.core.errors import ConfigError, UnavailableError
from envctl.views.errors import error_text


def test_an_error_names_its_exit_code_unless_it_is_one_node_of_an_apply() -> None:
    err = ConfigError("Deployment web: spec.replicas must be >= 0", node="layer.app", hint="fix it")
    assert error_text(err).splitlines()[-1] == "  (invalid-configuration, exit 78)"
    node = error_text(err, exit_code=False)
    assert node.splitlines()[-1] == "  (invalid-configuration)"
    assert "exit" not in node
    # the rest of the error is the same either way
    assert node.splitlines()[:-1] == error_text(err).splitlines()[:-1]
    assert error_text(UnavailableError("down")).endswith(", exit 69)")
