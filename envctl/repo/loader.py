"""Load one environment of the repository into core values, checking every file on the way.

Reads ``envctl.yaml`` (repo defaults), ``environments/<env>/environment.yaml``, every stack
(``stacks/<name>/``: ``*.tf`` and/or ``stack.yaml``) and layer (``layers/<name>/``: manifests or
``kustomization.yaml``, and ``layer.yaml``). Collects every ``${...}`` reference with its line.
Graph-level checks (unknown nodes, cycles, undeclared inputs) live in ``envctl.core.graph``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from envctl.core.errors import ConfigError, Location, UsageError
from envctl.core.model import (
    AllowSettings,
    Environment,
    KubernetesSettings,
    Node,
    Snapshot,
    StackSpec,
    TerraformSettings,
)
from envctl.core.paths import repo_path as _clean
from envctl.core.refs import quoted
from envctl.core.yamldoc import YamlDoc
from envctl.repo.layers import load_layer
from envctl.repo.schema import (
    check_keys,
    duration,
    load_doc,
    make_node,
    mapping,
    node_common,
    refs_in,
    str_list,
    want,
)

ENV_DIR = "environments"
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")
APPROVAL_KINDS = ("terraform", "terraform-destroy", "kubernetes", "kubernetes-delete", "all", "none")
_TF_MODULE_SOURCE = re.compile(r'^\s*source\s*=\s*"(\.{1,2}/[^"]*)"', re.MULTILINE)

ENV_KEYS = {"name", "vars", "kubernetes", "terraform", "approval", "notifications", "drift", "allow"}
# allow: in environment.yaml; each key opens one way out of the repository snapshot
ALLOW_KEYS = ("remote_sources", "terraform_file_functions")
STACK_KEYS = {"depends_on", "inputs", "module"}


def list_environments(snapshot: Snapshot) -> list[str]:
    """Names of the environments: directories of ``environments/`` holding an ``environment.yaml``."""
    return [n for n in snapshot.listdir(ENV_DIR) if snapshot.exists(f"{ENV_DIR}/{n}/environment.yaml")]


# --- environment -------------------------------------------------------------------------------


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _environment_settings(env: str, docs: list[YamlDoc]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for doc in docs:
        check_keys(doc, doc.data, ENV_KEYS)
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
    repo_doc = load_doc(snapshot, "envctl.yaml")
    env_doc = load_doc(snapshot, f"{base}/environment.yaml", required=True)
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
    want(where("name"), name, str, "a string", "name")
    if name != env:
        raise ConfigError(
            f"name {quoted(name)} does not match the directory {base}",
            location=where("name").loc("name"),
            hint=f"set name: {env}, or rename the directory",
        )
    vars_ = mapping(where("vars"), data.get("vars"), "vars")
    for doc in docs:
        if refs := refs_in(doc, doc.data):
            raise ConfigError(
                f"references are not allowed in {doc.file}",
                location=refs[0].location,
                hint="environment settings are plain values; use env.vars from stacks and layers",
            )

    kube: KubernetesSettings | None = None
    if "kubernetes" in data:
        k = mapping(where("kubernetes"), data["kubernetes"], "kubernetes")
        check_keys(where("kubernetes"), k, {"kubeconfig", "context"}, "kubernetes")
        for key in ("kubeconfig", "context"):
            if key in k and k[key] is not None:
                want(where("kubernetes", key), k[key], str, "a string", "kubernetes", key)
        kube = KubernetesSettings(kubeconfig=k.get("kubeconfig"), context=k.get("context"))

    t = mapping(where("terraform"), data.get("terraform"), "terraform")
    td = where("terraform")
    flags = ("allow_external_data", "allow_provisioners", "allow_registry_providers")
    check_keys(td, t, {"engine", "binary", "backend", "plugin_dir", *flags}, "terraform")
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
    binary = want(td, t.get("binary", "terraform"), str, "a string", "terraform", "binary")
    plugin_dir = t.get("plugin_dir")
    if plugin_dir is not None:
        want(td, plugin_dir, str, "a string", "terraform", "plugin_dir")
    allowed = {f: want(td, t.get(f, False), bool, "true or false", "terraform", f) for f in flags}
    tf = TerraformSettings(engine=engine, binary=binary, backend=backend, plugin_dir=plugin_dir, **allowed)

    al = mapping(where("allow"), data.get("allow"), "allow")
    ald = where("allow")
    check_keys(ald, al, set(ALLOW_KEYS), "allow")
    allow = AllowSettings(
        **{k: want(ald, al.get(k, False), bool, "true or false", "allow", k) for k in ALLOW_KEYS}
    )

    a = mapping(where("approval"), data.get("approval"), "approval")
    ad = where("approval")
    check_keys(ad, a, {"required_for"}, "approval")
    required = str_list(ad, a.get("required_for", ["terraform"]), "approval", "required_for")
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
    for i, item in enumerate(want(nd, raw_n, list, "a list", "notifications")):
        item = mapping(nd, item, "notifications", i)
        check_keys(nd, item, {"webhook"}, "notifications", i)
        url = want(nd, item.get("webhook"), str, "a URL", "notifications", i, "webhook")
        if not re.match(r"^https?://", url):
            raise ConfigError(
                "notifications: webhook must be an http(s) URL",
                location=nd.loc("notifications", i, "webhook"),
            )
        hooks.append(url)

    d = mapping(where("drift"), data.get("drift"), "drift")
    check_keys(where("drift"), d, {"every"}, "drift")
    every = d.get("every")
    if every is not None:
        want(where("drift"), every, str, "a duration such as 1h", "drift", "every")
        duration(where("drift"), every, "drift", "every")

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
                else load_layer(snapshot, path, n, known_env)
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


def _load_stack(snapshot: Snapshot, path: str, name: str) -> Node | None:
    files = snapshot.listdir(path)
    tf_files = tuple(f"{path}/{f}" for f in files if f.endswith((".tf", ".tf.json")))
    cfg = f"{path}/stack.yaml"
    doc = load_doc(snapshot, cfg)
    node_id = f"stack.{name}"
    module: str | None = None
    if doc is not None:
        check_keys(doc, doc.data, STACK_KEYS)
        if "module" in doc.data:
            raw = want(doc, doc.data["module"], str, "a repo-relative path such as modules/network", "module")
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
    module_dirs = _module_dirs(snapshot, path, tf_files, module)
    stack = StackSpec(module=module, tf_files=tf_files, module_dirs=module_dirs)
    return make_node("stack", name, path, cfg, doc, node_common(doc, node_id), stack=stack)


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
