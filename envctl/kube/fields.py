"""Whether a server-side apply would change nothing, proved from the live object alone (pure).

A server-side apply of ``desired`` by field manager M writes nothing when

- the fields M owns (its one ``managedFields`` entry with operation ``Apply``) are exactly the
  fields ``desired`` sets, so the apply neither releases a field nor claims a new one, and
- every value ``desired`` sets equals the live value, so no value changes and no other
  manager's field can conflict.

:func:`unchanged_by_apply` checks both against a live object (a LIST item carries its
``managedFields``), so a plan or a drift check need not dry-run an object that is in sync.
It is deliberately conservative: whatever it cannot read exactly - a list whose items are
reordered or extended by others, a value of another type (``1`` vs ``1.0``, ``"1"`` vs
``1``), an atomic map with server-added keys (except the few defaults of ``_DEFAULTED``, which
applying the value re-adds exactly), an ``apiVersion`` other than the one the entry
was recorded in, a key field the server defaulted into an item it cannot find - answers
False, and the caller dry-runs that object. A False answer never means "changed".

Imports only the standard library; no network.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# Identity fields: part of every apply, never recorded in managedFields.
_TOP_IDENTITY = ("apiVersion", "kind")
_META_IDENTITY = ("name", "namespace")


def apply_entry(live: Mapping[str, Any], manager: str) -> Mapping[str, Any] | None:
    """The one ``managedFields`` entry of ``manager``'s applies (main resource), or None."""
    found = [
        mf
        for mf in (live.get("metadata") or {}).get("managedFields") or []
        if isinstance(mf, Mapping)
        and mf.get("manager") == manager
        and mf.get("operation") == "Apply"
        and not mf.get("subresource")
    ]
    return found[0] if len(found) == 1 else None


def unchanged_by_apply(desired: Mapping[str, Any], live: Mapping[str, Any] | None, manager: str) -> bool:
    """True only when applying ``desired`` as ``manager`` provably leaves ``live`` as it is."""
    if live is None:
        return False
    entry = apply_entry(live, manager)
    if entry is None or entry.get("fieldsType", "FieldsV1") != "FieldsV1":
        return False
    fields = entry.get("fieldsV1")
    if not isinstance(fields, Mapping):
        return False
    for key in _TOP_IDENTITY:
        if desired.get(key) != live.get(key) or not desired.get(key):
            return False
    if entry.get("apiVersion") != desired.get("apiVersion"):
        return False  # recorded for another version: its field names may differ
    want = {k: v for k, v in desired.items() if k not in _TOP_IDENTITY}
    meta = dict(want.get("metadata") or {})
    live_meta = live.get("metadata") or {}
    for key in _META_IDENTITY:
        if key in meta and meta.pop(key) != live_meta.get(key, ""):
            return False
    if meta:
        want["metadata"] = meta
    else:
        want.pop("metadata", None)
    group = str(desired.get("apiVersion", "")).rpartition("/")[0]
    return _same(fields, want, live, "", _builtin(group))


def _builtin(group: str) -> bool:
    """A group the API server itself serves (and defaults): core, ``apps``, ``*.k8s.io``.

    Custom resources get no defaults inside atomic values, so the rules of ``_DEFAULTED`` never
    apply to them (a CRD's group always has a dot, and ``*.k8s.io`` is reserved).
    """
    return "." not in group or group.endswith(".k8s.io")


# Keys the API server defaults inside values that server-side apply treats as atomic (a whole
# value is one field): applying the value without the key yields exactly that default again, so
# a live value that differs from the desired one only by these keys is unchanged. Keyed by the
# field holding the atomic value; only for built-in kinds.
_DEFAULTED: dict[str, dict[str, Any]] = {
    "fieldRef": {"apiVersion": "v1"},  # ObjectFieldSelector (env valueFrom, downward API volumes)
    "rules": {"scope": "*"},  # admission webhooks' RuleWithOperations (an atomic list)
}


def _atomic_equal(key: str, want: Any, have: Any, builtin: bool) -> bool:
    """An atomic value as applied equals the live one, up to the server's known defaults."""
    if equal(want, have):
        return True
    extra = _DEFAULTED.get(key) if builtin else None
    if extra is None:
        return False

    def undefaulted(w: Any, h: Any) -> Any:
        if isinstance(w, dict) and isinstance(h, dict):
            return {k: v for k, v in h.items() if k in w or k not in extra or not equal(v, extra[k])}
        return h

    if isinstance(want, list) and isinstance(have, list) and len(want) == len(have):
        return all(equal(w, undefaulted(w, h)) for w, h in zip(want, have, strict=True))
    return equal(want, undefaulted(want, have))


def _same(fields: Mapping[str, Any], want: Any, have: Any, key: str = "", builtin: bool = False) -> bool:
    """``fields`` (one fieldsV1 node) is exactly what ``want`` sets, and ``want`` agrees with ``have``.

    ``key``: the field ``want`` is the value of; ``builtin``: the object is of a built-in kind.
    Written for speed (a 700 KB CRD schema is tens of thousands of nodes): no per-node copies.
    """
    count = len(fields) - ("." in fields)  # the children; "." marks the node itself
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return False
        if not count:  # an atomic (or empty) map: applied as a whole
            return _atomic_equal(key, want, have, builtin)
        if count != len(want):
            return False
        # as many children as keys, each key's child present: the children are exactly the keys
        for k, v in want.items():
            sub = fields.get("f:" + k)
            if not isinstance(sub, dict):
                return False
            if k not in have:
                # an empty map or list is stored as absent: applying it again changes nothing
                if (v == {} or v == []) and len(sub) - ("." in sub) == 0:
                    continue
                return False
            if not _same(sub, v, have[k], k, builtin):
                return False
        return True
    children = {k: v for k, v in fields.items() if k != "."} if count else {}
    if any(not isinstance(v, Mapping) for v in children.values()):
        return False
    if isinstance(want, list):
        if not isinstance(have, list):
            return False
        if not children:  # an atomic list
            return _atomic_equal(key, want, have, builtin)
        if len(want) != len(have) or len(children) != len(want):
            return False
        seen: set[int] = set()
        for key, sub in children.items():
            i = _item_index(key, have)
            if i is None or i in seen:
                return False
            seen.add(i)
            if not _same(sub, want[i], have[i], key, builtin):
                return False
        return True
    return not children and equal(want, have)


def _item_index(key: str, items: list[Any]) -> int | None:
    """The index of the live list item a fieldsV1 item key (``k:``, ``v:``, ``i:``) names, if unique."""
    kind, _, text = key.partition(":")
    try:
        value = json.loads(text) if kind in ("k", "v") else int(text)
    except ValueError:
        return None
    if kind == "i":
        return value if isinstance(value, int) and 0 <= value < len(items) else None
    if kind == "k":
        if not isinstance(value, dict) or not value:
            return None
        hits = [
            i
            for i, item in enumerate(items)
            if isinstance(item, dict) and all(k in item and equal(item[k], v) for k, v in value.items())
        ]
    elif kind == "v":
        hits = [i for i, item in enumerate(items) if equal(item, value)]
    else:
        return None
    return hits[0] if len(hits) == 1 else None


def equal(a: Any, b: Any) -> bool:
    """Deep equality that also requires equal JSON types (``1`` is not ``1.0``, ``True`` is not ``1``)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
