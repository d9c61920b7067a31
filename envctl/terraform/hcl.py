"""A small, tolerant scanner for the few facts envctl needs from Terraform files.

envctl must know, before running Terraform, which variables and outputs a module declares
(to generate a root module for ``module:`` stacks), which variables are sensitive (to keep
their values out of errors), where relative module sources lead (to copy them into the
workspace and refuse ones that leave the repository) and whether ``data "external"`` is used.
This is not an HCL parser: it masks comments and string bodies, matches braces, and reads
top-level block headers. Terraform itself validates everything later.

Imports only the standard library.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_HEADER = re.compile(r'(?m)^[ \t]*([A-Za-z_][\w-]*)((?:[ \t]+"[^"\n]*")*)[ \t]*\{')
_LABEL = re.compile(r'"([^"\n]*)"')
_HEREDOC = re.compile(r"<<-?[ \t]*([A-Za-z_]\w*)[ \t]*\n")


@dataclass(frozen=True)
class Block:
    """One block: ``type "label" ... { body }``; ``line`` is 1-based, ``body`` is the original text."""

    type: str
    labels: tuple[str, ...]
    body: str
    line: int
    masked_body: str

    def attribute(self, name: str) -> str | None:
        """The raw expression text of a top-level ``name = ...`` attribute of this block, if any."""
        depth = 0
        for m in re.finditer(r"[{}\[\]()]|(?m:^[ \t]*(\w+)[ \t]*=(?!=))", self.masked_body):
            tok = m.group(0)
            if tok in "{[(":
                depth += 1
            elif tok in "}])":
                depth -= 1
            elif depth == 0 and m.group(1) == name:
                end = self.masked_body.find("\n", m.end())
                end = len(self.body) if end < 0 else end
                return self.body[m.end() : end].strip()
        return None

    def string_attribute(self, name: str) -> str | None:
        raw = self.attribute(name)
        if raw is None:
            return None
        m = re.fullmatch(r'"([^"$]*)"', raw)
        return m.group(1) if m else None

    def flag(self, name: str) -> bool:
        raw = self.attribute(name)
        return raw is not None and raw.strip() == "true"

    def children(self) -> list[Block]:
        """Blocks nested directly inside this one (e.g. ``backend`` inside ``terraform``)."""
        return _blocks(self.body, self.masked_body, self.line - 1)


def mask(text: str) -> str:
    """``text`` with comments blanked and string/heredoc contents replaced by ``x``.

    Length and newlines are preserved so offsets and line numbers still match the original.
    """
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#" or text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out[i:j] = " " * (j - i)
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out[i:j] = [ch if ch == "\n" else " " for ch in text[i:j]]
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"' and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j, n)
            out[i + 1 : j] = "x" * (j - i - 1)
            i = j + 1
        elif c == "<" and (m := _HEREDOC.match(text, i)):
            end = re.compile(r"(?m)^[ \t]*" + re.escape(m.group(1)) + r"[ \t]*$").search(text, m.end())
            j = n if end is None else end.end()
            out[m.end() : j] = [ch if ch == "\n" else "x" for ch in text[m.end() : j]]
            i = j
        else:
            i += 1
    return "".join(out)


def _blocks(text: str, masked: str, line_offset: int = 0) -> list[Block]:
    found: list[Block] = []
    pos = 0
    depth_at = 0
    while True:
        m = _HEADER.search(masked, pos)
        if m is None:
            return found
        # Only headers at nesting depth 0 of this text count.
        depth_at += _depth(masked[pos : m.start()])
        if depth_at != 0:
            pos = m.end()
            depth_at += 1
            continue
        open_at = m.end() - 1
        close_at = _match_brace(masked, open_at)
        labels = tuple(_LABEL.findall(text[m.start(2) : m.end(2)]))
        found.append(
            Block(
                type=m.group(1),
                labels=labels,
                body=text[open_at + 1 : close_at],
                line=line_offset + text.count("\n", 0, m.start(1)) + 1,
                masked_body=masked[open_at + 1 : close_at],
            )
        )
        pos = close_at + 1


def _depth(masked: str) -> int:
    return sum(1 for c in masked if c in "{[(") - sum(1 for c in masked if c in "}])")


def _match_brace(masked: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(masked)):
        c = masked[i]
        if c in "{[(":
            depth += 1
        elif c in "}])":
            depth -= 1
            if depth == 0:
                return i
    return len(masked)


def blocks(text: str) -> list[Block]:
    """Top-level blocks of one ``.tf`` file."""
    return _blocks(text, mask(text))


@dataclass(frozen=True)
class ModuleInfo:
    """What envctl needs to know about a set of ``.tf`` files (one module directory)."""

    variables: dict[str, bool]  # name -> sensitive
    variable_required: dict[str, bool]  # name -> has no default
    outputs: dict[str, bool]  # name -> sensitive
    module_sources: tuple[tuple[str, str, int], ...]  # (source, file, line)
    external_data: tuple[tuple[str, int], ...]  # (file, line) of data "external" blocks
    has_backend: bool


def scan(files: dict[str, str]) -> ModuleInfo:
    """Scan the ``.tf`` files of one module (``{path: text}``)."""
    variables: dict[str, bool] = {}
    required: dict[str, bool] = {}
    outputs: dict[str, bool] = {}
    sources: list[tuple[str, str, int]] = []
    external: list[tuple[str, int]] = []
    has_backend = False
    for path, text in sorted(files.items()):
        if path.endswith(".tf.json"):
            has_backend = (
                _scan_json(path, text, variables, required, outputs, sources, external) or has_backend
            )
            continue
        if not path.endswith(".tf"):
            continue
        for b in blocks(text):
            if b.type == "variable" and b.labels:
                variables[b.labels[0]] = b.flag("sensitive")
                required[b.labels[0]] = b.attribute("default") is None
            elif b.type == "output" and b.labels:
                outputs[b.labels[0]] = b.flag("sensitive")
            elif b.type == "module":
                src = b.string_attribute("source")
                if src is not None:
                    sources.append((src, path, b.line))
            elif b.type == "data" and b.labels[:1] == ("external",):
                external.append((path, b.line))
            elif b.type == "terraform":
                has_backend = has_backend or any(c.type in ("backend", "cloud") for c in b.children())
    return ModuleInfo(variables, required, outputs, tuple(sources), tuple(external), has_backend)


def _scan_json(
    path: str,
    text: str,
    variables: dict[str, bool],
    required: dict[str, bool],
    outputs: dict[str, bool],
    sources: list[tuple[str, str, int]],
    external: list[tuple[str, int]],
) -> bool:
    """The same facts from a ``.tf.json`` file (Terraform's JSON syntax); returns has_backend."""
    try:
        doc = json.loads(text)
    except ValueError:
        return False  # Terraform reports the syntax error with its position
    if not isinstance(doc, dict):
        return False

    def entries(kind: str) -> list[tuple[str, dict[str, Any]]]:
        value = doc.get(kind)
        items = value if isinstance(value, list) else [value]
        out: list[tuple[str, dict[str, Any]]] = []
        for item in items:
            if isinstance(item, dict):
                out += [(k, v if isinstance(v, dict) else {}) for k, v in item.items()]
        return out

    for name, body in entries("variable"):
        variables[name] = body.get("sensitive") is True
        required[name] = "default" not in body
    for name, body in entries("output"):
        outputs[name] = body.get("sensitive") is True
    for _name, body in entries("module"):
        if isinstance(body.get("source"), str):
            sources.append((body["source"], path, 1))
    for kind, _body in entries("data"):
        if kind == "external":
            external.append((path, 1))
    tf = doc.get("terraform")
    return any(
        isinstance(t, dict) and ("backend" in t or "cloud" in t)
        for t in (tf if isinstance(tf, list) else [tf])
    )


def is_local_source(source: str) -> bool:
    """Terraform treats only ``./`` and ``../`` prefixes as local paths."""
    return source.startswith(("./", "../")) or source in (".", "..")
