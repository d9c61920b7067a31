"""``envctl rollback``: the default commit chosen from the run journals, the rollback record in the
bundle, and the usage errors a user sees (unknown REV, nothing converged, REV is HEAD)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from unithelpers import CliResult, MakeRepo, git

from envctl.app.rollback import choose_target
from envctl.core.bundle import PlanBundle, Rollback
from envctl.core.errors import UsageError
from envctl.core.rollback import fully_converged, rollback_target
from envctl.store import Store

Run = Callable[..., CliResult]
USAGE = 64
NODES = frozenset({"stack.a", "layer.b"})


def run(commit: str, statuses: dict[str, str], **extra: Any) -> dict[str, Any]:
    """A journal of one run at ``commit`` with each node's status."""
    return {
        "run": f"r-{commit}-{len(statuses)}",
        "commit": commit,
        "nodes": {n: {"status": st, "commit": commit} for n, st in statuses.items()},
        **extra,
    }


def everywhere(_commit: str) -> frozenset[str]:
    return NODES


DONE = {"stack.a": "done", "layer.b": "done"}


def test_the_default_is_the_last_fully_converged_commit_before_the_current_one() -> None:
    journals = [run("c1", DONE), run("c2", DONE)]
    assert fully_converged(journals, everywhere) == ["c1", "c2"]
    assert rollback_target(journals, everywhere) == "c1"


def test_a_commit_where_a_node_failed_is_not_a_target() -> None:
    journals = [run("c1", DONE), run("c2", DONE), run("c3", {"stack.a": "done", "layer.b": "failed"})]
    assert fully_converged(journals, everywhere) == ["c1", "c2"]
    assert rollback_target(journals, everywhere) == "c2"  # c3 is where the environment is now


def test_a_node_held_for_approval_or_skipped_keeps_its_commit_from_being_converged() -> None:
    journals = [run("c1", DONE), run("c2", {"stack.a": "blocked", "layer.b": "skipped"}), run("c3", DONE)]
    assert fully_converged(journals, everywhere) == ["c1", "c3"]
    assert rollback_target(journals, everywhere) == "c1"


def test_a_targeted_run_converges_a_commit_only_with_the_rest_done_at_that_commit() -> None:
    # c2 applied stack.a alone (--target), layer.b stayed at c1; then a run converged layer.b at c2
    journals = [run("c1", DONE), run("c2", {"stack.a": "done"}), run("c2", {"layer.b": "done"})]
    assert fully_converged(journals, everywhere) == ["c1", "c2"]
    journals = [run("c1", DONE), run("c2", {"stack.a": "done"}), run("c3", DONE)]
    assert fully_converged(journals, everywhere) == ["c1", "c3"]


def test_the_nodes_counted_are_those_of_the_environment_at_that_commit() -> None:
    at = {"c1": frozenset({"stack.a"}), "c2": NODES}
    journals = [run("c1", {"stack.a": "done"}), run("c2", {"stack.a": "done", "layer.b": "failed"})]
    assert fully_converged(journals, at.get) == ["c1"]
    # a commit that does not load (None) is never a target
    assert fully_converged([run("c9", DONE)], lambda _c: None) == []


def test_nothing_converged_or_no_journal_has_no_default() -> None:
    assert rollback_target([], everywhere) is None
    assert rollback_target([run("c1", DONE)], everywhere) is None  # the only one is the current one
    assert rollback_target([run("c1", {"stack.a": "failed", "layer.b": "done"})], everywhere) is None


def test_a_second_rollback_goes_further_back_instead_of_undoing_the_first() -> None:
    journals = [
        run("c1", DONE),
        run("c2", DONE),
        run("c3", DONE),
        run("c2", DONE, kind="rollback", rollback={"to": "c2", "from": "c3"}),
    ]
    assert rollback_target(journals, everywhere) == "c1"


def test_the_rollback_record_is_part_of_the_fingerprint_and_reads_back() -> None:
    plain = PlanBundle("dev-1", "dev", "c" * 40, False, "now", (), {})
    rb = PlanBundle(
        "dev-1", "dev", "c" * 40, False, "now", (), {}, rev="c" * 40, rollback=Rollback("c" * 40, "d" * 40)
    )
    assert (
        "rollback" not in plain.body() and "rev" not in plain.body()
    )  # older bundles keep their fingerprint
    assert rb.fingerprint != plain.fingerprint
    back = PlanBundle.from_json(json.loads(json.dumps(rb.to_json())))
    assert back.rollback == Rollback("c" * 40, "d" * 40) and back.rev == "c" * 40


