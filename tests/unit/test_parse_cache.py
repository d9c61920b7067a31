"""The YAML parse cache: a hit is the very parse a fresh read makes (data, lines, declared
strings, flags), an edit or a rename is parsed anew, and a bad, foreign or tampered entry is
ignored, never trusted."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from envctl.core import yamlcache
from envctl.core.errors import ConfigError
from envctl.core.yamldoc import YamlDoc, load_yaml_documents
from envctl.repo import parsecache
from envctl.repo.parsecache import DiskParseStore

REPO = Path(__file__).resolve().parents[2]

ODD = """\
# a comment first
apiVersion: v1
kind: ConfigMap
metadata:
  name: odd
  labels: {a: 'x', b: "y"}
data:
  yes_: yes
  on_: on
  octal: 0123
  hex: 0x1F
  clock: 12:30
  date: 2001-12-14
  float: 1e3
  big: 123456789012345678901234567890
  empty:
  null_: ~
  quoted_ref: '${inputs.a}'
  plain_ref: ${inputs.b} tail
  block: |
    line one ${inputs.c}
    line two
  folded: >-
    folded
    text
  tagged: !!str 42
  unicode: "caf\\u00e9 \u2603"
  1: numeric key
  true: bool key
base: &b {x: 1}
---
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: ConfigMap, metadata: {name: i0}}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: i1}
  data:
    <<: {m: merged}
    k: v
"""


def typed(v: Any) -> Any:
    """``v`` with every value's type and every mapping's key order made part of equality."""
    if isinstance(v, dict):
        return ("dict", [(typed(k), typed(x)) for k, x in v.items()])
    if isinstance(v, list | tuple):
        return (type(v).__name__, [typed(x) for x in v])
    if isinstance(v, set):
        return ("set", sorted(map(repr, v)))
    return (type(v).__name__, v)


def same(a: list[YamlDoc], b: list[YamlDoc]) -> None:
    """Equal documents, field by field, down to types and key order."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert [f.name for f in dataclasses.fields(x)] == [f.name for f in dataclasses.fields(y)]
        for f in dataclasses.fields(YamlDoc):
            assert typed(getattr(x, f.name)) == typed(getattr(y, f.name)), f.name


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DiskParseStore]:
    yamlcache._MEMO.clear()
    s = DiskParseStore(tmp_path)
    yamlcache.use_store(s)
    yield s
    yamlcache.use_store(None)
    yamlcache._MEMO.clear()


def new_process(tmp_path: Path) -> DiskParseStore:
    """What the next command sees: nothing in memory, the same ``.envctl/`` on disk."""
    yamlcache._MEMO.clear()
    s = DiskParseStore(tmp_path)
    yamlcache.use_store(s)
    return s


def no_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(text: str, file: str, **_: Any) -> list[YamlDoc]:
        raise AssertionError(f"{file} was parsed again")

    monkeypatch.setattr(yamlcache, "load_yaml_documents", fail)


def real_crds() -> str:
    spec = importlib.util.spec_from_file_location("bundles", REPO / "bench" / "bundles.py")
    assert spec is not None and spec.loader is not None
    bundles = importlib.util.module_from_spec(spec)
    sys.modules["bundles"] = bundles
    spec.loader.exec_module(bundles)
    objs = bundles.crds("t.example.com", {"l": "v"}, (60, 40))
    return str(yaml.dump_all(objs, Dumper=yaml.CSafeDumper, sort_keys=False, width=100))


