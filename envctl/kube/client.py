"""The connection to one cluster: ``KubeContext``, raw JSON REST, retries, the REST mapping.

The only module of ``envctl.kube`` that imports ``kubernetes`` (lazily, on first request) and
``urllib3``. Requests go through ``ApiClient.call_api`` so authentication (client certificates,
tokens, exec plugins) is the client's, but bodies are raw JSON: no model deserialisation, no
client-side throttling; concurrency is bounded by a thread pool of ``KubeContext.concurrency``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from envctl.core.errors import ConfigError, UnavailableError
from envctl.core.model import Environment, Snapshot
from envctl.kube.errors import RETRY_STATUSES, ApiError, status_error
from envctl.kube.objects import FIELD_MANAGER, ObjRef

T = TypeVar("T")
R = TypeVar("R")

# Retries of one request: delays from RETRY_DELAY doubling up to RETRY_MAX_DELAY, for at most
# RETRY_BUDGET seconds in all; FIRST_CONTACT_BUDGET while the cluster has never answered this run.
RETRY_DELAY = 0.2
# Accept header asking for an object's metadata alone, or the full object where not supported.
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
RETRY_MAX_DELAY = 2.0
RETRY_BUDGET = 30.0
FIRST_CONTACT_BUDGET = 1.0
RETRY_AFTER_MAX = 10.0
# The clock and the pause of the retry loop, by name, so a test replaces them for this module
# alone (patching ``time.sleep`` itself would also catch other threads' sleeps).
_monotonic = time.monotonic
_sleep = time.sleep


def _backoff(delay: float, start: float, budget: float) -> float | None:
    """The delay before the next attempt, or None when it would end after the budget."""
    left = start + budget - _monotonic()
    if left <= 0:
        return None
    return min(delay, left)


def _retry_after(value: str | None) -> float:
    """Seconds of a ``Retry-After`` header (seconds form; an HTTP date counts as absent)."""
    try:
        return max(0.0, min(float(value or 0), RETRY_AFTER_MAX))
    except ValueError:
        return 0.0


def _permanent(e: BaseException) -> bool:
    """A failure no retry cures: TLS verification, a bad URL."""
    import ssl

    import urllib3

    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError | urllib3.exceptions.LocationValueError):
            return True
        if isinstance(cur, urllib3.exceptions.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(cur):
            return True
        reason = getattr(cur, "reason", None)  # MaxRetryError's cause; an SSLError's is a str
        cur = reason if isinstance(reason, BaseException) else (cur.__cause__ or cur.__context__)
    return False


@dataclass(frozen=True)
class Mapping_:
    """REST mapping of one kind: resource (plural) name and scope."""

    resource: str
    namespaced: bool


class _State:
    """Mutable per-run state behind the frozen context: the client and the discovery cache."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.client: Any = None
        self.default_namespace = "default"
        self.discovery: dict[str, dict[str, Mapping_] | None] = {}
        self.reached = False  # the API server answered at least once
        self.context_name = ""  # the kubeconfig context in use (errors name it)
        self.memo: dict[Any, Any] = {}  # results one step leaves for a later one (remember/recall)
        self.cancel = threading.Event()  # set on the first Ctrl-C: readiness waits stop at once
        self.watches: set[Any] = set()  # open watch responses, shut down by cancel_waits
        self.ahead: dict[ObjRef, Future[dict[str, Any] | None]] = {}  # watch_ahead -> take_ahead


