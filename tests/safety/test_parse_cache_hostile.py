"""The YAML parse cache (``.envctl/cache/yaml/``) against someone who can write the repository or
the checkout: whatever the cache holds, a command sees what a fresh parse of Git's files says.

- an entry replayed under another file's key, or an old entry under an edited file's key, is
  never used: the plan shows the objects Git holds, and a file with a YAML error is reported at
  its file:line even when a valid entry sits under its key;
- a cache directory or key file that is a symlink, or a cache that cannot be written, only turns
  the cache off: same exit code, no traceback, nothing written outside ``.envctl/``, and a
  warning once per command naming the file to remove; a key others can read is replaced (once,
  said on stderr) and the cache works again;
- a committed ``.envctl/`` is refused, also when ``--rev`` names a commit without it;
- two commands filling the cache at once (plan and drift) both succeed and leave only entries that
  verify;
- no cache file or directory is open to other users, and a Secret's values are never written
  to the cache (a plaintext Secret, even one refused or encrypted since, must not outlive its file).
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import Env, assert_no_traceback

from envctl.core import yamlcache
from envctl.repo.parsecache import DiskParseStore, parser_version

pytestmark = pytest.mark.safety

Spoil = Callable[[Env, Path], None]


def cm(name: str, ns: str, value: str = "v") -> str:
    meta = f"metadata:\n  name: {name}\n  namespace: {ns}\n"
    return f"apiVersion: v1\nkind: ConfigMap\n{meta}data:\n  k: {value}\n"


def key_of(env: Env, rel: str) -> str:
    """The cache key envctl uses for the environment file ``rel`` as it is now."""
    file = f"environments/{env.name}/{rel}"
    return yamlcache.cache_key(env.path(rel).read_text(), file, parser_version())


def entry(env: Env, key: str) -> Path:
    return env.dotdir / "cache" / "yaml" / f"{key}.bin"


def test_a_replayed_or_stale_entry_is_never_used(example: Env) -> None:
    ns = example.namespace
    example.write("layers/platform/a.yaml", cm("cache-a", ns))
    example.write("layers/platform/b.yaml", cm("cache-b", ns))
    example.commit("two configmaps")
    first = example.plan()
    assert first.returncode == 0, str(first)
    old_a = entry(example, key_of(example, "layers/platform/a.yaml"))
    assert old_a.is_file(), "the plan did not cache a.yaml"

    # b.yaml's entry replaced by a.yaml's; a.yaml edited with its old entry put under its new key
    shutil.copyfile(old_a, entry(example, key_of(example, "layers/platform/b.yaml")))
    example.write("layers/platform/a.yaml", cm("cache-a2", ns))
    shutil.copyfile(old_a, entry(example, key_of(example, "layers/platform/a.yaml")))
    example.commit("rename a")
    run = example.plan()
    assert run.returncode == 0, str(run)
    assert "cache-a2" in run.stdout and "cache-b" in run.stdout, str(run)
    assert "cache-a " not in run.stdout and "cache-a\n" not in run.stdout, str(run)

    # a broken file with a valid entry under its key: still its YAML error at file:line
    example.write("layers/platform/b.yaml", "apiVersion: v1\nkind: ConfigMap\ndata: [unclosed\n")
    shutil.copyfile(old_a, entry(example, key_of(example, "layers/platform/b.yaml")))
    example.commit("break b")
    fresh = example.plan()
    shutil.rmtree(example.dotdir / "cache")
    uncached = example.plan()
    assert fresh.returncode == uncached.returncode == 78, f"{fresh}\n{uncached}"
    assert_no_traceback(fresh)
    assert f"environments/{example.name}/layers/platform/b.yaml:4" in fresh.stderr, str(fresh)
    assert fresh.stderr == uncached.stderr


def _cache_symlinked_out(env: Env, outside: Path) -> None:
    env.dotdir.mkdir(exist_ok=True)
    (env.dotdir / "cache").symlink_to(outside, target_is_directory=True)


def _yaml_dir_symlinked_out(env: Env, outside: Path) -> None:
    (env.dotdir / "cache").mkdir(parents=True)
    (env.dotdir / "cache" / "yaml").symlink_to(outside, target_is_directory=True)


def _key_symlinked_out(env: Env, outside: Path) -> None:
    (env.dotdir / "cache" / "yaml").mkdir(parents=True)
    (outside / "key").write_bytes(os.urandom(32))
    (outside / "key").chmod(0o600)
    (env.dotdir / "cache" / "yaml" / "key").symlink_to(outside / "key")


def _key_world_readable(env: Env, outside: Path) -> None:
    assert env.plan().returncode == 0
    (env.dotdir / "cache" / "yaml" / "key").chmod(0o644)


def _cache_unwritable(env: Env, outside: Path) -> None:
    # a read-only cache, as seen even by root: a file where the directory should be
    env.dotdir.mkdir(exist_ok=True)
    (env.dotdir / "cache").write_text("not a directory\n")


@pytest.mark.parametrize(
    "spoil",
    [
        _cache_symlinked_out,
        _yaml_dir_symlinked_out,
        _key_symlinked_out,
        _key_world_readable,
        _cache_unwritable,
    ],
    ids=["cache-dir-symlink", "yaml-dir-symlink", "key-symlink", "key-world-readable", "cache-unwritable"],
)
def test_a_hostile_cache_directory_only_turns_the_cache_off(
    example: Env, tmp_path: Path, spoil: Spoil
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    spoil(example, outside)
    before = sorted(p.name for p in outside.iterdir())
    key_before = (outside / "key").read_bytes() if (outside / "key").exists() else None
    run = example.plan()
    assert run.returncode == 0, str(run)
    assert_no_traceback(run)
    assert sorted(p.name for p in outside.iterdir()) == before, "the cache wrote outside .envctl/"
    if key_before is not None:
        assert (outside / "key").read_bytes() == key_before
    again = example.plan()
    assert again.returncode == 0, str(again)
    assert_no_traceback(again)
    assert sorted(p.name for p in outside.iterdir()) == before
    # never silent: said once per command (with the file to remove), or, for a damaged key of
    # the user's own, replaced once (mode 0600) and the cache works again
    if spoil is _key_world_readable:
        assert run.stderr.count("warning: the YAML parse cache key") == 1, str(run)
        assert "readable by others): replaced with a new one" in run.stderr, str(run)
        assert "parse cache" not in again.stderr, str(again)
        assert stat.S_IMODE(os.lstat(example.dotdir / "cache" / "yaml" / "key").st_mode) == 0o600
    else:
        for r in (run, again):
            assert r.stderr.count("warning: the YAML parse cache is off: ") == 1, str(r)
            assert "remove it" in r.stderr, str(r)


def test_a_committed_envctl_dir_is_refused_also_with_rev(example: Env) -> None:
    good = example.commit("before .envctl was committed")
    assert example.plan().returncode == 0
    example.git("add", "-f", ".envctl")
    example.commit("commit envctl's state")
    for args in ((), ("--rev", good)):
        run = example.plan(*args)
        assert run.returncode == 78, str(run)
        assert_no_traceback(run)
        assert ".envctl/ is committed" in run.stderr, str(run)


def test_plan_and_drift_filling_the_cache_at_once(example: Env) -> None:
    assert example.apply().returncode == 0
    shutil.rmtree(example.dotdir / "cache")
    plan = example.popen("plan", "-e", example.name, "--detailed-exitcode")
    drift = example.popen("drift", "-e", example.name)
    plan_out, plan_err = plan.communicate(timeout=300)
    drift_out, drift_err = drift.communicate(timeout=300)
    assert plan.returncode == 0, plan_out + plan_err
    assert drift.returncode == 0, drift_out + drift_err
    for text in (plan_err, drift_err):
        assert "Traceback" not in text
    store = DiskParseStore(example.root)
    entries = list(store.dir.glob("*.bin"))
    assert entries, "nothing was cached"
    for e in entries:
        assert store.load(e.name.removesuffix(".bin")) is not None, f"{e.name} does not verify"
    assert not [p for p in store.dir.iterdir() if p.name.startswith(".")], "temporary files left behind"
    again = example.run("plan", "-e", example.name, "--detailed-exitcode")
    assert again.returncode == 0, str(again)


def test_no_cache_file_is_open_to_other_users_nor_holds_a_secret_value(example: Env) -> None:
    value = "cache-canary-value"
    example.write(
        "layers/platform/secret.yaml",
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: {example.namespace}\n"
        f"stringData:\n  password: {value}\n",
    )
    layer = example.path("layers/platform/layer.yaml")
    layer.write_text(layer.read_text() + "allow_secrets: true\n")
    example.commit("a plaintext secret, allowed")
    run = example.plan()
    assert run.returncode == 0, str(run)
    cache = example.dotdir / "cache"
    assert not entry(example, key_of(example, "layers/platform/secret.yaml")).exists()
    assert entry(example, key_of(example, "layers/platform/config.yaml")).is_file()
    for p in cache.rglob("*"):
        assert not p.is_file() or value.encode() not in p.read_bytes(), f"{p} holds the Secret's value"
    for p in [cache, *cache.rglob("*")]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        if p.name == ".gitignore":
            continue
        assert not mode & 0o077, f"{p} is open to others: {oct(mode)}"
