"""The YAML parse cache never writes a Secret's values to disk: a file with a Secret (alone, among
other documents, or as an item of a ``kind: List``) is parsed and kept in memory only; other
parses are stored as before."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from envctl.core import yamlcache
from envctl.core.yamldoc import load_yaml_documents
from envctl.repo.parsecache import DiskParseStore

VALUE = "c2VjcmV0LXZhbHVlLWNhbmFyeQ=="
SECRET = f"apiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\ndata: {{password: {VALUE}}}\n"
CONFIG = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: v}\n"
ITEM = f"{{apiVersion: v1, kind: Secret, metadata: {{name: s}}, stringData: {{p: {VALUE}}}}}"
LISTED = f"apiVersion: v1\nkind: List\nitems:\n- {ITEM}\n"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DiskParseStore]:
    yamlcache._MEMO.clear()
    s = DiskParseStore(tmp_path)
    yamlcache.use_store(s)
    yield s
    yamlcache.use_store(None)
    yamlcache._MEMO.clear()


@pytest.mark.parametrize(
    "text", [SECRET, CONFIG + "---\n" + SECRET, LISTED], ids=["secret", "secret-after-configmap", "list-item"]
)
def test_a_secret_with_values_is_parsed_but_never_stored(store: DiskParseStore, text: str) -> None:
    docs = yamlcache.load_yaml_documents_cached(text, "s.yaml")
    assert [d.data for d in docs] == [d.data for d in load_yaml_documents(text, "s.yaml")]
    assert not list(store.dir.glob("*.bin"))
    for f in store.dir.parent.rglob("*"):
        assert not f.is_file() or VALUE.encode() not in f.read_bytes(), f


def test_other_documents_are_stored(store: DiskParseStore) -> None:
    yamlcache.load_yaml_documents_cached(CONFIG, "c.yaml")
    assert len(list(store.dir.glob("*.bin"))) == 1
