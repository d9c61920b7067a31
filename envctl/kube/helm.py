"""Render a Helm chart layer with ``helm template``, offline, and apply Helm's hook policy.

A chart layer (``helm:`` in layer.yaml) is rendered by the ``helm`` binary (v3.22.0, from PATH or
``~/.cache/envctl/helm/<version>/``, built by ``scripts/build-helm-tools``) from a copy of the
chart read through the repository snapshot (so the confinement rules of every other file hold),
with the chart values substituted as values (``envctl.core.refs.substitute_values``, with the
layer's resolver and size budget). A remote chart
(an ``oci://`` reference, or a chart repository) is pulled once per pinned version into
``~/.cache/envctl/charts/`` and rendered from there. There is no Helm release state: the objects
are applied like any layer's and the layer's inventory is the release.

Hook policy (DESIGN.md §4): ``pre-install``/``pre-upgrade`` hooks are kept and applied before the
layer's other objects, lowest ``helm.sh/hook-weight`` first, each weight waited for (Jobs complete);
``test`` hooks are dropped; any other hook is refused, naming it. May import ``yaml``-free core
helpers and ``envctl.kube.procio`` (which runs it); never ``kubernetes`` (rendering works with no cluster).
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from envctl.core.errors import ConfigError, Location, UnavailableError
from envctl.core.model import HelmChart, Node, Snapshot
from envctl.core.refs import Budget, Resolver, substitute_values
from envctl.core.yamldoc import MAX_BYTES, load_yaml_documents
from envctl.kube.procio import run_bounded

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


def chart_values(
    snapshot: Snapshot, node: Node, chart: HelmChart, resolve: Resolver, budget: Budget
) -> list[Any]:
    """Every values document in precedence order (values files in order, then ``values:``), substituted.

    Values files are parsed as helm reads them (sigs.k8s.io/yaml, as manifests are) and their
    values substituted like a manifest's (a whole-scalar reference keeps its type unless written
    quoted); ``values:`` of layer.yaml like its other values. Inserted bytes count against the
    layer's ``budget``.
    """
    docs: list[Any] = []
    for vf in chart.values_files:
        raw = snapshot.read_bytes(vf)
        if len(raw) > MAX_BYTES:
            raise ConfigError(f"{vf} is larger than {MAX_BYTES} bytes", node=node.id, location=Location(vf))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{vf} is not UTF-8 text", node=node.id, location=Location(vf)) from None
        parsed = load_yaml_documents(text, vf)
        if len(parsed) > 1:
            raise ConfigError("a values file holds one YAML document", node=node.id, location=parsed[1].loc())
        doc = parsed[0] if parsed else None
        data = doc.data if doc is not None and doc.data is not None else {}
        if not isinstance(data, dict):
            raise ConfigError("a values file must be a mapping", node=node.id, location=Location(vf, 1))
        budget.next_object()
        if doc is not None:
            data = substitute_values(data, resolve, doc.at, texts=doc.texts, budget=budget)
        docs.append(data)
    where = chart.location or Location(node.config_file or node.path)
    budget.next_object()
    docs.append(
        substitute_values(copy.deepcopy(dict(chart.values)), resolve, lambda _p: where, budget=budget)
    )
    return docs


_RENDERED: dict[str, str] = {}
_RENDERED_LOCK = threading.Lock()
_RENDERED_MAX = 16


def render_chart(snapshot: Snapshot, node: Node, resolve: Resolver, budget: Budget) -> tuple[str, str]:
    """``helm template`` of the layer's chart: (the rendered YAML, the repo path errors point at).

    Remembered for the process by a hash of everything the render reads (a command renders a
    layer several times: precheck, plan, apply), so helm runs once per distinct input.
    """
    assert node.layer is not None and node.layer.helm is not None
    chart = node.layer.helm
    values = chart_values(snapshot, node, chart, resolve, budget)
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
        out = _run(cmd, tmp, node, "render", _where(node, chart))
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


def _run(cmd: list[str], tmp: str, node: Node, what: str, file: str) -> str:
    """Run helm; its output is read up to ``MAX_RENDER_BYTES`` (a chart that renders more is
    stopped while it renders, never buffered) and for at most ``RENDER_TIMEOUT`` seconds."""
    shown = " ".join(c if not c.startswith(tmp) else Path(c).name for c in cmd[1:])
    where = Location(file)
    too_large = ConfigError(
        f"the chart renders more than {MAX_RENDER_BYTES >> 20} MiB",
        node=node.id,
        location=where,
        hint="split the chart over several layers",
    )
    try:
        done = run_bounded(
            cmd, limit=MAX_RENDER_BYTES, too_large=too_large, timeout=RENDER_TIMEOUT, cwd=tmp,
            env=_helm_env(tmp),
        )  # fmt: skip
    except OSError as e:
        raise UnavailableError(f"cannot run {cmd[0]}: {e.strerror or e}", node=node.id) from None
    if done.timed_out:
        raise ConfigError(f"helm {what} did not finish in {RENDER_TIMEOUT:g}s", node=node.id, location=where)
    if done.code != 0:
        tail = "\n".join(done.stderr.replace(tmp + "/", "").strip().splitlines()[-10:])
        raise ConfigError(
            f"helm {what} failed: {tail.splitlines()[-1] if tail else f'exit {done.code}'}",
            node=node.id,
            location=where,
            detail=f"$ helm {shown}\n{tail}",
        )
    try:
        return done.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            f"helm {what} printed text that is not UTF-8", node=node.id, location=where
        ) from None


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
