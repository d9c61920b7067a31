"""The loaded environment: nodes, their settings and the files they come from. Pure values.

The ``Snapshot`` protocol is how adapters read repository files without knowing whether they
come from the working tree or from a Git revision (the loader in ``envctl.repo`` provides both).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from envctl.core.errors import Location

NodeKind = Literal["stack", "layer"]


class Snapshot(Protocol):
    """Read-only view of the repository at one revision. Paths are POSIX and repo-relative."""

    @property
    def commit(self) -> str | None:
        """The commit SHA this snapshot shows, or None for an uncommitted working tree."""
        ...

    @property
    def dirty(self) -> bool:
        """True when the snapshot is a working tree whose files differ from its commit."""
        ...

    def read_bytes(self, path: str) -> bytes: ...

    def exists(self, path: str) -> bool: ...

    def is_dir(self, path: str) -> bool: ...

    def listdir(self, path: str) -> list[str]:
        """Names (not paths) directly inside a directory, sorted."""
        ...

    def walk_files(self, path: str) -> Iterator[str]:
        """Every file below a directory, as repo-relative paths, sorted."""
        ...


@dataclass(frozen=True)
class Ref:
    """One ``${...}`` reference found in a node's configuration or manifests.

    kind: ``output`` (``stack.X.outputs.Y``), ``env`` (``env.name``), ``var`` (``env.vars.K``),
    ``input`` (``inputs.K``, inside manifests).
    """

    kind: Literal["output", "env", "var", "input"]
    name: str
    location: Location
    node: str | None = None

    @property
    def text(self) -> str:
        if self.kind == "output":
            return f"{self.node}.outputs.{self.name}"
        if self.kind == "env":
            return f"env.{self.name}"
        if self.kind == "var":
            return f"env.vars.{self.name}"
        return f"inputs.{self.name}"


@dataclass(frozen=True)
class LayerOutput:
    """``outputs:`` entry of a layer: a value read back from a live object after apply."""

    object: str  # apiVersion/Kind/[namespace/]name, e.g. v1/Service/ingress/edge
    path: str  # JSONPath-like, e.g. .status.loadBalancer.ingress[0].hostname


@dataclass(frozen=True)
class StackSpec:
    """Stack-only settings. ``module``: repo-relative module dir when the stack is generated from one."""

    module: str | None = None
    tf_files: tuple[str, ...] = ()
    module_dirs: tuple[str, ...] = ()  # local module directories used, transitively (for --changed-since)


@dataclass(frozen=True)
class HelmChart:
    """``helm:`` of a layer.yaml: the layer is what ``helm template`` renders from this chart.

    ``chart``: a repo-relative chart directory (local), or for a remote chart an ``oci://``
    reference or a chart name in the chart repository ``repo``, pinned to ``version``.
    ``values`` may still hold ``${...}`` references; ``values_files`` are repo-relative paths.
    """

    chart: str
    release: str
    values: Mapping[str, Any] = field(default_factory=dict)
    values_files: tuple[str, ...] = ()
    version: str | None = None
    repo: str | None = None
    plain_http: bool = False
    value_refs: tuple[Ref, ...] = ()  # the references in ``values`` (they are not inputs')
    location: Location | None = field(default=None, compare=False)

    @property
    def remote(self) -> bool:
        return self.version is not None


@dataclass(frozen=True)
class LayerSpec:
    """Layer-only settings, from ``layer.yaml``.

    ``sources``: repository paths outside the layer directory the layer reads (a chart directory,
    values files), so ``--changed-since`` follows them. ``conflicts``: ``take`` (Git wins: an
    apply takes back fields Git sets that another manager changed) or ``refuse`` (report and
    stop). ``recreate``: delete and re-create an object whose immutable fields changed.
    ``deprecations``: notes on deprecated keys, shown in every plan of the layer.
    """

    namespace: str | None = None
    prune: bool = True
    wait_timeout: float = 300.0
    wait: bool = True
    recreate: bool = False
    conflicts: str = "take"
    deprecations: tuple[str, ...] = ()
    allow_empty: bool = False
    allow_secrets: bool = False
    kustomize: bool = False
    manifests: tuple[str, ...] = ()
    outputs: Mapping[str, LayerOutput] = field(default_factory=dict)
    helm: HelmChart | None = None
    sources: tuple[str, ...] = ()
    # fields a sensitive value may flow into besides a Secret's data/stringData:
    # ``apiVersion/Kind/[namespace/]name:.path`` (see docs/kubernetes.md)
    sensitive_allowed: tuple[str, ...] = ()

    @property
    def take_conflicts(self) -> bool:
        return self.conflicts != "refuse"


@dataclass(frozen=True)
class Node:
    """A stack or a layer. ``inputs`` holds raw values, strings may still contain ``${...}``."""

    id: str
    kind: NodeKind
    name: str
    path: str
    depends_on: tuple[str, ...] = ()
    inputs: Mapping[str, Any] = field(default_factory=dict)
    refs: tuple[Ref, ...] = ()
    config_file: str | None = None
    stack: StackSpec | None = None
    layer: LayerSpec | None = None
    depends_lines: Mapping[str, Location] = field(default_factory=dict, compare=False)
    # where each of ``inputs`` is written (stack.yaml/layer.yaml), for errors while resolving it
    input_lines: Mapping[str, Location] = field(default_factory=dict, compare=False)

    @property
    def upstream_refs(self) -> tuple[Ref, ...]:
        return tuple(r for r in self.refs if r.kind == "output")


@dataclass(frozen=True)
class KubernetesSettings:
    kubeconfig: str | None = None
    context: str | None = None


@dataclass(frozen=True)
class TerraformSettings:
    engine: Literal["embedded", "cli"] = "embedded"
    binary: str = "terraform"
    backend: Literal["local", "kubernetes", "stack"] = "local"
    plugin_dir: str | None = None
    allow_external_data: bool = False  # data "external" runs a program on this machine
    allow_provisioners: bool = False  # local-exec/remote-exec/file provisioners run commands
    allow_registry_providers: bool = False  # providers not in plugin_dir would be downloaded


@dataclass(frozen=True)
class AllowSettings:
    """``allow:`` of environment.yaml: what a node may reach beyond the repository snapshot."""

    remote_sources: bool = False  # kustomize URLs, git::/http/registry module sources, remote charts
    terraform_file_functions: bool = False  # file(), templatefile(), ... on any path


@dataclass(frozen=True)
class Environment:
    """One environment of the repo, fully loaded and checked (but not yet graphed)."""

    name: str
    path: str
    vars: Mapping[str, Any] = field(default_factory=dict)
    kubernetes: KubernetesSettings | None = None
    terraform: TerraformSettings = field(default_factory=TerraformSettings)
    approval_required_for: tuple[str, ...] = ("terraform",)
    notifications: tuple[str, ...] = ()
    drift_every: str | None = None
    allow: AllowSettings = field(default_factory=AllowSettings)
    nodes: Mapping[str, Node] = field(default_factory=dict)
