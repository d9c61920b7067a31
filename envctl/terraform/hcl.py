"""A small, tolerant scanner for the few facts envctl needs from Terraform files.

envctl must know, before running Terraform, which variables and outputs a module declares
(to generate a root module for ``module:`` stacks), which variables are sensitive (to keep
their values out of errors), where relative module sources lead (to copy them into the
workspace and refuse ones that leave the repository), whether ``data "external"`` or
``provisioner`` blocks are used, and which providers ``terraform init`` would install.
This is not an HCL parser: it masks comments and string bodies, matches braces, and reads
top-level block headers. Terraform itself validates everything later.

Imports only the standard library.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

# A block header: ``type "label" label2 {``. HCL allows a label to be a quoted string or a bare
# identifier (``resource terraform_data x {`` is valid Terraform), so both are read.
_HEADER = re.compile(r'(?m)^[ \t]*([A-Za-z_][\w-]*)((?:[ \t]+(?:"[^"\n]*"|[A-Za-z_][\w-]*))*)[ \t]*\{')
_LABEL = re.compile(r'"([^"\n]*)"|([A-Za-z_][\w-]*)')
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


def mask(text: str, *, strings: bool = True) -> str:
    """``text`` with comments blanked and string/heredoc contents replaced by ``x``.

    Length and newlines are preserved so offsets and line numbers still match the original.
    With ``strings=False`` only comments are blanked (string contents hold expressions too).
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
            if strings:
                out[i + 1 : j] = "x" * (j - i - 1)
            i = j + 1
        elif c == "<" and (m := _HEREDOC.match(text, i)):
            end = re.compile(r"(?m)^[ \t]*" + re.escape(m.group(1)) + r"[ \t]*$").search(text, m.end())
            j = n if end is None else end.end()
            if strings:
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
        labels = tuple(q or bare for q, bare in _LABEL.findall(text[m.start(2) : m.end(2)]))
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
class Provisioner:
    """A ``provisioner`` block: it runs a command on this machine or a remote one at apply time."""

    kind: str  # local-exec, remote-exec, file, ...
    owner: str  # the block it sits in: terraform_data.x, removed, ...
    file: str
    line: int


@dataclass(frozen=True)
class ProviderRequirement:
    """A provider a module needs: from ``required_providers`` or implied by a block using it."""

    local_name: str
    source: str  # as written in required_providers, or the implied ``hashicorp/<name>``
    file: str
    line: int
    declared: bool  # in required_providers (else implied by a resource, data or provider block)

    @property
    def address(self) -> tuple[str, str, str]:
        return provider_address(self.source)

    @property
    def builtin(self) -> bool:
        host, namespace, _name = self.address
        return host == BUILTIN_HOST and namespace == "builtin"


@dataclass(frozen=True)
class FileCall:
    """A call of a Terraform function that reads the file system: ``file("...")``, ``fileset(...)``.

    ``args`` is the raw text of each argument (``path`` first; ``fileset``'s pattern second).
    """

    function: str
    args: tuple[str, ...]
    file: str
    line: int


# Every Terraform (1.x) and OpenTofu function that reads files, by path.
FILE_FUNCTIONS = (
    "file",
    "fileexists",
    "fileset",
    "filebase64",
    "filemd5",
    "filesha1",
    "filesha256",
    "filesha512",
    "filebase64sha256",
    "filebase64sha512",
    "templatefile",
)
_FILE_CALL = re.compile(r"(?<![\w.:-])(" + "|".join(FILE_FUNCTIONS) + r")\s*\(")


