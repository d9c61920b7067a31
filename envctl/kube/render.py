"""Render a layer to Kubernetes objects, offline: read manifests, substitute inputs, run kustomize
(``envctl.kube.kustomize``) or (``envctl.kube.helm``) ``helm template``.

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
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envctl.core.bundle import canonical
from envctl.core.changes import UNKNOWN
from envctl.core.errors import ConfigError, Location
from envctl.core.model import Environment, Node, Ref, Snapshot
from envctl.core.refs import HINT, Budget, Resolver, substitute_values
from envctl.core.secrets import KNOWN, encoded_forms, secret_texts
from envctl.core.yamlcache import load_yaml_documents_cached
from envctl.core.yamldoc import YamlDoc, load_yaml_documents
from envctl.kube.encrypted import is_from_sops, sops_manifests, strip_sops_marker
from envctl.kube.helm import apply_hook_policy, render_chart, sources_of
from envctl.kube.kustomize import (
    KUSTOMIZATION_FILES,
    MANIFEST_SUFFIXES,
    MAX_LAYER_BYTES,
    decode_utf8,
    run_kustomize,
)
from envctl.kube.objects import (
    ANNOTATION_INVENTORY,
    CLUSTER_SCOPED_KINDS,
    LABEL_ENV,
    LABEL_LAYER,
    ObjRef,
    Rendered,
    is_secret,
    secret_values,
)
from envctl.sops import is_encrypted

_NOT_MANIFESTS = frozenset(
    {"layer.yaml", "layer.yml", "kustomization.yaml", "kustomization.yml", "Kustomization"}
)
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


def check_size(obj: Mapping[str, Any], where: Location, node: str | None = None) -> bytes:
    """Refuse an object the API server would refuse: over ``MAX_OBJECT_BYTES`` (1.5 MiB) of compact
    JSON; the object's canonical JSON (as long as the compact JSON envctl sends: only the key
    order differs), which the render's digest is made of."""
    form = canonical(obj)
    size = len(form)
    if size > MAX_OBJECT_BYTES:
        raise ConfigError(
            f"{ObjRef.of(obj)} is too large: {size} bytes ({size / (1 << 20):.2f} MiB) rendered, "
            f"over the API server's limit of {MAX_OBJECT_BYTES} bytes (1.5 MiB) per object",
            node=node,
            location=where,
            hint="split the data over several objects, or keep large data out of the cluster",
        )
    return form


def _check_shape(obj: dict[str, Any], where: Location) -> None:
    for key in ("apiVersion", "kind"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise ConfigError(f"object has no {key}", location=where)
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise ConfigError(f"{obj['apiVersion']} {obj['kind']} has no metadata.name", location=where)


def _objects_with_lines(text: str, file: str) -> list[tuple[dict[str, Any], int]]:
    return [(m.obj, m.location.line or 1) for m in parse_manifests(text, file)]


def manifest_files(snapshot: Snapshot, node: Node) -> list[str]:
    """The plain manifests of a layer: ``layer.manifests`` if the loader listed them, else every yaml file."""
    if node.layer is not None and node.layer.manifests:
        return list(node.layer.manifests)
    return [
        f
        for f in snapshot.walk_files(node.path)
        if f.endswith(MANIFEST_SUFFIXES) and Path(f).name not in _NOT_MANIFESTS
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
) -> Rendered:
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
            probe, probe_where = Rendered.of([], []), {}
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
) -> tuple[Rendered, dict[ObjRef, Location]]:
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
        rendered = run_kustomize(env, snapshot, node, resolve, budget)
        parsed = [(m.obj, Location(kfile)) for m in parse_manifests(rendered, kfile)]
    else:
        for file in manifest_files(snapshot, node):
            text = decode_utf8(snapshot.read_bytes(file), file)
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
    forms: list[bytes] = []
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
        form = check_size(obj, where, node.id)
        forms.append(form)
        total += len(form)
        if total > MAX_LAYER_BYTES:
            raise ConfigError(
                f"the layer renders more than {MAX_LAYER_BYTES >> 20} MiB of objects",
                node=node.id,
                location=where,
                hint="split the layer",
            )
        objects.append(obj)
    return Rendered.of(objects, forms), seen


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
