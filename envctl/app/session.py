"""One command's session: the repository snapshot, the environment, its graph, the store.

``Session`` is what every use case of ``envctl.app`` takes first. It also owns the lazily made
adapter contexts (one Kubernetes context per command) and starts Terraform workers early.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envctl.core.adapter import NodeAdapter
from envctl.core.approval import ApprovalPolicy, ChangeClass
from envctl.core.bundle import PlanBundle, Rollback
from envctl.core.changes import NodePlan
from envctl.core.graph import EnvGraph
from envctl.core.model import Environment, Node, Snapshot
from envctl.core.removal import RemovedNode
from envctl.store import Store, now

if TYPE_CHECKING:
    from envctl.kube import KubeContext


Progress = Callable[[str], None]


def default_adapters(
    env: Environment,
    snapshot: Snapshot,
    root: Path,
    kube: Callable[[], KubeContext],
    progress: Progress,
    sensitive_inputs: Callable[[Node], Mapping[str, str]],
) -> dict[str, NodeAdapter]:
    """One adapter per node kind: the table the app looks a node's kind up in."""

    def stack() -> NodeAdapter:
        from envctl.terraform.node import StackAdapter

        return StackAdapter(env, snapshot, root, progress)

    def layer() -> NodeAdapter:
        from envctl.kube.node import LayerAdapter

        return LayerAdapter(env, snapshot, kube, progress, sensitive_inputs)

    return _Adapters({"stack": stack, "layer": layer})


class _Adapters(dict[str, NodeAdapter]):
    """Adapters by node kind, each made (and its engine imported) on first use: a command on an
    environment without stacks never imports the Terraform adapter."""

    def __init__(self, make: Mapping[str, Callable[[], NodeAdapter]]) -> None:
        super().__init__()
        self._make = make
        self._lock = threading.Lock()

    def __missing__(self, kind: str) -> NodeAdapter:
        with self._lock:
            if kind not in self:
                self[kind] = self._make[kind]()  # an unknown kind: KeyError, as from a dict
            return dict.__getitem__(self, kind)


def _by_kind(env: Environment, nodes: Iterable[str]) -> dict[str, list[Node]]:
    groups: dict[str, list[Node]] = {}
    for n in nodes:
        if n in env.nodes:  # a node removed from Git runs no engine of this commit's
            groups.setdefault(env.nodes[n].kind, []).append(env.nodes[n])
    return groups


def prewarm_plans(
    env: Environment, snapshot: Snapshot, root: Path, nodes: Iterable[str], parallelism: int
) -> None:
    """Start engine workers for planning ``nodes`` in the background (at most ``parallelism``).

    Needs no graph nor session: the CLI calls it as soon as the environment is loaded.
    """

    def no_cluster() -> KubeContext:
        raise AssertionError("prewarming connects to no cluster")

    adapters = default_adapters(env, snapshot, root, no_cluster, lambda _msg: None, lambda _node: {})
    for kind, group in _by_kind(env, nodes).items():
        adapters[kind].prewarm(group, min(len(group), parallelism), applying=False)


class SerialSnapshot:
    """A snapshot whose reads are serialised by a lock.

    Plan and apply read files from worker threads, and a Git revision is read through GitPython's
    one ``git cat-file`` process per repository, which is not thread-safe: concurrent reads mix
    their answers (a file of one node read under another's path) or hang.
    """

    def __init__(self, inner: Snapshot) -> None:
        self._inner = inner
        self._lock = threading.RLock()

    @property
    def commit(self) -> str | None:
        with self._lock:
            return self._inner.commit

    @property
    def dirty(self) -> bool:
        with self._lock:
            return self._inner.dirty

    def read_bytes(self, path: str) -> bytes:
        with self._lock:
            return self._inner.read_bytes(path)

    def exists(self, path: str) -> bool:
        with self._lock:
            return self._inner.exists(path)

    def is_dir(self, path: str) -> bool:
        with self._lock:
            return self._inner.is_dir(path)

    def listdir(self, path: str) -> list[str]:
        with self._lock:
            return self._inner.listdir(path)

    def walk_files(self, path: str) -> Iterator[str]:
        with self._lock:
            files = list(self._inner.walk_files(path))
        return iter(files)