# --- the command ---------------------------------------------------------------------------------


def two_commits(make_repo: MakeRepo) -> tuple[Path, str, str]:
    root = make_repo(git_init=True)
    first = git(root, "rev-parse", "HEAD")
    env_yaml = root / "environments/dev/environment.yaml"
    env_yaml.write_text(env_yaml.read_text().replace("size: small", "size: large"))
    git(root, "commit", "-q", "-am", "bigger database")
    return root, first, git(root, "rev-parse", "HEAD")


def journal(root: Path, name: str, commit: str, statuses: dict[str, str], started: str) -> None:
    Store(root).write_journal("dev", name, {**run(commit, statuses), "run": name, "started": started})


ALL_DONE = dict.fromkeys(("stack.network", "stack.database", "layer.platform", "layer.app"), "done")


def test_the_default_target_is_read_from_the_journals_of_the_repository(make_repo: MakeRepo) -> None:
    root, first, second = two_commits(make_repo)
    journal(root, "run-1", first, ALL_DONE, "2026-12-01T10:00:00+00:00")
    journal(root, "run-2", second, ALL_DONE, "2026-12-01T11:00:00+00:00")
    commit, rb = choose_target(root, "dev", None)
    assert commit == first and rb == Rollback(first, second)
    # --to names any revision, resolved to its full SHA
    assert choose_target(root, "dev", "HEAD~1")[0] == first


def test_unknown_rev_is_a_usage_error_saying_what_to_do(run_cli: Run, make_repo: MakeRepo) -> None:
    root, _, _ = two_commits(make_repo)
    r = run_cli("rollback", "-e", "dev", "--repo", root, "--to", "no-such-commit")
    assert r.code == USAGE, r.err
    assert "cannot roll back to 'no-such-commit'" in r.err and "hint: give a commit SHA" in r.err
    assert "Traceback" not in r.err and r.out == ""
    j = run_cli("rollback", "-e", "dev", "--repo", root, "--to", "no-such-commit", "--format", "json")
    assert j.code == USAGE and json.loads(j.err)["exit_code"] == USAGE


def test_no_converged_commit_in_the_journal_is_a_clear_error(run_cli: Run, make_repo: MakeRepo) -> None:
    root, first, second = two_commits(make_repo)
    r = run_cli("rollback", "-e", "dev", "--repo", root)
    assert r.code == USAGE
    assert "no commit to roll back to" in r.err and "nothing was applied yet" in r.err
    assert "--to REV" in r.err
    journal(root, "run-1", first, {**ALL_DONE, "layer.app": "failed"}, "2026-12-01T10:00:00+00:00")
    journal(root, "run-2", second, ALL_DONE, "2026-12-01T11:00:00+00:00")
    r = run_cli("rollback", "-e", "dev", "--repo", root)
    assert r.code == USAGE and "other than the commit it is at now" in r.err, r.err
    assert not (root / ".envctl" / "plans").exists() or not list((root / ".envctl" / "plans").iterdir())


@pytest.mark.parametrize("to", ["HEAD", "main", None])
def test_rolling_back_to_head_says_there_is_nothing_to_roll_back_to(
    run_cli: Run, make_repo: MakeRepo, to: str | None
) -> None:
    root, first, second = two_commits(make_repo)
    if to is None:  # the journal's choice is HEAD: the last run was at another commit
        journal(root, "run-1", second, ALL_DONE, "2026-12-01T10:00:00+00:00")
        journal(root, "run-2", first, ALL_DONE, "2026-12-01T11:00:00+00:00")
    r = run_cli("rollback", "-e", "dev", "--repo", root, *(["--to", to] if to else []))
    assert r.code == USAGE, r.err
    assert f"is HEAD ({second[:12]}): there is nothing to roll back to" in r.err
    assert "envctl plan -e dev plans HEAD" in r.err


def test_choose_target_errors_are_usage_errors(make_repo: MakeRepo) -> None:
    root, _, _ = two_commits(make_repo)
    with pytest.raises(UsageError):
        choose_target(root, "dev", "-x")


def test_the_default_loads_the_environment_only_at_the_commits_it_looks_at() -> None:
    journals = [run(f"c{i}", DONE) for i in range(50)]
    asked: list[str] = []

    def at(commit: str) -> frozenset[str]:
        asked.append(commit)
        return NODES

    assert rollback_target(journals, at) == "c48"
    assert asked == ["c48"]  # not every commit of a long journal
