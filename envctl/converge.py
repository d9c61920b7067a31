"""Plan and converge a whole environment: the application layer that drives the adapters.

It walks the one graph with the core's ready queue, resolves each node's inputs from upstream
outputs, calls the Terraform adapter for stacks and the Kubernetes adapter for layers, and records
everything in the store (plan bundles, journal). It never formats output: it reports progress
through a callback and returns core values that ``envctl.views`` render.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envctl.core.approval import Approval, check_approval, needs_approval, nodes_needing_approval
from envctl.core.bundle import PlanBundle, canonical, node_fingerprint, sha256
from envctl.core.changes import SENSITIVE, NodePlan
from envctl.core.errors import (
    ApprovalRequiredError,
    EngineError,
    EnvctlError,
    Location,
    StalePlanError,
    UnavailableError,
    UsageError,
)
from envctl.core.graph import EnvGraph
from envctl.core.model import Environment, Node, Ref, Snapshot
from envctl.core.refs import find_refs, substitute_value
from envctl.core.schedule import ReadyQueue, Status
from envctl.core.secrets import collect_secret_texts, mask
from envctl.repo.gitcli import changed_paths
from envctl.store import Store, holder_identity, now

if TYPE_CHECKING:
    from envctl.kube import KubeContext
    from envctl.terraform.stack import StackContext

Progress = Callable[[str], None]
ALL_OUTPUTS = "*"  # in outputs_unknown: every output of the node is unknown until apply
PLACEHOLDER = "(known after apply)"


class _Pending(Exception):
    """An input cannot be resolved until an upstream node is applied."""


@dataclass
class Values:
    """Known outputs per node and which of them are secret (so their text can be scrubbed)."""

    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, node: str, values: Mapping[str, Any], sensitive: set[str] | None = None) -> None:
        with self.lock:
            self.outputs[node] = dict(values)
            for name in sensitive or ():
                collect_secret_texts(values.get(name), self.secrets)


def scrub(value: Any, secrets: set[str]) -> Any:
    """Replace every occurrence of a secret string inside ``value`` (defence in depth for views).

    ``secrets`` are texts from ``collect_secret_texts``; a number whose text is one is masked whole.
    """
    if not secrets:
        return value
    if isinstance(value, str):
        return mask(value, secrets, SENSITIVE)
    if isinstance(value, int | float) and not isinstance(value, bool):
        texts: set[str] = set()
        collect_secret_texts(value, texts)
        return SENSITIVE if texts & secrets else value
    if isinstance(value, dict):
        return {k: scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, secrets) for v in value]
    if isinstance(value, tuple):
        return tuple(scrub(v, secrets) for v in value)
    return value


def scrub_plan(plan: NodePlan, secrets: set[str]) -> NodePlan:
    if not secrets:
        return plan
    changes = tuple(
        dataclasses.replace(c, before=scrub(c.before, secrets), after=scrub(c.after, secrets))
        for c in plan.changes
    )
    return dataclasses.replace(plan, changes=changes, notes=tuple(scrub(list(plan.notes), secrets)))


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
            return self._kube

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


# --- inputs -------------------------------------------------------------------------------------


def _input_refs(node: Node, key: str) -> list[Ref]:
    raw = node.inputs[key]
    refs: list[Ref] = []
    _walk_refs(raw, node.config_file or node.path, refs)
    return refs


def _walk_refs(value: Any, file: str, out: list[Ref]) -> None:
    if isinstance(value, str):
        out.extend(find_refs(value, file))
    elif isinstance(value, dict):
        for v in value.values():
            _walk_refs(v, file, out)
    elif isinstance(value, list):
        for v in value:
            _walk_refs(v, file, out)


def resolve_inputs(
    s: Session, node: Node, values: Values, pending_outputs: Mapping[str, set[str]]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Resolved inputs and the names of inputs that wait on an upstream change.

    For a layer, an output reference written directly in a manifest (``${stack.X.outputs.Y}``)
    is resolved too and passed under its own text, as the renderer expects.
    """

    def resolve(ref: Ref) -> Any:
        if ref.kind == "env":
            return s.env.name
        if ref.kind == "var":
            return s.env.vars[ref.name]
        assert ref.node is not None
        waiting = pending_outputs.get(ref.node, set())
        if ref.name in waiting or ALL_OUTPUTS in waiting:
            raise _Pending(ref.text)
        outs = values.outputs.get(ref.node)
        if outs is None or ref.name not in outs:
            raise _Pending(ref.text)
        return outs[ref.name]

    resolved: dict[str, Any] = {}
    pending: list[str] = []
    where = Location(node.config_file or node.path)
    for key in node.inputs:
        try:
            resolved[key] = substitute_value(node.inputs[key], resolve, where)
        except _Pending:
            pending.append(key)
            resolved[key] = PLACEHOLDER
    if node.kind == "layer":
        # references in layer.yaml are the inputs' (resolved above), except those in chart values
        chart = node.layer.helm if node.layer is not None else None
        in_values = set(chart.value_refs) if chart is not None else set()
        for ref in node.upstream_refs:
            if (ref.location.file == node.config_file and ref not in in_values) or ref.text in resolved:
                continue
            try:
                resolved[ref.text] = resolve(ref)
            except _Pending:
                pending.append(ref.text)
                resolved[ref.text] = PLACEHOLDER
    return resolved, tuple(pending)


