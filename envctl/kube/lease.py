"""The environment lock as a Kubernetes Lease in the environment's cluster (coordination.k8s.io/v1).

One Lease per environment in namespace ``envctl-system``. The holder renews it while running; a
holder that dies (even by ``kill -9``) stops renewing and the Lease expires after
``duration`` seconds, so the next run can take it. Taking an expired Lease uses the
resourceVersion (optimistic concurrency), so two runs can never both win.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from envctl.core.errors import EngineError, LockedError, UnavailableError, describe_holder
from envctl.kube.client import KubeContext
from envctl.kube.errors import ApiError, translate

NAMESPACE = "envctl-system"
# Seconds a Lease stays valid after its last renewal; ENVCTL_LOCK_LEASE_SECONDS shortens it
# (tests) or lengthens it (slow links). A killed run's lock frees itself after this long.
DURATION = int(os.environ.get("ENVCTL_LOCK_LEASE_SECONDS", "30"))
RENEW_EVERY = 10.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _fmt(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(t: Any) -> dt.datetime | None:
    if isinstance(t, dt.datetime):
        return t if t.tzinfo else t.replace(tzinfo=dt.UTC)
    if isinstance(t, str):
        with suppress(ValueError):
            return dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    return None


def lease_name(env: str) -> str:
    return f"envctl-lock-{env}"


def _holder_text(spec: dict[str, Any]) -> str:
    raw = spec.get("holderIdentity") or ""
    try:
        h = json.loads(raw)
    except ValueError:
        return raw or "unknown"
    return describe_holder(h) if isinstance(h, dict) else str(h)


def _expired(spec: dict[str, Any]) -> bool:
    if not spec.get("holderIdentity"):
        return True
    renew = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
    if renew is None:
        return True
    return renew + dt.timedelta(seconds=int(spec.get("leaseDurationSeconds") or DURATION)) < _now()


def _request(ctx: KubeContext, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of one call. A cluster that refuses envctl (TLS verification, 401,
    403) is ``AccessError`` naming the kubeconfig context; one that cannot be reached is
    ``UnavailableError``."""
    try:
        return 200, ctx.request(method, path, body=body)
    except ApiError as e:
        if e.tls_verify_failed or e.status in (401, 403):
            raise translate(e, None) from None
        if e.status == 0:
            raise UnavailableError(
                "cannot reach the cluster to take the environment lock",
                hint="check KUBECONFIG and that the API server runs",
            ) from None
        return e.status, {}


def read_lease(ctx: KubeContext, env: str) -> dict[str, Any] | None:
    """The current holder of the environment's Lease, if held and not expired."""
    status, lease = _request(
        ctx, "GET", f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{lease_name(env)}"
    )
    if status == 404:
        return None
    if status != 200:
        # 401/403/5xx: the lock cannot be known, which is never the same as "nobody holds it"
        raise EngineError(
            f"cannot read the environment lock Lease {NAMESPACE}/{lease_name(env)} (HTTP {status})",
            hint="give this identity get on leases in envctl-system, or check the API server",
        )
    spec = lease.get("spec") or {}
    if _expired(spec):
        return None
    try:
        h = json.loads(spec.get("holderIdentity") or "{}")
    except ValueError:
        h = {"holder": spec.get("holderIdentity")}
    return h if isinstance(h, dict) else None


def _ensure_namespace(ctx: KubeContext) -> None:
    status, _ = _request(ctx, "GET", f"/api/v1/namespaces/{NAMESPACE}")
    if status == 404:
        _request(
            ctx,
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        )


