"""Plan and apply one layer: dry-run everything, then apply in stages, prune, record inventory, wait.

Shape of flux's ``ssa.ResourceManager.ApplyAllStaged``: every object is dry-run first (one bad
object, or one field conflict in a layer that says ``conflicts: refuse``, means nothing is
written). Git wins: an apply takes back, with force-conflicts, every field Git sets that another
manager changed (the plan lists each take-over with both values); fields Git does not set are not
in the applied object, so server-side apply leaves them to their managers; CRDs and
Namespaces go first and are waited for; then a chart's pre-install/pre-upgrade hooks, waited for;
the rest follow in a few tiers of kinds (``objects.APPLY_TIERS``: what must exist before what is
admitted or used), concurrently within a tier; only objects whose dry-run differs from the live
object are applied.
Both operations return a ``NodePlan``: planned changes, or the changes that happened.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from envctl.core.changes import Action, Change, NodePlan
from envctl.core.errors import ConfigError, EngineError, EnvctlError, InterruptedRun, UnavailableError
from envctl.core.model import LayerSpec, Node
from envctl.kube.client import KubeContext
from envctl.kube.diff import LiveView, Prepared, WaitsFor, conflict_error, dry_run_one, prepare, survey
from envctl.kube.diff import crd_kinds as _crd_kinds
from envctl.kube.diff import layer_namespaces as _layer_namespaces
from envctl.kube.errors import ApiError, translate
from envctl.kube.helm import pre_hook_weight
from envctl.kube.inventory import Inventory, delete_inventory, read_inventory, write_inventory
from envctl.kube.objects import (
    ANNOTATION_INVENTORY,
    INVENTORY_NAMESPACE,
    LABEL_ENV,
    LABEL_LAYER,
    STAGE_ONE_KINDS,
    ObjRef,
    apply_stages,
    mask_object,
    mask_secret_pair,
    normalise,
    objects_digest,
    owned_by_envctl,
    secret_values,
)
from envctl.kube.outputs import parse_object
from envctl.kube.prune import (
    Kept,
    PruneCandidate,
    delete_change,
    delete_objects,
    prune_candidates,
    sort_by_delete,
)
from envctl.kube.render import inventory_id, label_value
from envctl.kube.wait import Waitable, settled, wait_for

_ADOPT = "envctl becomes a field manager of this object"
CRD_DISCOVERY_TIMEOUT = 30.0  # how long a new CRD's kind may take to appear in discovery


def _spec(node: Node) -> LayerSpec:
    return node.layer if node.layer is not None else LayerSpec()


def _with_adoption(p: Prepared) -> Change | None:
    """A no-op on an object envctl does not manage yet is still a change: envctl takes ownership."""
    c = p.change
    if c is not None and c.action is Action.NOOP and p.live is not None and not owned_by_envctl(p.live):
        return Change(c.address, Action.UPDATE, None, None, (*c.reasons, _ADOPT), ("metadata.managedFields",))
    return c


def left_git(inventory: Inventory, prepared: Sequence[Prepared]) -> list[ObjRef]:
    """Inventory entries no longer rendered (an apiVersion change of the same object is not stale)."""
    rendered = {(p.ref.group, p.ref.kind, p.ref.namespace, p.ref.name) for p in prepared}
    return [e for e in inventory.entries if (e.group, e.kind, e.namespace, e.name) not in rendered]


def _check_empty(node: Node, objects: Sequence[Any], stale: Sequence[ObjRef], allow_empty: bool) -> None:
    if not objects and stale and not allow_empty:
        raise ConfigError(
            f"the layer renders no objects; refusing to prune the {len(stale)} object(s) of its inventory",
            node=node.id,
            hint="if deleting everything is intended, use --allow-empty or allow_empty: true in layer.yaml",
        )


def _outputs_unknown(node: Node, changes: Sequence[Change]) -> tuple[str, ...]:
    """Outputs whose object is created or changed by this plan: their values are known after apply."""
    spec = _spec(node)
    changing = {c.address for c in changes if c.action.changes}
    out = []
    for name, output in spec.outputs.items():
        ref = parse_object(output.object, spec.namespace)
        cluster_ref = ObjRef(ref.api_version, ref.kind, "", ref.name)
        if str(ref) in changing or str(cluster_ref) in changing:
            out.append(name)
    return tuple(sorted(out))


def offline_plan_layer(node: Node, objects: Sequence[Mapping[str, Any]], waiting_for: str) -> NodePlan:
    """The plan of a layer whose cluster does not exist yet: every object will be created."""
    changes = tuple(
        Change(
            str(ObjRef.of(o)), Action.CREATE, None, mask_object(dict(o)), (f"once {waiting_for} is applied",)
        )
        for o in objects
    )
    return NodePlan(
        node.id,
        changes,
        outputs_unknown=tuple(sorted(_spec(node).outputs)),
        notes=(f"will create {len(changes)} objects once {waiting_for} is applied",),
    )


def plan_layer(
    ctx: KubeContext,
    node: Node,
    objects: Sequence[Mapping[str, Any]],
    *,
    upstream_pending: bool = False,
    upstream_objects: Sequence[Mapping[str, Any]] = (),
    allow_empty: bool = False,
) -> NodePlan:
    """Dry-run every object and diff it with the live one; add the deletions the inventory implies.

    ``upstream_pending``: an upstream node is not applied yet, so kinds the cluster does not serve
    are planned as "create after" instead of failing; ``upstream_objects``: rendered objects of
    upstream layers, whose CRDs make their kinds known. Objects whose namespace does not exist
    yet are planned as "create after Namespace" (apply fails if nothing creates it).
    """
    spec = _spec(node)
    prepared = prepare(
        ctx,
        node.id,
        objects,
        recreate=spec.recreate,
        upstream_pending=upstream_pending,
        upstream_objects=upstream_objects,
    )
    if not upstream_pending and not upstream_objects:
        ctx.remember(_plan_key(node, objects), prepared)
    changes = [c for p in prepared if (c := _with_adoption(p)) is not None]
    notes: list[str] = list(spec.deprecations)
    notes.extend(_unvalidated(prepared, _layer_namespaces(objects), _layer_namespaces(upstream_objects)))
    if not spec.take_conflicts:
        err = conflict_error(node.id, prepared)
        if err is not None:
            notes.append(f"apply will fail (conflicts: refuse): {err.message}")
    inventory = read_inventory(ctx, node.id)
    lost = _lost_inventory(ctx, node, inventory, prepared)
    if lost:
        notes.append(lost)
    stale = left_git(inventory, prepared)
    _check_empty(node, objects, stale, allow_empty or spec.allow_empty)
    if stale and spec.prune:
        candidates, kept, _ = prune_candidates(ctx, node.id, stale)
        changes.extend(delete_change(c) for c in candidates)
        notes.extend(map(str, kept))
    elif stale:
        notes.append(f"{len(stale)} object(s) left Git but prune is off: " + ", ".join(map(str, stale)))
    return NodePlan(
        node.id, tuple(changes), outputs_unknown=_outputs_unknown(node, changes), notes=tuple(notes)
    )


def _unvalidated(prepared: Sequence[Prepared], own: set[str], upstream: set[str]) -> list[str]:
    """Plan notes naming the objects no dry-run checked: the API server dry-runs nothing in a
    namespace that does not exist yet (``own``: Namespaces this layer creates; ``upstream``:
    those its upstream layers create)."""
    by_ns: dict[str, list[ObjRef]] = {}
    for p in prepared:
        if p.waits_for is WaitsFor.NAMESPACE:
            by_ns.setdefault(p.ref.namespace, []).append(p.ref)
    notes = []
    for ns, refs in sorted(by_ns.items()):
        names = ", ".join(map(str, refs))
        if ns in own:
            notes.append(
                f"{len(refs)} object(s) could not be validated yet: their Namespace {ns} is created by "
                f"this apply, and the API server dry-runs nothing in a missing namespace ({names}); the "
                "apply creates the Namespace first, dry-runs them, and if one is refused deletes the "
                "Namespace again: nothing is applied"
            )
        elif ns in upstream:
            notes.append(
                f"{len(refs)} object(s) could not be validated yet: their Namespace {ns} does not exist "
                f"({names}); the apply dry-runs them once the upstream layer that creates it is applied"
            )
        else:
            notes.append(
                f"{len(refs)} object(s) cannot be applied: their Namespace {ns} does not exist and "
                f"nothing creates it ({names}); the apply refuses the layer before any write"
            )
    return notes


def _plan_key(node: Node, objects: Sequence[Mapping[str, Any]]) -> tuple[str, str, str]:
    """What a plan's dry-runs are kept under for the apply of the same objects in this run."""
    return ("layer-plan", node.id, f"{_spec(node).recreate}:{objects_digest(objects)}")