@pytest.mark.parametrize("text", [ODD, real_crds()], ids=["odd-yaml", "real-shaped-crds"])
def test_a_hit_from_disk_is_the_fresh_parse(
    tmp_path: Path, store: DiskParseStore, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    fresh = load_yaml_documents(text, "m/x.yaml")
    same(yamlcache.load_yaml_documents_cached(text, "m/x.yaml"), fresh)  # the miss
    same(yamlcache.load_yaml_documents_cached(text, "m/x.yaml"), fresh)  # in memory
    new_process(tmp_path)
    no_parse(monkeypatch)
    hit = yamlcache.load_yaml_documents_cached(text, "m/x.yaml")
    same(hit, fresh)
    assert [d.loc("data", "block").line for d in hit[:1]] == [d.loc("data", "block").line for d in fresh[:1]]


def test_every_hit_is_a_copy_a_caller_may_edit(tmp_path: Path, store: DiskParseStore) -> None:
    first = yamlcache.load_yaml_documents_cached(ODD, "x.yaml")
    first[0].data["metadata"]["labels"]["added"] = "by a caller"
    again = yamlcache.load_yaml_documents_cached(ODD, "x.yaml")
    again[0].data["data"]["k"] = "edited"
    new_process(tmp_path)
    third = yamlcache.load_yaml_documents_cached(ODD, "x.yaml")
    third[0].data["kind"] = "Edited"
    same(yamlcache.load_yaml_documents_cached(ODD, "x.yaml"), load_yaml_documents(ODD, "x.yaml"))


def test_an_edit_or_a_rename_is_parsed_anew(tmp_path: Path, store: DiskParseStore) -> None:
    yamlcache.load_yaml_documents_cached(ODD, "x.yaml")
    new_process(tmp_path)
    edited = yamlcache.load_yaml_documents_cached(ODD.replace("name: odd", "name: even"), "x.yaml")
    assert edited[0].data["metadata"]["name"] == "even"
    renamed = yamlcache.load_yaml_documents_cached(ODD, "y.yaml")
    assert {d.file for d in renamed} == {"y.yaml"}
    assert renamed[0].loc("data", "octal").file == "y.yaml"


def test_another_parser_version_does_not_read_the_entry(
    tmp_path: Path, store: DiskParseStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    yamlcache.load_yaml_documents_cached(ODD, "x.yaml")
    other = new_process(tmp_path)
    other.version += " (another envctl)"
    parsed: list[str] = []
    real = yamlcache.load_yaml_documents

    def counting(text: str, file: str, **kw: Any) -> list[YamlDoc]:
        parsed.append(file)
        return real(text, file, **kw)

    monkeypatch.setattr(yamlcache, "load_yaml_documents", counting)
    yamlcache.load_yaml_documents_cached(ODD, "x.yaml")
    assert parsed == ["x.yaml"]


def test_a_yaml_error_is_not_cached(store: DiskParseStore) -> None:
    bad = "a: 1\nb: [unclosed\n"
    for _ in range(2):
        with pytest.raises(ConfigError) as e:
            yamlcache.load_yaml_documents_cached(bad, "bad.yaml")
        assert e.value.location is not None and e.value.location.file == "bad.yaml"
    assert not list(store.dir.glob("*.bin"))


def entry_file(store: DiskParseStore) -> Path:
    (path,) = store.dir.glob("*.bin")
    return path


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda b: b[:-1] + bytes([b[-1] ^ 1]), id="flipped-byte"),
        pytest.param(lambda b: b[: len(b) // 2], id="truncated"),
        pytest.param(lambda b: b"", id="empty"),
        pytest.param(lambda b: b"\x00" * 200, id="garbage"),
    ],
)
def test_a_damaged_entry_is_ignored_and_parsed_again(
    tmp_path: Path, store: DiskParseStore, spoil: Any
) -> None:
    yamlcache.load_yaml_documents_cached(ODD, "x.yaml")
    path = entry_file(store)
    path.write_bytes(spoil(path.read_bytes()))
    new_process(tmp_path)
    same(yamlcache.load_yaml_documents_cached(ODD, "x.yaml"), load_yaml_documents(ODD, "x.yaml"))
    new_process(tmp_path)  # rewritten: a hit again
    assert store.load(path.name.removesuffix(".bin")) is not None


def test_an_entry_forged_without_the_key_is_not_trusted(tmp_path: Path, store: DiskParseStore) -> None:
    yamlcache.load_yaml_documents_cached(ODD, "x.yaml")
    path = entry_file(store)
    key = path.name.removesuffix(".bin")
    forged = yaml.safe_load(ODD.split("---")[0])
    forged["data"] = {"injected": "not in Git"}
    entry = yamlcache.entry_of([YamlDoc("x.yaml", forged)])
    assert entry is not None
    blob = yamlcache.encode(entry)
    assert blob is not None
    wrong = DiskParseStore(tmp_path / "elsewhere")  # another checkout's key
    path.write_bytes(parsecache.MAGIC + wrong._mac(os.urandom(32), key, blob) + blob)
    new_process(tmp_path)
    docs = yamlcache.load_yaml_documents_cached(ODD, "x.yaml")
    assert "injected" not in docs[0].data["data"]


@pytest.fixture
def no_store() -> Iterator[None]:
    """A test that installs stores itself: none is left installed after it."""
    yield
    yamlcache.use_store(None)
    yamlcache._MEMO.clear()


def warned_process(tmp_path: Path) -> tuple[DiskParseStore, list[str]]:
    """:func:`new_process`, with the warnings the store gives collected."""
    told: list[str] = []
    yamlcache._MEMO.clear()
    s = DiskParseStore(tmp_path, told.append)
    yamlcache.use_store(s)
    return s, told


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda key: key.chmod(0o644), id="readable-by-others"),
        pytest.param(lambda key: key.write_bytes(key.read_bytes()[:5]), id="truncated"),
        pytest.param(lambda key: key.write_bytes(b""), id="empty"),
        pytest.param(lambda key: key.write_bytes(os.urandom(64)), id="too-long"),
    ],
)
def test_a_damaged_key_of_the_user_is_replaced_once_and_the_cache_works_again(
    tmp_path: Path, store: DiskParseStore, damage: Any
) -> None:
    yamlcache.load_yaml_documents_cached(ODD, "x.yaml")
    key, entry = store.dir / "key", entry_file(store).name.removesuffix(".bin")
    old = key.read_bytes()
    damage(key)
    s, told = warned_process(tmp_path)
    assert s.load(entry) is None  # signed with the old key: void
    assert len(told) == 1 and "damaged" in told[0] and "replaced" in told[0], told
    st = os.lstat(key)
    assert stat.S_ISREG(st.st_mode) and st.st_mode & 0o777 == 0o600 and st.st_uid == os.getuid()
    assert len(key.read_bytes()) == 32 and key.read_bytes() != old
    same(yamlcache.load_yaml_documents_cached(ODD, "x.yaml"), load_yaml_documents(ODD, "x.yaml"))
    s, told = warned_process(tmp_path)  # the next command: a hit, and nothing to say
    assert s.load(entry) is not None and told == []