def _call_args(text: str, start: int) -> list[str]:
    """The top-level arguments of a call whose ``(`` ends just before ``start``.

    Follows quoted strings and ``${...}``/``%{...}`` inside them (which hold expressions, with
    quotes of their own), so ``file("${path.module}/a,b")`` is one argument.
    """
    frames: list[list[Any]] = [["code", 0]]
    parts: list[str] = []
    seg = i = start
    n = len(text)
    while i < n:
        kind = frames[-1][0]
        c = text[i]
        if kind == "str":
            if c == "\\":
                i += 2
                continue
            if c == '"' or c == "\n":
                frames.pop()
            elif text.startswith(("${", "%{"), i):
                frames.append(["code", 0])
                i += 1
            i += 1
            continue
        if c == '"':
            frames.append(["str", 0])
        elif c in "([{":
            frames[-1][1] += 1
        elif c in ")]}":
            if frames[-1][1] == 0:
                if len(frames) == 1:
                    parts.append(text[seg:i])
                    return [p.strip() for p in parts]
                frames.pop()
            else:
                frames[-1][1] -= 1
        elif c == "," and len(frames) == 1 and frames[0][1] == 0:
            parts.append(text[seg:i])
            seg = i + 1
        i += 1
    parts.append(text[seg:i])
    return [p.strip() for p in parts]


def file_calls(path: str, text: str, line_offset: int = 0) -> list[FileCall]:
    """Every file-function call in ``text`` (a ``.tf`` file, a template, or one JSON string),
    comments excluded; calls inside string interpolations and heredocs count."""
    masked = mask(text, strings=False)
    return [
        FileCall(
            m.group(1),
            tuple(_call_args(text, m.end())),
            path,
            line_offset + text.count("\n", 0, m.start()) + 1,
        )
        for m in _FILE_CALL.finditer(masked)
    ]


@dataclass(frozen=True)
class ModuleInfo:
    """What envctl needs to know about a set of ``.tf`` files (one module directory)."""

    variables: dict[str, bool]  # name -> sensitive
    variable_required: dict[str, bool]  # name -> has no default
    outputs: dict[str, bool]  # name -> sensitive
    module_sources: tuple[tuple[str, str, int], ...]  # (source, file, line)
    external_data: tuple[tuple[str, int], ...]  # (file, line) of data "external" blocks
    has_backend: bool
    provisioners: tuple[Provisioner, ...] = ()
    providers: tuple[ProviderRequirement, ...] = ()  # one per local name, in file order
    file_calls: tuple[FileCall, ...] = ()


# Files Terraform (.tf) or OpenTofu (also .tofu) load as a module's configuration.
CONFIG_SUFFIXES = (".tf", ".tf.json", ".tofu", ".tofu.json")
JSON_SUFFIXES = (".tf.json", ".tofu.json")
DEFAULT_HOST = "registry.terraform.io"
BUILTIN_HOST = "terraform.io"
# Blocks whose first label is a resource type, whose provider is its prefix (``local_file`` -> local).
_RESOURCE_KINDS = ("resource", "data", "ephemeral")


def provider_address(source: str) -> tuple[str, str, str]:
    """``(hostname, namespace, type)`` of a provider source, with Terraform's defaults, lower case.

    ``local`` -> registry.terraform.io/hashicorp/local; ``ns/x`` -> registry.terraform.io/ns/x.
    """
    parts = [p.strip().lower() for p in source.strip().split("/")]
    if len(parts) == 1:
        return DEFAULT_HOST, "hashicorp", parts[0]
    if len(parts) == 2:
        return DEFAULT_HOST, parts[0], parts[1]
    return parts[0], parts[1], "/".join(parts[2:])


def _implied_source(local_name: str) -> str:
    # Terraform: an undeclared local name means hashicorp/<name>, except the built-in ``terraform``.
    return "terraform.io/builtin/terraform" if local_name == "terraform" else f"hashicorp/{local_name}"


def _provider_of(resource_type: str, provider_attr: str | None) -> str:
    """The local provider name a resource uses: its ``provider = x.alias`` or its type prefix."""
    if provider_attr:
        name = provider_attr.strip().strip('"').split(".")[0].strip()
        if re.fullmatch(r"[A-Za-z][\w-]*", name):
            return name
    return resource_type.split("_", 1)[0]


