"""Server-side dry-run diff: what applying each rendered object would change, as ``Change`` values.

Live objects are read with one LIST per kind and namespace (``survey``). An object the LIST shows
in sync - the fields envctl's manager owns are exactly the rendered ones, with the same values
(``envctl.kube.fields``) - is unchanged without a request; every other object is dry-run applied
(``dryRun=All``, field manager ``envctl``) concurrently and the result compared with the live
object after normalisation (no status, no server-owned metadata), so defaults the server fills in
never show as changes. ``object_change`` is the pure half.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from envctl.core.changes import Action, Change
from envctl.core.errors import ConfigError, EnvctlError
from envctl.kube.client import KubeContext, Mapping_
from envctl.kube.errors import (
    ApiError,
    ConflictError,
    FieldConflict,
    conflicts_of,
    immutable_fields,
    translate,
)
from envctl.kube.fields import unchanged_by_apply
from envctl.kube.helm import pre_hook_weight
from envctl.kube.objects import (
    LABEL_ENV,
    LABEL_LAYER,
    ObjRef,
    diff_paths,
    diff_values,
    is_secret,
    managers_of,
    mask_object,
    mask_secret_pair,
    normalise,
    project,
    secret_values,
    value_text,
)


class WaitsFor(StrEnum):
    """What an object that cannot be dry-run yet waits for."""

    NAMESPACE = "namespace"  # its Namespace, created by this layer's first stage or an upstream layer
    CRD = "crd"  # its CustomResourceDefinition, created by this layer's first stage
    UPSTREAM = "upstream"  # the kind is served once an upstream node is applied


@dataclass
class Prepared:
    """One rendered object after its dry-run: identity, mapping, live and would-be state.

    ``waits_for``: what it waits for when it cannot be dry-run yet; ``pending``: the same, in words.
    ``replace``: an immutable field changes and the layer allows ``recreate``: delete and re-create;
    ``immutable``: the fields the API server named as immutable.
    """

    obj: dict[str, Any]
    ref: ObjRef
    mapping: Mapping_ | None = None
    live: dict[str, Any] | None = None
    dry: dict[str, Any] | None = None
    waits_for: WaitsFor | None = None
    pending: str | None = None
    replace: bool = False
    immutable: tuple[str, ...] = ()
    conflicts: list[FieldConflict] = field(default_factory=list)
    change: Change | None = None


def object_change(
    ref: ObjRef,
    live: Mapping[str, Any] | None,
    merged: Mapping[str, Any] | None,
    *,
    conflicts: Sequence[FieldConflict] = (),
    replace: bool = False,
    immutable: Sequence[str] = (),
) -> Change:
    """The change from ``live`` to ``merged`` (the dry-run result); values masked for Secrets.
    ``replace``: re-created because the fields ``immutable`` (named by the API server) change."""
    before, after = normalise(live), normalise(merged)
    if is_secret(before) or is_secret(after):
        shown_before, shown_after = mask_secret_pair(before, after)
    else:
        shown_before, shown_after = before, after
    reasons = takeovers(live, shown_before, shown_after, conflicts) if conflicts and live else ()
    manager = conflicts[0].manager if conflicts else None
    if before is None:
        return Change(str(ref), Action.CREATE, None, shown_after, reasons, (), manager)
    paths = tuple(diff_paths(project(before, after) if replace else before, after))
    if replace:
        return Change(
            str(ref),
            Action.REPLACE,
            shown_before,
            shown_after,
            (*reasons, _immutable_reason(immutable)),
            paths,
            manager,
        )
    if not paths:
        return Change(str(ref), Action.NOOP, None, None, reasons, (), manager)
    return Change(str(ref), Action.UPDATE, shown_before, shown_after, reasons, paths, manager)


def _immutable_reason(fields: Sequence[str]) -> str:
    """Why an object is re-created: ``immutable field .spec.selector changes: deleted and re-created``."""
    if not fields:
        return "an immutable field changes: deleted and re-created"
    return f"immutable field {', '.join('.' + f for f in fields)} changes: deleted and re-created"


def takeovers(
    live: Mapping[str, Any], before: Any, after: Any, conflicts: Sequence[FieldConflict]
) -> tuple[str, ...]:
    """What applying with force-conflicts takes from other managers, with both values:
    ``takes .spec.replicas from kubectl-scale (3 → 2)``. ``before``/``after``: the live object and
    the dry-run result as shown (a Secret's values masked); ``live`` carries the managedFields.
    Fields Git does not set are not in the dry-run's changes, so they never appear here."""
    changed = diff_values(before, after)
    owners = managers_of(live, [path for path, _, _ in changed])
    out = [
        f"takes .{path} from {owners[path]} ({value_text(b)} → {value_text(a)})"
        for path, b, a in changed
        if path in owners
    ]
    named = {owners[path] for path, _, _ in changed if path in owners}
    # a conflict the values do not show (same value, another owner): still named
    out += [f"takes .{c.path} from {c.manager}" for c in conflicts if c.manager not in named]
    return tuple(out)


def crd_kinds(objects: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """(group, kind) -> CRD name, for every CRD among the objects."""
    out = {}
    for o in objects:
        if o.get("kind") == "CustomResourceDefinition":
            spec = o.get("spec") or {}
            kind = str((spec.get("names") or {}).get("kind", ""))
            out[(str(spec.get("group", "")), kind)] = str((o.get("metadata") or {}).get("name", ""))
    return out


def layer_namespaces(objects: Sequence[Mapping[str, Any]]) -> set[str]:
    return {
        str(o["metadata"]["name"])
        for o in objects
        if o.get("kind") == "Namespace" and o.get("apiVersion") == "v1"
    }


def prepare(
    ctx: KubeContext,
    node_id: str,
    objects: Sequence[Mapping[str, Any]],
    *,
    recreate: bool,
    upstream_pending: bool = False,
    upstream_objects: Sequence[Mapping[str, Any]] = (),
    learn_conflicts: bool = True,
) -> list[Prepared]:
    """Dry-run every object concurrently; raise the first failure (in render order) naming its object.

    CRDs and Namespaces among ``upstream_objects`` (rendered objects of upstream layers) count as
    coming: objects that need them are planned as "create after", not failed. Requests: a GET per
    namespace, a LIST per kind and namespace (:func:`survey`), then a dry-run only for objects
    that :func:`~envctl.kube.fields.unchanged_by_apply` cannot prove unchanged, and none at all
    for objects whose namespace does not exist yet. ``learn_conflicts``: see :func:`dry_run_one`.
    """
    crds = crd_kinds([*objects, *upstream_objects])
    namespaces = layer_namespaces([*objects, *upstream_objects])
    # dry_run_one sets metadata.namespace: each object gets its own top level and metadata
    items = [Prepared({**o, "metadata": dict(o.get("metadata") or {})}, ObjRef.of(o)) for o in objects]
    view = survey(ctx, node_id, items)

    def one(p: Prepared, local_only: bool = False) -> bool:
        return dry_run_one(
            ctx,
            node_id,
            p,
            recreate=recreate,
            crds=crds,
            namespaces=namespaces,
            upstream_pending=upstream_pending,
            view=view,
            local_only=local_only,
            learn_conflicts=learn_conflicts,
        )

    # Objects settled without a request (in sync, or waiting for their namespace) are done here;
    # only the rest go to the thread pool.
    failed: dict[int, BaseException] = {}
    rest: list[int] = []
    for i, p in enumerate(items):
        try:
            if not one(p, True):
                rest.append(i)
        except Exception as e:  # raised below in render order, with the pool's failures
            failed[i] = e
    for i, r in zip(rest, ctx.parallel(one, [items[i] for i in rest]), strict=True):
        if isinstance(r, BaseException):
            failed[i] = r
    if failed:
        raise failed[min(failed)]
    return items


@dataclass
class LiveView:
    """What a few requests told about a layer's live objects before any dry-run.

    ``exact``: objects read one by one (the namespaces); None there means "does not exist".
    ``labelled``: the items of one LIST per kind and namespace (per kind for cluster-scoped kinds)
    with this layer's label selector.
    An object in neither is absent *or* exists without this layer's labels (an object to adopt):
    its dry-run's status (201 Created or 200 OK) tells which, so no GET is sent for an absent
    object and one GET for an unlabelled one. ``missing_namespaces``: namespaces that do not
    exist; objects in them are neither listed nor dry-run (the API server would answer 404).
    """

    exact: dict[ObjRef, dict[str, Any] | None] = field(default_factory=dict)
    labelled: dict[ObjRef, dict[str, Any]] = field(default_factory=dict)
    missing_namespaces: set[str] = field(default_factory=set)


def survey(ctx: KubeContext, node_id: str, items: Sequence[Prepared]) -> LiveView:
    """Read what the dry-runs need to know in as few requests as possible (see :class:`LiveView`).

    One GET per namespace the objects live in (and per Namespace object), then one LIST per kind
    and existing namespace, and one per cluster-scoped kind (CRDs, ClusterRoles, webhook
    configurations: their managedFields prove them unchanged like any other). A failed GET or
    LIST (RBAC without ``list``, say) is not an error here: those objects are then read one by
    one, which reports any real problem.
    """
    view = LiveView()
    groups: dict[tuple[str, str], ObjRef] = {}
    wanted_ns: set[str] = set()
    # discovery, one request per API group version: at the same time, not one after the other
    ctx.parallel(ctx.resolve, list({p.ref.api_version: p.ref for p in items}.values()))
    for p in items:
        try:
            resolved = ctx.resolve(p.ref)
        except ApiError as e:
            raise translate(e, p.ref, node=node_id) from e
        if resolved is None:
            continue
        ref, mapping = resolved
        if ref.api_version == "v1" and ref.kind == "Namespace":
            wanted_ns.add(ref.name)  # read one by one: the GET also says whether it is missing
            continue
        if mapping.namespaced:
            wanted_ns.add(ref.namespace)
        labels = (p.obj.get("metadata") or {}).get("labels") or {}
        selector = ",".join(f"{k}={labels[k]}" for k in (LABEL_ENV, LABEL_LAYER) if k in labels)
        if selector:
            groups[(ctx.path(ref, mapping, name=False), selector)] = ref
    ns_mapping = ctx.mapping("v1", "Namespace") if wanted_ns else None
    if ns_mapping is not None:
        names = sorted(wanted_ns)

        def get_ns(name: str) -> dict[str, Any] | None:
            return ctx.get(ObjRef("v1", "Namespace", "", name), ns_mapping)

        for name, got in zip(names, ctx.parallel(get_ns, names), strict=True):
            if isinstance(got, BaseException):
                continue
            view.exact[ObjRef("v1", "Namespace", "", name)] = got
            if got is None:
                view.missing_namespaces.add(name)
    wanted = [key for key, ref in groups.items() if ref.namespace not in view.missing_namespaces]

    def fetch(key: tuple[str, str]) -> list[dict[str, Any]]:
        return ctx.list_items(key[0], query={"labelSelector": key[1]})

    for key, result in zip(wanted, ctx.parallel(fetch, wanted), strict=True):
        if isinstance(result, BaseException):
            continue
        ref = groups[key]
        for item in result:
            item.setdefault("apiVersion", ref.api_version)
            item.setdefault("kind", ref.kind)
            view.labelled[ObjRef.of(item)] = item
    return view


def dry_run_one(
    ctx: KubeContext,
    node_id: str,
    p: Prepared,
    *,
    recreate: bool,
    crds: Mapping[tuple[str, str], str] | None = None,
    namespaces: set[str] | None = None,
    upstream_pending: bool = False,
    view: LiveView | None = None,
    local_only: bool = False,
    learn_conflicts: bool = True,
) -> bool:
    """Fill ``p`` with mapping, live object and dry-run result (or a pending reason); True when done.

    Requests: none for an object whose namespace ``view`` (:func:`survey`) knows is missing, none
    for a listed object provably unchanged (:func:`~envctl.kube.fields.unchanged_by_apply`),
    else one dry-run, plus one GET when an object not listed turns out to exist (200, not 201).
    ``local_only``: return False where a request would be needed (a second call completes it).
    ``learn_conflicts``: dry-run without force first, so that ``p.conflicts`` lists the fields
    other managers own (a plan shows each take-over, ``conflicts: refuse`` stops on them); a
    conflict then costs a second, forced dry-run. Without it the one dry-run is forced: the
    result an apply would give, in one request (drift names other managers from managedFields).
    """
    secrets = list(secret_values(p.obj))
    is_hook = pre_hook_weight(p.obj) is not None
    try:
        resolved = ctx.resolve(p.ref)  # discovery: already cached by survey() when called from prepare
        p.waits_for, p.pending = None, None
        p.conflicts = []
        p.replace = False
        p.immutable = ()
        if resolved is None:
            crd = (crds or {}).get((p.ref.group, p.ref.kind))
            if crd is not None:
                p.waits_for, p.pending = WaitsFor.CRD, f"create after CustomResourceDefinition {crd}"
            elif upstream_pending:
                p.waits_for = WaitsFor.UPSTREAM
                p.pending = f"create after the upstream node that serves {p.ref.group_kind}"
            else:
                resolved = _served_soon(ctx, node_id, p.ref)
            if resolved is None:
                assert p.pending is not None
                p.change = Change(str(p.ref), Action.CREATE, None, mask_object(p.obj), (p.pending,))
                return True
        p.ref, p.mapping = resolved
        meta = p.obj.setdefault("metadata", {})
        if p.mapping.namespaced:
            meta["namespace"] = p.ref.namespace
        else:
            meta.pop("namespace", None)
        if view is not None and p.mapping.namespaced and p.ref.namespace in view.missing_namespaces:
            _namespace_pending(p, namespaces)
            return True
        # ``known``: p.live is what the cluster holds (None: absent); else the dry-run tells
        known = view is not None and p.ref in view.exact
        p.live = view.exact[p.ref] if view is not None and known else None
        if view is not None and not known and p.ref in view.labelled:
            p.live, known = view.labelled[p.ref], True
        if p.live is not None and unchanged_by_apply(p.obj, p.live, ctx.field_manager):
            p.dry = p.live
            p.change = Change(str(p.ref), Action.NOOP, None, None)  # = object_change(ref, live, live)
            return True
        if local_only:
            return False  # everything above is redone, unchanged, by the call that sends the request
        created = False
        # An object the LISTs do not show is most likely a create, and a create is shown as
        # rendered: its dry-run only has to validate it. A large one (a CRD's schema) then comes
        # back as metadata alone, sparing the server the encoding of its whole body, and where a
        # create refuses all an apply would (validated_by_create), it is validated as a create.
        brief = not known and _large(p.obj)
        try:
            dry = None
            if brief and validated_by_create(p.obj):
                dry = _validate_create(ctx, p)
            if dry is not None:
                p.dry, created = dry, True
            else:
                p.dry, created = ctx.apply_created(
                    p.obj, p.mapping, dry_run=True, force=not learn_conflicts, metadata_only=brief
                )
        except ApiError as e:
            if e.status == 409 and conflicts_of(e):
                p.conflicts = conflicts_of(e)
                if not known:
                    p.live = ctx.get(p.ref, p.mapping)
                    known = True
                p.dry = ctx.apply(p.obj, p.mapping, dry_run=True, force=True)
            elif e.status == 422 and "immutable" in e.message and (recreate or is_hook):
                # a Helm hook is re-created when it changes (helm's default before-hook-creation)
                if not known:
                    p.live = ctx.get(p.ref, p.mapping)
                    known = True
                if p.live is None:
                    raise
                p.replace = True
                p.immutable = immutable_fields(e)
                p.dry = normalise(p.obj)
            elif p.live is None and e.missing_namespace == p.ref.namespace:
                # Its namespace comes from this layer's first stage or from an upstream layer.
                _namespace_pending(p, namespaces)
                return True
            else:
                raise
        if not known and not created:
            p.live = ctx.get(p.ref, p.mapping)  # it exists without this layer's labels: adopt it
            if brief:  # the diff needs the whole would-be object
                p.dry = ctx.apply(p.obj, p.mapping, dry_run=True, force=not learn_conflicts)
        elif known and created and p.live is not None:
            p.live = None  # deleted since it was listed
        # A create shows the object as rendered: server-assigned values (a Service's clusterIP)
        # would differ between two plans and make a plan's fingerprint unstable.
        shown = p.dry if p.live is not None else p.obj
        p.change = object_change(
            p.ref, p.live, shown, conflicts=p.conflicts, replace=p.replace, immutable=p.immutable
        )
        return True
    except ApiError as e:
        raise translate(e, p.ref, node=node_id, secrets=secrets) from e
    except EnvctlError:
        raise


BRIEF_ABOVE = 64 * 1024  # bytes of JSON above which a create's dry-run returns metadata only


def _large(obj: Mapping[str, Any]) -> bool:
    """Whether ``obj``'s compact JSON is longer than BRIEF_ABOVE. Its strings alone - keys with
    their quotes and colon, values with their quotes; escaping only lengthens them - are a lower
    bound of that length: a large object (a CRD's schema) is known to be large after a walk over
    part of it, instead of serialising it whole only to measure it; any other is measured."""
    total = 0
    stack: list[Any] = [obj]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            total += len(v) + 2
            if total > BRIEF_ABOVE:
                return True
        elif isinstance(v, list | tuple):
            stack.extend(v)
        elif isinstance(v, dict | Mapping):
            for k, x in v.items():
                total += len(k) + 3 if isinstance(k, str) else 0
                stack.append(x)
    return len(json.dumps(obj, separators=(",", ":"), default=str)) > BRIEF_ABOVE


def _validate_create(ctx: KubeContext, p: Prepared) -> dict[str, Any] | None:
    """``p``'s dry-run create, metadata only; None when the object exists after all (409
    AlreadyExists: created meanwhile, or present without this layer's labels) - then the caller
    dry-runs the apply, which diffs and adopts it."""
    assert p.mapping is not None
    try:
        return ctx.validate_create(p.obj, p.mapping, metadata_only=True)
    except ApiError as e:
        if e.status == 409 and e.reason == "AlreadyExists":
            return None
        raise


# Kinds for which a dry-run create refuses everything a server-side apply creating the object
# refuses, once the object has none of the hazards below (measured against the API server:
# tests/integration/test_create_validation.py). Server-side apply first turns the applied
# configuration into a typed value, and that alone refuses what validation lets through: the
# same key twice in an associative list (``listType: map``/``set``) or an item without its key;
# it also refuses ``metadata.managedFields`` in the body, and takes ``metadata.uid`` as a
# precondition no new object meets (409). A create validates everything else the same way
# (strict field validation refuses unknown fields, as apply does). Other kinds - workloads, with
# their containers, env and ports lists - keep the dry-run apply.
CREATE_VALIDATED = frozenset(
    {("apiextensions.k8s.io", "CustomResourceDefinition"), ("", "ConfigMap"), ("", "Secret")}
)
# The associative lists of those kinds (apart from x-kubernetes-validations, which a
# CustomResourceDefinition's schema may hold at any depth), as the server's OpenAPI names them:
# path -> key fields (empty: listType set, the items themselves are the keys).
ASSOCIATIVE_LISTS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("metadata", "finalizers"): (),
    ("metadata", "ownerReferences"): ("uid",),
}
APPLY_ONLY_METADATA = ("managedFields", "uid")  # metadata an apply refuses where a create does not
CRD_ASSOCIATIVE_LISTS: dict[tuple[str, ...], tuple[str, ...]] = {("status", "conditions"): ("type",)}
SCHEMA_RULES = "x-kubernetes-validations"  # listType map keyed by rule, in every JSONSchemaProps


def validated_by_create(obj: Mapping[str, Any]) -> bool:
    """Whether a dry-run create of ``obj`` refuses all that a server-side apply would refuse (see
    ``CREATE_VALIDATED``): its kind is one of those, it sets no ``APPLY_ONLY_METADATA``, and
    each of its associative lists has every item's key fields, each key once. Anything else
    (False) is dry-run as an apply, whose answer names the problem."""
    api_version = str(obj.get("apiVersion", ""))
    group = api_version.rpartition("/")[0]
    if (group, str(obj.get("kind", ""))) not in CREATE_VALIDATED:
        return False
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping) or any(k in meta for k in APPLY_ONLY_METADATA):
        return False
    lists = dict(ASSOCIATIVE_LISTS)
    crd = group == "apiextensions.k8s.io"
    if crd:
        lists.update(CRD_ASSOCIATIVE_LISTS)
    for path, keys in lists.items():
        value: Any = obj
        for step in path:
            value = value.get(step) if isinstance(value, Mapping) else None
        if value is not None and not _keyed_once(value, keys):
            return False
    return not crd or _schema_rules_keyed(obj.get("spec"))