def fifo(path: Path) -> None:
    os.mkfifo(path, 0o600)


def foreign(path: Path, outside: Path) -> None:
    """A well-formed private key file (the right key, even), owned by another user (nobody)."""
    path.write_bytes(outside.read_bytes())
    path.chmod(0o600)
    os.chown(path, 65534, 65534)


@pytest.mark.parametrize(
    "plant",
    [
        pytest.param(lambda key, outside: key.symlink_to(outside), id="symlink"),
        pytest.param(lambda key, outside: key.mkdir(), id="directory"),
        pytest.param(lambda key, outside: fifo(key), id="fifo"),
        pytest.param(
            lambda key, outside: foreign(key, outside),
            id="another-users-file",
            marks=pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user"),
        ),
    ],
)
def test_a_key_that_is_not_the_users_regular_file_is_left_alone_and_said_once(
    tmp_path: Path, no_store: None, plant: Any
) -> None:
    repo, outside = tmp_path / "repo", tmp_path / "outside-key"
    repo.mkdir()
    s = new_process(repo)
    yamlcache.load_yaml_documents_cached(ODD, "x.yaml")
    key, entry = s.dir / "key", entry_file(s).name.removesuffix(".bin")
    # the planted file holds the very key the entry is signed with: trusted, the entry would load
    outside.write_bytes(key.read_bytes())
    outside.chmod(0o600)
    key.unlink()
    plant(key, outside)
    before = os.lstat(key)
    s, told = warned_process(repo)
    for _ in range(3):  # parses still work (not from the disk), the warning comes once
        same(yamlcache.load_yaml_documents_cached(ODD, "x.yaml"), load_yaml_documents(ODD, "x.yaml"))
        yamlcache._MEMO.clear()
    assert len(told) == 1 and "parse cache is off" in told[0] and str(key) in told[0], told
    assert s.load(entry) is None  # the entry is there, but without a trusted key it is not read
    after = os.lstat(key)  # neither replaced nor removed
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert outside.read_bytes() and oct(outside.stat().st_mode & 0o777) == "0o600"


