"""Load one environment of the repository into core values, checking every file on the way.

Reads ``envctl.yaml`` (repo defaults), ``environments/<env>/environment.yaml``, every stack
(``stacks/<name>/``: ``*.tf`` and/or ``stack.yaml``) and layer (``layers/<name>/``: manifests or
``kustomization.yaml``, and ``layer.yaml``). Collects every ``${...}`` reference with its line.
Graph-level checks (unknown nodes, cycles, undeclared inputs) live in ``envctl.core.graph``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from envctl.core.durations import parse_duration
from envctl.core.errors import ConfigError, Location, UsageError
from envctl.core.model import (
    AllowSettings,
    Environment,
    HelmChart,
    KubernetesSettings,
    LayerOutput,
    LayerSpec,
    Node,
    Ref,
    Snapshot,
    StackSpec,
    TerraformSettings,
)
from envctl.core.paths import repo_path as _clean
from envctl.core.refs import find_refs, quoted, substitute_value
from envctl.core.yamldoc import YamlDoc, load_yaml, load_yaml_documents_cached

ENV_DIR = "environments"
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")
MANIFEST_SUFFIXES = (".yaml", ".yml")
MAX_MANIFEST_BYTES = 10 << 20
APPROVAL_KINDS = ("terraform", "terraform-destroy", "kubernetes", "kubernetes-delete", "all", "none")
_TF_MODULE_SOURCE = re.compile(r'^\s*source\s*=\s*"(\.{1,2}/[^"]*)"', re.MULTILINE)

ENV_KEYS = {"name", "vars", "kubernetes", "terraform", "approval", "notifications", "drift", "allow"}
# allow: in environment.yaml; each key opens one way out of the repository snapshot
ALLOW_KEYS = ("remote_sources", "terraform_file_functions")
STACK_KEYS = {"depends_on", "inputs", "module"}
LAYER_KEYS = {
    "depends_on",
    "inputs",
    "namespace",
    "prune",
    "wait",
    "outputs",
    "force",
    "recreate",
    "conflicts",
    "allow_empty",
    "allow_secrets",
    "sensitive_allowed",
    "helm",
}
# apiVersion/Kind/[namespace/]name:.path, e.g. apps/v1/Deployment/shop/web:.spec.template.metadata.annotations
_SENSITIVE_FIELD = re.compile(r"^[^:\s/]+(/[^/:\s]+){2,4}:\.[^\s]+$")
HELM_KEYS = {"chart", "release", "version", "repo", "values", "values_files", "plain_http"}
# helm's own limit: a release name is a DNS-1123 label of at most 53 characters
_RELEASE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$")
# a pinned chart version: exact SemVer, no ranges (a range would make renders change by themselves)
_SEMVER = re.compile(r"^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


def list_environments(snapshot: Snapshot) -> list[str]:
    """Names of the environments: directories of ``environments/`` holding an ``environment.yaml``."""
    return [n for n in snapshot.listdir(ENV_DIR) if snapshot.exists(f"{ENV_DIR}/{n}/environment.yaml")]


# --- small typed accessors -------------------------------------------------------------------


def _check_keys(doc: YamlDoc, data: Mapping[str, Any], allowed: set[str], *path: str | int) -> None:
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f"unknown key {quoted(key)}",
                location=doc.loc(*path, key),
                hint=f"allowed keys here: {', '.join(sorted(allowed))}",
            )


def _want(doc: YamlDoc, value: Any, typ: type | tuple[type, ...], what: str, *path: str | int) -> Any:
    ok = isinstance(value, typ) and not (isinstance(value, bool) and typ in (int, float, (int, float)))
    if not ok:
        raise ConfigError(
            f"{'.'.join(str(p) for p in path) or 'document'} must be {what}, not {type(value).__name__}",
            location=doc.loc(*path),
        )
    return value


def _mapping(doc: YamlDoc, value: Any, *path: str | int) -> dict[str, Any]:
    if value is None:
        return {}
    return dict(_want(doc, value, dict, "a mapping", *path))


def _str_list(doc: YamlDoc, value: Any, *path: str | int) -> tuple[str, ...]:
    if value is None:
        return ()
    items = _want(doc, value, list, "a list of strings", *path)
    for i, item in enumerate(items):
        _want(doc, item, str, "a string", *path, i)
    return tuple(items)


def _load_doc(snapshot: Snapshot, path: str, *, required: bool = False) -> YamlDoc | None:
    if not snapshot.exists(path):
        if required:
            raise ConfigError(f"{path} is missing", location=Location(path))
        return None
    doc = load_yaml(snapshot.read_bytes(path), path)
    if doc.data is None:
        doc.data = {}
    _want(doc, doc.data, dict, "a mapping")
    return doc


def _refs_in(doc: YamlDoc, value: Any, *path: str | int, allow_inputs: bool = False) -> list[Ref]:
    if isinstance(value, str):
        if "${" not in value:
            return []
        loc = doc.loc(*path)
        return list(find_refs(value, doc.file, loc.line or 1, allow_inputs=allow_inputs))
    if isinstance(value, dict):
        return [r for k, v in value.items() for r in _refs_in(doc, v, *path, k, allow_inputs=allow_inputs)]
    if isinstance(value, list):
        return [r for i, v in enumerate(value) for r in _refs_in(doc, v, *path, i, allow_inputs=allow_inputs)]
    return []


# --- environment -------------------------------------------------------------------------------


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _environment_settings(env: str, docs: list[YamlDoc]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for doc in docs:
        _check_keys(doc, doc.data, ENV_KEYS)
        data = _merge(data, doc.data)
    return data


def load_environment(snapshot: Snapshot, env: str) -> Environment:
    """Load and check environment ``env``; a missing environment is a usage error listing the known ones."""
    base = f"{ENV_DIR}/{env}"
    known = list_environments(snapshot)
    if env in known and not NAME_RE.match(env):
        # listed by validate, so it must be reported as a broken repository, not a typo
        raise ConfigError(
            f"environment directory name {quoted(env)} is not valid",
            location=Location(base),
            hint="use lower-case letters, digits, - and _ (at most 63 characters)",
        )
    if not NAME_RE.match(env) or not snapshot.exists(f"{base}/environment.yaml"):
        raise UsageError(
            f"no environment {quoted(env)} in this repository",
            hint=f"known environments: {', '.join(known) or 'none'}; "
            f"an environment is a directory {ENV_DIR}/<name>/ with an environment.yaml",
        )
    repo_doc = _load_doc(snapshot, "envctl.yaml")
    env_doc = _load_doc(snapshot, f"{base}/environment.yaml", required=True)
    assert env_doc is not None
    docs = [d for d in (repo_doc, env_doc) if d is not None]
    data = _environment_settings(env, docs)

    def where(*path: str | int) -> YamlDoc:
        # the file that set this key last, for error locations
        for d in reversed(docs):
            cur: Any = d.data
            for p in path:
                if not isinstance(cur, dict) or p not in cur:
                    break
                cur = cur[p]
            else:
                return d
        return env_doc

    name = data.get("name", env)
    _want(where("name"), name, str, "a string", "name")
    if name != env:
        raise ConfigError(
            f"name {quoted(name)} does not match the directory {base}",
            location=where("name").loc("name"),
            hint=f"set name: {env}, or rename the directory",
        )
    vars_ = _mapping(where("vars"), data.get("vars"), "vars")
    for doc in docs:
        if refs := _refs_in(doc, doc.data):
            raise ConfigError(
                f"references are not allowed in {doc.file}",
                location=refs[0].location,
                hint="environment settings are plain values; use env.vars from stacks and layers",
            )

    kube: KubernetesSettings | None = None
    if "kubernetes" in data:
        k = _mapping(where("kubernetes"), data["kubernetes"], "kubernetes")
        _check_keys(where("kubernetes"), k, {"kubeconfig", "context"}, "kubernetes")
        for key in ("kubeconfig", "context"):
            if key in k and k[key] is not None:
                _want(where("kubernetes", key), k[key], str, "a string", "kubernetes", key)
        kube = KubernetesSettings(kubeconfig=k.get("kubeconfig"), context=k.get("context"))

    t = _mapping(where("terraform"), data.get("terraform"), "terraform")
    td = where("terraform")
    flags = ("allow_external_data", "allow_provisioners", "allow_registry_providers")
    _check_keys(td, t, {"engine", "binary", "backend", "plugin_dir", *flags}, "terraform")
    engine = t.get("engine", "embedded")
    if engine not in ("embedded", "cli"):
        raise ConfigError(
            f"terraform.engine must be embedded or cli, not {quoted(engine)}",
            location=td.loc("terraform", "engine"),
        )
    backend = t.get("backend", "local")
    if backend not in ("local", "kubernetes", "stack"):
        raise ConfigError(
            f"terraform.backend must be local, kubernetes or stack, not {quoted(backend)}",
            location=td.loc("terraform", "backend"),
        )
    binary = _want(td, t.get("binary", "terraform"), str, "a string", "terraform", "binary")
    plugin_dir = t.get("plugin_dir")
    if plugin_dir is not None:
        _want(td, plugin_dir, str, "a string", "terraform", "plugin_dir")
    allowed = {f: _want(td, t.get(f, False), bool, "true or false", "terraform", f) for f in flags}
    tf = TerraformSettings(engine=engine, binary=binary, backend=backend, plugin_dir=plugin_dir, **allowed)

    al = _mapping(where("allow"), data.get("allow"), "allow")
    ald = where("allow")
    _check_keys(ald, al, set(ALLOW_KEYS), "allow")
    allow = AllowSettings(
        **{k: _want(ald, al.get(k, False), bool, "true or false", "allow", k) for k in ALLOW_KEYS}
    )

    a = _mapping(where("approval"), data.get("approval"), "approval")
    ad = where("approval")
    _check_keys(ad, a, {"required_for"}, "approval")
    required = _str_list(ad, a.get("required_for", ["terraform"]), "approval", "required_for")
    for i, kind in enumerate(required):
        if kind not in APPROVAL_KINDS:
            raise ConfigError(
                f"approval.required_for: unknown kind {quoted(kind)}",
                location=ad.loc("approval", "required_for", i),
                hint=f"use one of {', '.join(APPROVAL_KINDS)}",
            )

    hooks: list[str] = []
    nd = where("notifications")
    raw_n = data.get("notifications") or []
    for i, item in enumerate(_want(nd, raw_n, list, "a list", "notifications")):
        item = _mapping(nd, item, "notifications", i)
        _check_keys(nd, item, {"webhook"}, "notifications", i)
        url = _want(nd, item.get("webhook"), str, "a URL", "notifications", i, "webhook")
        if not re.match(r"^https?://", url):
            raise ConfigError(
                "notifications: webhook must be an http(s) URL",
                location=nd.loc("notifications", i, "webhook"),
            )
        hooks.append(url)

    d = _mapping(where("drift"), data.get("drift"), "drift")
    _check_keys(where("drift"), d, {"every"}, "drift")
    every = d.get("every")
    if every is not None:
        _want(where("drift"), every, str, "a duration such as 1h", "drift", "every")
        _duration(where("drift"), every, "drift", "every")

    nodes: dict[str, Node] = {}
    known_env = Environment(name=env, path=base, vars=vars_)  # what layer.yaml settings may use
    for kind in ("stack", "layer"):
        for n in snapshot.listdir(f"{base}/{kind}s"):
            path = f"{base}/{kind}s/{n}"
            if not snapshot.is_dir(path):
                continue
            node = (
                _load_stack(snapshot, path, n)
                if kind == "stack"
                else _load_layer(snapshot, path, n, known_env)
            )
            if node is None:
                continue
            nodes[node.id] = node
            helm = node.layer.helm if node.layer is not None else None
            if helm is not None and helm.remote and not allow.remote_sources:
                raise ConfigError(
                    f"{node.id}: the remote chart {quoted(helm.chart)} is not allowed in this environment",
                    node=node.id,
                    location=helm.location,
                    hint=f"keep the chart in the repository, or set allow: {{remote_sources: true}} "
                    f"in {base}/environment.yaml",
                )
    _check_names(nodes)
    return Environment(
        name=env,
        path=base,
        vars=vars_,
        kubernetes=kube,
        terraform=tf,
        approval_required_for=required,
        notifications=tuple(hooks),
        drift_every=every,
        allow=allow,
        nodes=nodes,
    )


def _check_names(nodes: Mapping[str, Node]) -> None:
    seen: dict[str, Node] = {}
    for node in nodes.values():
        if not NAME_RE.match(node.name):
            raise ConfigError(
                f"{node.id}: name {quoted(node.name)} is not a valid node name",
                location=Location(node.path),
                hint="use lower-case letters, digits, - and _ (at most 63 characters)",
            )
        key = node.name.replace("_", "-")
        if key in seen:
            other = seen[key]
            raise ConfigError(
                f"two nodes share the name {quoted(node.name)}: {other.path} and {node.path}",
                node=node.id,
                location=Location(node.path),
                hint="give each stack and layer of an environment its own name",
            )
        seen[key] = node


def _common(doc: YamlDoc | None, node_id: str) -> tuple[tuple[str, ...], dict[str, Any], list[Ref]]:
    if doc is None:
        return (), {}, []
    depends = _str_list(doc, doc.data.get("depends_on"), "depends_on")
    inputs = _mapping(doc, doc.data.get("inputs"), "inputs")
    for k in inputs:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", k):
            raise ConfigError(
                f"input name {quoted(k)} is not valid", node=node_id, location=doc.loc("inputs", k)
            )
    refs = _refs_in(doc, inputs, "inputs")
    return depends, inputs, refs


def _load_stack(snapshot: Snapshot, path: str, name: str) -> Node | None:
    files = snapshot.listdir(path)
    tf_files = tuple(f"{path}/{f}" for f in files if f.endswith((".tf", ".tf.json")))
    cfg = f"{path}/stack.yaml"
    doc = _load_doc(snapshot, cfg)
    node_id = f"stack.{name}"
    module: str | None = None
    if doc is not None:
        _check_keys(doc, doc.data, STACK_KEYS)
        if "module" in doc.data:
            raw = _want(
                doc, doc.data["module"], str, "a repo-relative path such as modules/network", "module"
            )
            try:
                module = _clean(raw)
            except ConfigError as e:
                raise ConfigError(e.message, node=node_id, location=doc.loc("module"), hint=e.hint) from None
            if not snapshot.is_dir(module) or not any(f.endswith(".tf") for f in snapshot.listdir(module)):
                raise ConfigError(
                    f"module {quoted(raw)} is not a directory with *.tf files",
                    node=node_id,
                    location=doc.loc("module"),
                    hint="module paths are relative to the repository root, e.g. modules/network",
                )
    if not tf_files and module is None:
        if doc is None:
            return None
        raise ConfigError(
            "stack has neither *.tf files nor module: in stack.yaml",
            node=node_id,
            location=Location(cfg),
            hint="add Terraform files to the directory or set module: modules/<name>",
        )
    depends, inputs, refs = _common(doc, node_id)
    module_dirs = _module_dirs(snapshot, path, tf_files, module)
    return Node(
        id=node_id,
        kind="stack",
        name=name,
        path=path,
        depends_on=depends,
        inputs=inputs,
        refs=tuple(refs),
        config_file=cfg if doc else None,
        stack=StackSpec(module=module, tf_files=tf_files, module_dirs=module_dirs),
        depends_lines=_dep_lines(doc),
        input_lines={k: doc.loc("inputs", k) for k in inputs} if doc else {},
    )


def _module_dirs(
    snapshot: Snapshot, path: str, tf_files: tuple[str, ...], module: str | None
) -> tuple[str, ...]:
    """Repo directories of local modules the stack uses, transitively (for --changed-since)."""
    found: set[str] = set()
    todo: list[tuple[str, list[str]]] = [(path, list(tf_files))]
    if module:
        todo.append((module, [f"{module}/{f}" for f in snapshot.listdir(module) if f.endswith(".tf")]))
        found.add(module)
    while todo:
        base, files = todo.pop()
        for f in files:
            text = snapshot.read_bytes(f).decode("utf-8", "replace")
            for m in _TF_MODULE_SOURCE.finditer(text):
                try:
                    target = _clean(f"{base}/{m.group(1)}")
                except ConfigError as e:
                    line = text.count("\n", 0, m.start()) + 1
                    raise ConfigError(e.message, location=Location(f, line), hint=e.hint) from None
                if target not in found and snapshot.is_dir(target):
                    found.add(target)
                    tfs = [f"{target}/{x}" for x in snapshot.listdir(target) if x.endswith(".tf")]
                    todo.append((target, tfs))
    return tuple(sorted(found))


def _dep_lines(doc: YamlDoc | None) -> dict[str, Location]:
    if doc is None:
        return {}
    deps = doc.data.get("depends_on") or []
    return {d: doc.loc("depends_on", i) for i, d in enumerate(deps) if isinstance(d, str)}


def _duration(doc: YamlDoc, value: Any, *path: str) -> float:
    """A positive, finite number of seconds: a number, or a string such as ``5m``."""
    what = ".".join(path)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    else:
        _want(doc, value, str, "a duration such as 5m", *path)
        try:
            seconds = parse_duration(value)
        except ValueError as e:
            raise ConfigError(f"{what}: {e}", location=doc.loc(*path)) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(
            f"{what} must be a positive duration such as 5m",
            location=doc.loc(*path),
            hint="write wait: false to skip waiting" if path and path[0] == "wait" else None,
        )
    return seconds


def _manifest_refs(text: str, file: str) -> list[Ref]:
    """References in a manifest's string values (as the renderer substitutes them: keys and
    comments hold none). A manifest that does not parse is scanned as text; rendering the layer
    reports its YAML error with the line."""
    if "${" not in text:
        return []  # nothing to find: no need to parse the file to load the environment
    try:
        docs = load_yaml_documents_cached(text, file)
    except ConfigError:
        return list(find_refs(text, file, allow_inputs=True))
    return [r for doc in docs for r in _refs_in(doc, doc.data, allow_inputs=True)]


def _env_value(doc: YamlDoc, env: Environment, *path: str) -> Any:
    """A layer.yaml setting with ``${env.name}`` / ``${env.vars.K}`` resolved (``namespace:
    shop-${env.name}``); other references are refused: these settings are known before any plan."""
    value: Any = doc.data
    for p in path:
        value = value[p]

    def resolve(ref: Ref) -> Any:
        if ref.kind == "env":
            return env.name
        if ref.kind == "var":
            if ref.name not in env.vars:
                raise ConfigError(
                    f"${{{ref.text}}}: environment {env.name} has no var {ref.name!r}",
                    location=ref.location,
                    hint=f"set vars: {{{ref.name}: ...}} in {env.path}/environment.yaml",
                )
            return env.vars[ref.name]
        raise ConfigError(
            f"${{{ref.text}}} cannot be used in {'.'.join(path)}",
            location=ref.location,
            hint="only ${env.name} and ${env.vars.KEY} are known here; pass outputs as inputs: instead",
        )

    return substitute_value(value, resolve, doc.loc(*path))


def _load_layer(snapshot: Snapshot, path: str, name: str, env: Environment) -> Node | None:
    node_id = f"layer.{name}"
    cfg = f"{path}/layer.yaml"
    doc = _load_doc(snapshot, cfg)
    files = snapshot.listdir(path)
    kustomize = any(f in ("kustomization.yaml", "kustomization.yml", "Kustomization") for f in files)
    manifests = tuple(
        f"{path}/{f}"
        for f in files
        if f.endswith(MANIFEST_SUFFIXES)
        and f not in ("layer.yaml", "layer.yml")
        and not snapshot.is_dir(f"{path}/{f}")
    )
    if doc is None and not manifests:
        return None
    spec_kw: dict[str, Any] = {"kustomize": kustomize, "manifests": manifests}
    depends, inputs, refs = _common(doc, node_id)
    if doc is not None:
        data = doc.data
        _check_keys(doc, data, LAYER_KEYS)
        if "namespace" in data:
            ns = _want(doc, _env_value(doc, env, "namespace"), str, "a namespace name", "namespace")
            if not re.match(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", ns):
                raise ConfigError(
                    f"namespace {quoted(ns)} is not a valid name", node=node_id, location=doc.loc("namespace")
                )
            spec_kw["namespace"] = ns
        for flag in ("prune", "recreate", "allow_empty", "allow_secrets"):
            if flag in data:
                spec_kw[flag] = _want(doc, data[flag], bool, "true or false", flag)
        if "force" in data:
            # the old key: it meant "force conflicts and re-create"; taking conflicts is now the
            # default, so what is left of it is recreate
            force = _want(doc, data["force"], bool, "true or false", "force")
            if "recreate" in data:
                raise ConfigError(
                    "force and recreate both set: force is the deprecated name of recreate",
                    node=node_id,
                    location=doc.loc("force"),
                    hint="keep recreate only",
                )
            spec_kw["recreate"] = force
            loc = doc.loc("force")
            spec_kw["deprecations"] = (
                f"{loc}: force is deprecated: use recreate: {str(force).lower()} (conflicting fields "
                "are taken back from other managers by default; conflicts: refuse keeps the old "
                "report-and-stop)",
            )
        if "conflicts" in data:
            mode = _want(doc, data["conflicts"], str, "take or refuse", "conflicts")
            if mode not in ("take", "refuse"):
                raise ConfigError(
                    f"conflicts: {quoted(mode)} is not take or refuse",
                    node=node_id,
                    location=doc.loc("conflicts"),
                    hint="take (default: Git wins over other managers) or refuse (report and stop)",
                )
            spec_kw["conflicts"] = mode
        if "wait" in data:
            w = data["wait"]
            if isinstance(w, bool):
                spec_kw["wait"] = w
            else:
                w = _mapping(doc, w, "wait")
                _check_keys(doc, w, {"timeout"}, "wait")
                if "timeout" in w:
                    spec_kw["wait_timeout"] = _duration(doc, w["timeout"], "wait", "timeout")
        allowed_fields = _str_list(doc, data.get("sensitive_allowed"), "sensitive_allowed")
        for i, f in enumerate(allowed_fields):
            if not _SENSITIVE_FIELD.match(f):
                raise ConfigError(
                    f"sensitive_allowed: {quoted(f)} is not apiVersion/Kind/[namespace/]name:.path",
                    node=node_id,
                    location=doc.loc("sensitive_allowed", i),
                    hint="e.g. apps/v1/Deployment/shop/web:.spec.template.metadata.annotations.token",
                )
        spec_kw["sensitive_allowed"] = allowed_fields
        outs: dict[str, LayerOutput] = {}
        for oname, o in _mapping(doc, data.get("outputs"), "outputs").items():
            o = _mapping(doc, o, "outputs", oname)
            _check_keys(doc, o, {"object", "path"}, "outputs", oname)
            obj = _want(
                doc, o.get("object"), str, "apiVersion/Kind/[namespace/]name", "outputs", oname, "object"
            )
            jp = _want(doc, o.get("path"), str, "a path such as .status.x", "outputs", oname, "path")
            if len(obj.split("/")) not in (3, 4, 5) or not jp.startswith("."):
                raise ConfigError(
                    f"outputs.{oname}: object must be apiVersion/Kind/[namespace/]name "
                    "and path start with '.'",
                    node=node_id,
                    location=doc.loc("outputs", oname),
                )
            outs[oname] = LayerOutput(object=obj, path=jp)
        spec_kw["outputs"] = outs
        if "helm" in data:
            if kustomize:
                raise ConfigError(
                    "a layer is either a Helm chart (helm: in layer.yaml) or a kustomization, not both",
                    node=node_id,
                    location=doc.loc("helm"),
                )
            helm, helm_refs = _load_helm(snapshot, doc, path, node_id, inputs)
            refs.extend(helm_refs)
            stray = [m for m in manifests if m not in helm.values_files and not _inside(m, helm.chart, helm)]
            if stray:
                raise ConfigError(
                    f"{stray[0]} is neither a values file nor part of the chart: a chart layer applies "
                    "only what the chart renders",
                    node=node_id,
                    location=Location(stray[0]),
                    hint="move it to another layer, or list it under helm.values_files in layer.yaml",
                )
            manifests = ()
            spec_kw.update(
                helm=helm,
                manifests=(),
                sources=tuple(dict.fromkeys([*([] if helm.remote else [helm.chart]), *helm.values_files])),
            )
    # references inside the manifests: inputs.* must be declared, others create edges
    for mf in manifests:
        raw = snapshot.read_bytes(mf)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ConfigError(
                f"manifest is larger than {MAX_MANIFEST_BYTES >> 20} MiB", node=node_id, location=Location(mf)
            )
        text = raw.decode("utf-8", "replace")
        for ref in _manifest_refs(text, mf):
            if ref.kind == "input":
                if ref.name not in inputs:
                    raise ConfigError(
                        f"manifest uses ${{inputs.{ref.name}}} "
                        f"but the layer does not declare input {ref.name!r}",
                        node=node_id,
                        location=ref.location,
                        hint=f"add '{ref.name}:' under inputs: in {cfg}",
                    )
            else:
                refs.append(ref)
    return Node(
        id=node_id,
        kind="layer",
        name=name,
        path=path,
        depends_on=depends,
        inputs=inputs,
        refs=tuple(refs),
        config_file=cfg if doc else None,
        layer=LayerSpec(**spec_kw),
        depends_lines=_dep_lines(doc),
        input_lines={k: doc.loc("inputs", k) for k in inputs} if doc else {},
    )


# --- Helm charts ---------------------------------------------------------------------------------


def _inside(path: str, directory: str, helm: HelmChart) -> bool:
    return not helm.remote and (directory == "" or path.startswith(f"{directory}/"))


def _repo_path(doc: YamlDoc, layer_dir: str, raw: str, node_id: str, *path: str | int) -> str:
    """A path written in layer.yaml, relative to the layer directory, as a repo-relative path.

    Absolute paths, ``..`` escapes from the repository and paths into ``.git/`` or ``.envctl/``
    are refused here; symlinks leading out are refused when the snapshot reads the files.
    """
    try:
        if raw.startswith("/") or raw.startswith("~"):
            raise ConfigError(
                f"path {quoted(raw)} is absolute", hint="use a path relative to the layer directory"
            )
        clean = _clean(f"{layer_dir}/{raw}")
        if any(part in (".git", ".envctl") for part in clean.split("/")):
            raise ConfigError(
                f"path {quoted(raw)} leads into {'.git' if '.git' in clean.split('/') else '.envctl'}/",
                hint="charts and values files are ordinary files of the repository",
            )
    except ConfigError as e:
        raise ConfigError(e.message, node=node_id, location=doc.loc(*path), hint=e.hint) from None
    return clean


def _value_refs(
    doc: YamlDoc, value: Any, inputs: Mapping[str, Any], node_id: str, file: str, *path: str | int
) -> list[Ref]:
    """References in chart values (layer.yaml ``helm.values``): ``${inputs.X}`` must be declared."""
    if isinstance(value, dict):
        return [r for k, v in value.items() for r in _value_refs(doc, v, inputs, node_id, file, *path, k)]
    if isinstance(value, list):
        return [r for i, v in enumerate(value) for r in _value_refs(doc, v, inputs, node_id, file, *path, i)]
    if not isinstance(value, str):
        return []
    refs = list(find_refs(value, file, doc.loc(*path).line or 1, allow_inputs=True))
    return _declared(refs, inputs, node_id, file)


def _declared(refs: list[Ref], inputs: Mapping[str, Any], node_id: str, cfg: str) -> list[Ref]:
    """The references that are not ``${inputs.X}`` (those create edges); undeclared inputs fail."""
    out = []
    for ref in refs:
        if ref.kind != "input":
            out.append(ref)
        elif ref.name not in inputs:
            raise ConfigError(
                f"${{inputs.{ref.name}}} is used but the layer does not declare input {ref.name!r}",
                node=node_id,
                location=ref.location,
                hint=f"add '{ref.name}:' under inputs: in {cfg}",
            )
    return out


def _load_helm(
    snapshot: Snapshot, doc: YamlDoc, layer_dir: str, node_id: str, inputs: Mapping[str, Any]
) -> tuple[HelmChart, list[Ref]]:
    """``helm:`` of a layer.yaml: a chart directory of the repository, or a pinned remote chart."""
    h = _mapping(doc, doc.data["helm"], "helm")
    _check_keys(doc, h, HELM_KEYS, "helm")
    where = doc.loc("helm")
    chart_raw = _want(doc, h.get("chart"), str, "a chart directory or a remote chart", "helm", "chart")
    version = h.get("version")
    repo = h.get("repo")
    if version is not None:
        version = str(_want(doc, version, str, "a chart version such as 1.2.3 (quoted)", "helm", "version"))
    if repo is not None:
        repo = _want(doc, repo, str, "a chart repository URL", "helm", "repo")
        if not re.match(r"^https?://[^\s]+$", repo):
            raise ConfigError(
                "helm.repo must be an http(s) URL of a chart repository",
                node=node_id,
                location=doc.loc("helm", "repo"),
                hint="for a chart in an OCI registry, write chart: oci://HOST/PATH and no repo:",
            )
    oci = chart_raw.startswith("oci://")
    remote = oci or repo is not None
    if not remote and "://" in chart_raw:
        raise ConfigError(
            f"helm.chart {quoted(chart_raw)} is neither a directory of the repository nor an oci:// chart",
            node=node_id,
            location=doc.loc("helm", "chart"),
            hint="for a chart repository, write repo: URL and chart: NAME",
        )
    plain_http = _want(doc, h.get("plain_http", False), bool, "true or false", "helm", "plain_http")
    if remote:
        if version is None or not _SEMVER.match(version):
            raise ConfigError(
                f"the remote chart {quoted(chart_raw)} needs an exact version (helm.version: 1.2.3)"
                + ("" if version is None else f", not {quoted(version)}"),
                node=node_id,
                location=doc.loc("helm", "version") if version is not None else doc.loc("helm", "chart"),
                hint="pin the chart so that a render never changes by itself",
            )
        if repo is not None and not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", chart_raw):
            raise ConfigError(
                f"helm.chart {quoted(chart_raw)} must be a chart name of the repository {repo}",
                node=node_id,
                location=doc.loc("helm", "chart"),
            )
        chart = chart_raw
    else:
        for key, what in (("version", "version"), ("plain_http", "plain_http")):
            if key in h:
                raise ConfigError(
                    f"helm.{what} is for remote charts; a chart of the repository is used as it is in Git",
                    node=node_id,
                    location=doc.loc("helm", key),
                )
        chart = _repo_path(doc, layer_dir, chart_raw, node_id, "helm", "chart")
        if not snapshot.is_dir(chart) or not snapshot.exists(f"{chart}/Chart.yaml"):
            raise ConfigError(
                f"helm.chart {quoted(chart_raw)} is not a chart directory ({chart}/Chart.yaml is missing)",
                node=node_id,
                location=doc.loc("helm", "chart"),
                hint="chart paths are relative to the layer directory, e.g. chart: chart or "
                "chart: ../../../../charts/web",
            )
    release = h.get("release", doc.file.split("/")[-2].replace("_", "-"))
    _want(doc, release, str, "a release name", "helm", "release")
    if not _RELEASE.match(release):
        raise ConfigError(
            f"helm.release {quoted(release)} is not a valid release name",
            node=node_id,
            location=doc.loc("helm", "release") if "release" in h else where,
            hint="lower-case letters, digits and -, at most 53 characters (set helm.release:)",
        )
    values = _mapping(doc, h.get("values"), "helm", "values")
    value_refs = _value_refs(doc, values, inputs, node_id, doc.file, "helm", "values")
    refs = list(value_refs)
    files: list[str] = []
    for i, raw in enumerate(_str_list(doc, h.get("values_files"), "helm", "values_files")):
        vf = _repo_path(doc, layer_dir, raw, node_id, "helm", "values_files", i)
        if not snapshot.exists(vf) or snapshot.is_dir(vf):
            raise ConfigError(
                f"values file {quoted(raw)} does not exist ({vf})",
                node=node_id,
                location=doc.loc("helm", "values_files", i),
                hint="values files are relative to the layer directory",
            )
        raw_bytes = snapshot.read_bytes(vf)
        if len(raw_bytes) > MAX_MANIFEST_BYTES:
            raise ConfigError(
                f"values file is larger than {MAX_MANIFEST_BYTES >> 20} MiB",
                node=node_id,
                location=Location(vf),
            )
        text = raw_bytes.decode("utf-8", "replace")
        refs.extend(_declared(list(find_refs(text, vf, allow_inputs=True)), inputs, node_id, doc.file))
        files.append(vf)
    spec = HelmChart(
        chart=chart,
        release=release,
        values=values,
        values_files=tuple(files),
        version=version if remote else None,
        repo=repo,
        plain_http=plain_http,
        value_refs=tuple(value_refs),
        location=doc.loc("helm", "chart"),
    )
    return spec, refs
