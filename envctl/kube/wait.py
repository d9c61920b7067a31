"""Readiness after apply: rolled-out workloads, complete Jobs, established CRDs, unsealed
SealedSecrets, ``Ready`` conditions.

``readiness`` is the pure rule for one live object (unit-tested); ``wait_for`` watches (a few) or
polls (many) the objects not ready yet, concurrently, until all are ready, one failed, the layer's
timeout passes or the run is interrupted (``KubeContext.cancel_waits``, which also shuts down the
watches in progress), and then raises ONE error listing every object
still not ready and why: the rule's reason, explained with the controller's failing conditions,
the pods' conditions and container states, and the latest Warning event.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from envctl.core.errors import EngineError, InterruptedRun, InterruptedWait, NotReadyError
from envctl.kube.client import KubeContext, Mapping_
from envctl.kube.errors import ApiError, translate
from envctl.kube.objects import ObjRef


class Status(StrEnum):
    READY = "ready"
    PENDING = "pending"
    FAILED = "failed"


@dataclass(frozen=True)
class Readiness:
    status: Status
    reason: str = ""

    @property
    def ready(self) -> bool:
        return self.status is Status.READY


READY = Readiness(Status.READY)


def _conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {
        str(c.get("type")): c
        for c in (obj.get("status") or {}).get("conditions") or []
        if isinstance(c, dict)
    }


def _pending(reason: str) -> Readiness:
    return Readiness(Status.PENDING, reason)


def readiness(obj: Mapping[str, Any]) -> Readiness:
    """Whether one live object is ready, kstatus-style, with a reason a human can act on."""
    kind = obj.get("kind")
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    conds = _conditions(obj)
    generation = meta.get("generation")
    observed = status.get("observedGeneration")
    workload = kind in ("Deployment", "StatefulSet", "DaemonSet")
    if workload and generation is not None and (observed is None or observed < generation):
        return _pending("the controller has not observed the latest generation")
    if kind == "Deployment":
        progressing = conds.get("Progressing") or {}
        if progressing.get("reason") == "ProgressDeadlineExceeded":
            return Readiness(
                Status.FAILED, f"progress deadline exceeded: {progressing.get('message', '')}".strip()
            )
        want = int(spec.get("replicas", 1))
        updated = int(status.get("updatedReplicas") or 0)
        total = int(status.get("replicas") or 0)
        available = int(status.get("availableReplicas") or 0)
        if updated < want:
            return _pending(f"{updated} of {want} replicas updated")
        if total > updated:
            return _pending(f"{total - updated} old replicas pending termination")
        if available < want:
            return _pending(f"{available} of {want} replicas available")
        return READY
    if kind == "StatefulSet":
        want = int(spec.get("replicas", 1))
        ready = int(status.get("readyReplicas") or 0)
        if ready < want:
            return _pending(f"{ready} of {want} replicas ready")
        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
            updated = int(status.get("updatedReplicas") or 0)
            if updated < want - partition:
                return _pending(f"{updated} of {want - partition} replicas updated")
            if partition == 0 and status.get("updateRevision") != status.get("currentRevision"):
                return _pending("rolling update in progress")
        return READY
    if kind == "DaemonSet":
        desired = int(status.get("desiredNumberScheduled") or 0)
        updated = int(status.get("updatedNumberScheduled") or 0)
        available = int(status.get("numberAvailable") or 0)
        if updated < desired:
            return _pending(f"{updated} of {desired} pods updated")
        if available < desired:
            return _pending(f"{available} of {desired} pods available")
        return READY
    if kind == "Job":
        if (conds.get("Failed") or {}).get("status") == "True":
            failed = conds["Failed"]
            return Readiness(
                Status.FAILED, f"job failed: {failed.get('reason', '')} {failed.get('message', '')}".strip()
            )
        if (conds.get("Complete") or {}).get("status") == "True":
            return READY
        if spec.get("suspend") or (conds.get("Suspended") or {}).get("status") == "True":
            return _pending("job is suspended")
        return _pending("job not complete")
    if kind == "CustomResourceDefinition":
        if (conds.get("NamesAccepted") or {}).get("status") == "False":
            return Readiness(
                Status.FAILED, f"names not accepted: {conds['NamesAccepted'].get('message', '')}"
            )
        if (conds.get("Established") or {}).get("status") == "True":
            return READY
        return _pending("not established yet")
    if kind == "Namespace" and obj.get("apiVersion") == "v1":
        phase = status.get("phase", "Active")
        return READY if phase == "Active" else _pending(f"namespace is {phase}")
    if kind == "SealedSecret" and str(obj.get("apiVersion", "")).startswith("bitnami.com/"):
        return _sealed_secret(conds, generation, observed)
    if "Ready" in conds:
        cond = conds["Ready"]
        if cond.get("status") == "True":
            if observed is not None and generation is not None and observed < generation:
                return _pending("the controller has not observed the latest generation")
            return READY
        text = " ".join(str(x) for x in (cond.get("reason"), cond.get("message")) if x)
        return _pending(f"Ready is {cond.get('status', 'Unknown')}" + (f": {text}" if text else ""))
    return READY


# -- why a workload is not ready: its pods and the controller's Warning events ------------------

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
MAX_PODS_NAMED = 2


def label_selector(selector: Mapping[str, Any] | None) -> str | None:
    """A LabelSelector as the API's query string (``app=web,tier in (a,b)``); None if it selects nothing."""
    if not selector:
        return None
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for e in selector.get("matchExpressions") or []:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or None