def _as_planned(p: Prepared, view: LiveView) -> bool | None:
    """The cluster still holds what ``p``'s plan saw: its dry-run result stands.

    None for a planned create the view cannot settle: absent from the layer's LISTs, it may
    still exist without the layer's labels; one GET (404) tells.
    """
    if p.pending is not None:  # waits for its namespace (still missing) or its CRD (stage two)
        return p.waits_for is not WaitsFor.NAMESPACE or p.ref.namespace in view.missing_namespaces
    if p.mapping is None or p.dry is None:
        return False
    if p.live is None:  # planned as a create (its dry-run answered 201)
        if p.conflicts or p.replace:
            return False
        if p.ref in view.exact:
            return view.exact[p.ref] is None
        return False if p.ref in view.labelled else None
    now = view.exact.get(p.ref) if p.ref in view.exact else view.labelled.get(p.ref)
    version = (p.live.get("metadata") or {}).get("resourceVersion")
    return now is not None and bool(version) and (now.get("metadata") or {}).get("resourceVersion") == version


def _planned_create(p: Prepared) -> bool:
    """Planned as a create whose dry-run stands while the object is still absent (``_as_planned``)."""
    return (
        p.pending is None
        and p.mapping is not None
        and p.dry is not None
        and p.live is None
        and not p.conflicts
        and not p.replace
    )


