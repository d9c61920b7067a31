"""Safe YAML reading (pure: text in, values out), keeping the line of every value.

Aliases are refused (an alias bomb cannot expand), nesting is bounded and files are size-limited,
so a hostile repository gets a ``ConfigError`` within milliseconds, never a hang or a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from envctl.core.errors import ConfigError, Location
from envctl.core.refs import quoted

MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 100_000

Path_ = tuple[str | int, ...]


@dataclass
class YamlDoc:
    """A parsed document: ``data`` and the 1-based line of each value, keyed by its path."""

    file: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def loc(self, *path: str | int) -> Location:
        """The location of the value at ``path``, or of its closest parent that has one."""
        p: Path_ = tuple(path)
        while p and p not in self.lines:
            p = p[:-1]
        return Location(self.file, self.lines.get(p, 1))


class _Limits:
    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.count = 0


def _convert(node: yaml.Node, path: Path_, doc: YamlDoc, limits: _Limits, depth: int) -> Any:
    limits.count += 1
    line = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        line += 1  # a block scalar's text starts on the line after its indicator
    if depth > MAX_DEPTH:
        raise ConfigError(f"YAML nested deeper than {MAX_DEPTH} levels", location=Location(doc.file, line))
    if limits.count > MAX_NODES:
        raise ConfigError(f"YAML has more than {MAX_NODES} values", location=Location(doc.file, line))
    doc.lines[path] = line
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                raise ConfigError(
                    "mapping keys must be plain strings",
                    location=Location(doc.file, knode.start_mark.line + 1),
                )
            key = str(limits.loader.construct_scalar(knode))
            if key in out:
                raise ConfigError(
                    f"duplicate key {quoted(key)}", location=Location(doc.file, knode.start_mark.line + 1)
                )
            out[key] = _convert(vnode, (*path, key), doc, limits, depth + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(v, (*path, i), doc, limits, depth + 1) for i, v in enumerate(node.value)]
    try:
        return limits.loader.construct_object(node, deep=True)
    except (ValueError, ArithmeticError, LookupError, TypeError, AttributeError) as e:
        # PyYAML lets Python's own errors through: a date like 2024-13-45, an integer with more
        # than 4300 digits, ``!!int abc``, an empty ``!!int``, ``!!bool maybe``, ``!!timestamp x``
        text = str(e)
        raise ConfigError(
            f"malformed YAML: {text[:120]}",
            location=Location(doc.file, line),
            hint="quote the value to keep it a string",
        ) from None


class _NoAliasComposer(yaml.SafeLoader):
    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise ConfigError(
                "YAML aliases (*name) are not allowed in envctl files",
                location=Location(getattr(self, "_envctl_file", "?"), event.start_mark.line + 1),
                hint="write the value out in full",
            )
        if self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent):
            depth = getattr(self, "_envctl_depth", 0) + 1
            if depth > MAX_DEPTH:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise ConfigError(
                    f"YAML nested deeper than {MAX_DEPTH} levels",
                    location=Location(getattr(self, "_envctl_file", "?"), event.start_mark.line + 1),
                )
            self._envctl_depth = depth
            try:
                return super().compose_node(parent, index)
            finally:
                self._envctl_depth = depth - 1
        return super().compose_node(parent, index)


def _reader_location(e: yaml.YAMLError, file: str, text: str) -> Location:
    position = getattr(e, "position", None)
    if isinstance(position, int):
        return Location(file, text.count("\n", 0, position) + 1)
    return Location(file)


def load_yaml(data: bytes, file: str) -> YamlDoc:
    """Parse one YAML document of an envctl file (``environment.yaml``, ``stack.yaml``, ...)."""
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{file} is larger than {MAX_BYTES} bytes", location=Location(file))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{file} is not UTF-8 text", location=Location(file)) from e
    doc = YamlDoc(file, None)
    try:
        # the reader checks for non-printable characters already in the constructor
        loader = _NoAliasComposer(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"malformed YAML: {e}", location=_reader_location(e, file, text)) from None
    loader._envctl_file = file  # type: ignore[attr-defined]
    try:
        node = loader.get_single_node()
        if node is not None:
            doc.data = _convert(node, (), doc, _Limits(loader), 0)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(
            f"malformed YAML: {e.problem or e.context}",
            location=Location(file, line),
            hint="fix the YAML syntax (indentation, quotes, colons)",
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"malformed YAML: {e}", location=_reader_location(e, file, text)) from None
    except RecursionError:
        raise ConfigError("YAML nested too deeply", location=Location(file)) from None
    finally:
        loader.dispose()
    return doc