def _text(*parts: object) -> str:
    return ": ".join(str(p) for p in parts if p)


def pod_problem(pod: Mapping[str, Any]) -> str | None:
    """Why one pod is not ready, from its conditions and container states; None if it is ready."""
    status = pod.get("status") or {}
    name = (pod.get("metadata") or {}).get("name", "?")
    conds = _conditions(pod)
    phase = status.get("phase", "Pending")
    if phase == "Succeeded":
        return None
    scheduled = conds.get("PodScheduled") or {}
    if scheduled.get("status") == "False":
        return _text(f"pod {name} not scheduled", scheduled.get("reason"), scheduled.get("message"))
    containers = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    for cs in containers:
        state = cs.get("state") or {}
        waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
        if waiting.get("reason") and waiting.get("reason") != "ContainerCreating":
            return _text(
                f"pod {name} container {cs.get('name')}", waiting.get("reason"), waiting.get("message")
            )
        if terminated and terminated.get("exitCode", 0) != 0:
            return _text(
                f"pod {name} container {cs.get('name')} exited with {terminated.get('exitCode')}",
                terminated.get("reason"),
                terminated.get("message"),
            )
    ready = conds.get("Ready") or {}
    if phase == "Running" and ready.get("status") == "True":
        return None
    if phase == "Failed":
        return _text(f"pod {name} failed", status.get("reason"), status.get("message"))
    return _text(f"pod {name} {str(phase).lower()}, not ready", ready.get("reason"), ready.get("message"))


def controller_problem(obj: Mapping[str, Any]) -> str | None:
    """A failing condition the workload's controller wrote (ReplicaFailure, Progressing=False, ...)."""
    conds = _conditions(obj)
    for ctype, bad in (("ReplicaFailure", "True"), ("Progressing", "False"), ("FailureTarget", "True")):
        cond = conds.get(ctype) or {}
        if cond.get("status") == bad:
            return _text(ctype, cond.get("reason"), cond.get("message"))
    return None