def _plain_noop(p: Prepared) -> bool:
    """Planned as unchanged and already managed by envctl: nothing to apply, nothing to re-check."""
    change = _with_adoption(p)
    return p.pending is None and not p.conflicts and change is not None and change.action is Action.NOOP


def _reuse_plan(
    ctx: KubeContext, node: Node, objects: Sequence[Mapping[str, Any]], reuse: bool
) -> list[Prepared] | None:
    """The dry-runs of this run's plan of the same objects, re-checked in a few requests; or None.

    One GET per namespace and one LIST per kind and namespace (:func:`survey`) show whether each
    object is still at the ``resourceVersion`` its plan saw; an object that is not (changed,
    deleted, or read by GET because it lacked the layer's labels) is dry-run again, so the apply
    acts on the cluster as it is now, never on the plan's memory; objects planned as unchanged
    are not read again (a layer in sync costs no request here). A planned create stands while
    the object is still absent: one GET answering 404 shows that (a GET costs the API server far
    less than dry-running a large CRD again); one answering 200 - created since, with or without
    the layer's labels - has it dry-run again.
    """
    planned: list[Prepared] | None = ctx.recall(_plan_key(node, objects))  # forgotten either way
    if planned is None or not reuse:
        return None
    # An object planned as unchanged is not read again: the apply would not touch it either way,
    # and a change made since the plan is drift like one made after the apply.
    unchanged = {id(p) for p in planned if _plain_noop(p)}
    # A planned create is settled by one GET, which also finds an object created since without
    # the layer's labels: the LISTs are only for the objects the plan saw live (a layer of new
    # CRDs: no LIST, its GETs go out at once)
    creates = {id(p) for p in planned if id(p) not in unchanged and _planned_create(p)}
    view = survey(ctx, node.id, [p for p in planned if id(p) not in unchanged | creates])
    crds, namespaces = _crd_kinds(objects), _layer_namespaces(objects)
    recreate = _spec(node).recreate
    settled = {
        id(p): True if id(p) in unchanged else None if id(p) in creates else _as_planned(p, view)
        for p in planned
    }
    unsure = [p for p in planned if settled[id(p)] is None]

    def absent(p: Prepared) -> bool:
        assert p.mapping is not None
        return ctx.get(p.ref, p.mapping) is None

    for p, gone in zip(unsure, ctx.parallel(absent, unsure), strict=True):
        settled[id(p)] = gone is True  # a failed GET: dry-run it again, which reports the problem

    def again(p: Prepared) -> Prepared:
        p.live = p.dry = None
        dry_run_one(ctx, node.id, p, recreate=recreate, crds=crds, namespaces=namespaces, view=view)
        return p

    for r in ctx.parallel(again, [p for p in planned if not settled[id(p)]]):
        if isinstance(r, BaseException):
            raise r
    return planned


def _apply_one(
    ctx: KubeContext, node: Node, p: Prepared, force: bool, created: set[ObjRef] | None = None
) -> Change:
    """Apply one object (or nothing, when its plan is a no-op); ``created`` collects it when this
    very request created it (201), not one that existed already (200)."""
    assert p.mapping is not None and p.change is not None
    change = _with_adoption(p)
    assert change is not None
    if not change.action.changes:
        p.dry = p.live
        return change
    try:
        if p.replace:
            ctx.delete(p.ref, p.mapping)
            _wait_gone(ctx, p)
        result, new = ctx.apply_created(p.obj, p.mapping, dry_run=False, force=force)
    except ApiError as e:
        raise translate(e, p.ref, node=node.id, secrets=list(secret_values(p.obj))) from e
    p.dry = result
    if new and created is not None:
        created.add(p.ref)
    before, after = normalise(p.live), normalise(result)
    if p.ref.kind == "Secret":
        before, after = mask_secret_pair(before, after)
    return Change(change.address, change.action, before, after, change.reasons, change.fields, change.manager)


def _wait_gone(ctx: KubeContext, p: Prepared, timeout: float = 60.0) -> None:
    assert p.mapping is not None
    deadline = time.monotonic() + timeout
    while ctx.get(p.ref, p.mapping) is not None:
        if time.monotonic() > deadline:
            raise EngineError(f"{p.ref}: still present {timeout:g}s after deleting it for re-creation")
        time.sleep(ctx.poll_interval)