class _Scan:
    """What ``scan`` accumulates over the files of one module."""

    def __init__(self) -> None:
        self.variables: dict[str, bool] = {}
        self.required: dict[str, bool] = {}
        self.outputs: dict[str, bool] = {}
        self.sources: list[tuple[str, str, int]] = []
        self.external: list[tuple[str, int]] = []
        self.has_backend = False
        self.provisioners: list[Provisioner] = []
        self.declared: dict[str, ProviderRequirement] = {}
        self.used: dict[str, tuple[str, int]] = {}  # local name -> first (file, line) using it
        self.file_calls: list[FileCall] = []

    def use(self, local_name: str, path: str, line: int) -> None:
        if local_name and local_name not in self.used:
            self.used[local_name] = (path, line)

    def declare(self, local_name: str, source: str | None, path: str, line: int) -> None:
        if local_name not in self.declared:
            src = source if source else _implied_source(local_name)
            self.declared[local_name] = ProviderRequirement(local_name, src, path, line, True)

    def result(self) -> ModuleInfo:
        providers = list(self.declared.values())
        for name, (path, line) in self.used.items():
            if name not in self.declared:
                providers.append(ProviderRequirement(name, _implied_source(name), path, line, False))
        return ModuleInfo(
            self.variables,
            self.required,
            self.outputs,
            tuple(self.sources),
            tuple(self.external),
            self.has_backend,
            tuple(self.provisioners),
            tuple(providers),
            tuple(self.file_calls),
        )


def _owner(b: Block) -> str:
    if b.type == "resource" and len(b.labels) >= 2:
        return ".".join(b.labels[:2])
    return ".".join((b.type, *b.labels[:2]))


def _required_providers(b: Block) -> list[tuple[str, str | None, int]]:
    """``(local name, source or None, line)`` of each entry of a ``required_providers`` block."""
    found: list[tuple[str, str | None, int]] = []
    masked = b.masked_body
    depth = 0
    heads: list[tuple[str, int, int]] = []  # (name, value start, line)
    for m in re.finditer(r"[{}\[\]()]|(?m:^[ \t]*([\w-]+)[ \t]*=(?!=))", masked):
        tok = m.group(0)
        if tok in "{[(":
            depth += 1
        elif tok in "}])":
            depth -= 1
        elif depth == 0 and m.group(1):
            heads.append((m.group(1), m.end(), b.line + b.body.count("\n", 0, m.start(1))))
    for i, (name, start, line) in enumerate(heads):
        stop = heads[i + 1][1] if i + 1 < len(heads) else len(masked)
        value_masked = masked[start:stop]
        src = re.search(r'\bsource[ \t]*=[ \t]*"', value_masked)
        source: str | None = None
        if src:
            q = start + src.end()
            close = b.body.find('"', q)
            source = b.body[q:close] if close > 0 else None
        found.append((name, source, line))
    return found


def _scan_hcl(path: str, text: str, acc: _Scan) -> None:
    acc.file_calls += file_calls(path, text)
    for b in blocks(text):
        if b.type == "variable" and b.labels:
            acc.variables[b.labels[0]] = b.flag("sensitive")
            acc.required[b.labels[0]] = b.attribute("default") is None
        elif b.type == "output" and b.labels:
            acc.outputs[b.labels[0]] = b.flag("sensitive")
        elif b.type == "module":
            src = b.string_attribute("source")
            if src is not None:
                acc.sources.append((src, path, b.line))
        elif b.type == "provider" and b.labels:
            acc.use(b.labels[0], path, b.line)
        if b.type in _RESOURCE_KINDS and b.labels:
            acc.use(_provider_of(b.labels[0], b.attribute("provider")), path, b.line)
        if b.type == "data" and b.labels[:1] == ("external",):
            acc.external.append((path, b.line))
        children = b.children()
        for c in children:
            if c.type == "provisioner":
                acc.provisioners.append(Provisioner(c.labels[0] if c.labels else "", _owner(b), path, c.line))
            elif b.type == "check" and c.type == "data" and c.labels:
                acc.use(_provider_of(c.labels[0], c.attribute("provider")), path, c.line)
                if c.labels[0] == "external":
                    acc.external.append((path, c.line))
            elif b.type == "terraform" and c.type == "required_providers":
                for name, source, line in _required_providers(c):
                    acc.declare(name, source, path, line)
        if b.type == "terraform":
            acc.has_backend = acc.has_backend or any(c.type in ("backend", "cloud") for c in children)


