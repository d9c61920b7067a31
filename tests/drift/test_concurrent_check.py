"""Drift checks independent nodes at the same time: the report is the one a check of one node
after the other gives - same nodes in graph order, same findings, same exit code - and a node
whose check fails hides nothing another node found.

The environment: the example plus the ``files`` stack, applied; then a layer's ConfigMap is taken
by another manager (layer.app drifted), a file the ``files`` stack manages is edited (stack.files
drifted) and layer.platform's manifests stop parsing (its check fails). layer.app depends on
layer.platform by a bare ``depends_on``, so the two are checked at the same time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from harness import Env, assert_no_canary, describe, intrude

# check_drift of the environment with one thread, then with eight: both reports as JSON
COMPARE = """
import json, sys
from pathlib import Path
from envctl.app.drift import check_drift
from envctl.app.loading import open_session
out = []
for parallelism in (1, 8):
    s = open_session(Path(sys.argv[1]), None, sys.argv[2], lambda _m: None, parallelism)
    report = check_drift(s)
    out.append({"exit_code": int(report.exit_code), "nodes": [n.to_json() for n in report.nodes]})
print(json.dumps(out))
"""


def spoil(env: Env) -> None:
    intrude(env, "web-config", {"DATABASE_ENDPOINT": "evil.example.com:5432"})
    assert env.files_dir is not None
    (env.files_dir / "greeting.txt").write_text("edited by hand\n")
    env.write("layers/platform/broken.yaml", "apiVersion: v1\nkind: ConfigMap\ndata: [unclosed\n")
    env.commit("platform no longer parses")


def statuses(nodes: list[dict[str, Any]]) -> dict[str, str]:
    return {n["node"]: n["status"] for n in nodes}


def test_a_concurrent_check_reports_what_a_sequential_one_does(applied: Env) -> None:
    spoil(applied)
    proc = subprocess.run(
        [sys.executable, "-c", COMPARE, str(applied.root), applied.name],
        cwd=applied.root,
        env=applied.environ(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sequential, concurrent = json.loads(proc.stdout)
    assert concurrent == sequential
    expected = {
        "layer.platform": "error",
        "layer.app": "drifted",
        "stack.files": "drifted",
        "stack.network": "in-sync",
        "stack.database": "in-sync",
    }
    assert statuses(sequential["nodes"]) == expected

    code, report = applied.drift_json()
    assert code == sequential["exit_code"] == 1, report
    assert [n["node"] for n in report["nodes"]] == [n["node"] for n in sequential["nodes"]]
    assert statuses(report["nodes"]) == expected
    platform = next(n for n in report["nodes"] if n["node"] == "layer.platform")
    assert "broken.yaml:4" in (platform["error"] or ""), platform
    app = next(n for n in report["nodes"] if n["node"] == "layer.app")
    assert [c["manager"] for c in app["changes"]] == ["intruder"], app
    text = applied.drift()
    assert text.returncode == 1, describe(text)
    for word in (
        "layer.platform",
        "broken.yaml",
        "layer.app",
        "intruder",
        "stack.files",
        "local_file.greeting",
    ):
        assert word in text.output, f"the text report does not name {word!r}:\n{describe(text)}"
    assert_no_canary(*applied.printed, proc.stdout, proc.stderr)
