"""Node inputs: upstream outputs known so far (``Values``), resolving references, what waits on what."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from envctl.app.session import Session
from envctl.core.blast import ALL_OUTPUTS
from envctl.core.bundle import canonical, sha256
from envctl.core.changes import UNKNOWN
from envctl.core.errors import Location
from envctl.core.model import Node, Ref
from envctl.core.refs import find_refs, substitute_value
from envctl.core.secrets import collect_secret_texts

PLACEHOLDER = UNKNOWN


class _Pending(Exception):
    """An input cannot be resolved until an upstream node is applied."""


@dataclass
class Values:
    """Known outputs per node and which of them are secret (so their text can be scrubbed)."""

    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, node: str, values: Mapping[str, Any], sensitive: Iterable[str] = ()) -> None:
        with self.lock:
            self.outputs[node] = dict(values)
            for name in sensitive:
                collect_secret_texts(values.get(name), self.secrets)

    def add(self, node: str, values: Mapping[str, Any], sensitive: Iterable[str] = ()) -> None:
        """Values a plan knows before apply, over the node's current ones (``put``)."""
        with self.lock:
            self.outputs[node] = {**self.outputs.get(node, {}), **values}
            for name in sensitive:
                collect_secret_texts(values.get(name), self.secrets)


def input_refs(node: Node, key: str) -> list[Ref]:
    raw = node.inputs[key]
    refs: list[Ref] = []
    _walk_refs(raw, node.config_file or node.path, refs)
    return refs


def _walk_refs(value: Any, file: str, out: list[Ref]) -> None:
    if isinstance(value, str):
        out.extend(find_refs(value, file))
    elif isinstance(value, dict):
        for v in value.values():
            _walk_refs(v, file, out)
    elif isinstance(value, list):
        for v in value:
            _walk_refs(v, file, out)


def resolve_inputs(
    s: Session, node: Node, values: Values, pending_outputs: Mapping[str, set[str]]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Resolved inputs and the names of inputs that wait on an upstream change.

    An output reference written outside the inputs (in a layer's manifest, ``${stack.X.outputs.Y}``:
    the adapter's ``extra_refs``) is resolved too and passed under its own text, as the renderer
    expects.
    """

    def resolve(ref: Ref) -> Any:
        if ref.kind == "env":
            return s.env.name
        if ref.kind == "var":
            return s.env.vars[ref.name]
        assert ref.node is not None
        waiting = pending_outputs.get(ref.node, set())
        if ref.name in waiting or ALL_OUTPUTS in waiting:
            raise _Pending(ref.text)
        outs = values.outputs.get(ref.node)
        if outs is None or ref.name not in outs:
            raise _Pending(ref.text)
        return outs[ref.name]

    resolved: dict[str, Any] = {}
    pending: list[str] = []
    where = Location(node.config_file or node.path)
    for key in node.inputs:
        try:
            resolved[key] = substitute_value(node.inputs[key], resolve, node.input_lines.get(key, where))
        except _Pending:
            pending.append(key)
            resolved[key] = PLACEHOLDER
    for ref in s.adapter(node.id).extra_refs(node):
        if ref.text in resolved:
            continue
        try:
            resolved[ref.text] = resolve(ref)
        except _Pending:
            pending.append(ref.text)
            resolved[ref.text] = PLACEHOLDER
    return resolved, tuple(pending)


def sensitive_inputs(s: Session, node: Node) -> dict[str, str]:
    """The inputs of a node that carry a sensitive upstream output, as ``resolve_inputs`` keys them
    (an input's name; an output referenced in a manifest or chart value: its own text), each with
    that output (``stack.db.outputs.password``). Read from the upstream nodes' configuration
    (``NodeAdapter.sensitive_outputs``), so it is known before anything is applied; a layer's
    renderer refuses such a value anywhere but a Secret's data or a field the layer allows
    (``kube.render.check_sensitive_flow``)."""
    found: dict[str, frozenset[str]] = {}

    def sensitive(ref: Ref) -> bool:
        up = s.env.nodes.get(ref.node or "")
        if ref.kind != "output" or up is None:
            return False
        if up.id not in found:
            found[up.id] = s.adapter(up.id).sensitive_outputs(up)
        return ref.name in found[up.id]

    out: dict[str, str] = {}
    for key in node.inputs:
        hit = next((r for r in input_refs(node, key) if sensitive(r)), None)
        if hit is not None:
            out[key] = hit.text
    for ref in s.adapter(node.id).extra_refs(node):
        if sensitive(ref):
            out[ref.text] = ref.text
    return out


def inputs_hash(inputs: Mapping[str, Any]) -> str:
    return sha256(canonical(inputs))


def waiting_on(node: Node, pending: tuple[str, ...]) -> list[str]:
    ups: set[str] = set()
    for key in pending:
        if key in node.inputs:
            ups.update(ref.node for ref in input_refs(node, key) if ref.node)
        else:  # an output reference written in a manifest: stack.X.outputs.Y
            ups.add(".".join(key.split(".")[:2]))
    return sorted(ups)


def read_current_outputs(s: Session, node: Node, values: Values) -> None:
    """Outputs of a node as it is now (state file or live objects); nothing if it never ran."""
    outputs = s.adapter(node.id).outputs(node)
    if outputs is not None:
        values.put(node.id, outputs.values, outputs.sensitive)
