"""Load one Kubernetes layer (``layers/<name>/``) of an environment into a ``LayerSpec`` node.

Checks ``layer.yaml`` (namespace, prune, wait, outputs, helm chart, sensitive fields, ...) and
collects the ``${...}`` references of the layer's manifests and chart values with their lines.
Called by ``envctl.repo.loader.load_environment`` for each layer directory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from envctl.core.errors import ConfigError, Location
from envctl.core.model import Environment, HelmChart, LayerOutput, LayerSpec, Node, Ref, Snapshot
from envctl.core.paths import repo_path as _clean
from envctl.core.refs import find_refs, quoted, substitute_value
from envctl.core.yamlcache import load_yaml_documents_cached
from envctl.core.yamldoc import YamlDoc
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

MANIFEST_SUFFIXES = (".yaml", ".yml")
MAX_MANIFEST_BYTES = 10 << 20
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
    return [r for doc in docs for r in refs_in(doc, doc.data, allow_inputs=True)]


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


def load_layer(snapshot: Snapshot, path: str, name: str, env: Environment) -> Node | None:
    node_id = f"layer.{name}"
    cfg = f"{path}/layer.yaml"
    doc = load_doc(snapshot, cfg)
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
    depends, inputs, refs = node_common(doc, node_id)
    if doc is not None:
        data = doc.data
        check_keys(doc, data, LAYER_KEYS)
        if "namespace" in data:
            ns = want(doc, _env_value(doc, env, "namespace"), str, "a namespace name", "namespace")
            if not re.match(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", ns):
                raise ConfigError(
                    f"namespace {quoted(ns)} is not a valid name", node=node_id, location=doc.loc("namespace")
                )
            spec_kw["namespace"] = ns
        for flag in ("prune", "recreate", "allow_empty", "allow_secrets"):
            if flag in data:
                spec_kw[flag] = want(doc, data[flag], bool, "true or false", flag)
        if "force" in data:
            # the old key: it meant "force conflicts and re-create"; taking conflicts is now the
            # default, so what is left of it is recreate
            force = want(doc, data["force"], bool, "true or false", "force")
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
            mode = want(doc, data["conflicts"], str, "take or refuse", "conflicts")
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
                w = mapping(doc, w, "wait")
                check_keys(doc, w, {"timeout"}, "wait")
                if "timeout" in w:
                    spec_kw["wait_timeout"] = duration(doc, w["timeout"], "wait", "timeout")
        allowed_fields = str_list(doc, data.get("sensitive_allowed"), "sensitive_allowed")
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
        for oname, o in mapping(doc, data.get("outputs"), "outputs").items():
            o = mapping(doc, o, "outputs", oname)
            check_keys(doc, o, {"object", "path"}, "outputs", oname)
            obj = want(
                doc, o.get("object"), str, "apiVersion/Kind/[namespace/]name", "outputs", oname, "object"
            )
            jp = want(doc, o.get("path"), str, "a path such as .status.x", "outputs", oname, "path")
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
    return make_node("layer", name, path, cfg, doc, (depends, inputs, refs), layer=LayerSpec(**spec_kw))


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
    h = mapping(doc, doc.data["helm"], "helm")
    check_keys(doc, h, HELM_KEYS, "helm")
    where = doc.loc("helm")
    chart_raw = want(doc, h.get("chart"), str, "a chart directory or a remote chart", "helm", "chart")
    version = h.get("version")
    repo = h.get("repo")
    if version is not None:
        version = str(want(doc, version, str, "a chart version such as 1.2.3 (quoted)", "helm", "version"))
    if repo is not None:
        repo = want(doc, repo, str, "a chart repository URL", "helm", "repo")
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
    plain_http = want(doc, h.get("plain_http", False), bool, "true or false", "helm", "plain_http")
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
    want(doc, release, str, "a release name", "helm", "release")
    if not _RELEASE.match(release):
        raise ConfigError(
            f"helm.release {quoted(release)} is not a valid release name",
            node=node_id,
            location=doc.loc("helm", "release") if "release" in h else where,
            hint="lower-case letters, digits and -, at most 53 characters (set helm.release:)",
        )
    values = mapping(doc, h.get("values"), "helm", "values")
    value_refs = _value_refs(doc, values, inputs, node_id, doc.file, "helm", "values")
    refs = list(value_refs)
    files: list[str] = []
    for i, raw in enumerate(str_list(doc, h.get("values_files"), "helm", "values_files")):
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
