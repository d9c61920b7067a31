"""Typed accessors for the repository's YAML files (``environment.yaml``, ``stack.yaml``, ``layer.yaml``).

Each accessor checks one value (allowed keys, type, duration, list of strings) and raises a
``ConfigError`` pointing at the file and line; ``refs_in`` collects the ``${...}`` references of a
value with their lines; ``node_common`` reads what every stack and layer config holds (depends_on,
inputs) and ``make_node`` builds the node from it. Shared by the environment loader (``loader``)
and the layer loader (``layers``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from envctl.core.durations import parse_duration
from envctl.core.errors import ConfigError, Location
from envctl.core.model import LayerSpec, Node, NodeKind, Ref, Snapshot, StackSpec
from envctl.core.refs import find_refs, quoted
from envctl.core.yamldoc import YamlDoc, load_yaml


def check_keys(doc: YamlDoc, data: Mapping[str, Any], allowed: set[str], *path: str | int) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f"unknown key {quoted(key)}",
                location=doc.loc(*path, key),
                hint=f"allowed keys here: {', '.join(sorted(allowed))}",
            )


def want(doc: YamlDoc, value: Any, typ: type | tuple[type, ...], what: str, *path: str | int) -> Any:
    ok = isinstance(value, typ) and not (isinstance(value, bool) and typ in (int, float, (int, float)))
    if not ok:
        raise ConfigError(
            f"{'.'.join(str(p) for p in path) or 'document'} must be {what}, not {type(value).__name__}",
            location=doc.loc(*path),
        )
    return value


def mapping(doc: YamlDoc, value: Any, *path: str | int) -> dict[str, Any]:
    if value is None:
        return {}
    return dict(want(doc, value, dict, "a mapping", *path))


def str_list(doc: YamlDoc, value: Any, *path: str | int) -> tuple[str, ...]:
    if value is None:
        return ()
    items = want(doc, value, list, "a list of strings", *path)
    for i, item in enumerate(items):
        want(doc, item, str, "a string", *path, i)
    return tuple(items)


def load_doc(snapshot: Snapshot, path: str, *, required: bool = False) -> YamlDoc | None:
    if not snapshot.exists(path):
        if required:
            raise ConfigError(f"{path} is missing", location=Location(path))
        return None
    doc = load_yaml(snapshot.read_bytes(path), path)
    if doc.data is None:
        doc.data = {}
    want(doc, doc.data, dict, "a mapping")
    return doc


def refs_in(doc: YamlDoc, value: Any, *path: str | int, allow_inputs: bool = False) -> list[Ref]:
    if isinstance(value, str):
        if "${" not in value:
            return []
        loc = doc.loc(*path)
        return list(find_refs(value, doc.file, loc.line or 1, allow_inputs=allow_inputs))
    if isinstance(value, dict):
        return [r for k, v in value.items() for r in refs_in(doc, v, *path, k, allow_inputs=allow_inputs)]
    if isinstance(value, list):
        return [r for i, v in enumerate(value) for r in refs_in(doc, v, *path, i, allow_inputs=allow_inputs)]
    return []


def node_common(doc: YamlDoc | None, node_id: str) -> tuple[tuple[str, ...], dict[str, Any], list[Ref]]:
    if doc is None:
        return (), {}, []
    depends = str_list(doc, doc.data.get("depends_on"), "depends_on")
    inputs = mapping(doc, doc.data.get("inputs"), "inputs")
    for k in inputs:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", k):
            raise ConfigError(
                f"input name {quoted(k)} is not valid", node=node_id, location=doc.loc("inputs", k)
            )
    refs = refs_in(doc, inputs, "inputs")
    return depends, inputs, refs


def make_node(
    kind: NodeKind,
    name: str,
    path: str,
    cfg: str,
    doc: YamlDoc | None,
    common: tuple[tuple[str, ...], dict[str, Any], list[Ref]],
    *,
    stack: StackSpec | None = None,
    layer: LayerSpec | None = None,
) -> Node:
    """A stack's or a layer's node: ``common`` is what ``node_common`` read from its config file
    ``cfg`` (``doc``, None when there is none), its references completed since; plus its kind's spec."""
    depends, inputs, refs = common
    return Node(
        id=f"{kind}.{name}",
        kind=kind,
        name=name,
        path=path,
        depends_on=depends,
        inputs=inputs,
        refs=tuple(refs),
        config_file=cfg if doc else None,
        stack=stack,
        layer=layer,
        depends_lines=dep_lines(doc),
        input_lines={k: doc.loc("inputs", k) for k in inputs} if doc else {},
    )


def dep_lines(doc: YamlDoc | None) -> dict[str, Location]:
    if doc is None:
        return {}
    deps = doc.data.get("depends_on") or []
    return {d: doc.loc("depends_on", i) for i, d in enumerate(deps) if isinstance(d, str)}


def duration(doc: YamlDoc, value: Any, *path: str) -> float:
    """A positive, finite number of seconds: a number, or a string such as ``5m``."""
    what = ".".join(path)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    else:
        want(doc, value, str, "a duration such as 5m", *path)
        try:
            seconds = parse_duration(value)
        except ValueError as e:
            raise ConfigError(f"{what}: {e}", location=doc.loc(*path)) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(
            f"{what} must be a positive duration such as 5m",
            location=doc.loc(*path),
            hint="write wait: false to skip waiting" if path and path[0] == "wait" else None,
        )
    return seconds