def inputs_hash(inputs: Mapping[str, Any]) -> str:
    return sha256(canonical(inputs))


def _waiting_on(node: Node, pending: tuple[str, ...]) -> list[str]:
    ups: set[str] = set()
    for key in pending:
        if key in node.inputs:
            ups.update(ref.node for ref in _input_refs(node, key) if ref.node)
        else:  # an output reference written in a manifest: stack.X.outputs.Y
            ups.add(".".join(key.split(".")[:2]))
    return sorted(ups)


# --- plan ---------------------------------------------------------------------------------------


@dataclass
class PlanResult:
    bundle: PlanBundle
    plan_dir: Path
    errors: dict[str, EnvctlError]
    needs_approval: list[str]


def select_nodes(s: Session, targets: list[str], changed_since: str | None) -> set[str]:
    if targets:
        return s.graph.with_dependencies(targets)
    if changed_since:
        return s.graph.affected(changed_paths(s.root, changed_since, s.snapshot.commit))
    return set(s.env.nodes)


def _plan_node(
    s: Session,
    node: Node,
    values: Values,
    pending_outputs: dict[str, set[str]],
    plan_dir: Path,
    upstream_changing: tuple[str, ...] = (),
) -> tuple[NodePlan, str]:
    inputs, pending = resolve_inputs(s, node, values, pending_outputs)
    ih = inputs_hash(inputs)
    if pending:
        ups = ", ".join(_waiting_on(node, pending))
        if node.kind == "stack":
            note = f"will be planned once {ups} is applied (inputs {', '.join(pending)} change)"
        else:
            count = _count_objects(s, node, inputs)
            note = f"will apply {count} objects once {ups} is applied (inputs {', '.join(pending)} change)"
        return NodePlan(node.id, pending_upstream=pending, outputs_unknown=(ALL_OUTPUTS,), notes=(note,)), ih
    if node.kind == "stack":
        from envctl.terraform.stack import plan_stack

        plan = plan_stack(s.stack_ctx(), node, inputs, plan_dir / "stacks")
        planfile = Path(plan.artifacts["planfile"])
        arts = dict(plan.artifacts)
        arts["planfile"] = planfile.relative_to(plan_dir).as_posix()
        arts["planfile_sha256"] = sha256(planfile.read_bytes())
        arts["state_sha256"] = _state_hash(s, node)
        arts.pop("workdir", None)
        plan = dataclasses.replace(plan, artifacts=arts)
    else:
        from envctl.kube import offline_plan_layer, plan_layer, render_layer

        objects = render_layer(s.env, s.snapshot, node, inputs)
        check_plaintext_secrets(s, node, objects)
        try:
            # an upstream that is not applied yet may create namespaces or CRDs these objects need
            plan = plan_layer(s.kube(), node, objects, upstream_pending=bool(upstream_changing))
        except UnavailableError:
            # the cluster may be what an unapplied upstream stack creates: plan offline, never
            # an empty plan; with no such stack, an unreachable cluster stays an error (exit 69)
            creators = [u for u in upstream_changing if u.startswith("stack.")]
            if not creators:
                raise
            plan = offline_plan_layer(node, objects, creators[0])
        plan = dataclasses.replace(
            plan, artifacts={**plan.artifacts, "objects_sha256": _objects_hash(objects)}
        )
    return scrub_plan(plan, values.secrets), ih


