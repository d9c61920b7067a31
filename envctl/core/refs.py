"""The ``${...}`` reference language: find references and substitute resolved values into parsed YAML.

Grammar: ``stack.NAME.outputs.KEY``, ``layer.NAME.outputs.KEY``, ``env.name``, ``env.vars.KEY``
and (inside manifests only) ``inputs.KEY``. ``$${`` is an escape for a literal ``${``.
Pure: no I/O. Every error is a ``ConfigError`` naming the file and line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Container, Iterable, Iterator
from typing import Any

from envctl.core.errors import ConfigError, Location
from envctl.core.model import Ref

_NAME = r"[A-Za-z0-9_][A-Za-z0-9_-]*"
# One left-to-right pass: an escape, a closed reference, or an unclosed "${" (the last
# alternative only matches when no "}" follows), so hostile text is scanned in linear time.
_SCAN = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_SHOWN = 60  # characters of a bad reference quoted in an error message
_MAX_REF = 300
_OUTPUT = re.compile(rf"^(stack|layer)\.({_NAME})\.outputs\.({_NAME})$")
_VAR = re.compile(rf"^env\.vars\.({_NAME})$")
_INPUT = re.compile(rf"^inputs\.({_NAME})$")
_WHOLE = re.compile(r"^\$\{([^}]*)\}$")

HINT = (
    "references are ${stack.NAME.outputs.KEY}, ${layer.NAME.outputs.KEY}, ${env.name}, "
    "${env.vars.KEY} and, in manifests, ${inputs.KEY}; write $${ for a literal ${"
)


def quoted(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: user values quoted in error messages stay short."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def parse_ref(expr: str, location: Location, *, allow_inputs: bool) -> Ref:
    """Parse the inside of one ``${...}``."""
    e = expr.strip()
    if len(e) > _MAX_REF:  # no real name is this long; keep messages that quote it short
        e = ""
    if m := _OUTPUT.match(e):
        return Ref("output", m.group(3), location, node=f"{m.group(1)}.{m.group(2)}")
    if e == "env.name":
        return Ref("env", "name", location)
    if m := _VAR.match(e):
        return Ref("var", m.group(1), location)
    if m := _INPUT.match(e):
        if not allow_inputs:
            raise ConfigError(
                f"${{{e}}} is only allowed inside a layer's manifests",
                location=location,
                hint="in stack.yaml/layer.yaml, reference stack/layer outputs or env values instead",
            )
        return Ref("input", m.group(1), location)
    shown = expr if len(expr) <= _SHOWN else expr[:_SHOWN] + "..."
    raise ConfigError(f"unknown reference ${{{shown}}}", location=location, hint=HINT)


class _Lines:
    """Line numbers of increasing offsets in one text, counted incrementally (linear overall)."""

    def __init__(self, text: str, first_line: int) -> None:
        self.text = text
        self.first = first_line
        self.pos = 0
        self.line = first_line

    def at(self, offset: int) -> int:
        if offset < self.pos:  # not expected: offsets only grow
            self.pos, self.line = 0, self.first
        self.line += self.text.count("\n", self.pos, offset)
        self.pos = offset
        return self.line


def find_refs(text: str, file: str, first_line: int = 1, *, allow_inputs: bool = False) -> Iterator[Ref]:
    """Every reference in ``text``; ``first_line`` is the file line where ``text`` starts.

    An unclosed ``${`` anywhere is an error even if valid references came before it, so callers
    that collect the references into a list see either all of them or the error.
    """
    lines = _Lines(text, first_line)
    found: list[Ref] = []
    for m in _SCAN.finditer(text):
        token = m.group(0)
        if token == "$${":
            continue
        location = Location(file, lines.at(m.start()))
        if token == "${":
            raise ConfigError("unclosed ${ (missing })", location=location, hint=HINT)
        found.append(parse_ref(m.group(1), location, allow_inputs=allow_inputs))
    yield from found


Resolver = Callable[[Ref], Any]
Path_ = tuple[str | int, ...]


class Budget:
    """Bytes that substitution may insert, counted while it inserts: per object and in total.

    A reference to a large value used many times is refused at the reference that crosses a
    limit, before the copies are built (never after building gigabytes).
    """

    def __init__(self, per_object: int, total: int, what: str = "layer") -> None:
        self.per_object = per_object
        self.total = total
        self.what = what
        self.object_used = 0
        self.used = 0
        self._sizes: dict[str, int] = {}

    def next_object(self) -> None:
        self.object_used = 0

    def size(self, ref: Ref, value: Any) -> int:
        """Bytes of ``value`` as JSON, computed once per reference."""
        if ref.text not in self._sizes:
            self._sizes[ref.text] = (
                len(value) if isinstance(value, str) else len(json.dumps(value, default=str))
            )
        return self._sizes[ref.text]

    def take(self, size: int, location: Location) -> None:
        self.object_used += size
        self.used += size
        if self.object_used > self.per_object:
            raise ConfigError(
                f"substituted values make one object larger than {self.per_object} bytes "
                f"({self.per_object / (1 << 20):.1f} MiB, the API server's limit per object)",
                location=location,
                hint="split the data over several objects, or keep large values out of the cluster",
            )
        if self.used > self.total:
            raise ConfigError(
                f"substituted values make the {self.what} larger than {self.total} bytes "
                f"({self.total >> 20} MiB rendered)",
                location=location,
                hint="split the layer, or keep large values out of the cluster",
            )


def _copy(value: Any) -> Any:
    """A structural copy, so objects never share (and never mutate) a referenced value."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _as_text(value: Any, ref: Ref) -> str:
    """How a value reads inside a longer string: strings raw, numbers and booleans as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        kind = "a map" if isinstance(value, dict) else "a list"
        raise ConfigError(
            f"${{{ref.text}}} is {kind}: it cannot be part of a string",
            location=ref.location,
            hint="use the reference alone as the whole value (key: ${...}) to insert it as a structure",
        )
    return json.dumps(value)


def _substitute_string(
    text: str,
    resolve: Resolver,
    location: Location,
    *,
    as_text: bool,
    allow_inputs: bool,
    budget: Budget | None,
) -> Any:
    if not as_text and (m := _WHOLE.match(text)) is not None:
        ref = parse_ref(m.group(1), location, allow_inputs=allow_inputs)
        value = resolve(ref)
        if budget is not None:
            budget.take(budget.size(ref, value), location)
        return _copy(value)
    parts: list[str] = []
    last = 0
    for m in _SCAN.finditer(text):
        parts.append(text[last : m.start()])
        last = m.end()
        token = m.group(0)
        if token == "$${":
            parts.append("${")
            continue
        line = (location.line or 1) + text.count("\n", 0, m.start())
        where = Location(location.file, line)
        if token == "${":
            raise ConfigError("unclosed ${ (missing })", location=where, hint=HINT)
        ref = parse_ref(m.group(1), where, allow_inputs=allow_inputs)
        piece = _as_text(resolve(ref), ref)
        if budget is not None:
            budget.take(len(piece), where)
        parts.append(piece)
    parts.append(text[last:])
    return "".join(parts)


def substitute_values(
    data: Any,
    resolve: Resolver,
    locate: Callable[[Path_], Location],
    *,
    texts: Container[Path_] = (),
    allow_inputs: bool = True,
    budget: Budget | None = None,
    path: Path_ = (),
) -> Any:
    """Resolve the references in the string values of parsed YAML; keys are never touched.

    A string that is exactly one reference takes the referenced value with its own type (a string
    stays a string, a list or map is inserted as a structure), unless its path is in ``texts``
    (written quoted or as a block: the author asked for a string, so the value goes in as text).
    A reference inside a longer string is interpolated as text: numbers and booleans as their
    JSON text, a list or map is an error. ``$${`` is a literal ``${``. Since values are substituted
    after parsing, no value can create a key, an object or a document. Containers are changed in
    place; the (possibly new) root is returned. ``locate`` gives the file and line of a path.
    """
    if isinstance(data, str):
        if "${" not in data:
            return data
        return _substitute_string(
            data, resolve, locate(path), as_text=path in texts, allow_inputs=allow_inputs, budget=budget
        )
    if isinstance(data, dict):
        items: Iterable[tuple[Any, Any]] = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return data
    for k, v in list(items):
        if isinstance(v, str) and "${" not in v:
            continue
        if isinstance(v, str | dict | list):
            data[k] = substitute_values(
                v, resolve, locate, texts=texts, allow_inputs=allow_inputs, budget=budget, path=(*path, k)
            )
    return data


def substitute_value(value: Any, resolve: Resolver, location: Location, *, allow_inputs: bool = False) -> Any:
    """Resolve references inside a value of stack.yaml/layer.yaml (``inputs:``, ``namespace:``,
    chart values).

    A string that is exactly one reference takes the referenced value with its type (a number
    stays a number, a list stays a list), as Terraform does; otherwise references are formatted
    into the string as :func:`substitute_values` does. Keys are never substituted.
    ``allow_inputs``: ``${inputs.X}`` is allowed (chart values of a layer).
    """
    return substitute_values(_copy(value), resolve, lambda _path: location, allow_inputs=allow_inputs)