# Kinds applied one object at a time, in render order. The API server establishes new
# CustomResourceDefinitions one after the other (its naming and establishing controllers each
# work through one queue), each after its create: applied one by one, the first CRD's
# establishing overlaps the next one's apply; applied all at once, the creates contend for the
# server's CPU and every establishing waits behind all of them (B8, 10 CRDs of 400-720 KB:
# 2-3 s of concurrent applies, then 7 s of waiting, against ~5 s one by one with the last
# established ~1 s after its apply; API server CPU 16.5 -> 13.8 s, median of 3 rounds).
ONE_AT_A_TIME = frozenset({"CustomResourceDefinition"})
# Bound of one background watch of an object applied one at a time (and the layer's wait
# timeout, if shorter); the readiness wait takes over from what it saw.
WATCH_AHEAD = 120.0


def _apply_stage(
    ctx: KubeContext,
    node: Node,
    items: Sequence[Prepared],
    force: bool,
    done: dict[ObjRef, Change],
    *,
    watch_ahead: Collection[ObjRef] = (),
    watch_timeout: float = WATCH_AHEAD,
) -> None:
    """Apply a set of objects into ``done`` tier by tier (``objects.APPLY_TIERS``), each tier one
    wave of concurrent requests; stop after the first tier with a failure (all its failures
    listed). ``done`` holds every object applied, including those of the failed tier that were.
    ``watch_ahead``: objects a readiness wait will follow; those of a kind applied one at a time
    are watched from their apply on while the next is applied (for up to ``watch_timeout``
    seconds: :meth:`~envctl.kube.client.KubeContext.watch_ahead`)."""
    one = lambda p: _apply_one(ctx, node, p, force)  # noqa: E731
    for group in apply_stages(items, lambda p: p.ref.kind):
        if all(p.ref.kind in ONE_AT_A_TIME for p in group):  # CRDs: a tier of their own
            results: list[Change | BaseException] = []
            for p in group:
                (r,) = ctx.parallel(one, [p])
                results.append(r)
                if isinstance(r, BaseException):
                    break  # one at a time: nothing after a failure is written
                if r.action.changes and p.ref in watch_ahead and p.mapping is not None:
                    ctx.watch_ahead(p.ref, p.mapping, p.dry, settled, watch_timeout)
            group = group[: len(results)]
        else:
            results = ctx.parallel(one, group)
        failures = [(p, r) for p, r in zip(group, results, strict=True) if isinstance(r, BaseException)]
        for p, r in zip(group, results, strict=True):
            if not isinstance(r, BaseException):
                done[p.ref] = r
        if failures:
            if len(failures) == 1:
                raise failures[0][1]
            # all unreachable: still retryable (exit 69), as one failure would be
            kind = (
                UnavailableError if all(isinstance(r, UnavailableError) for _, r in failures) else EngineError
            )
            raise kind(
                f"{len(failures)} object(s) failed to apply: " + "; ".join(str(r) for _, r in failures),
                node=node.id,
            )


def _needed_first(changed: Sequence[Prepared], prepared: Sequence[Prepared]) -> list[Prepared]:
    """The stage-one objects the rest of the layer waits for: changed Namespaces (ready at once,
    their apply result says so) and changed CRDs whose kinds other objects of the layer use.

    A CRD nothing in the layer uses is not waited for here (the layer's readiness wait, if on,
    covers it at the end, while the rest of the layer is applied meanwhile).
    """
    used = {(p.ref.group, p.ref.kind) for p in prepared if p.ref.kind not in STAGE_ONE_KINDS}
    out = []
    for p in changed:
        if p.ref.kind == "CustomResourceDefinition":
            spec = p.obj.get("spec") or {}
            if (str(spec.get("group", "")), str((spec.get("names") or {}).get("kind", ""))) not in used:
                continue
        out.append(p)
    return out


def _apply_pre_hooks(
    ctx: KubeContext, node: Node, items: Sequence[Prepared], spec: LayerSpec, done: dict[ObjRef, Change]
) -> None:
    """Helm pre-install/pre-upgrade hooks (``envctl.kube.helm``) before the layer's other objects:
    lowest ``helm.sh/hook-weight`` first, each weight applied and waited for (Jobs complete)."""
    by_weight: dict[int, list[Prepared]] = {}
    for p in items:
        weight = pre_hook_weight(p.obj)
        if weight is not None:
            by_weight.setdefault(weight, []).append(p)
    for weight in sorted(by_weight):
        group = by_weight[weight]
        _apply_stage(ctx, node, group, spec.take_conflicts, done)
        wait_for(
            ctx,
            node.id,
            [Waitable(p.ref, p.mapping, p.dry) for p in group if p.mapping is not None],
            timeout=spec.wait_timeout,
            applied_all=False,
        )


