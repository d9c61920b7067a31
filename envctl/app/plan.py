"""Plan the selected nodes of an environment in graph order and write the plan bundle."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from envctl.app.executor import run_graph
from envctl.app.inputs import (
    ALL_OUTPUTS,
    Values,
    inputs_hash,
    read_current_outputs,
    resolve_inputs,
    waiting_on,
)
from envctl.app.session import Session
from envctl.app.validate import check_plaintext_secrets, precheck
from envctl.core.approval import nodes_needing_approval
from envctl.core.bundle import PlanBundle, canonical, sha256
from envctl.core.changes import NodePlan
from envctl.core.errors import EnvctlError, UnavailableError
from envctl.core.model import Node
from envctl.core.results import PlanResult
from envctl.core.schedule import Status
from envctl.core.scrub import scrub_plan
from envctl.repo.gitcli import changed_paths
from envctl.store import now


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
        ups = ", ".join(waiting_on(node, pending))
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
        arts["state_sha256"] = state_hash(s, node)
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
            plan, artifacts={**plan.artifacts, "objects_sha256": objects_hash(objects)}
        )
    return scrub_plan(plan, values.secrets), ih


def _count_objects(s: Session, node: Node, inputs: Mapping[str, Any]) -> int:
    """Objects a pending layer will apply; a layer that cannot render fails its plan, never hides."""
    from envctl.kube import render_layer

    objects = render_layer(s.env, s.snapshot, node, inputs)
    check_plaintext_secrets(s, node, objects)
    return len(objects)


def objects_hash(objects: list[dict[str, Any]]) -> str:
    return sha256(canonical(objects))


def state_hash(s: Session, node: Node) -> str:
    if s.env.terraform.backend != "local":
        return ""
    from envctl.terraform.workspace import local_state_file

    f = local_state_file(s.root, s.env.name, node.name)
    return sha256(f.read_bytes()) if f.is_file() else "absent"


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

    queue = run_graph(s, order, work, needs=lambda u, d: _plan_waits_for(s, u, d))
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