def acquire(ctx: KubeContext, env: str, holder: dict[str, Any], duration: int = DURATION) -> dict[str, Any]:
    """Take the Lease or raise ``LockedError`` naming the current holder."""
    _ensure_namespace(ctx)
    base = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases"
    path = f"{base}/{lease_name(env)}"
    now = _fmt(_now())
    spec = {
        "holderIdentity": json.dumps(holder, sort_keys=True),
        "leaseDurationSeconds": duration,
        "acquireTime": now,
        "renewTime": now,
    }
    status, lease = _request(ctx, "GET", path)
    if status == 404:
        status, lease = _request(
            ctx,
            "POST",
            base,
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": lease_name(env)},
                "spec": spec,
            },
        )
        if status in (200, 201):
            return lease
        if status == 409:
            # another run created it first (or a retried POST of ours did): name who holds it now
            return _lost_race(ctx, env, path, spec, duration)
        raise UnavailableError(f"cannot create the environment lock (HTTP {status})")
    if status != 200:
        raise UnavailableError(f"cannot read the environment lock (HTTP {status})")
    current = lease.get("spec") or {}
    if not _expired(current):
        if current.get("holderIdentity") == spec["holderIdentity"]:
            return lease  # ours already (a retried request of this run took it)
        raise _locked(env, current, duration)
    lease["spec"] = {**current, **spec, "leaseTransitions": int(current.get("leaseTransitions") or 0) + 1}
    status, updated = _request(ctx, "PUT", path, lease)
    if status == 409:
        # another run took the expired Lease between our read and our write
        return _lost_race(ctx, env, path, spec, duration)
    if status != 200:
        raise UnavailableError(f"cannot take the environment lock (HTTP {status})")
    return updated


def _locked(env: str, current: dict[str, Any], duration: int) -> LockedError:
    return LockedError(
        f"environment {env} is locked by {_holder_text(current)}",
        hint="wait for that run to finish (or use --lock-timeout); a dead holder's lock "
        f"expires {current.get('leaseDurationSeconds', duration)}s after its last renewal",
    )


def _lost_race(ctx: KubeContext, env: str, path: str, spec: dict[str, Any], duration: int) -> dict[str, Any]:
    """After a 409 on creating or taking the Lease: re-read it and name the run that won.

    The Lease is ours when a request of this run was retried after its answer was lost.
    """
    status, lease = _request(ctx, "GET", path)
    current: dict[str, Any] = (lease.get("spec") or {}) if status == 200 else {}
    if current.get("holderIdentity") == spec["holderIdentity"]:
        return lease
    if current.get("holderIdentity"):
        raise _locked(env, current, duration)
    raise LockedError(
        f"environment {env} was locked by another run at the same moment "
        f"(its holder could not be read: HTTP {status})",
        hint="wait for that run to finish, then run again",
    )


def _renew(ctx: KubeContext, env: str, lease: dict[str, Any]) -> dict[str, Any] | None:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{lease_name(env)}"
    lease["spec"]["renewTime"] = _fmt(_now())
    status, updated = _request(ctx, "PUT", path, lease)
    return updated if status == 200 else None


def release(ctx: KubeContext, env: str, lease: dict[str, Any]) -> None:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{lease_name(env)}"
    lease["spec"]["holderIdentity"] = None
    with suppress(UnavailableError):
        _request(ctx, "PUT", path, lease)


@contextmanager
def lease_lock(
    ctx: KubeContext, env: str, holder: dict[str, Any], duration: int = DURATION
) -> Iterator[None]:
    """Hold the environment Lease for the duration of the block, renewing it in the background."""
    lease = acquire(ctx, env, holder, duration)
    stop = threading.Event()
    state = {"lease": lease}

    def renew() -> None:
        while not stop.wait(min(RENEW_EVERY, duration / 3)):
            with suppress(UnavailableError):
                updated = _renew(ctx, env, state["lease"])
                if updated is not None:
                    state["lease"] = updated

    t = threading.Thread(target=renew, name="envctl-lease-renew", daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(timeout=5)
        release(ctx, env, state["lease"])


def delete_lease(ctx: KubeContext, env: str) -> None:
    """Delete the environment's Lease (``envctl destroy``, after the lock was released)."""
    status, _ = _request(
        ctx, "DELETE", f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{lease_name(env)}"
    )
    if status not in (200, 404):
        raise EngineError(
            f"cannot delete the environment lock Lease {NAMESPACE}/{lease_name(env)} (HTTP {status})",
            hint="give this identity delete on leases in envctl-system, or delete it by hand",
        )
