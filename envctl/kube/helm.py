"""Render a Helm chart layer with ``helm template``, offline, and apply Helm's hook policy.

A chart layer (``helm:`` in layer.yaml) is rendered by the ``helm`` binary (v3.22.0, from PATH or
``~/.cache/envctl/helm/<version>/``, built by ``scripts/build-helm-tools``) from a copy of the
chart read through the repository snapshot (so the confinement rules of every other file hold),
with the chart values substituted as values (``envctl.core.refs.substitute_value``). A remote chart
(an ``oci://`` reference, or a chart repository) is pulled once per pinned version into
``~/.cache/envctl/charts/`` and rendered from there. There is no Helm release state: the objects
are applied like any layer's and the layer's inventory is the release.

Hook policy (DESIGN.md §4): ``pre-install``/``pre-upgrade`` hooks are kept and applied before the
layer's other objects, lowest ``helm.sh/hook-weight`` first, each weight waited for (Jobs complete);
``test`` hooks are dropped; any other hook is refused, naming it. May import ``yaml``-free core
helpers and ``subprocess``; never ``kubernetes`` (rendering works with no cluster).
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from envctl.core.errors import ConfigError, Location, UnavailableError
from envctl.core.model import Environment, HelmChart, Node, Ref, Snapshot
from envctl.core.refs import HINT, substitute_value
from envctl.core.yamldoc import YamlDoc, load_yaml

HELM_VERSION = "v3.22.0"
HOOK_ANNOTATION = "helm.sh/hook"
WEIGHT_ANNOTATION = "helm.sh/hook-weight"
PRE_HOOKS = frozenset({"pre-install", "pre-upgrade"})
TEST_HOOKS = frozenset({"test", "test-success", "test-failure"})
BUILD_COMMAND = "scripts/build-helm-tools helm"
RENDER_TIMEOUT = 120.0
MAX_RENDER_BYTES = 64 << 20  # what helm template may print before envctl stops reading it
_SOURCE = re.compile(r"^# Source: (\S+)", re.MULTILINE)


def cache_root() -> Path:
    """``~/.cache/envctl`` (``$XDG_CACHE_HOME/envctl``), where our build scripts cache tools."""
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "envctl"


def helm_binary() -> str:
    """The pinned ``helm`` built by ``scripts/build-helm-tools``, else ``helm`` on PATH; else exit 69."""
    cached = cache_root() / "helm" / HELM_VERSION / "helm"
    if os.access(cached, os.X_OK):
        return str(cached)
    found = shutil.which("helm")
    if found is not None:
        return found
    raise UnavailableError(
        f"helm not found (needed to render chart layers): not on PATH and not in {cached.parent}",
        hint=f"build it with `{BUILD_COMMAND}` (from the envctl source tree; needs Go), or "
        f"`GOBIN={cached.parent} go install helm.sh/helm/v3/cmd/helm@{HELM_VERSION}`, "
        "or put helm v3 on PATH",
    )


def _resolver(node: Node, inputs: Mapping[str, Any], env: Environment) -> Callable[[Ref], Any]:
    """How a chart value's reference gets its value: the same rules as a manifest's references."""

    def resolve(ref: Ref) -> Any:
        if ref.kind == "input":
            if ref.name in inputs:
                return inputs[ref.name]
            raise ConfigError(
                f"undeclared input ${{inputs.{ref.name}}}",
                node=node.id,
                location=ref.location,
                hint=f"declare it under inputs: in layer.yaml (known: {', '.join(sorted(inputs)) or 'none'})",
            )
        if ref.kind == "env":
            return env.name
        if ref.kind == "var" and ref.name in env.vars:
            return env.vars[ref.name]
        if ref.text in inputs:
            return inputs[ref.text]
        raise ConfigError(
            f"${{{ref.text}}} has no value here", node=node.id, location=ref.location, hint=HINT
        )

    return resolve


def chart_values(
    env: Environment, snapshot: Snapshot, node: Node, chart: HelmChart, inputs: Mapping[str, Any]
) -> list[Any]:
    """Every values document in precedence order (values files in order, then ``values:``), substituted.

    Values files are parsed with envctl's safe YAML reader and substituted as values, exactly as
    ``values:`` of layer.yaml: a reference that is a whole scalar keeps its value's type.
    """
    resolve = _resolver(node, inputs, env)
    docs: list[Any] = []
    for vf in chart.values_files:
        doc = load_yaml(snapshot.read_bytes(vf), vf)
        data = doc.data if doc.data is not None else {}
        if not isinstance(data, dict):
            raise ConfigError("a values file must be a mapping", node=node.id, location=doc.loc())
        docs.append(_substitute_at(data, resolve, doc))
    where = chart.location or Location(node.config_file or node.path)
    docs.append(substitute_value(dict(chart.values), resolve, where, allow_inputs=True))
    return docs


def _substitute_at(value: Any, resolve: Callable[[Ref], Any], doc: YamlDoc, *path: str | int) -> Any:
    """``substitute_value`` leaf by leaf, so an error names the line of that very value."""
    if isinstance(value, dict):
        return {k: _substitute_at(v, resolve, doc, *path, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_at(v, resolve, doc, *path, i) for i, v in enumerate(value)]
    return substitute_value(value, resolve, doc.loc(*path), allow_inputs=True)


_RENDERED: dict[str, str] = {}
_RENDERED_LOCK = threading.Lock()
_RENDERED_MAX = 16


def render_chart(
    env: Environment, snapshot: Snapshot, node: Node, inputs: Mapping[str, Any]
) -> tuple[str, str]:
    """``helm template`` of the layer's chart: (the rendered YAML, the repo path errors point at).

    Remembered for the process by a hash of everything the render reads (a command renders a
    layer several times: precheck, plan, apply), so helm runs once per distinct input.
    """
    assert node.layer is not None and node.layer.helm is not None
    chart = node.layer.helm
    values = chart_values(env, snapshot, node, chart, inputs)
    files = {} if chart.remote else {f: snapshot.read_bytes(f) for f in snapshot.walk_files(chart.chart)}
    helm = helm_binary()
    digest = hashlib.sha256()
    for part in (
        helm,
        chart.chart,
        chart.release,
        chart.version or "",
        chart.repo or "",
        node.layer.namespace or "",
    ):
        digest.update(part.encode() + b"\0")
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    digest.update(json.dumps(values, sort_keys=True, default=str).encode())
    key = digest.hexdigest()
    with _RENDERED_LOCK:
        hit = _RENDERED.get(key)
    if hit is not None:
        return hit, _where(node, chart)
    with tempfile.TemporaryDirectory(prefix="envctl-helm-") as tmp:
        if chart.remote:
            source = str(_pull(helm, node, chart))
        else:
            for name, data in files.items():
                dest = Path(tmp, "chart", os.path.relpath(name, chart.chart))
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
            source = str(Path(tmp, "chart"))
        cmd = [helm, "template", chart.release, source, "--include-crds"]
        cmd += ["--namespace", node.layer.namespace or "default"]
        for i, doc in enumerate(values):
            vf = Path(tmp, f"values-{i}.json")
            vf.write_text(json.dumps(doc, default=str))  # JSON is YAML: no second reading of a value
            cmd += ["--values", str(vf)]
        if chart.remote and chart.plain_http:
            cmd.append("--plain-http")
        proc = _run(cmd, tmp, node, "render", _where(node, chart))
        out = proc.stdout
    with _RENDERED_LOCK:
        if len(_RENDERED) >= _RENDERED_MAX:
            _RENDERED.pop(next(iter(_RENDERED)))
        _RENDERED[key] = out
    return out, _where(node, chart)


def _where(node: Node, chart: HelmChart) -> str:
    return chart.chart if not chart.remote else (node.config_file or node.path)


def _helm_env(home: str) -> dict[str, str]:
    """helm with its own empty homes: no user repositories, plugins or registry logins leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
    env.update(
        HELM_CACHE_HOME=f"{home}/.helm/cache",
        HELM_CONFIG_HOME=f"{home}/.helm/config",
        HELM_DATA_HOME=f"{home}/.helm/data",
    )
    return env