def test_a_symlink_among_the_cache_directories_is_said_once(tmp_path: Path, no_store: None) -> None:
    repo, elsewhere = tmp_path / "repo", tmp_path / "elsewhere"
    (repo / ".envctl").mkdir(parents=True)
    elsewhere.mkdir()
    (repo / ".envctl" / "cache").symlink_to(elsewhere)
    _, told = warned_process(repo)
    yamlcache.load_yaml_documents_cached(ODD, "x.yaml")
    yamlcache._MEMO.clear()
    yamlcache.load_yaml_documents_cached(ODD, "x.yaml")
    assert len(told) == 1 and "parse cache is off" in told[0] and "cache" in told[0], told
    assert list(elsewhere.iterdir()) == []  # nothing written through the link


def test_the_cache_is_bounded(tmp_path: Path, store: DiskParseStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsecache, "MAX_ENTRIES", 3)
    for i in range(6):
        yamlcache.load_yaml_documents_cached(f"k: {i}\n", f"f{i}.yaml")
    assert len(list(store.dir.glob("*.bin"))) == 3
    monkeypatch.setattr(parsecache, "MAX_ENTRY_BYTES", 10)
    yamlcache.load_yaml_documents_cached("k: a value longer than ten bytes\n", "big.yaml")
    assert len(list(store.dir.glob("*.bin"))) == 3


def test_git_never_sees_the_cache(tmp_path: Path, store: DiskParseStore) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    yamlcache.load_yaml_documents_cached(ODD, "x.yaml")
    assert entry_file(store).exists()
    status = subprocess.run(
        ["git", "-C", str(tmp_path), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert status.stdout == ""


@pytest.mark.parametrize(
    "text",
    [
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {pw: CANARY-in-git}\n",
        "apiVersion: v1\nkind: List\nitems:\n"
        "- {apiVersion: v1, kind: Secret, metadata: {name: s}, stringData: {pw: CANARY-in-git}}\n",
        "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: s}\n"
        "spec: {template: {data: {a: CANARY-in-git}}}\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {copy: CANARY-known-to-envctl}\n",
    ],
    ids=["secret", "secret-in-a-list", "sealed-secret", "known-secret-text"],
)
def test_a_parse_holding_a_secret_is_never_written_to_disk(
    tmp_path: Path, store: DiskParseStore, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    from envctl.core.secrets import KNOWN

    monkeypatch.setattr(KNOWN, "_texts", frozenset({"CANARY-known-to-envctl"}))
    fresh = load_yaml_documents(text, "s.yaml")
    same(yamlcache.load_yaml_documents_cached(text, "s.yaml"), fresh)
    same(yamlcache.load_yaml_documents_cached(text, "s.yaml"), fresh)  # in memory still
    assert not list(store.dir.glob("*.bin"))
    for f in tmp_path.rglob("*"):
        assert not f.is_file() or b"CANARY" not in f.read_bytes(), f
