"""Cascading drift: an upstream output that changed since a node last converged makes it stale.

``stack.files`` is re-applied alone with a new directory (so its ``greeting_path`` output
changes) while ``layer.greeting``, which consumes that output, is left as it was: the layer is
``stale`` with ``stack.files`` as its root cause, in every format; converging it clears that.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from harness import Env, describe

pytestmark = pytest.mark.e2e


def test_a_changed_upstream_output_makes_its_consumer_stale_under_its_root_cause(
    applied_with_consumer: Env, tmp_path: Path
) -> None:
    ex = applied_with_consumer
    assert ex.drift().returncode == 0
    env_yaml = ex.root / "environments" / ex.name / "environment.yaml"
    data = yaml.safe_load(env_yaml.read_text())
    moved = tmp_path / "moved"
    moved.mkdir()
    data["vars"]["files_dir"] = str(moved)
    env_yaml.write_text(yaml.safe_dump(data, sort_keys=False))

    plan = ex.plan("--target", "stack.files", "--out", str(tmp_path / "plan"))
    assert plan.returncode == 0, describe(plan)
    result = ex.apply(str(tmp_path / "plan"))
    assert result.returncode == 0, describe(result)
    assert (moved / "greeting.txt").exists()

    proc = ex.drift("--format", "json")
    assert proc.returncode == 2, describe(proc)
    report = json.loads(proc.stdout)
    status = {n["node"]: n for n in report["nodes"]}
    assert status["stack.files"]["status"] == "in-sync"
    assert status["layer.greeting"]["status"] == "stale"
    assert status["layer.greeting"]["causes"] == ["stack.files"]
    [change] = status["layer.greeting"]["changes"]  # what re-converging it changes
    assert change["address"] == f"v1 ConfigMap {ex.namespace}/greeting" and change["manager"] is None
    assert report["root_causes"] == {"stack.files": ["layer.greeting"]}
    assert {n for n, d in status.items() if d["status"] != "in-sync"} == {"layer.greeting"}

    text = ex.drift()
    assert "cascading drift, by root cause:" in text.stdout and "stack.files -> layer.greeting" in text.stdout
    md = ex.drift("--format", "markdown")
    assert "| `layer.greeting` | stale | 1 | stack.files |" in md.stdout

    converged = ex.drift("--converge")
    assert converged.returncode == 2, describe(converged)
    assert "layer.greeting: converge done" in converged.stdout
    again = ex.drift()
    assert again.returncode == 0, describe(again)