def _count_objects(s: Session, node: Node, inputs: Mapping[str, Any]) -> int:
    """Objects a pending layer will apply; a layer that cannot render fails its plan, never hides."""
    from envctl.kube import render_layer

    objects = render_layer(s.env, s.snapshot, node, inputs)
    check_plaintext_secrets(s, node, objects)
    return len(objects)


def precheck(s: Session, nodes: list[str]) -> dict[str, EnvctlError]:
    """Offline checks of every selected node before any engine runs or the cluster is asked.

    Stacks: their workspace is built (paths stay inside the repo, data "external", provisioners and
    registry providers refused unless allowed). Layers: rendered with placeholders for upstream
    outputs (hostile YAML, oversized objects, plaintext Secrets). A hostile repository is refused in
    a second, not after other nodes' Terraform runs.
    """
    errors: dict[str, EnvctlError] = {}
    for n in nodes:
        node = s.env.nodes[n]
        try:
            if node.kind == "stack":
                from envctl.terraform.workspace import materialize

                materialize(s.env, s.snapshot, s.root, node)
            else:
                from envctl.kube import render_layer

                inputs, _ = resolve_inputs(s, node, Values(), {})
                check_plaintext_secrets(s, node, render_layer(s.env, s.snapshot, node, inputs))
        except EnvctlError as e:
            e.node = e.node or n
            errors[n] = e
    return errors


def _objects_hash(objects: list[dict[str, Any]]) -> str:
    return sha256(canonical(objects))


def _state_hash(s: Session, node: Node) -> str:
    if s.env.terraform.backend != "local":
        return ""
    from envctl.terraform.workspace import local_state_file

    f = local_state_file(s.root, s.env.name, node.name)
    return sha256(f.read_bytes()) if f.is_file() else "absent"


def read_current_outputs(s: Session, node: Node, values: Values) -> None:
    """Outputs of a node as it is now (state file or live objects); nothing if it never ran."""
    if node.kind == "stack":
        from envctl.terraform.stack import read_outputs

        outs = read_outputs(s.stack_ctx(), node)
        values.put(
            node.id, {k: o.value for k, o in outs.items()}, {k for k, o in outs.items() if o.sensitive}
        )
    elif node.layer is not None and node.layer.outputs:
        from envctl.kube import read_layer_outputs

        try:
            values.put(node.id, read_layer_outputs(s.kube(), node))
        except (EngineError, UnavailableError):
            return  # not applied yet (or its cluster not there yet): downstream inputs stay pending


def _run_graph(
    s: Session,
    nodes: list[str],
    work: Callable[[str], Status],
    stop_event: threading.Event | None = None,
    needs: Callable[[str, str], bool] | None = None,
) -> ReadyQueue:
    """Run ``work`` over ``nodes`` with a ready queue and ``s.parallelism`` threads.

    ``needs(u, d)``: whether ``d`` must wait for ``u`` (default: every edge of the graph).
    """
    edges = [
        (u, d) for (u, d) in s.graph.edges if u in nodes and d in nodes and (needs is None or needs(u, d))
    ]
    queue = ReadyQueue.build(nodes, edges)
    running: dict[Future[Status], str] = {}
    with ThreadPoolExecutor(max_workers=max(1, s.parallelism)) as pool:
        while True:
            if stop_event is not None and stop_event.is_set():
                queue.stop()
            for n in queue.ready():
                if len(running) >= max(1, s.parallelism):
                    break
                queue.start(n)
                running[pool.submit(work, n)] = n
            if not running:
                break
            done, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
            for fut in done:
                n = running.pop(fut)
                try:
                    result = fut.result()
                except EnvctlError as e:
                    queue.mark(n, Status.FAILED, e.message)
                    continue
                queue.mark(n, result)
    queue.close()
    return queue