def scan(files: dict[str, str]) -> ModuleInfo:
    """Scan the configuration files of one module (``{path: text}``): ``.tf``, ``.tf.json`` and
    OpenTofu's ``.tofu``, ``.tofu.json`` (tofu reads those too, so they are scanned as well).

    The result is shared between callers that scan the same files (a stack is checked before
    the plan and again by it): treat it as read-only.
    """
    return _scan_cached(tuple(sorted(files.items())))


@functools.lru_cache(maxsize=256)
def _scan_cached(files: tuple[tuple[str, str], ...]) -> ModuleInfo:
    acc = _Scan()
    for path, text in files:
        if path.endswith(JSON_SUFFIXES):
            _scan_json(path, text, acc)
        elif path.endswith(CONFIG_SUFFIXES):
            _scan_hcl(path, text, acc)
    return acc.result()


def _dicts(value: Any) -> list[dict[str, Any]]:
    """JSON syntax allows a block body or a list of them wherever a block goes."""
    items = value if isinstance(value, list) else [value]
    return [i for i in items if isinstance(i, dict)]


def _scan_json(path: str, text: str, acc: _Scan) -> None:
    """The same facts from a ``.tf.json`` file (Terraform's JSON syntax)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return  # Terraform reports the syntax error with its position
    if not isinstance(doc, dict):
        return

    def line_of(key: str) -> int:
        at = text.find(json.dumps(key))
        return 1 if at < 0 else text.count("\n", 0, at) + 1

    def strings(value: Any) -> list[str]:
        if isinstance(value, str):
            return [value]
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return []

    for string in strings(doc):
        if "(" in string:
            at = text.find(json.dumps(string)[1:-1][:40])
            acc.file_calls += file_calls(path, string, 0 if at < 0 else text.count("\n", 0, at))

    def entries(kind: str) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        for item in _dicts(doc.get(kind)):
            out += [(k, v if isinstance(v, dict) else {}) for k, v in item.items()]
        return out

    for name, body in entries("variable"):
        acc.variables[name] = body.get("sensitive") is True
        acc.required[name] = "default" not in body
    for name, body in entries("output"):
        acc.outputs[name] = body.get("sensitive") is True
    for _name, body in entries("module"):
        if isinstance(body.get("source"), str):
            acc.sources.append((body["source"], path, 1))
    for name, _body in entries("provider"):
        acc.use(name, path, line_of(name))
    for kind in _RESOURCE_KINDS:
        for rtype, named in entries(kind):
            if kind == "data" and rtype == "external":
                acc.external.append((path, 1))
            for rname, bodies in named.items():
                for body in _dicts(bodies):
                    attr = body.get("provider")
                    local = _provider_of(rtype, attr if isinstance(attr, str) else None)
                    acc.use(local, path, line_of(rtype))
                    owner = f"{rtype}.{rname}" if kind == "resource" else f"{kind}.{rtype}.{rname}"
                    for prov in _dicts(body.get("provisioner")):
                        for pkind in prov:
                            acc.provisioners.append(Provisioner(pkind, owner, path, line_of(pkind)))
    for body in _dicts(doc.get("removed")):
        for prov in _dicts(body.get("provisioner")):
            for pkind in prov:
                acc.provisioners.append(Provisioner(pkind, "removed", path, line_of(pkind)))
    for tf in _dicts(doc.get("terraform")):
        acc.has_backend = acc.has_backend or "backend" in tf or "cloud" in tf
        for req in _dicts(tf.get("required_providers")):
            for name, spec in req.items():
                src = spec.get("source") if isinstance(spec, dict) else None
                acc.declare(name, src if isinstance(src, str) else None, path, line_of(name))


def is_local_source(source: str) -> bool:
    """Terraform treats only ``./`` and ``../`` prefixes as local paths."""
    return source.startswith(("./", "../")) or source in (".", "..")


def is_host_path_source(source: str) -> bool:
    """A module source that copies a directory of this machine: ``/abs``, ``~/x``, ``C:\\x``,
    ``file::...`` (go-getter's file getter). Never allowed: the module would not be the repo's."""
    return (
        source.startswith(("/", "~", "\\"))
        or source.lower().startswith("file::")
        or bool(re.match(r"^[A-Za-z]:[\\/]", source))
    )
