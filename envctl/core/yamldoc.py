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

from envctl.core import kubescalars
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
    """A parsed document: ``data`` and the 1-based line of each value, keyed by its path.

    ``texts``: paths of string values holding ``${`` that were written quoted, as a block or with
    an explicit tag, i.e. declared strings (substitution inserts a whole reference there as text).
    """

    file: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    texts: set[Path_] = field(default_factory=set)
    has_refs: bool = False  # some string value holds ``${`` (else substitution has nothing to do)

    def loc(self, *path: str | int) -> Location:
        """The location of the value at ``path``, or of its closest parent that has one."""
        p: Path_ = tuple(path)
        while p and p not in self.lines:
            p = p[:-1]
        return Location(self.file, self.lines.get(p, 1))

    def at(self, path: Path_) -> Location:
        """:meth:`loc` of a path given as one tuple."""
        return self.loc(*path)


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


class _Frame:
    """A mapping or sequence being built from the event stream."""

    __slots__ = ("explicit", "key", "key_line", "merge", "out", "path")

    def __init__(self, out: dict[str, Any] | list[Any], path: Path_) -> None:
        self.out = out
        self.path = path
        self.key: str | None = None  # a mapping's key waiting for its value
        self.key_line = 0
        self.merge = False  # the waiting key is a merge key (<<)
        self.explicit: set[str] = set()  # keys set so far, written or merged


def _merge_into(frame: _Frame, merged: Any, where: Location, zeros: dict[int, tuple[object, str]]) -> None:
    """go-yaml v2's merge key: a mapping, or a list of mappings, merged into ``frame``'s mapping.

    A key set twice (by a merge and explicitly, or by two merges) is refused like any duplicate:
    kubectl's answer then depends on the order of the keys and, when their YAML types differ
    (``y`` and ``'true'``), on Go's random map order. ``zeros`` names the float key 0 or -0 of
    each mapping that has one (by ``id``): one Go key with a 0 or -0 of the target.
    """
    target, seen = frame.out, frame.explicit
    assert isinstance(target, dict)
    sources = [merged] if isinstance(merged, dict) else merged if isinstance(merged, list) else None
    if sources is None or not all(isinstance(m, dict) for m in sources):
        raise ConfigError(
            "map merge requires map or sequence of maps as the value", location=where, hint="see << in YAML"
        )
    for m in sources:
        for key, value in m.items():
            if key in seen:
                raise ConfigError(
                    f"duplicate key {quoted(key)} (set by << and again)",
                    location=where,
                    hint="set each key of a mapping once",
                )
            seen.add(key)
            target[key] = value
        zero = zeros.get(id(m))
        if zero is not None and zero[0] is m:
            mine = zeros.get(id(target))
            if mine is not None and mine[0] is target:
                raise _same_zero(zero[1], mine[1], where)
            zeros[id(target)] = (target, zero[1])


def _same_zero(name: str, earlier: str, where: Location) -> ConfigError:
    return ConfigError(
        f"duplicate key {quoted(name)} (the same key as {quoted(earlier)} to kubectl: 0.0 == -0.0)",
        location=where,
        hint="set each key of a mapping once",
    )


def load_yaml_documents(
    text: str, file: str, *, max_depth: int = MAX_MANIFEST_DEPTH, max_nodes: int = MAX_NODES
) -> list[YamlDoc]:
    """Every document of a multi-document YAML text, with each scalar meaning what kubectl reads.

    The reader of Kubernetes manifests and kustomize output: scalars resolve as sigs.k8s.io/yaml
    resolves them (``envctl.core.kubescalars``), non-string keys become strings, ``<<`` merges.
    Built in one pass over libyaml's events, so the limits hold while parsing: an alias is refused,
    nesting is bounded by ``max_depth`` and a document by ``max_nodes`` values, each at the line
    where it is crossed, before anything larger is built. Duplicate keys are refused (kubectl keeps
    the last one silently): keys that become the same JSON key (``yes`` and ``'true'``), and the
    float keys 0 and -0 (one Go key, written as the later spelling). A NaN or infinite value is
    refused at the end of its document, so a later equal key is refused as the duplicate it is
    (kubectl would have replaced the value before refusing it). Empty documents are skipped;
    ``doc.loc()`` is the line where a document starts. The size of ``text`` is the caller's to bound.
    """
    loader: Any = (
        yaml.CSafeLoader(text) if getattr(yaml, "__with_libyaml__", False) else _loader(text, file, max_depth)
    )
    loader._envctl_text = text
    docs: list[YamlDoc] = []
    try:
        with _translated(file, text):
            _build(loader, file, max_depth, max_nodes, docs)
    finally:
        loader.dispose()
    return docs


def _flow_follows(loader: Any, ev: Any) -> bool:
    """Whether a flow indicator follows a scalar's end at once (go-yaml reads it into the tag)."""
    text = getattr(loader, "_envctl_text", None)
    index = getattr(ev.end_mark, "index", None)
    return text is not None and index is not None and text[index : index + 1] in (",", "]", "}")


def _content_after_separator(loader: Any, ev: Any) -> bool:
    """Whether ``---`` is followed by more than a comment on its line (kubectl splits documents on
    ``---`` lines and refuses that)."""
    text = getattr(loader, "_envctl_text", None)
    index = getattr(ev.end_mark, "index", None)
    if text is None or index is None:
        return False
    end = text.find("\n", index)
    rest = text[index : end if end >= 0 else len(text)].strip()
    return bool(rest) and not rest.startswith("#")