def _plan_waits_for(s: Session, upstream: str, node: str) -> bool:
    """Whether planning ``node`` needs ``upstream``'s plan first.

    A stack needs it only when its inputs use the upstream's outputs (a bare ``depends_on``
    orders applies, not plans); a layer always waits, since an upstream may create the
    Namespaces, CRDs or the cluster its plan is checked against.
    """
    n = s.env.nodes[node]
    return n.kind != "stack" or any(ref.node == upstream for ref in n.upstream_refs)


def plan_environment(
    s: Session, *, targets: list[str] | None = None, changed_since: str | None = None, out: Path | None = None
) -> PlanResult:
    """Plan the selected nodes in graph order (parallel, bounded) and write the plan bundle."""
    selected = select_nodes(s, targets or [], changed_since)
    order = s.graph.subgraph_order(selected)
    values = Values()
    pending_outputs: dict[str, set[str]] = {}
    for n in s.graph.order():
        if n not in selected:
            read_current_outputs(s, s.env.nodes[n], values)
    plan_id, default_dir = s.store.new_plan_dir(s.env.name)
    plan_dir = (out or default_dir).resolve()
    plan_dir.mkdir(parents=True, exist_ok=True)
    plans: dict[str, NodePlan] = {}
    hashes: dict[str, str] = {}
    s.prewarm_engine(order)
    errors: dict[str, EnvctlError] = precheck(s, order)
    lock = threading.Lock()
    if errors:
        with contextlib.suppress(OSError):
            plan_dir.rmdir()  # nothing was planned: leave no empty plan behind
        empty = PlanBundle(plan_id, s.env.name, s.snapshot.commit, s.snapshot.dirty, now(), (), {})
        return PlanResult(empty, plan_dir, errors, [])

    def work(n: str) -> Status:
        node = s.env.nodes[n]
        s.progress(f"{n}: planning")
        t0 = time.monotonic()
        try:
            with lock:
                ancestors = s.graph.with_dependencies([n]) - {n}
                changing = tuple(sorted(u for u in ancestors if u in plans and plans[u].has_changes))
            plan, ih = _plan_node(s, node, values, pending_outputs, plan_dir, changing)
            # after the plan, which waited for Terraform's state lock: a Terraform still writing
            # this state (the worker of a killed run, say) has finished, so the file is whole
            read_current_outputs(s, node, values)
            plan = scrub_plan(plan, values.secrets)  # its own sensitive outputs are known now
        except EnvctlError as e:
            e.node = e.node or n
            with lock:
                errors[n] = e
            s.progress(f"{n}: plan failed")
            raise
        with lock:
            plans[n] = plan
            hashes[n] = ih
            pending_outputs[n] = set(plan.outputs_changing) | set(plan.outputs_unknown)
        c = plan.counts
        what = (
            "pending upstream"
            if plan.pending_upstream
            else (f"{c.add} to add, {c.change} to change, {c.destroy} to destroy, {c.replace} to replace")
        )
        s.progress(f"{n}: planned in {time.monotonic() - t0:.1f}s ({what})")
        return Status.DONE

    queue = _run_graph(s, order, work, needs=lambda u, d: _plan_waits_for(s, u, d))
    for n in order:
        if queue.status[n] is Status.SKIPPED and n not in errors:
            errors[n] = EnvctlError(f"not planned: {queue.reason.get(n, 'an upstream node failed')}", node=n)
    bundle = PlanBundle(
        id=plan_id,
        environment=s.env.name,
        commit=s.snapshot.commit,
        dirty=s.snapshot.dirty,
        created=now(),
        order=tuple(n for n in order if n in plans),
        nodes=plans,
        inputs_hash={**hashes, "_source": s.source_hash()},
        targets=tuple(sorted(targets or ())),
    )
    if not errors:
        s.store.write_bundle(plan_dir, bundle)
    return PlanResult(bundle, plan_dir, errors, nodes_needing_approval(bundle, s.env.approval_required_for))


# --- apply --------------------------------------------------------------------------------------


Prompt = Callable[[str, NodePlan | None], bool]


@dataclass
class NodeResult:
    node: str
    status: Status
    reason: str = ""
    plan: NodePlan | None = None
    seconds: float = 0.0
    inputs_hash: str = ""  # of the inputs it converged with: drift compares it to find stale nodes


