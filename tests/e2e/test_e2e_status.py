"""End-to-end: ``envctl status`` through the real CLI, the real Terraform engine and the real plane
(issue 17, point 6): never converged, converged with the commits behind HEAD, the last run's
outcome, and a layer converged then removed from Git with ``git rm``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from harness import Env, converge, describe

pytestmark = pytest.mark.e2e


def status(env: Env) -> tuple[str, dict[str, Any]]:
    text = env.run("status", "-e", env.name)
    assert text.returncode == 0, describe(text)
    js = env.run("status", "-e", env.name, "--format", "json")
    assert js.returncode == 0, describe(js)
    data: dict[str, Any] = json.loads(js.stdout)
    return text.stdout, data


def test_status_after_apply_and_after_a_layer_is_removed_from_git(example: Env) -> None:
    env = example
    out, data = status(env)
    assert "layer.app: never converged (in Git)" in out and "last run: never" in out
    assert set(data["never_converged"]) == {"stack.network", "stack.database", "layer.platform", "layer.app"}
    assert data["last_run"] is None

    converge(env)
    out, data = status(env)
    assert data["never_converged"] == [] and data["removed_from_git"] == {}
    assert data["behind_head"] == dict.fromkeys(data["behind_head"], 0)
    assert data["last_run"]["outcome"] == "done" and data["last_run"]["counts"] == {"done": 4}
    assert "layer.app: converged at" in out and "up to date with HEAD" in out

    # two commits that touch the app layer, one that touches nothing any node reads
    env.edit(f"environments/{env.name}/layers/app/app.yaml", "apiVersion", "# one\napiVersion")
    env.commit("app: one")
    (env.root / "NOTES.md").write_text("notes\n")
    env.commit("notes")
    env.edit(f"environments/{env.name}/layers/app/app.yaml", "# one", "# two")
    env.commit("app: two")
    out, data = status(env)
    assert data["behind_head"]["layer.app"] == 2
    assert data["behind_head"]["layer.platform"] == 0 and data["behind_head"]["stack.network"] == 0
    assert "layer.app: converged at" in out and "2 commits behind HEAD" in out

    env.git("rm", "-q", "-r", f"environments/{env.name}/layers/app")
    env.commit("remove the app layer")
    out, data = status(env)
    assert "layer.app" not in data["nodes"] and "layer.app" in data["removed_from_git"]
    assert "layer.app: removed from Git, last applied at" in out
    assert data["last_run"]["outcome"] == "done"