def _partial_failure(
    node: Node, err: BaseException, prepared: Sequence[Prepared], applied: Mapping[ObjRef, Change]
) -> EnvctlError:
    """``err`` with the list of objects applied and not applied in its detail (DESIGN.md §4).

    An object whose request was sent when the connection dropped may have been applied by the
    server all the same: it is listed as not applied, with that caveat; a re-run converges it.
    """
    out = err if isinstance(err, EnvctlError) else EngineError(f"{type(err).__name__}: {err}")
    out.node = out.node or node.id
    done = [p.ref for p in prepared if p.ref in applied]
    missing = [p.ref for p in prepared if p.ref not in applied]
    unsure = " (a request cut off by the failure may still have reached the API server)"
    lines = [
        f"the apply of {node.id} stopped part-way: {len(done)} of {len(prepared)} object(s) applied",
        f"applied ({len(done)}):",
        *(f"  {r} ({_done_word(applied[r])})" for r in done),
        f"not applied ({len(missing)}){unsure if isinstance(out, UnavailableError) else ''}:",
        *(f"  {r}" for r in missing),
    ]
    out.detail = "\n".join([*([out.detail.rstrip()] if out.detail else []), *lines])
    if not out.message.startswith("apply failed part-way"):
        out.message = f"apply failed part-way ({len(done)} of {len(prepared)} applied): {out.message}"
    return out


def _done_word(change: Change) -> str:
    """``created``, ``updated``, ``replaced``, or ``unchanged``."""
    return "unchanged" if change.action is Action.NOOP else f"{change.action.value}d"


def _lost_inventory(
    ctx: KubeContext, node: Node, inventory: Inventory, prepared: Sequence[Prepared]
) -> str | None:
    """A warning when the layer was applied before but its inventory is gone: live objects carry
    this layer's inventory id, yet no inventory exists, so prune cannot know what left Git."""
    if inventory.exists:
        return None
    inv = inventory_id(ctx.env_name, node.id)
    env_label, layer_label = label_value(ctx.env_name), label_value(node.name)
    for p in prepared:
        meta = (p.live or {}).get("metadata") or {}
        labels = meta.get("labels") or {}
        annotations = meta.get("annotations") or {}
        if annotations.get(ANNOTATION_INVENTORY) == inv or (
            labels.get(LABEL_ENV) == env_label and labels.get(LABEL_LAYER) == layer_label
        ):
            return (
                f"inventory of {node.id} is missing ({INVENTORY_NAMESPACE}/{inventory.name}) although "
                f"the layer was applied before ({p.ref} carries its inventory id): objects removed from "
                "Git since the last apply will not be pruned; delete them by hand if they should go"
            )
    return None


