"""Parsed YAML remembered by content: within one process, and across commands through a store.

Pure: the parse (``envctl.core.yamldoc``) is unchanged; this module only decides when it can be
skipped. A parse is keyed by the sha256 of the parser's version, the file name (it is in every
line a ``YamlDoc`` reports) and the text, so an edited file, a renamed one or another envctl is
parsed anew. Entries are the ``YamlDoc`` fields as plain data in ``marshal`` form (it holds
exactly the types a parse makes — dicts in order, lists, tuples of paths, sets, str, int, float,
bool, None — and, unlike pickle, cannot run code when read). Each hit returns its own copy of
the documents' data: callers substitute values and add labels in place.

The store (``ParseStore``, set when a command opens its repository: ``envctl.repo.parsecache``)
does the I/O and vouches for what it returns; an entry that does not decode into documents of the asked
file is ignored and the text parsed again. A text that fails to parse is never cached, and one
holding a Secret or a known secret value is kept in memory only (``.envctl/`` stores no secret).
"""

from __future__ import annotations

import dataclasses
import hashlib
import marshal
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from envctl.core.secrets import KNOWN
from envctl.core.yamldoc import YamlDoc, load_yaml_documents

_FIELDS = tuple(f.name for f in dataclasses.fields(YamlDoc) if f.name != "data")
# what an entry's bytes mean: a change of YamlDoc's fields or of marshal's format is a new key
FORMAT = f"yamldoc(data,{','.join(_FIELDS)}) marshal {marshal.version}"


class ParseStore(Protocol):
    """Where parses outlive the process. ``version``: the parser's version (part of every key)."""

    version: str

    def load(self, key: str) -> bytes | None: ...

    def save(self, key: str, blob: bytes) -> None: ...


@dataclass(frozen=True)
class _Entry:
    """A parse: its documents' data as marshal bytes (each hit decodes its own copy: callers edit
    data in place) and their other fields, decoded once and shared by every copy (lines and
    texts are replaced by callers, never edited)."""

    data: bytes
    rest: list[dict[str, Any]]

    def docs(self) -> list[YamlDoc] | None:
        """A copy of the documents; None if the data is not one value per document."""
        try:
            data: Any = marshal.loads(self.data)
        except (EOFError, ValueError, TypeError):
            return None
        if not isinstance(data, list) or len(data) != len(self.rest):
            return None
        return [YamlDoc(data=d, **rest) for d, rest in zip(data, self.rest, strict=True)]


_MEMO: dict[str, _Entry] = {}  # this process's parses, oldest first
_MEMO_MAX = 64
_LOCK = threading.Lock()
_store: ParseStore | None = None


def use_store(store: ParseStore | None) -> None:
    """Keep parses in ``store`` too, from now on in this process (None: in memory only)."""
    global _store
    _store = store


def cache_key(text: str, file: str, version: str = "") -> str:
    h = hashlib.sha256(f"{FORMAT}\0{version}\0{file}\0".encode())
    h.update(text.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def entry_of(docs: list[YamlDoc]) -> _Entry | None:
    """The entry of a parse; None if a value is not plain data (it is not cached then)."""
    try:
        data = marshal.dumps([d.data for d in docs], 4)
    except ValueError:
        return None
    return _Entry(data, [{n: getattr(d, n) for n in _FIELDS} for d in docs])


def encode(entry: _Entry) -> bytes | None:
    """An entry's bytes for a store; None if a field is not plain data."""
    try:
        return marshal.dumps((entry.data, [tuple(r[n] for n in _FIELDS) for r in entry.rest]), 4)
    except ValueError:
        return None


def decode(blob: bytes, file: str) -> _Entry | None:
    """The entry of ``blob``, or None if it is not one of documents of ``file``."""
    try:
        raw: Any = marshal.loads(blob)
    except (EOFError, ValueError, TypeError):
        return None
    if not (
        isinstance(raw, tuple) and len(raw) == 2 and isinstance(raw[0], bytes) and isinstance(raw[1], list)
    ):
        return None
    rest = []
    for item in raw[1]:
        if not (isinstance(item, tuple) and len(item) == len(_FIELDS)):
            return None
        fields = dict(zip(_FIELDS, item, strict=True))
        if not (
            fields.get("file") == file
            and isinstance(fields.get("lines"), dict)
            and isinstance(fields.get("texts"), set)
            and isinstance(fields.get("has_refs"), bool)
        ):
            return None
        rest.append(fields)
    return _Entry(raw[0], rest)


def load_yaml_documents_cached(text: str, file: str) -> list[YamlDoc]:
    """:func:`envctl.core.yamldoc.load_yaml_documents` of ``text``, from a cache when it holds it.

    A command reads a manifest several times (the loader's reference scan, precheck, plan,
    apply) and most commands read the same files as the last one; the parse is most of the cost.
    """
    store = _store
    key = cache_key(text, file, store.version if store is not None else "")
    with _LOCK:
        entry = _MEMO.get(key)
    if entry is not None:
        docs = entry.docs()
        if docs is not None:
            return docs
    elif store is not None:
        blob = store.load(key)
        entry = decode(blob, file) if blob is not None else None
        docs = entry.docs() if entry is not None else None
        if docs is not None:
            assert entry is not None
            _remember(key, entry)
            return docs
    docs = load_yaml_documents(text, file)
    entry = entry_of(docs)
    if entry is not None:
        _remember(key, entry)
        blob = encode(entry) if store is not None and not _holds_secrets(docs, text) else None
        if store is not None and blob is not None:
            store.save(key, blob)
    return docs


_SECRET_KINDS = frozenset({"Secret", "SealedSecret"})


def _holds_secrets(docs: list[YamlDoc], text: str) -> bool:
    """Whether a parse stays out of the store: it has a Secret (``.envctl/`` keeps no secret
    value, not even one Git holds in the clear) or a text this process knows to be secret."""

    def secret(obj: Any) -> bool:
        return isinstance(obj, dict) and obj.get("kind") in _SECRET_KINDS

    for doc in docs:
        items = doc.data.get("items") if isinstance(doc.data, dict) else None
        if secret(doc.data) or (isinstance(items, list) and any(map(secret, items))):
            return True
    return any(t in text for t in KNOWN.texts)


def _remember(key: str, entry: _Entry) -> None:
    with _LOCK:
        if key not in _MEMO and len(_MEMO) >= _MEMO_MAX:
            _MEMO.pop(next(iter(_MEMO)))
        _MEMO[key] = entry