@dataclass
class ApplyResult:
    run_id: str
    plan_id: str
    results: dict[str, NodeResult]
    interrupted: bool = False
    errors: dict[str, EnvctlError] = field(default_factory=dict)

    def of(self, status: Status) -> list[str]:
        return [n for n, r in self.results.items() if r.status is status]


def preflight(s: Session, bundle: PlanBundle, *, resume: bool) -> None:
    """Refuse a stale plan before anything is applied (exit 4)."""
    if bundle.environment != s.env.name:
        raise UsageError(
            f"the plan is for environment {bundle.environment}, not {s.env.name}",
            hint=f"run with -e {bundle.environment}, or plan {s.env.name}",
        )
    if bundle.commit != s.snapshot.commit:
        raise StalePlanError(
            f"the plan was made at commit {str(bundle.commit)[:12]}, the repository is now at "
            f"{str(s.snapshot.commit)[:12]}",
            hint="run envctl plan again (a plan made with --rev is applied with "
            f"--rev {str(bundle.commit)[:12]})",
        )
    if bundle.inputs_hash.get("_source") != s.source_hash():
        raise StalePlanError(
            "files of the environment changed since the plan was made", hint="run envctl plan again"
        )
    if s.store.was_applied(bundle.id) and not resume:
        raise StalePlanError(
            f"plan {bundle.id} was already applied",
            hint="run envctl plan again (or --resume to finish an interrupted run)",
        )
    for n in bundle.order:
        plan = bundle.nodes[n]
        if (
            "state_sha256" in plan.artifacts
            and not resume
            and _state_hash(s, s.env.nodes[n]) != plan.artifacts["state_sha256"]
        ):
            raise StalePlanError(
                f"the Terraform state of {n} changed since the plan was made",
                node=n,
                hint="run envctl plan again",
            )


def check_layers_live(s: Session, bundle: PlanBundle) -> None:
    """Refuse the plan if a layer's live objects changed since planning (exit 4, nothing applied).

    Only layers whose plan is final can be compared now: planned with known inputs and with no
    upstream change in this plan (those are re-planned during apply anyway).
    """
    from envctl.kube import plan_layer, render_layer

    values = Values()
    for n in s.graph.order():
        read_current_outputs(s, s.env.nodes[n], values)
    for n in bundle.order:
        planned = bundle.nodes[n]
        node = s.env.nodes[n]
        if node.kind != "layer" or planned.pending_upstream:
            continue
        if any(
            bundle.nodes[u].has_changes for u in s.graph.with_dependencies([n]) - {n} if u in bundle.nodes
        ):
            continue
        inputs, pending = resolve_inputs(s, node, values, {})
        if pending or bundle.inputs_hash.get(n) != inputs_hash(inputs):
            continue
        now_plan = scrub_plan(
            plan_layer(s.kube(), node, render_layer(s.env, s.snapshot, node, inputs)), values.secrets
        )
        if _changes_key(now_plan) != _changes_key(planned):
            raise StalePlanError(
                "the live objects changed since the plan was made",
                node=n,
                hint="run envctl plan again to see the current differences",
            )


def approve_plan(s: Session, bundle: PlanBundle, by: str) -> Approval:
    approval = Approval(bundle.id, bundle.fingerprint, bundle.environment, bundle.commit, by, now())
    s.store.record_approval(approval)
    return approval


def check_recorded_approval(s: Session, bundle: PlanBundle) -> None:
    approval = s.store.read_approval(bundle.id)
    if approval is None:
        raise ApprovalRequiredError(
            f"plan {bundle.id} has no recorded approval",
            hint=f"run: envctl approve {bundle.id} --by NAME",
        )
    check_approval(approval, bundle)


