"""Safe YAML reading (pure: text in, values out), keeping the line of every value.

Aliases are refused (an alias bomb cannot expand), nesting is bounded and files are size-limited,
so a hostile repository gets a ``ConfigError`` within milliseconds, never a hang or a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import yaml

from envctl.core.errors import ConfigError, Location
from envctl.core.refs import quoted

MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 100_000
# Kubernetes manifests (CRD schemas nest deeply) may go deeper than envctl's own files, still far
# below Python's recursion limit.
MAX_MANIFEST_DEPTH = 128

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
    def __init__(
        self, loader: yaml.SafeLoader, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES
    ) -> None:
        self.loader = loader
        self.count = 0
        self.max_depth = max_depth
        self.max_nodes = max_nodes


def _convert(node: yaml.Node, path: Path_, doc: YamlDoc, limits: _Limits, depth: int) -> Any:
    limits.count += 1
    line = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        line += 1  # a block scalar's text starts on the line after its indicator
    if depth > limits.max_depth:
        raise ConfigError(
            f"YAML nested deeper than {limits.max_depth} levels", location=Location(doc.file, line)
        )
    if limits.count > limits.max_nodes:
        raise ConfigError(
            f"YAML has more than {limits.max_nodes} values (the limit of one document)",
            location=Location(doc.file, line),
        )
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
            limit = getattr(self, "_envctl_max_depth", MAX_DEPTH)
            if depth > limit:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise ConfigError(
                    f"YAML nested deeper than {limit} levels",
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


@contextmanager
def _translated(file: str, text: str) -> Iterator[None]:
    """Every failure of PyYAML as a ``ConfigError`` with the file and, where known, the line."""
    try:
        yield
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


def _loader(text: str, file: str, max_depth: int) -> _NoAliasComposer:
    with _translated(file, text):
        # the reader checks for non-printable characters already in the constructor
        loader = _NoAliasComposer(text)
    loader._envctl_file = file  # type: ignore[attr-defined]
    loader._envctl_max_depth = max_depth  # type: ignore[attr-defined]
    return loader


def load_yaml(data: bytes, file: str) -> YamlDoc:
    """Parse one YAML document of an envctl file (``environment.yaml``, ``stack.yaml``, ...)."""
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{file} is larger than {MAX_BYTES} bytes", location=Location(file))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{file} is not UTF-8 text", location=Location(file)) from e
    doc = YamlDoc(file, None)
    loader = _loader(text, file, MAX_DEPTH)
    try:
        with _translated(file, text):
            node = loader.get_single_node()
            if node is not None:
                doc.data = _convert(node, (), doc, _Limits(loader), 0)
    finally:
        loader.dispose()
    return doc


def _within_limits_fast(text: str, max_depth: int, max_nodes: int) -> bool:
    """True when libyaml's event stream shows no alias and no limit crossed.

    Then the documents can be composed by libyaml (C) instead of the pure-Python composer that
    enforces the limits node by node: 5-10x faster on large manifests. Anything doubtful (an
    alias, too deep, too many values, a syntax error, no libyaml) takes the careful path, which
    raises the precise error with its line.
    """
    if not getattr(yaml, "__with_libyaml__", False):
        return False
    depth = count = 0
    try:
        for ev in yaml.parse(text, Loader=yaml.CSafeLoader):
            if isinstance(ev, yaml.AliasEvent):
                return False
            if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                count += 1
                if depth > max_depth:
                    return False
            elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
            elif isinstance(ev, yaml.ScalarEvent):
                count += 1
            elif isinstance(ev, yaml.DocumentStartEvent):
                count = 0
            if count > max_nodes:
                return False
    except yaml.YAMLError:
        return False
    return True


def load_yaml_documents(
    text: str, file: str, *, max_depth: int = MAX_MANIFEST_DEPTH, max_nodes: int = MAX_NODES
) -> list[YamlDoc]:
    """Parse every document of a multi-document YAML text (Kubernetes manifests, kustomize output).

    The limits of ``load_yaml``: aliases refused, nesting bounded by ``max_depth``, at most
    ``max_nodes`` values per document. Empty documents (``---`` alone, comments only) are skipped;
    ``doc.loc()`` is the line where a document starts. The size of ``text`` is the caller's to bound.
    """
    docs: list[YamlDoc] = []
    fast = _within_limits_fast(text, max_depth, max_nodes)
    loader: Any = yaml.CSafeLoader(text) if fast else _loader(text, file, max_depth)
    try:
        with _translated(file, text):
            while loader.check_node():
                node = loader.get_node()
                if node is None:
                    continue
                doc = YamlDoc(file, None)
                doc.data = _convert(node, (), doc, _Limits(loader, max_depth, max_nodes), 0)
                if doc.data is not None:
                    docs.append(doc)
    finally:
        loader.dispose()
    return docs