def _build(loader: Any, file: str, max_depth: int, max_nodes: int, docs: list[YamlDoc]) -> None:
    resolve, as_value, as_key = kubescalars.resolve, kubescalars.value, kubescalars.key
    stack: list[_Frame] = []
    doc = YamlDoc(file, None)
    count = 0
    # Keys repeat (a CRD schema says ``type``, ``description`` and ``properties`` thousands of
    # times): each distinct key scalar is resolved once per text.
    known_keys: dict[tuple[str, str | None, bool], str] = {}
    # mappings holding a float key 0 or -0, with its name (the mapping kept alive: ids stay unique)
    zeros: dict[int, tuple[object, str]] = {}
    non_finite: ConfigError | None = None  # the first NaN or infinite value of the document

    def fail(message: str, line: int, hint: str | None = None) -> ConfigError:
        return ConfigError(message, location=Location(file, line), hint=hint)

    def place(value: Any, line: int, text: bool = False) -> None:
        path: Path_
        if not stack:
            doc.data, path = value, ()
        else:
            top = stack[-1]
            if isinstance(top.out, list):
                path = (*top.path, len(top.out))
                top.out.append(value)
            else:
                assert top.key is not None
                path = (*top.path, top.key)
                if top.merge:
                    _merge_into(top, value, Location(file, top.key_line), zeros)
                else:
                    top.out[top.key] = value
                top.key = None
        doc.lines[path] = line
        if text:
            doc.texts.add(path)

    while True:
        ev = loader.get_event()
        cls = type(ev)
        if cls is yaml.ScalarEvent or cls is yaml.MappingStartEvent or cls is yaml.SequenceStartEvent:
            count += 1
            line = ev.start_mark.line + 1
            if count > max_nodes:
                raise fail(f"YAML has more than {max_nodes} values (the limit of one document)", line)
            top = stack[-1] if stack else None
            wants_key = top is not None and isinstance(top.out, dict) and top.key is None
            if cls is yaml.ScalarEvent:
                tag = ev.tag
                plain = ev.implicit[0]
                if tag is not None and not ev.value and not ev.style and _flow_follows(loader, ev):
                    raise fail(
                        f"a tag ({tag}) directly followed by ',', ']' or '}}' reads differently in kubectl",
                        line,
                        "write a value after the tag, or drop the tag",
                    )
                if ev.style in ("|", ">"):
                    line += 1  # a block scalar's text starts on the line after its indicator
                try:
                    if wants_key:
                        assert top is not None
                        top.merge = ev.value == "<<" and ((tag is None and plain) or tag == kubescalars.MERGE)
                        memo = (ev.value, tag, plain)
                        name = "<<" if top.merge else known_keys.get(memo)
                        if name is None:
                            rtag, raw = resolve(ev.value, tag, plain)
                            name = as_key(rtag, raw)
                            if not kubescalars.is_float_zero(rtag, raw):
                                known_keys[memo] = name  # a float 0 or -0 is checked here, each time
                            elif name not in top.explicit:
                                zero = zeros.get(id(top.out))
                                if zero is not None and zero[0] is top.out:
                                    raise _same_zero(name, zero[1], Location(file, line))
                                zeros[id(top.out)] = (top.out, name)
                        if not top.merge:
                            if name in top.explicit:
                                raise fail(f"duplicate key {quoted(name)}", line)
                            top.explicit.add(name)
                        top.key, top.key_line = name, line
                        continue
                    if tag is None and not plain:  # quoted or block: a string as written
                        value = ev.value
                    else:
                        value = as_value(*resolve(ev.value, tag, plain))
                    ref = isinstance(value, str) and "${" in value
                    doc.has_refs = doc.has_refs or ref
                    place(value, line, ref and not plain)
                except kubescalars.NonFinite as e:
                    if non_finite is None:
                        non_finite = fail(
                            f"value {quoted(ev.value, 40)}: {e}", line, "quote the value to keep it a string"
                        )
                    place(None, line)
                except ValueError as e:
                    raise fail(
                        f"{'key' if wants_key else 'value'} {quoted(ev.value, 40)}: {e}",
                        line,
                        "quote the value to keep it a string",
                    ) from None
                continue
            if wants_key:
                raise fail("mapping keys must be scalars (kubectl: invalid map key)", line)
            if len(stack) >= max_depth:
                raise fail(f"YAML nested deeper than {max_depth} levels", line)
            if top is None:
                path: Path_ = ()
            elif isinstance(top.out, list):
                path = (*top.path, len(top.out))
            elif top.merge:
                path = top.path  # merged values belong to the mapping that merges them
            else:
                path = (*top.path, top.key or "")
            if top is None or not top.merge:
                doc.lines[path] = line
            stack.append(_Frame({} if cls is yaml.MappingStartEvent else [], path))
        elif cls is yaml.MappingEndEvent or cls is yaml.SequenceEndEvent:
            frame = stack.pop()
            place(frame.out, doc.lines.get(frame.path, 1))
        elif cls is yaml.AliasEvent:
            raise fail(
                "YAML aliases (*name) are not allowed in envctl files",
                ev.start_mark.line + 1,
                "write the value out in full",
            )
        elif cls is yaml.DocumentStartEvent:
            doc, count, non_finite = YamlDoc(file, None), 0, None
            if ev.explicit and _content_after_separator(loader, ev):
                raise fail(
                    "content after --- on the same line (kubectl: invalid Yaml document separator)",
                    ev.start_mark.line + 1,
                    "start the document on the next line",
                )
        elif cls is yaml.DocumentEndEvent:
            if non_finite is not None:
                raise non_finite
            if doc.data is not None:
                docs.append(doc)
        elif cls is yaml.StreamEndEvent:
            return