def apply_layer(
    ctx: KubeContext,
    node: Node,
    objects: Sequence[Mapping[str, Any]],
    *,
    allow_empty: bool = False,
    wait: bool | None = None,
    reuse_plan: bool = False,
    planned_deletes: frozenset[str] | None = None,
) -> NodePlan:
    """Converge one layer and return what happened (``changes`` with the applied objects, masked).

    Order: dry-run all (nothing written if one fails, or conflicts under ``conflicts: refuse``) -> inventory
    records the new objects -> CRDs and Namespaces, waited for -> the rest, tier by tier ->
    prune (reverse kind order) -> inventory -> readiness wait (``wait`` overrides layer.yaml).
    ``reuse_plan``: the dry-runs of this run's :func:`plan_layer` of the same objects stand for
    every object still at the ``resourceVersion`` the plan saw (the caller knows nothing this
    layer depends on was applied since); the others are dry-run again. ``planned_deletes``: the
    addresses the approved plan prunes; anything else prune would delete now is kept (the plan
    shows what the apply does). Kept objects stay in the inventory and in every later plan.
    """
    spec = _spec(node)
    reused = _reuse_plan(ctx, node, objects, reuse_plan)
    if reused is None:
        # upstream_pending: a kind an upstream layer's CRD serves may not be in discovery yet
        prepared = prepare(ctx, node.id, objects, recreate=spec.recreate, upstream_pending=True)
        unserved = [p for p in prepared if p.waits_for is WaitsFor.UPSTREAM]
        _await_upstream_kinds(ctx, node, unserved, _layer_namespaces(objects))
    else:
        prepared = reused
    if not spec.take_conflicts:
        err = conflict_error(node.id, prepared)
        if err is not None:
            raise err
    # Checked before any write: an object whose namespace nothing creates would fail mid-apply.
    waiting = {p.ref.namespace for p in prepared if p.waits_for is WaitsFor.NAMESPACE}
    missing = sorted(waiting - _layer_namespaces(objects))
    if missing:
        raise EngineError(
            f"namespace(s) {', '.join(missing)} do not exist and this layer does not create them; "
            "nothing was applied",
            node=node.id,
            hint="create the namespace in this layer or in a layer it depends on (depends_on)",
        )
    inventory = before = read_inventory(ctx, node.id)
    lost = _lost_inventory(ctx, node, inventory, prepared)
    stale = left_git(inventory, prepared)
    _check_empty(node, objects, stale, allow_empty or spec.allow_empty)
    candidates: list[PruneCandidate] = []
    kept: list[Kept] = []
    gone: list[ObjRef] = []
    if stale and spec.prune:
        candidates, kept, gone = prune_candidates(ctx, node.id, stale)
        if planned_deletes is not None:
            kept += [
                Kept(c.ref, "kept: the approved plan did not delete it")
                for c in candidates
                if str(c.ref) not in planned_deletes
            ]
            candidates = [c for c in candidates if str(c.ref) in planned_deletes]

    # Record intent first: a run killed mid-apply never leaves an object the inventory forgot.
    current = [p.ref for p in prepared]
    if not set(current) <= set(inventory.entries):
        inventory = write_inventory(ctx, node.id, inventory, [*inventory.entries, *current])

    applied: dict[ObjRef, Change] = {}
    try:
        early, refused = _open_new_namespaces(ctx, node, prepared, objects, applied)
    except Exception as e:
        out = _partial_failure(node, e, prepared, applied)
        if out is e:
            raise
        raise out from e
    if refused is not None:
        _restore_inventory(ctx, node, before, inventory, refused)
        raise refused

    try:
        first = [
            p
            for p in prepared
            if p.ref.kind in STAGE_ONE_KINDS and p.pending is None and p.ref not in applied
        ]
        waits = wait if wait is not None else spec.wait
        # what a readiness wait will follow: every object (the layer waits), else the CRDs needed
        ahead = {p.ref for p in (first if waits else _needed_first(first, prepared))}
        # bounded by the layer's timeout: the wait that takes its answer must not outlast it
        _apply_stage(
            ctx,
            node,
            first,
            spec.take_conflicts,
            applied,
            watch_ahead=ahead,
            watch_timeout=min(spec.wait_timeout, WATCH_AHEAD),
        )
        changed_first = [p for p in [*early, *first] if applied[p.ref].action.changes]
        needed = _needed_first(changed_first, prepared)
        if needed:
            wait_for(
                ctx,
                node.id,
                [Waitable(p.ref, p.mapping, p.dry) for p in needed if p.mapping is not None],
                timeout=min(spec.wait_timeout, 120.0),
                applied_all=False,
            )
        for p in changed_first:
            if p.ref.kind == "CustomResourceDefinition":
                group = (p.obj.get("spec") or {}).get("group", "")
                for v in (p.obj.get("spec") or {}).get("versions") or []:
                    ctx.forget(f"{group}/{v.get('name')}")

        pending = [p for p in prepared if p.pending is not None]
        if pending:
            crds, namespaces = _crd_kinds(objects), _layer_namespaces(objects)

            def again(p: Prepared) -> Prepared:
                # An Established CRD's group-version reaches discovery a moment later (the API
                # server's discovery controller): ask again until it is served, within a bound.
                deadline = time.monotonic() + CRD_DISCOVERY_TIMEOUT
                while True:
                    dry_run_one(ctx, node.id, p, recreate=spec.recreate, crds=crds, namespaces=namespaces)
                    if p.pending is None:
                        return p
                    if not p.pending.startswith("create after CustomResourceDefinition") or (
                        time.monotonic() > deadline
                    ):
                        raise EngineError(f"{p.ref}: still cannot be applied: {p.pending}", node=node.id)
                    time.sleep(ctx.poll_interval)
                    ctx.forget(p.ref.api_version)

            for r in ctx.parallel(again, pending):
                if isinstance(r, BaseException):
                    raise r
            if not spec.take_conflicts:
                err = conflict_error(node.id, pending)
                if err is not None:
                    raise err
            newly = [p.ref for p in pending if p.ref not in set(inventory.entries)]
            if newly:
                inventory = write_inventory(ctx, node.id, inventory, [*inventory.entries, *newly])
            stage_two_first = [p for p in pending if p.ref.kind in STAGE_ONE_KINDS]
            _apply_stage(ctx, node, stage_two_first, spec.take_conflicts, applied)

        rest = [p for p in prepared if p.ref.kind not in STAGE_ONE_KINDS]
        _apply_pre_hooks(ctx, node, rest, spec, applied)
        _apply_stage(
            ctx, node, [p for p in rest if pre_hook_weight(p.obj) is None], spec.take_conflicts, applied
        )
    except Exception as e:
        out = _partial_failure(node, e, prepared, applied)
        if out is e:
            raise
        raise out from e

    failed = delete_objects(ctx, node.id, candidates)
    deleted = [c for c in candidates if c.ref not in failed]
    keep = [p.ref for p in prepared] + list(failed) + [k.ref for k in kept if k.recorded]
    if not spec.prune:
        keep += stale
    if set(inventory.entries) != set(keep):
        inventory = write_inventory(ctx, node.id, inventory, keep)
    if failed:
        raise EngineError(
            f"{len(failed)} object(s) could not be pruned: " + "; ".join(str(e) for e in failed.values()),
            node=node.id,
        )

    changes = [applied[p.ref] for p in prepared if p.ref in applied]
    changes.extend(delete_change(c) for c in sort_by_delete(deleted))
    notes = [lost] if lost else []
    notes.extend(map(str, kept))
    if gone:
        notes.append(f"{len(gone)} inventory object(s) were already gone")
    if waits:
        wait_for(
            ctx,
            node.id,
            [Waitable(p.ref, p.mapping, p.dry) for p in prepared if p.mapping is not None],
            timeout=spec.wait_timeout,
        )
    return NodePlan(node.id, tuple(changes), notes=tuple(notes))


