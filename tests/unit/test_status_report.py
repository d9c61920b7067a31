"""``envctl status`` parts that need no cluster: a run's outcome in one word, the commits a node is
behind HEAD (counted by git for the paths it reads), and how text and JSON show nodes removed
from Git, nodes never converged and the last run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from envctl.core.results import StatusReport, run_outcome
from envctl.repo.gitcli import commits_behind
from envctl.views.status import status_json, status_text


@pytest.mark.parametrize(
    ("statuses", "finished", "interrupted", "outcome"),
    [
        (["done", "done"], True, False, "done"),
        (["done", "failed", "skipped"], True, False, "failed"),
        (["done", "blocked", "skipped"], True, False, "blocked"),
        (["failed", "blocked"], True, False, "failed"),
        (["done", "not-started"], True, True, "interrupted"),
        (["done"], False, False, "running"),
        ([], True, False, "done"),
    ],
)
def test_a_runs_outcome(statuses: list[str], finished: bool, interrupted: bool, outcome: str) -> None:
    assert run_outcome(statuses, finished=finished, interrupted=interrupted) == outcome


def git(root: Path, *args: str) -> str:
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    return subprocess.run(
        ["git", *ident, *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()


def commit(root: Path, rel: str, text: str) -> str:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", rel)
    return git(root, "rev-parse", "HEAD")


def test_commits_behind_counts_only_commits_touching_the_paths(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    first = commit(tmp_path, "layers/app/a.yaml", "a: 1\n")
    commit(tmp_path, "bases/web/cm.yaml", "b: 1\n")
    commit(tmp_path, "README.md", "notes\n")
    tip = commit(tmp_path, "layers/app/a.yaml", "a: 2\n")
    assert commits_behind(tmp_path, first, tip, ["layers/app"]) == 1
    assert commits_behind(tmp_path, first, tip, ["layers/app", "bases/web"]) == 2
    assert commits_behind(tmp_path, first, tip, []) == 3  # no paths: every commit
    assert commits_behind(tmp_path, tip, tip, ["layers/app"]) == 0
    assert commits_behind(tmp_path, "0" * 40, tip, ["layers/app"]) is None  # unknown commit
    git(tmp_path, "checkout", "-q", "--orphan", "other")
    other = commit(tmp_path, "x", "x\n")
    assert commits_behind(tmp_path, other, tip, ["layers/app"]) is None  # not an ancestor
    assert commits_behind(tmp_path, "--all", tip, []) is None  # never read as an option


def report() -> StatusReport:
    last = {"commit": "a" * 40, "at": "2026-12-01T10:00:00Z", "run": "r1", "converged": True, "reason": None}
    return StatusReport(
        "dev",
        ("stack.network", "layer.app"),
        {"stack.network": last},
        None,
        None,
        None,
        None,
        removed={"layer.monitoring": {**last, "commit": "b" * 40}},
        behind={"stack.network": 2, "layer.app": None},
        last_run={
            "run": "r1",
            "started": "2026-12-01T10:00:00Z",
            "finished": "2026-12-01T10:01:00Z",
            "commit": "a" * 40,
            "outcome": "failed",
            "counts": {"done": 1, "failed": 1},
        },
    )


def test_status_text_shows_behind_removed_never_converged_and_the_last_run() -> None:
    text = status_text(report())
    assert "stack.network: converged at aaaaaaaaaaaa on 2026-12-01T10:00:00Z, 2 commits behind HEAD" in text
    assert "layer.app: never converged (in Git)" in text
    assert "layer.monitoring: removed from Git, last applied at bbbbbbbbbbbb" in text
    assert "last run r1 at aaaaaaaaaaaa on 2026-12-01T10:00:00Z: failed (1 done, 1 failed)" in text


def test_status_json_holds_the_same() -> None:
    data = json.loads(status_json(report()))
    assert data["never_converged"] == ["layer.app"]
    assert data["behind_head"] == {"stack.network": 2, "layer.app": None}
    assert list(data["removed_from_git"]) == ["layer.monitoring"]
    assert data["last_run"]["outcome"] == "failed"
    assert data["nodes"]["layer.app"] is None