def _one_tls_context(api: Any) -> Any:
    """``api`` with one TLS context for all its connections.

    urllib3 makes a context per connection and loads the kubeconfig's CA and client certificate
    from their files into each; a command opens 10-20 connections (its parallel requests), and
    each load cost 2-4 ms of CPU. The context is the one urllib3 would make (its
    ``create_urllib3_context``, verification required, the same CA and client certificate);
    urllib3 still checks the hostname per connection. A proxy or verification turned off keeps
    urllib3's own handling.
    """
    import ssl

    import urllib3
    from urllib3.util.ssl_ import create_urllib3_context

    pool = api.rest_client.pool_manager
    kw = pool.connection_pool_kw
    if (
        type(pool) is not urllib3.PoolManager
        or kw.get("cert_reqs") != ssl.CERT_REQUIRED
        or kw.get("ssl_context")
    ):
        return api
    ctx = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    ca, ca_data = kw.pop("ca_certs", None), kw.pop("ca_cert_data", None)
    if ca or ca_data:
        ctx.load_verify_locations(ca, None, ca_data)
    else:
        ctx.load_default_certs()
    cert, key = kw.pop("cert_file", None), kw.pop("key_file", None)
    if cert:
        ctx.load_cert_chain(cert, key)
    kw["ssl_context"] = ctx
    return api


# ``fieldValidation`` of envctl's server-side applies. Server-side apply refuses an unknown field
# whatever this says (the applied configuration must fit the type's schema: "field not declared
# in schema", built-in kinds and custom resources alike); what ``Warn`` (the server's default)
# and ``Strict`` add is a second, strict YAML decoding of the whole patch body, which can only
# find a key given twice - impossible in the JSON envctl sends, serialised from a mapping. For a
# CustomResourceDefinition of 400-800 KB that second decoding is about 40% of the apply's API
# server CPU (B8). Held against the API server: tests/integration/test_apply_field_validation.py.
APPLY_FIELD_VALIDATION = "Ignore"