# How long a failed apply waits for a Namespace it created, and deleted again, to be gone (the
# namespace controller empties it first): a re-apply right after the fix must not find it Terminating.
NAMESPACE_GONE_TIMEOUT = 60.0


def _open_new_namespaces(
    ctx: KubeContext,
    node: Node,
    prepared: Sequence[Prepared],
    objects: Sequence[Mapping[str, Any]],
    applied: dict[ObjRef, Change],
) -> tuple[list[Prepared], EnvctlError | None]:
    """Apply the layer's Namespaces that objects of the layer wait for, then dry-run those objects,
    before anything else is written (DESIGN.md: one bad object means nothing is written).

    The API server dry-runs nothing in a namespace that does not exist, so these objects are first
    validated here. When one is refused, every Namespace this very run created (201, not a 200 for
    one that appeared meanwhile) is deleted again, only if it is still exactly the object created
    (uid and resourceVersion preconditions), and waited for until gone; the returned error says
    nothing was applied. A Namespace that existed, or that another actor created since the plan,
    is never deleted: the error then goes out as a failure part-way (raised). Returns the
    Namespaces applied, and the error to raise once the caller restored the inventory.
    """
    spec = _spec(node)
    awaited = {p.ref.namespace for p in prepared if p.waits_for is WaitsFor.NAMESPACE}
    early = [
        p
        for p in prepared
        if p.ref.kind == "Namespace" and p.ref.group == "" and p.pending is None and p.ref.name in awaited
    ]
    if not early:
        return [], None
    created: set[ObjRef] = set()
    results = ctx.parallel(lambda p: _apply_one(ctx, node, p, spec.take_conflicts, created), early)
    for p, r in zip(early, results, strict=True):
        if isinstance(r, BaseException):
            raise r
        applied[p.ref] = r
    opened = {p.ref.name for p in early}
    waiting = [p for p in prepared if p.waits_for is WaitsFor.NAMESPACE and p.ref.namespace in opened]
    crds, namespaces = _crd_kinds(objects), _layer_namespaces(objects)

    def check(p: Prepared) -> None:
        dry_run_one(ctx, node.id, p, recreate=spec.recreate, crds=crds, namespaces=namespaces)

    failures = [r for r in ctx.parallel(check, waiting) if isinstance(r, BaseException)]
    err: BaseException | None = failures[0] if failures else None
    if err is None and not spec.take_conflicts:
        err = conflict_error(node.id, waiting)
    if err is None:
        return early, None
    out = err if isinstance(err, EnvctlError) else EngineError(f"{type(err).__name__}: {err}")
    out.node = out.node or node.id
    lines = [f"also refused: {f}" for f in failures[1:]]
    ours = [p for p in early if p.ref in created]
    others = [p for p in early if p.ref not in created]
    if others:  # not ours to delete: report a failure part-way, the Namespaces as applied
        lines += [f"{p.ref}: existed before this apply (not created by it): kept" for p in others]
        out.detail = "\n".join([*([out.detail.rstrip()] if out.detail else []), *lines])
        raise out
    left = _delete_created(ctx, node, ours)
    for p in ours:
        applied.pop(p.ref, None)
        if p.ref in left:
            lines.append(f"{p.ref}: created by this apply to dry-run the objects in it; {left[p.ref]}")
        else:
            lines.append(f"{p.ref}: created by this apply to dry-run the objects in it, deleted again")
    if left:
        out.message = (
            f"{out.message}; nothing else was applied, but Namespace(s) "
            f"{', '.join(p.ref.name for p in ours if p.ref in left)} created to validate it remain"
        )
    else:
        out.message = f"{out.message}; nothing was applied"
    out.detail = "\n".join([*([out.detail.rstrip()] if out.detail else []), *lines])
    return early, out


