"""One command's session: the repository snapshot, the environment, its graph, the store.

``Session`` is what every use case of ``envctl.app`` takes first. It also owns the lazily made
adapter contexts (one Kubernetes context per command) and starts Terraform workers early.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envctl.core.graph import EnvGraph
from envctl.core.model import Environment, Snapshot
from envctl.store import Store

if TYPE_CHECKING:
    from envctl.kube import KubeContext
    from envctl.terraform.stack import StackContext


Progress = Callable[[str], None]


def prewarm_plans(
    env: Environment, snapshot: Snapshot, root: Path, nodes: Iterable[str], parallelism: int
) -> None:
    """Start Terraform workers in the background (at most one per core) if ``nodes`` include stacks.

    Needs no graph: the CLI calls it as soon as the environment is loaded.
    """
    stacks = sum(1 for n in nodes if env.nodes[n].kind == "stack")
    if stacks:
        from envctl.terraform.stack import StackContext, prewarm

        prewarm(StackContext(env, snapshot, root), min(stacks, parallelism))


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
    _kube_lock: threading.Lock = field(default_factory=threading.Lock)
    _waits_cancelled: threading.Event = field(default_factory=threading.Event)
    # the environment lock while this command holds it (hold_environment_lock), else None
    held_lock: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.snapshot, SerialSnapshot):
            self.snapshot = SerialSnapshot(self.snapshot)

    @property
    def store(self) -> Store:
        return Store(self.root)

    def stack_ctx(self) -> StackContext:
        from envctl.terraform.stack import StackContext

        return StackContext(self.env, self.snapshot, self.root)

    def prewarm_engine(self, nodes: Iterable[str], *, applying: bool = False) -> None:
        """Start Terraform workers in the background when ``nodes`` include stacks.

        Planning: at most one per core (plans are short and use the CPU). Applying: as many as
        the stacks among ``nodes`` that may run at once (the widest level of the graph, at most
        ``parallelism``): an apply mostly waits on the cloud, and a worker started when its
        stack becomes ready would put its start-up on the critical path.
        """
        if not applying:
            prewarm_plans(self.env, self.snapshot, self.root, nodes, self.parallelism)
            return
        stacks = {n for n in nodes if self.env.nodes[n].kind == "stack"}
        if stacks:
            from envctl.terraform.stack import prewarm

            width = max(len(stacks.intersection(level)) for level in self.graph.levels())
            prewarm(self.stack_ctx(), min(width, self.parallelism), beyond_cores=True)

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
    def has_layers(self) -> bool:
        return any(n.kind == "layer" for n in self.env.nodes.values())

    def source_hash(self) -> str:
        """A hash of every file that shapes this environment: its directory and the repo's modules."""
        h = hashlib.sha256()
        for base in (self.env.path, "modules"):
            for f in self.snapshot.walk_files(base):
                h.update(f.encode() + b"\0" + hashlib.sha256(self.snapshot.read_bytes(f)).digest())
        if self.snapshot.exists("envctl.yaml"):
            h.update(self.snapshot.read_bytes("envctl.yaml"))
        return h.hexdigest()
