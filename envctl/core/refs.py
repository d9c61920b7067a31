"""The ``${...}`` reference language: find references in text and substitute resolved values.

Grammar: ``stack.NAME.outputs.KEY``, ``layer.NAME.outputs.KEY``, ``env.name``, ``env.vars.KEY``
and (inside manifests only) ``inputs.KEY``. ``$${`` is an escape for a literal ``${``.
Pure: no I/O. Every error is a ``ConfigError`` naming the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from envctl.core.errors import ConfigError, Location
from envctl.core.model import Ref

_NAME = r"[A-Za-z0-9_][A-Za-z0-9_-]*"
_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}")
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


def substitute_text(text: str, resolve: Resolver, file: str, first_line: int = 1) -> str:
    """Replace every reference in ``text`` by ``str(resolve(ref))``; ``$${`` becomes ``${``.

    Used on manifest text before YAML parsing, so ``replicas: ${inputs.n}`` yields a number.
    """
    lines = _Lines(text, first_line)

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        ref = parse_ref(m.group(1), Location(file, lines.at(m.start())), allow_inputs=True)
        value = resolve(ref)
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return _TOKEN.sub(repl, text)


def substitute_value(value: Any, resolve: Resolver, location: Location, *, allow_inputs: bool = False) -> Any:
    """Resolve references inside a YAML value (``inputs:`` of stack.yaml/layer.yaml, chart values).

    A string that is exactly one reference takes the referenced value with its type (a number
    stays a number, a list stays a list), as Terraform does; otherwise references are formatted
    into the string. Keys are never substituted. ``allow_inputs``: ``${inputs.X}`` is allowed
    (chart values of a layer).
    """
    if isinstance(value, str):
        if (m := _WHOLE.match(value)) is not None:
            return resolve(parse_ref(m.group(1), location, allow_inputs=allow_inputs))

        def repl(m: re.Match[str]) -> str:
            if m.group(0) == "$${":
                return "${"
            return str(resolve(parse_ref(m.group(1), location, allow_inputs=allow_inputs)))

        return _TOKEN.sub(repl, value)
    if isinstance(value, dict):
        return {
            k: substitute_value(v, resolve, location, allow_inputs=allow_inputs) for k, v in value.items()
        }
    if isinstance(value, list):
        return [substitute_value(v, resolve, location, allow_inputs=allow_inputs) for v in value]
    return value