@dataclass(frozen=True)
class KubeContext:
    """Everything needed to talk to one environment's cluster; one ApiClient, created on first use.

    ``concurrency`` bounds parallel requests; ``force`` is per layer (``layer.yaml``), not here.
    """

    env_name: str
    kubeconfig: str | None = None
    context: str | None = None
    concurrency: int = 16
    field_manager: str = FIELD_MANAGER
    revision: str | None = None
    request_timeout: float = 60.0
    connect_timeout: float = 5.0
    poll_interval: float = 0.5
    _state: _State = field(default_factory=_State, compare=False, repr=False)

    @classmethod
    def from_env(
        cls, env: Environment, snapshot: Snapshot | None = None, *, concurrency: int = 16
    ) -> KubeContext:
        settings = env.kubernetes
        kubeconfig = settings.kubeconfig if settings is not None else None
        return cls(
            env_name=env.name,
            kubeconfig=os.path.expanduser(kubeconfig) if kubeconfig else None,
            context=settings.context if settings is not None else None,
            concurrency=max(1, concurrency),
            revision=snapshot.commit if snapshot is not None else None,
        )

    # -- connection -----------------------------------------------------------------------

    @property
    def api(self) -> Any:
        """The ``kubernetes.client.ApiClient`` (created once, thread-safe to share)."""
        state = self._state
        with state.lock:
            if state.client is None:
                state.client = self._connect()
            return state.client

    @property
    def default_namespace(self) -> str:
        _ = self.api
        return self._state.default_namespace

    def _connect(self) -> Any:
        from kubernetes import client, config  # lazy: `envctl --help` must not import kubernetes
        from kubernetes.config.config_exception import ConfigException

        given = self.kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        path = os.path.expanduser(given or "~/.kube/config")
        cfg = client.Configuration()
        if not os.path.exists(path):
            if not given and os.environ.get("KUBERNETES_SERVICE_HOST"):
                return self._connect_in_cluster(client, cfg)
            raise UnavailableError(
                f"kubeconfig {path} does not exist",
                hint="set kubernetes.kubeconfig in environment.yaml or KUBECONFIG "
                "(in a Pod without either, envctl uses the Pod's ServiceAccount)",
            )
        try:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, context=self.context, client_configuration=cfg, persist_config=False
            )
            contexts, active = config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
        except ConfigException as e:
            raise ConfigError(f"kubeconfig {path}: {e}") from e
        chosen = next((c for c in contexts if c["name"] == self.context), active) if self.context else active
        self._state.default_namespace = (chosen or {}).get("context", {}).get("namespace") or "default"
        self._state.context_name = str((chosen or {}).get("name") or "")
        cfg.connection_pool_maxsize = max(self.concurrency, 4)
        cfg.retries = 0
        return _one_tls_context(client.ApiClient(cfg))

    def _connect_in_cluster(self, client: Any, cfg: Any) -> Any:
        """Inside a Pod with no kubeconfig: its ServiceAccount token, CA and namespace.

        The official client reads the token (and re-reads it as the kubelet rotates it) and the
        CA from the Pod's service-account volume, and the API server's address from
        ``KUBERNETES_SERVICE_HOST``/``_PORT``.
        """
        from kubernetes.config import incluster_config
        from kubernetes.config.config_exception import ConfigException

        try:
            incluster_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        except ConfigException as e:
            raise UnavailableError(
                f"running in a Pod, but its ServiceAccount credentials cannot be read: {e}",
                hint="mount the ServiceAccount token (automountServiceAccountToken: true) "
                "or set kubernetes.kubeconfig in environment.yaml",
            ) from e
        ns_file = os.path.join(os.path.dirname(incluster_config.SERVICE_TOKEN_FILENAME), "namespace")
        try:
            with open(ns_file, encoding="utf-8") as f:
                self._state.default_namespace = f.read().strip() or "default"
        except OSError:
            self._state.default_namespace = "default"
        cfg.connection_pool_maxsize = max(self.concurrency, 4)
        cfg.retries = 0
        return _one_tls_context(client.ApiClient(cfg))

    def close(self) -> None:
        with self._state.lock:
            if self._state.client is not None:
                self._state.client.close()
                self._state.client = None

    def remember(self, key: Any, value: Any) -> None:
        """Keep ``value`` for one later :meth:`recall` in this run (a plan's dry-runs for its apply)."""
        with self._state.lock:
            self._state.memo[key] = value

    def recall(self, key: Any) -> Any:
        """What :meth:`remember` kept under ``key`` (once: it is forgotten), or None."""
        with self._state.lock:
            return self._state.memo.pop(key, None)

    # -- raw requests ---------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        status: list[int] | None = None,
        accept: str = "application/json",
    ) -> dict[str, Any]:
        """One REST call with raw JSON in and out; retries 429/5xx-unavailable and dropped connections.

        Retries back off from 0.2 s doubling to 2 s for at most 30 s (``Retry-After`` respected);
        then ``ApiError`` (status 0: no answer at all). ``status``, when given, receives the HTTP
        status of a successful answer (201 Created tells a create from an update).
        """
        import urllib3

        api = self.api
        url = api.configuration.host + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        headers: dict[str, str] = {"Accept": accept, "Content-Type": content_type}
        headers.update(api.default_headers)
        api.update_params_for_auth(headers, None, ["BearerToken"], path, method, body)
        # The REST client JSON-encodes bodies itself for JSON content types; apply patches go as text.
        payload = (
            body
            if content_type == "application/json" or body is None
            else json.dumps(body, separators=(",", ":"))
        )
        # Dropped connections, 429 and 502-504 are retried with growing delays for up to
        # RETRY_BUDGET seconds (an API server restart takes several): apply is idempotent, and
        # callers whose writes are not (POST, PUT with a resourceVersion) check a 409 themselves.
        # Before the cluster ever answered, a refused connection fails fast: it is not there.
        start = _monotonic()
        delay = RETRY_DELAY
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = api.call_api(
                    method,
                    url,
                    header_params=headers,
                    body=payload,
                    _request_timeout=(self.connect_timeout, self.request_timeout),
                )
                data = resp.read()
                code = resp.status
            except (urllib3.exceptions.HTTPError, OSError) as e:
                budget = RETRY_BUDGET if self._state.reached else FIRST_CONTACT_BUDGET
                wait = _backoff(delay, start, budget)
                if wait is None or _permanent(e):
                    gone = ApiError(
                        0,
                        "Unavailable",
                        f"{api.configuration.host}: {type(e).__name__}: {e}"
                        + (f" (after {attempt} attempts)" if attempt > 1 else ""),
                    )
                    gone.context = self._state.context_name
                    raise gone from e
                _sleep(wait)
                delay = min(delay * 2, RETRY_MAX_DELAY)
                continue
            self._state.reached = True
            if 200 <= code <= 299:
                if status is not None:
                    status.append(code)
                return dict(json.loads(data)) if data else {}
            err = status_error(code, resp.reason or "", data)
            err.context = self._state.context_name
            if code in RETRY_STATUSES:
                wait = _backoff(
                    max(delay, _retry_after(resp.headers.get("Retry-After"))), start, RETRY_BUDGET
                )
                if wait is not None:
                    _sleep(wait)
                    delay = min(delay * 2, RETRY_MAX_DELAY)
                    continue
            raise err

    # -- REST mapping (discovery, cached per run) -----------------------------------------

    def _group_version(self, api_version: str) -> dict[str, Mapping_] | None:
        state = self._state
        with state.lock:
            if api_version in state.discovery:
                return state.discovery[api_version]
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        try:
            doc = self.request("GET", path)
        except ApiError as e:
            if e.status != 404:
                raise
            doc = None
        found: dict[str, Mapping_] | None = None
        if doc is not None:
            found = {
                str(r["kind"]): Mapping_(str(r["name"]), bool(r.get("namespaced")))
                for r in doc.get("resources", [])
                if "/" not in str(r.get("name", ""))
            }
        with state.lock:
            state.discovery[api_version] = found
        return found

    def mapping(self, api_version: str, kind: str) -> Mapping_ | None:
        """Resource and scope of a kind, or None when the cluster does not serve it (yet)."""
        resources = self._group_version(api_version)
        return None if resources is None else resources.get(kind)

    def forget(self, api_version: str) -> None:
        """Drop a cached group-version (after its CRD was created)."""
        with self._state.lock:
            self._state.discovery.pop(api_version, None)

    def preferred_versions(self) -> list[str]:
        versions = ["v1"]
        for group in self.request("GET", "/apis").get("groups", []):
            versions.append(str(group["preferredVersion"]["groupVersion"]))
        return versions

    # -- paths ----------------------------------------------------------------------------

    def path(self, ref: ObjRef, mapping: Mapping_, *, name: bool = True) -> str:
        base = "/api/v1" if ref.api_version == "v1" else f"/apis/{ref.api_version}"
        if mapping.namespaced:
            base += f"/namespaces/{quote(ref.namespace or self.default_namespace, safe='')}"
        base += f"/{mapping.resource}"
        if name:
            base += f"/{quote(ref.name, safe='')}"
        return base

    def resolve(self, ref: ObjRef) -> tuple[ObjRef, Mapping_] | None:
        """The object's mapping and its ref with namespace fixed to the scope (None: kind not served)."""
        mapping = self.mapping(ref.api_version, ref.kind)
        if mapping is None:
            return None
        ns = (ref.namespace or self.default_namespace) if mapping.namespaced else ""
        return ObjRef(ref.api_version, ref.kind, ns, ref.name), mapping

    # -- verbs ----------------------------------------------------------------------------

    def get(self, ref: ObjRef, mapping: Mapping_) -> dict[str, Any] | None:
        try:
            return self.request("GET", self.path(ref, mapping))
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def watch_until(
        self,
        ref: ObjRef,
        mapping: Mapping_,
        last: Mapping[str, Any] | None,
        done: Callable[[dict[str, Any]], bool],
        timeout: float,
    ) -> dict[str, Any] | None:
        """The object as soon as ``done(object)`` holds, else its latest state after ``timeout``.

        One watch request from ``last``'s ``resourceVersion`` (the server streams each change of
        this one object, so a CRD becomes Established here the moment the server says so, without
        polls re-reading it); a plain GET when there is no version to start from, or when the
        watch cannot be used (the version is too old: 410 Gone, or the connection fails). None:
        the object does not exist (any more).
        """
        version = str(((last or {}).get("metadata") or {}).get("resourceVersion") or "")
        if not version or timeout <= 0 or self.waits_cancelled:
            return self.get(ref, mapping)
        import urllib3

        api = self.api
        query = {
            "watch": "true",
            "fieldSelector": f"metadata.name={ref.name}",
            "resourceVersion": version,
            "timeoutSeconds": max(1, int(timeout + 0.999)),
            "allowWatchBookmarks": "false",
        }
        path = self.path(ref, mapping, name=False)
        url = f"{api.configuration.host}{path}?{urlencode(query)}"
        headers: dict[str, str] = {"Accept": "application/json"}
        headers.update(api.default_headers)
        api.update_params_for_auth(headers, None, ["BearerToken"], path, "GET", None)
        latest: dict[str, Any] | None = dict(last) if last is not None else None
        try:
            resp = api.call_api("GET", url, header_params=headers, _request_timeout=(
                self.connect_timeout, timeout + self.request_timeout))  # fmt: skip
        except (urllib3.exceptions.HTTPError, OSError):
            return self.get(ref, mapping)
        raw = resp.response
        self._state.watches.add(raw)  # set.add/discard are atomic: no lock a signal handler could wait on
        if self.waits_cancelled:
            raw.shutdown()
        try:
            if resp.status != 200:
                return self.get(ref, mapping)
            pending = b""
            for chunk in raw.stream(None, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        return self.get(ref, mapping)  # 410 Gone: too old a version to watch from
                    if kind == "DELETED":
                        return None
                    if kind in ("ADDED", "MODIFIED"):
                        latest = obj
                        if done(obj):
                            return obj
        except (urllib3.exceptions.HTTPError, OSError, ValueError):
            return self.get(ref, mapping)
        finally:
            self._state.watches.discard(raw)
            raw.close()  # a watch left mid-stream cannot be reused: drop its connection
            raw.release_conn()
        return latest

    def watch_ahead(
        self,
        ref: ObjRef,
        mapping: Mapping_,
        last: Mapping[str, Any] | None,
        done: Callable[[dict[str, Any]], bool],
        timeout: float,
    ) -> None:
        """Start :meth:`watch_until` in the background; a later readiness wait takes its result
        (:meth:`take_ahead`) instead of watching from the start. For objects applied one after the
        other (CRDs): each one's watch follows the server's work on it while the next is applied,
        so the wait after the last apply finds the earlier ones ready without replaying their
        events. A daemon thread: a run that ends first (a failed apply) does not wait for it;
        :meth:`cancel_waits` shuts it down like any watch."""
        if last is not None and done(dict(last)):
            return  # settled already (an update of an established CRD): the wait needs no request
        future: Future[dict[str, Any] | None] = Future()

        def run() -> None:
            try:
                future.set_result(self.watch_until(ref, mapping, last, done, timeout))
            except BaseException as e:  # handed to whoever takes the result
                future.set_exception(e)

        with self._state.lock:
            self._state.ahead[ref] = future
        threading.Thread(target=run, name=f"watch-ahead {ref.name}", daemon=True).start()

    def take_ahead(self, ref: ObjRef) -> Future[dict[str, Any] | None] | None:
        """The background watch :meth:`watch_ahead` started for ``ref`` (once), or None."""
        with self._state.lock:
            return self._state.ahead.pop(ref, None)

    def apply(
        self, obj: Mapping[str, Any], mapping: Mapping_, *, dry_run: bool, force: bool
    ) -> dict[str, Any]:
        """Server-side apply of one object as ``field_manager``; returns the result (or would-be result)."""
        return self.apply_created(obj, mapping, dry_run=dry_run, force=force)[0]

    def apply_created(
        self,
        obj: Mapping[str, Any],
        mapping: Mapping_,
        *,
        dry_run: bool,
        force: bool,
        metadata_only: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """:meth:`apply`, and whether the object is (or, dry-run, would be) created: 201, not 200.

        ``metadata_only``: the answer is the object's metadata alone (a ``PartialObjectMetadata``;
        the full object where a server cannot transform it), for a caller that needs only to
        know the apply is accepted: the server skips encoding, and envctl decoding, a large body.
        """
        ref = ObjRef.of(obj)
        query = {
            "fieldManager": self.field_manager,
            "force": "true" if force else "false",
            "fieldValidation": APPLY_FIELD_VALIDATION,
        }
        if dry_run:
            query["dryRun"] = "All"
        status: list[int] = []
        result = self.request(
            "PATCH",
            self.path(ref, mapping),
            query=query,
            body=obj,
            content_type="application/apply-patch+yaml",
            status=status,
            accept=METADATA_ONLY if metadata_only else "application/json",
        )
        return result, status == [201]

    def validate_create(
        self, obj: Mapping[str, Any], mapping: Mapping_, *, metadata_only: bool = False
    ) -> dict[str, Any]:
        """A dry-run create (POST ``dryRun=All``, ``fieldValidation=Strict``) of an object that should
        not exist yet: the server decodes, defaults, validates and admits it as it would for an
        apply that creates it, without server-side apply's field-management pass over the applied
        configuration - for a large CustomResourceDefinition, most of a dry-run apply's cost.
        Strict, because an apply refuses unknown fields too. Raises ``ApiError`` (409
        ``AlreadyExists``: the object exists). ``metadata_only``: as for :meth:`apply_created`.
        """
        ref = ObjRef.of(obj)
        query = {"fieldManager": self.field_manager, "dryRun": "All", "fieldValidation": "Strict"}
        return self.request(
            "POST",
            self.path(ref, mapping, name=False),
            query=query,
            body=obj,
            accept=METADATA_ONLY if metadata_only else "application/json",
        )

    def delete(
        self,
        ref: ObjRef,
        mapping: Mapping_,
        *,
        dry_run: bool = False,
        preconditions: Mapping[str, str] | None = None,
    ) -> bool:
        """Delete with background propagation; False if it was already gone.

        ``preconditions`` (``uid``, ``resourceVersion``): delete only that very object, unchanged;
        the API server answers 409 otherwise (raised as ``ApiError``).
        """
        body: dict[str, Any] = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": "Background",
        }
        if preconditions:
            body["preconditions"] = dict(preconditions)
        try:
            self.request(
                "DELETE", self.path(ref, mapping), query={"dryRun": "All" if dry_run else None}, body=body
            )
        except ApiError as e:
            if e.status == 404:
                return False
            raise
        return True

    def list_items(self, path: str, *, query: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        params = dict(query or {})
        params.setdefault("limit", 500)
        while True:
            doc = self.request("GET", path, query=params)
            items.extend(doc.get("items") or [])
            cont = (doc.get("metadata") or {}).get("continue")
            if not cont:
                return items
            params["continue"] = cont

    # -- cancellation ---------------------------------------------------------------------

    def cancel_waits(self) -> None:
        """Stop every readiness wait on this context now (the first Ctrl-C): a watch in progress is
        shut down (its read returns at once), polls stop; other requests still finish."""
        self._state.cancel.set()
        for raw in list(self._state.watches):
            raw.shutdown()

    @property
    def waits_cancelled(self) -> bool:
        return self._state.cancel.is_set()

    def pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; False at once when the waits are cancelled."""
        return not self._state.cancel.wait(max(0.0, seconds))

    # -- concurrency ----------------------------------------------------------------------

    def parallel(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R | BaseException]:
        """Run ``fn`` over items with at most ``concurrency`` in flight; results (or errors) in item order."""
        if not items:
            return []

        def guarded(item: T) -> R | BaseException:
            try:
                return fn(item)
            except Exception as e:  # collected and raised by the caller, which knows the object
                return e

        if len(items) == 1 or self.concurrency == 1:
            return [guarded(i) for i in items]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            return list(pool.map(guarded, items))