def _run(cmd: list[str], tmp: str, node: Node, what: str, file: str) -> subprocess.CompletedProcess[str]:
    shown = " ".join(c if not c.startswith(tmp) else Path(c).name for c in cmd[1:])
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp,
            env=_helm_env(tmp),
            timeout=RENDER_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise ConfigError(
            f"helm {what} did not finish in {RENDER_TIMEOUT:g}s", node=node.id, location=Location(file)
        ) from None
    except OSError as e:
        raise UnavailableError(f"cannot run {cmd[0]}: {e.strerror or e}", node=node.id) from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.replace(tmp + "/", "").strip().splitlines()[-10:])
        raise ConfigError(
            f"helm {what} failed: {tail.splitlines()[-1] if tail else f'exit {proc.returncode}'}",
            node=node.id,
            location=Location(file),
            detail=f"$ helm {shown}\n{tail}",
        )
    if len(proc.stdout) > MAX_RENDER_BYTES:
        raise ConfigError(
            f"the chart rendered more than {MAX_RENDER_BYTES >> 20} MiB",
            node=node.id,
            location=Location(file),
        )
    return proc


def _pull(helm: str, node: Node, chart: HelmChart) -> Path:
    """The pinned remote chart as a .tgz in ``~/.cache/envctl/charts/``: fetched once, then reused."""
    ident = json.dumps([chart.repo, chart.chart, chart.version])
    dest = cache_root() / "charts" / hashlib.sha256(ident.encode()).hexdigest()[:32]
    found = sorted(dest.glob("*.tgz")) if dest.is_dir() else []
    if found:
        return found[0]
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".pull-", dir=dest.parent) as tmp:
        assert chart.version is not None
        cmd = [helm, "pull", chart.chart, "--version", chart.version, "--destination", tmp]
        if chart.repo is not None:
            cmd += ["--repo", chart.repo]
        if chart.plain_http:
            cmd.append("--plain-http")
        _run(cmd, tmp, node, "pull", node.config_file or node.path)
        got = sorted(Path(tmp).glob("*.tgz"))
        if not got:
            raise ConfigError(
                f"helm pull of {chart.chart} {chart.version} produced no chart archive",
                node=node.id,
                location=chart.location,
            )
        staged = Path(tmp, "done")
        staged.mkdir()
        got[0].rename(staged / got[0].name)
        with contextlib.suppress(OSError):  # another process pulled it meanwhile
            staged.rename(dest)
    return sorted(dest.glob("*.tgz"))[0]


