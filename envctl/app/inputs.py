"""Node inputs: upstream outputs known so far (``Values``), resolving references, what waits on what."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from envctl.app.session import Session
from envctl.core.bundle import canonical, sha256
from envctl.core.errors import EngineError, Location, UnavailableError
from envctl.core.model import Node, Ref
from envctl.core.refs import find_refs, substitute_value
from envctl.core.secrets import collect_secret_texts

ALL_OUTPUTS = "*"  # in outputs_unknown: every output of the node is unknown until apply
PLACEHOLDER = "(known after apply)"


class _Pending(Exception):
    """An input cannot be resolved until an upstream node is applied."""


@dataclass
class Values:
    """Known outputs per node and which of them are secret (so their text can be scrubbed)."""

    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, node: str, values: Mapping[str, Any], sensitive: set[str] | None = None) -> None:
        with self.lock:
            self.outputs[node] = dict(values)
            for name in sensitive or ():
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

    For a layer, an output reference written directly in a manifest (``${stack.X.outputs.Y}``)
    is resolved too and passed under its own text, as the renderer expects.
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
            resolved[key] = substitute_value(node.inputs[key], resolve, where)
        except _Pending:
            pending.append(key)
            resolved[key] = PLACEHOLDER
    if node.kind == "layer":
        # references in layer.yaml are the inputs' (resolved above), except those in chart values
        chart = node.layer.helm if node.layer is not None else None
        in_values = set(chart.value_refs) if chart is not None else set()
        for ref in node.upstream_refs:
            if (ref.location.file == node.config_file and ref not in in_values) or ref.text in resolved:
                continue
            try:
                resolved[ref.text] = resolve(ref)
            except _Pending:
                pending.append(ref.text)
                resolved[ref.text] = PLACEHOLDER
    return resolved, tuple(pending)


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
    if node.kind == "stack":
        from envctl.terraform.stack import read_outputs

        outs = read_outputs(s.stack_ctx(), node)
        values.put(
            node.id, {k: o.value for k, o in outs.items()}, {k for k, o in outs.items() if o.sensitive}
        )
    elif node.layer is not None and node.layer.outputs:
        from envctl.kube import read_layer_outputs

        try:
            values.put(node.id, read_layer_outputs(s.kube(), node))
        except (EngineError, UnavailableError):
            return  # not applied yet (or its cluster not there yet): downstream inputs stay pending