@dataclass
class Session:
    """One command's view of the world: repo, files, environment, graph, store."""

    root: Path
    snapshot: Snapshot
    env: Environment
    graph: EnvGraph
    parallelism: int = 4
    progress: Progress = lambda _msg: None
    _kube: KubeContext | None = None
    _kube_lock: threading.RLock = field(default_factory=threading.RLock)
    adapters: dict[str, NodeAdapter] | None = None  # by node kind; default_adapters when None
    _waits_cancelled: threading.Event = field(default_factory=threading.Event)
    # the environment lock while this command holds it (hold_environment_lock), else None
    held_lock: dict[str, Any] | None = None
    rev: str | None = None  # the Git revision given with --rev (None: the working tree)
    # nodes removed from Git: (node id, commit) -> the node and adapter that delete it (app.removal)
    removed_targets: dict[tuple[str, str | None], tuple[Node, NodeAdapter]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.snapshot, SerialSnapshot):
            self.snapshot = SerialSnapshot(self.snapshot)

    @property
    def planned_rev(self) -> str | None:
        """The commit a plan of this session is applied at with ``--rev`` (None: the working tree)."""
        return self.snapshot.commit if self.rev is not None else None

    @property
    def store(self) -> Store:
        return Store(self.root)

    def approval_policy(self) -> ApprovalPolicy:
        """The environment's approval policy, each node's changes classed by its adapter."""

        def class_of(node: str) -> ChangeClass:
            # a node removed from Git is no longer in the environment: its id names its kind
            kind = self.env.nodes[node].kind if node in self.env.nodes else RemovedNode(node, None).kind
            return self.adapter_of_kind(kind).traits.changes

        return ApprovalPolicy(self.env.approval_required_for, class_of)

    def adapter(self, node: str) -> NodeAdapter:
        """The adapter of ``node``'s kind (tests may set ``adapters`` to fakes)."""
        return self.adapter_of_kind(self.env.nodes[node].kind)

    def adapter_of_kind(self, kind: str) -> NodeAdapter:
        """The adapter of a node kind, also for a node no longer in Git (removed)."""
        from envctl.app.inputs import sensitive_inputs

        with self._kube_lock:
            if self.adapters is None:
                self.adapters = default_adapters(
                    self.env,
                    self.snapshot,
                    self.root,
                    self.kube,
                    self.progress,
                    lambda node: sensitive_inputs(self, node),
                )
        return self.adapters[kind]

    def prewarm_engine(self, nodes: Iterable[str], *, applying: bool = False) -> None:
        """Start engine workers in the background for ``nodes``.

        Planning: at most one per node, up to ``parallelism``. Applying: as many as the nodes of
        a kind that may run at once (the widest level of the graph, at most ``parallelism``).
        """
        for group in _by_kind(self.env, nodes).values():
            ids = {n.id for n in group}
            if applying:
                width = max(len(ids.intersection(level)) for level in self.graph.levels())
            else:
                width = len(ids)
            self.adapter(group[0].id).prewarm(group, min(width, self.parallelism), applying=applying)

    def kube(self) -> KubeContext:
        from envctl.kube import KubeContext

        with self._kube_lock:
            if self._kube is None:
                self._kube = KubeContext.from_env(self.env, self.snapshot, concurrency=16)
                if self._waits_cancelled.is_set():
                    self._kube.cancel_waits()
            return self._kube

    def cancel_waits(self) -> None:
        """End every readiness wait now, and any started later (the first Ctrl-C).

        Called from a signal handler: takes no lock (the main thread might hold it).
        """
        self._waits_cancelled.set()
        kube = self._kube
        if kube is not None:
            kube.cancel_waits()

    @property
    def in_cluster(self) -> bool:
        """Whether a node of the environment lives in its cluster (the lock is then also a Lease)."""
        return any(self.adapter(n).traits.in_cluster for n in self.env.nodes)

    def source_hash(self) -> str:
        """A hash of every file that shapes this environment: its directory and the repo's modules."""
        h = hashlib.sha256()
        for base in (self.env.path, "modules"):
            for f in self.snapshot.walk_files(base):
                h.update(f.encode() + b"\0" + hashlib.sha256(self.snapshot.read_bytes(f)).digest())
        if self.snapshot.exists("envctl.yaml"):
            h.update(self.snapshot.read_bytes("envctl.yaml"))
        return h.hexdigest()

    def new_bundle(
        self,
        plan_id: str,
        order: Sequence[str],
        nodes: dict[str, NodePlan],
        inputs_hash: dict[str, str],
        targets: Sequence[str],
        rollback: Rollback | None = None,
    ) -> PlanBundle:
        """A plan bundle of this session's environment, commit and revision (plan, destroy)."""
        return PlanBundle(
            id=plan_id,
            environment=self.env.name,
            commit=self.snapshot.commit,
            dirty=self.snapshot.dirty,
            created=now(),
            order=tuple(n for n in order if n in nodes),
            nodes=nodes,
            inputs_hash={**inputs_hash, "_source": self.source_hash()},
            targets=tuple(sorted(targets)),
            rev=self.planned_rev,
            rollback=rollback,
        )