@contextmanager
def environment_lock(s: Session, run_id: str, timeout: float = 0.0) -> Iterator[dict[str, Any]]:
    """The one lock per environment: a Lease in its cluster (when it has layers) and a local file lock.

    The file lock makes two runs on one checkout fail fast without a round trip; the Lease makes
    two runs anywhere exclusive, and expires when its holder dies.
    """
    if s.held_lock is not None:  # this command already holds it (hold_environment_lock)
        yield s.held_lock
        return
    holder = holder_identity(run_id)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with s.store.file_lock(s.env.name, holder):
                if s.has_layers:
                    from envctl.kube.lease import lease_lock

                    with lease_lock(s.kube(), s.env.name, holder):
                        yield holder
                else:
                    yield holder
            return
        except EnvctlError as e:
            if e.reference != "environment-locked" or time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def lock_holder(s: Session) -> dict[str, Any] | None:
    """Who holds the environment lock now (the file lock, then the cluster's Lease), or None.

    Raises ``UnavailableError`` when the environment has a cluster that cannot be reached.
    """
    holder = s.store.read_file_lock(s.env.name)
    if holder is None and s.has_layers:
        from envctl.kube.lease import read_lease

        holder = read_lease(s.kube(), s.env.name)
    return holder


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"


@contextmanager
def hold_environment_lock(s: Session, timeout: float = 0.0) -> Iterator[dict[str, Any]]:
    """Hold the environment lock for a whole command, so that ``apply`` plans, asks and applies
    under it: a second run fails fast naming the holder instead of planning against a state
    that the first run's Terraform is writing. ``apply_bundle`` inside it uses this lock.
    """
    with environment_lock(s, new_run_id(), timeout) as holder:
        s.held_lock = holder
        try:
            yield holder
        finally:
            s.held_lock = None