def _delete_created(ctx: KubeContext, node: Node, created: Sequence[Prepared]) -> dict[ObjRef, str]:
    """Delete Namespaces this run created, each only while it is exactly the object created, and
    wait (up to NAMESPACE_GONE_TIMEOUT) until they are gone; what could not be removed, and why."""
    left: dict[ObjRef, str] = {}

    def delete(p: Prepared) -> None:
        assert p.mapping is not None
        meta = (p.dry or {}).get("metadata") or {}
        pre = {"uid": str(meta.get("uid", "")), "resourceVersion": str(meta.get("resourceVersion", ""))}
        ctx.delete(p.ref, p.mapping, preconditions=pre)

    for p, r in zip(created, ctx.parallel(delete, created), strict=True):
        if isinstance(r, ApiError) and r.status == 409:
            left[p.ref] = "changed by someone else since it was created: kept, delete it by hand"
        elif isinstance(r, BaseException):
            left[p.ref] = f"could not be deleted again ({r}): delete it by hand"
    deadline = time.monotonic() + NAMESPACE_GONE_TIMEOUT
    waiting = [p for p in created if p.ref not in left]

    def still(p: Prepared) -> bool:
        assert p.mapping is not None
        now = ctx.get(p.ref, p.mapping)
        uid = ((p.dry or {}).get("metadata") or {}).get("uid")
        return now is not None and (now.get("metadata") or {}).get("uid") == uid

    while waiting:
        waiting = [p for p, r in zip(waiting, ctx.parallel(still, waiting), strict=True) if r is not False]
        if waiting and (time.monotonic() > deadline or not ctx.pause(ctx.poll_interval)):
            for p in waiting:
                left[p.ref] = "deleted again, still terminating: a re-apply may have to wait until it is gone"
            break
    return left


def _restore_inventory(
    ctx: KubeContext, node: Node, before: Inventory, now: Inventory, err: EnvctlError
) -> None:
    """Put the inventory back as it was before the apply recorded its intent (nothing was applied)."""
    if now is before:
        return
    try:
        if before.exists:
            write_inventory(ctx, node.id, now, before.entries)
        else:
            delete_inventory(ctx, node.id, now)
    except EnvctlError as e:
        err.detail = "\n".join(
            [*([err.detail.rstrip()] if err.detail else []), f"the inventory could not be restored: {e}"]
        )


def _await_upstream_kinds(
    ctx: KubeContext, node: Node, items: Sequence[Prepared], namespaces: set[str]
) -> None:
    """Dry-run objects whose kind the cluster did not serve yet, once it does; before any write.

    The API server lists a new CRD's kind in discovery a moment after the CRD is Established
    (its discovery controller), so the layer after the one that created it may ask too early.
    Discovery is asked again every ``poll_interval`` for up to CRD_DISCOVERY_TIMEOUT; a kind
    still not served then is the plan's error: nothing of the layer is written.
    """
    deadline = time.monotonic() + CRD_DISCOVERY_TIMEOUT
    waiting = list(items)
    while waiting:
        if not ctx.pause(ctx.poll_interval):
            raise InterruptedRun(
                f"interrupted while waiting for the cluster to serve {waiting[0].ref.group_kind}",
                node=node.id,
            )
        if time.monotonic() > deadline:
            p = waiting[0]
            raise ConfigError(
                f"{p.ref}: the cluster does not serve kind {p.ref.kind} in {p.ref.api_version}",
                node=node.id,
                hint="is its CustomResourceDefinition applied (by this layer or one it depends on)?",
            )
        for version in {p.ref.api_version for p in waiting}:
            ctx.forget(version)
        for r in ctx.parallel(lambda p: _retry_upstream(ctx, node, p, namespaces), waiting):
            if isinstance(r, BaseException):
                raise r
        waiting = [p for p in waiting if p.waits_for is WaitsFor.UPSTREAM]


def _retry_upstream(ctx: KubeContext, node: Node, p: Prepared, namespaces: set[str]) -> None:
    dry_run_one(ctx, node.id, p, recreate=_spec(node).recreate, namespaces=namespaces, upstream_pending=True)


def wait_layer(
    ctx: KubeContext, node: Node, objects: Sequence[Mapping[str, Any]], *, timeout: float | None = None
) -> None:
    """Wait until every object of the layer is ready (DESIGN.md §4); one error lists all that are not."""
    items = []
    for o in objects:
        resolved = ctx.resolve(ObjRef.of(o))
        if resolved is None:
            raise EngineError(f"{ObjRef.of(o)}: kind not served by the cluster", node=node.id)
        items.append(Waitable(resolved[0], resolved[1]))
    wait_for(ctx, node.id, items, timeout=_spec(node).wait_timeout if timeout is None else timeout)