def explain(ctx: KubeContext, ref: ObjRef, live: Mapping[str, Any] | None, reason: str) -> str:
    """``reason`` with what the cluster says about it: failing conditions, pods, the last Warning event."""
    if live is None or ref.kind not in WORKLOADS or not ref.namespace:
        return reason
    found: list[str] = []
    problem = controller_problem(live)
    if problem and problem not in reason:
        found.append(problem)
    selector = label_selector((live.get("spec") or {}).get("selector"))
    try:
        if selector:
            pods = ctx.list_items(
                f"/api/v1/namespaces/{ref.namespace}/pods", query={"labelSelector": selector}
            )
            problems = [p for p in (pod_problem(pod) for pod in pods) if p]
            found.extend(problems[:MAX_PODS_NAMED])
            if len(problems) > MAX_PODS_NAMED:
                found.append(f"{len(problems) - MAX_PODS_NAMED} more pod(s) not ready")
        events = ctx.list_items(
            f"/api/v1/namespaces/{ref.namespace}/events",
            query={
                "fieldSelector": f"involvedObject.kind={ref.kind},involvedObject.name={ref.name},type=Warning"
            },
        )
    except ApiError:
        return "; ".join([reason, *found])  # the explanation is best effort; the reason stands
    if events:
        last = max(events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
        found.append(_text(f"event {last.get('reason', '')}", last.get("message")))
    return "; ".join([reason, *found])


def _sealed_secret(conds: Mapping[str, Mapping[str, Any]], generation: Any, observed: Any) -> Readiness:
    """A SealedSecret is ready once its controller unsealed this generation into its Secret
    (condition ``Synced`` true); ``Synced`` false is a failure: no key of the controller opens it."""
    synced = conds.get("Synced")
    if synced is None:
        return _pending("not unsealed yet: is the Sealed Secrets controller running?")
    if observed is not None and generation is not None and observed < generation:
        return _pending("the Sealed Secrets controller has not unsealed the latest generation")
    if synced.get("status") == "True":
        return READY
    message = str(synced.get("message") or synced.get("reason") or "").strip()
    return Readiness(
        Status.FAILED, "the Sealed Secrets controller cannot unseal it" + (f": {message}" if message else "")
    )


WATCH_SLICE = 5.0  # seconds one watch of a not-ready object lasts before the next round


def settled(obj: Mapping[str, Any]) -> bool:
    """Ready or failed: what a watch of one object waits for."""
    return readiness(obj).status is not Status.PENDING


@dataclass
class Waitable:
    ref: ObjRef
    mapping: Mapping_
    last: Mapping[str, Any] | None = None


def wait_for(
    ctx: KubeContext, node_id: str, items: Sequence[Waitable], timeout: float, *, applied_all: bool = True
) -> None:
    """Poll until every object is ready; raise one error naming every object that is not.

    A timeout or a failed object raises NotReadyError; ``ctx.cancel_waits()`` (the first Ctrl-C)
    ends the wait at once with InterruptedWait listing what was applied but is not ready yet.
    Each object not ready is explained with its failing conditions, pods and Warning events.
    ``applied_all=False`` (the wait between apply stages) raises the plain EngineError and
    InterruptedRun instead: the rest of the layer was not applied yet.
    """
    not_ready, interrupted = (
        (NotReadyError, InterruptedWait) if applied_all else (EngineError, InterruptedRun)
    )
    deadline = time.monotonic() + timeout
    state: dict[ObjRef, Readiness] = {}
    todo = []
    for w in items:
        first_look = readiness(w.last) if w.last is not None else _pending("not read yet")
        state[w.ref] = first_look
        if not first_look.ready:
            todo.append(w)

    def poll(w: Waitable) -> Readiness:
        # A few objects (CRDs to be Established, say) are watched from the version last seen, so
        # the wait ends the moment they are ready; many are read by one GET each per round. An
        # object the apply already watches (KubeContext.watch_ahead) takes that watch's answer.
        slice_ = min(WATCH_SLICE, deadline - time.monotonic()) if len(todo) <= ctx.concurrency else 0.0
        try:
            ahead = ctx.take_ahead(w.ref)
            if ahead is not None:
                live = ahead.result()
            else:
                live = ctx.watch_until(w.ref, w.mapping, w.last, settled, slice_)
        except ApiError as e:
            raise translate(e, w.ref, node=node_id) from e
        w.last = live
        return readiness(live) if live is not None else _pending("object not found")

    def listing(ws: Sequence[Waitable]) -> list[str]:
        explained = ctx.parallel(lambda w: explain(ctx, w.ref, w.last, state[w.ref].reason), ws)
        return [
            f"{w.ref}: {e if isinstance(e, str) else state[w.ref].reason}"
            for w, e in zip(ws, explained, strict=True)
        ]

    first = True
    while todo and not ctx.waits_cancelled:
        if not first:
            if time.monotonic() >= deadline:
                break
            if not ctx.pause(min(ctx.poll_interval, deadline - time.monotonic())):
                break
        first = False
        results = ctx.parallel(poll, todo)
        still = []
        for w, r in zip(todo, results, strict=True):
            if isinstance(r, BaseException):
                raise r
            state[w.ref] = r
            if not r.ready:
                still.append(w)
        todo = still
        failed = [w for w in todo if state[w.ref].status is Status.FAILED]
        if failed:
            lines = listing(failed)
            raise not_ready(
                f"{len(failed)} object(s) failed: " + "; ".join(lines), node=node_id, detail="\n".join(lines)
            )
    if todo and ctx.waits_cancelled:
        # Cut short: one last look (a GET each; a background watch cut short may hold an older
        # state), so that only objects still not ready are named as such.
        def look(w: Waitable) -> Readiness:
            ctx.take_ahead(w.ref)
            live = ctx.get(w.ref, w.mapping)
            return readiness(live) if live is not None else _pending("object not found")

        seen = [w for w in todo if w.last is not None]
        for w, r in zip(seen, ctx.parallel(look, seen), strict=True):
            if not isinstance(r, BaseException):
                state[w.ref] = r
        todo = [w for w in todo if not state[w.ref].ready]
    if not todo:
        return
    lines = listing(todo)
    if ctx.waits_cancelled:
        raise interrupted(
            f"interrupted while waiting: {len(todo)} object(s) applied but not ready: " + "; ".join(lines),
            node=node_id,
            detail="\n".join(lines),
            hint="envctl status shows whether they became ready; envctl apply converges again",
        )
    raise not_ready(
        f"timed out after {timeout:g}s waiting for {len(todo)} object(s): " + "; ".join(lines),
        node=node_id,
        detail="\n".join(lines),
        hint="raise wait.timeout in layer.yaml, or set wait: false",
    )