@contextmanager
def interrupts(stop: threading.Event, progress: Progress) -> Iterator[None]:
    """First Ctrl-C: stop scheduling, let running nodes finish. Second: exit at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            progress("second interrupt: exiting now; running Terraform may leave its state locked")
            raise KeyboardInterrupt
        stop.set()
        progress("interrupt: no new nodes will start; waiting for running ones (Ctrl-C again to exit now)")

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def apply_bundle(
    s: Session,
    bundle: PlanBundle,
    plan_dir: Path,
    *,
    auto_approve: bool,
    prompt: Prompt | None,
    resume: bool = False,
    lock_timeout: float = 0.0,
    fresh: bool = False,
) -> ApplyResult:
    """Converge the nodes of ``bundle`` in dependency order; the caller has already approved it.

    ``fresh``: the plan was made by this process under the lock it still holds, so the live
    objects were compared moments ago and need no second dry-run before applying.
    """
    run_id = str(s.held_lock["run"]) if s.held_lock is not None else new_run_id()
    stop = threading.Event()
    with environment_lock(s, run_id, lock_timeout) as holder:
        s.prewarm_engine((n for n in bundle.order if bundle.nodes[n].has_changes), applying=True)
        preflight(s, bundle, resume=resume)
        if not resume and not fresh:
            check_layers_live(s, bundle)
        done_before = _resumable(s, bundle) if resume else {}
        values = Values()
        for n in s.graph.order():
            if n not in bundle.nodes:
                read_current_outputs(s, s.env.nodes[n], values)
        results: dict[str, NodeResult] = {}
        lock = threading.Lock()
        journal: dict[str, Any] = {
            "run": run_id,
            "plan": bundle.id,
            "environment": s.env.name,
            "commit": bundle.commit,
            "started": now(),
            "holder": holder,
            "nodes": {},
        }
        policy = s.env.approval_required_for

        def record(r: NodeResult) -> None:
            with lock:
                results[r.node] = r
                journal["nodes"][r.node] = {
                    "status": r.status.value,
                    "reason": r.reason,
                    "at": now(),
                    "commit": bundle.commit,
                    "fingerprint": node_fingerprint(bundle.nodes[r.node]),
                    "seconds": round(r.seconds, 3),
                    "inputs_hash": r.inputs_hash,
                }
                s.store.write_journal(s.env.name, run_id, journal)

        def work(n: str) -> Status:
            node = s.env.nodes[n]
            planned = bundle.nodes[n]
            t0 = time.monotonic()
            if done_before.get(n) == node_fingerprint(planned):
                read_current_outputs(s, node, values)
                s.progress(f"{n}: already converged by an earlier run of this plan, skipped")
                ih = inputs_hash(resolve_inputs(s, node, values, {})[0])
                record(NodeResult(n, Status.DONE, "resumed", planned, 0.0, ih))
                return Status.DONE
            try:
                status, reason, plan = _apply_node(
                    s, node, planned, bundle, plan_dir, values, auto_approve, prompt, policy
                )
            except EnvctlError as e:
                e.node = e.node or n
                s.progress(f"{n}: failed: {e.message}")
                record(
                    NodeResult(
                        n, Status.FAILED, scrub(e.message, values.secrets), None, time.monotonic() - t0
                    )
                )
                with lock:
                    errors[n] = e
                return Status.FAILED
            ih = inputs_hash(resolve_inputs(s, node, values, {})[0]) if status is Status.DONE else ""
            seconds = time.monotonic() - t0
            record(NodeResult(n, status, reason, plan, seconds, ih))
            s.progress(f"{n}: {'converged' if status is Status.DONE else status.value} in {seconds:.1f}s")
            return status

        errors: dict[str, EnvctlError] = {}
        s.store.mark_applied(bundle, run_id)
        with interrupts(stop, s.progress):
            queue = _run_graph(s, list(bundle.order), work, stop)
        for n in bundle.order:
            st = queue.status[n]
            if n not in results or results[n].status is not st:
                results[n] = NodeResult(n, st, queue.reason.get(n, ""))
                journal["nodes"][n] = {
                    "status": st.value,
                    "reason": queue.reason.get(n, ""),
                    "at": now(),
                    "commit": bundle.commit,
                    "fingerprint": node_fingerprint(bundle.nodes[n]),
                }
        journal["finished"] = now()
        journal["interrupted"] = stop.is_set()
        s.store.write_journal(s.env.name, run_id, journal)
        return ApplyResult(run_id, bundle.id, {n: results[n] for n in bundle.order}, stop.is_set(), errors)


def _resumable(s: Session, bundle: PlanBundle) -> dict[str, str]:
    return {n: str(r.get("fingerprint")) for n, r in s.store.last_done(s.env.name, bundle.id).items()}


def _apply_node(
    s: Session,
    node: Node,
    planned: NodePlan,
    bundle: PlanBundle,
    plan_dir: Path,
    values: Values,
    auto_approve: bool,
    prompt: Prompt | None,
    policy: tuple[str, ...],
) -> tuple[Status, str, NodePlan]:
    inputs, pending = resolve_inputs(s, node, values, {})
    if pending:
        raise EngineError(
            f"inputs {', '.join(pending)} are still unknown after upstream nodes converged", node=node.id
        )
    same_inputs = bundle.inputs_hash.get(node.id) == inputs_hash(inputs) and not planned.pending_upstream
    plan = planned
    if node.kind == "stack":
        from envctl.terraform.stack import apply_stack, plan_stack

        ctx = s.stack_ctx()
        if same_inputs and "planfile" in planned.artifacts:
            planfile = plan_dir / planned.artifacts["planfile"]
        else:
            s.progress(f"{node.id}: re-planning with the new upstream outputs")
            plan = scrub_plan(plan_stack(ctx, node, inputs, plan_dir / "replans"), values.secrets)
            planfile = Path(plan.artifacts["planfile"])
            blocked = _needs_new_approval(node, planned, plan, auto_approve, prompt, policy, s)
            if blocked:
                return Status.BLOCKED, blocked, plan
        if plan.has_changes:
            s.progress(f"{node.id}: applying")
            outs = apply_stack(ctx, node, planfile)
        else:
            from envctl.terraform.stack import read_outputs

            outs = read_outputs(ctx, node)
        values.put(
            node.id, {k: o.value for k, o in outs.items()}, {k for k, o in outs.items() if o.sensitive}
        )
        return Status.DONE, "", plan

    from envctl.kube import apply_layer, plan_layer, read_layer_outputs, render_layer

    kube = s.kube()
    objects = render_layer(s.env, s.snapshot, node, inputs)
    check_plaintext_secrets(s, node, objects)
    if not same_inputs:
        s.progress(f"{node.id}: re-planning with the new upstream outputs")
        plan = scrub_plan(plan_layer(kube, node, objects), values.secrets)
        blocked = _needs_new_approval(node, planned, plan, auto_approve, prompt, policy, s)
        if blocked:
            return Status.BLOCKED, blocked, plan
    elif planned.artifacts.get("objects_sha256") not in (None, _objects_hash(objects)):
        raise StalePlanError(
            "the rendered objects differ from the plan", node=node.id, hint="run envctl plan again"
        )
    s.progress(f"{node.id}: applying {len(objects)} objects")
    # the dry-runs of this run's plan stand (re-checked by resourceVersion) unless a node this
    # layer depends on was applied since: a CRD or webhook it changed may judge objects anew
    upstream = s.graph.with_dependencies([node.id]) - {node.id}
    reuse = not same_inputs or not any(bundle.nodes[u].has_changes for u in upstream if u in bundle.nodes)
    applied = scrub_plan(apply_layer(kube, node, objects, reuse_plan=reuse), values.secrets)
    if node.layer is not None and node.layer.outputs:
        values.put(node.id, read_layer_outputs(kube, node))
    return Status.DONE, "", applied


def _changes_key(plan: NodePlan) -> str:
    return sha256(canonical([c.to_json() for c in plan.changes]))


def _needs_new_approval(
    node: Node,
    planned: NodePlan,
    plan: NodePlan,
    auto_approve: bool,
    prompt: Prompt | None,
    policy: tuple[str, ...],
    s: Session,
) -> str:
    """'' when the new plan may go ahead; else why the branch stops for a new approval."""
    if auto_approve or not needs_approval(plan, policy):
        return ""
    if _changes_key(plan) == _changes_key(planned):
        return ""
    if prompt is not None and prompt(node.id, plan):
        return ""
    return "changed after re-planning with the new upstream outputs: needs a new approval"


# --- validate -----------------------------------------------------------------------------------


def check_plaintext_secrets(s: Session, node: Node, objects: list[dict[str, Any]]) -> None:
    """Refuse ``kind: Secret`` with values in Git unless the layer allows it; names keys, never values."""
    from envctl.kube import plaintext_secrets

    if node.layer is None or node.layer.allow_secrets:
        return
    found = plaintext_secrets(objects)
    if found:
        from envctl.core.errors import ConfigError

        keys = sorted(
            {
                k
                for o in objects
                if o.get("kind") == "Secret"
                for k in {**(o.get("data") or {}), **(o.get("stringData") or {})}
            }
        )
        raise ConfigError(
            f"plaintext Secret in Git: {', '.join(found)} (keys: {', '.join(keys)})",
            node=node.id,
            location=_secret_location(s, node),
            hint="keep secret values out of Git (an external secret store, or SOPS-encrypted files); "
            "or set allow_secrets: true in layer.yaml if this is deliberate",
        )


def _secret_location(s: Session, node: Node) -> Location:
    """The file and line of the first ``data:``/``stringData:`` of a Secret in the layer's manifests."""
    import yaml

    assert node.layer is not None
    files = list(node.layer.manifests)
    if node.layer.kustomize:
        return Location(f"{node.path}/kustomization.yaml")
    for f in files:
        try:
            text = s.snapshot.read_bytes(f).decode("utf-8", "replace")
            docs = list(yaml.compose_all(text, yaml.SafeLoader))
        except (yaml.YAMLError, RecursionError, EnvctlError):
            continue
        for doc in docs:
            if not isinstance(doc, yaml.MappingNode):
                continue
            fields = {k.value: v for k, v in doc.value if isinstance(k, yaml.ScalarNode)}
            kind = fields.get("kind")
            if isinstance(kind, yaml.ScalarNode) and kind.value == "Secret":
                for key, _ in doc.value:
                    if isinstance(key, yaml.ScalarNode) and key.value in ("data", "stringData"):
                        return Location(f, key.start_mark.line + 1)
    return Location(node.path)


def validate_environment(s: Session) -> list[str]:
    """Terraform validate every stack and render every layer offline; returns warnings.

    Touches no live system: no state, no cluster. Inputs that come from other nodes' outputs
    are rendered as placeholders.
    """
    from envctl.kube import render_layer
    from envctl.terraform.stack import validate_stack

    warnings: list[str] = []
    for n in s.graph.order():
        node = s.env.nodes[n]
        if node.kind == "stack":
            warnings.extend(f"{n}: {w}" for w in validate_stack(s.stack_ctx(), node))
        else:
            inputs, _ = resolve_inputs(s, node, Values(), {})
            objects = render_layer(s.env, s.snapshot, node, inputs)
            check_plaintext_secrets(s, node, objects)
    return warnings