def _keyed_once(items: Any, keys: Sequence[str]) -> bool:
    """Every item carries the key fields and no key repeats (``keys`` empty: scalars, each once)."""
    if not isinstance(items, list):
        return False
    seen: set[str] = set()
    for item in items:
        if keys:
            if not isinstance(item, Mapping) or any(k not in item or item[k] is None for k in keys):
                return False
            key = json.dumps([item[k] for k in keys], sort_keys=True, default=str)
        elif isinstance(item, Mapping | list) or item is None:
            return False
        else:
            key = json.dumps(item, default=str)
        if key in seen:
            return False
        seen.add(key)
    return True


def _schema_rules_keyed(value: Any) -> bool:
    """No ``x-kubernetes-validations`` list anywhere below ``value`` repeats a rule or lacks one."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            continue  # most of a schema; tested before the slower test for any ``Mapping``
        if isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict | Mapping):
            rules = v.get(SCHEMA_RULES)
            if rules is not None and not _keyed_once(rules, ("rule",)):
                return False
            stack.extend(v.values())
    return True


# How long a plan waits for the API server to serve a kind whose CRD is in the cluster already
# (applied by an earlier run, interrupted before it was Established, say) before it fails.
CRD_SERVE_TIMEOUT = 30.0


def _served_soon(ctx: KubeContext, node_id: str, ref: ObjRef) -> tuple[ObjRef, Mapping_]:
    """The kind's mapping once the cluster serves it, if a CustomResourceDefinition in the cluster
    defines it (not Established yet, or not in discovery yet: both take a moment after an apply,
    so a re-run right after an interrupted one would otherwise fail); else the plan's error.

    Only on this error path: one LIST of the cluster's CRDs, then discovery asked again every
    ``poll_interval`` for up to CRD_SERVE_TIMEOUT. A CRD whose names the API server did not
    accept is never served: its reason is the error.
    """
    error = ConfigError(
        f"{ref}: the cluster does not serve kind {ref.kind} in {ref.api_version}",
        node=node_id,
        hint="is its CustomResourceDefinition applied (by this layer or one it depends on)?",
    )
    try:
        items = ctx.list_items("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
    except ApiError as e:
        raise translate(e, ref, node=node_id) from e
    version = ref.api_version.rpartition("/")[2]
    defining = [
        c
        for c in items
        if (c.get("spec") or {}).get("group") == ref.group
        and ((c.get("spec") or {}).get("names") or {}).get("kind") == ref.kind
        and any(
            v.get("name") == version and v.get("served") for v in (c.get("spec") or {}).get("versions") or []
        )
    ]
    if not defining:
        raise error
    name = str((defining[0].get("metadata") or {}).get("name", ""))
    conditions = {str(c.get("type")): c for c in ((defining[0].get("status") or {}).get("conditions") or [])}
    names = conditions.get("NamesAccepted") or {}
    if names.get("status") == "False":
        error.message += f": its CustomResourceDefinition {name} is not served ({names.get('message', '')})"
        raise error
    deadline = time.monotonic() + CRD_SERVE_TIMEOUT
    while True:
        ctx.forget(ref.api_version)
        resolved = ctx.resolve(ref)
        if resolved is not None:
            return resolved
        if time.monotonic() > deadline or not ctx.pause(ctx.poll_interval):
            error.message += f": its CustomResourceDefinition {name} is not served yet"
            raise error


def _namespace_pending(p: Prepared, namespaces: set[str] | None) -> None:
    """``p`` waits for its namespace, which this layer's first stage or an upstream layer creates."""
    known = p.ref.namespace in (namespaces or set())
    p.live = None
    p.waits_for = WaitsFor.NAMESPACE
    p.pending = f"create after Namespace {p.ref.namespace}" + ("" if known else " (not in the cluster yet)")
    p.change = Change(str(p.ref), Action.CREATE, None, mask_object(normalise(p.obj)), (p.pending,))


def conflict_error(node_id: str, prepared: Sequence[Prepared]) -> ConflictError | None:
    """One error listing every field conflict of a layer (None when there are none)."""
    lines = [f"{p.ref}: .{c.path} (owned by {c.manager})" for p in prepared for c in p.conflicts]
    if not lines:
        return None
    return ConflictError(
        f"field conflicts with other managers in {len(lines)} field(s): " + "; ".join(lines),
        node=node_id,
        conflicts=[c for p in prepared for c in p.conflicts],
        hint="this layer says conflicts: refuse; drop the fields from Git, let the other manager "
        "release them, or remove conflicts: refuse from layer.yaml so that Git takes them back",
    )