def sources_of(text: str, chart_path: str) -> Callable[[int], str]:
    """Map a line of ``helm template`` output to the chart file it came from (``# Source:`` lines).

    helm writes ``# Source: <chart name>/templates/x.yaml``; the chart name is replaced by the
    chart's repository path, so errors point at a file the user can open.
    """
    starts: list[int] = []
    names: list[str] = []
    for m in _SOURCE.finditer(text):
        starts.append(text.count("\n", 0, m.start()) + 1)
        rel = m.group(1).split("/", 1)[1] if "/" in m.group(1) else m.group(1)
        names.append(f"{chart_path}/{rel}")

    def source(line: int) -> str:
        i = bisect.bisect_right(starts, line) - 1
        return names[i] if i >= 0 else chart_path

    return source


def hooks_of(obj: Mapping[str, Any]) -> list[str]:
    """The Helm hooks an object is annotated with (``helm.sh/hook: pre-install,pre-upgrade``)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    raw = annotations.get(HOOK_ANNOTATION)
    if not isinstance(raw, str):
        return []
    return [h.strip() for h in raw.split(",") if h.strip()]


def apply_hook_policy(
    parsed: Sequence[tuple[dict[str, Any], Location]], node_id: str
) -> list[tuple[dict[str, Any], Location]]:
    """Keep ordinary objects and pre-install/pre-upgrade hooks, drop test hooks, refuse the rest."""
    kept = []
    for obj, where in parsed:
        hooks = hooks_of(obj)
        if hooks and all(h in TEST_HOOKS for h in hooks):
            continue
        other = [h for h in hooks if h not in PRE_HOOKS]
        if other:
            meta = obj.get("metadata") or {}
            raise ConfigError(
                f"{obj.get('kind')} {meta.get('name')} is a Helm {other[0]} hook, which envctl does not run",
                node=node_id,
                location=where,
                hint="envctl runs pre-install and pre-upgrade hooks (before the other objects, waited for) "
                "and skips test hooks; turn this hook into an ordinary object or a pre-install hook",
            )
        kept.append((obj, where))
    return kept


def pre_hook_weight(obj: Mapping[str, Any]) -> int | None:
    """The ``helm.sh/hook-weight`` of a pre-install/pre-upgrade hook (0 if unset); None for other objects."""
    if not any(h in PRE_HOOKS for h in hooks_of(obj)):
        return None
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(WEIGHT_ANNOTATION, "0")
    try:
        return int(str(raw).strip())
    except ValueError:
        return 0
