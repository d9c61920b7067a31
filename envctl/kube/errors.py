"""Kubernetes API failures: ``ApiError`` (one non-2xx answer or an unreachable server), field
conflicts of server-side apply, and ``translate``, which turns them into the envctl error a user
can act on (the object named, secrets scrubbed, the exit code of its kind).

No I/O: ``envctl.kube.client`` raises these from its requests; every other module of
``envctl.kube`` catches and translates them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envctl.core.changes import SENSITIVE
from envctl.core.errors import ConfigError, EngineError, EnvctlError, UnavailableError
from envctl.core.secrets import KNOWN, encoded_forms, mask
from envctl.kube.objects import ObjRef

# answers a retry may cure: throttled, or the API server (or its proxy) briefly unavailable
RETRY_STATUSES = frozenset({429, 502, 503, 504})


class ApiError(Exception):
    """A non-2xx answer of the API server (``status`` 0: no answer at all), before translation.

    ``kind``/``name``: what the Status is about (its ``details``), e.g. ``namespaces``/``app`` when
    an object's namespace does not exist.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        causes: Sequence[Mapping[str, Any]] = (),
        *,
        kind: str = "",
        name: str = "",
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.causes = list(causes)
        self.kind = kind
        self.name = name
        self.context = ""  # the kubeconfig context the request went through (set by request)

    @property
    def tls_verify_failed(self) -> bool:
        """No answer because the server's certificate did not verify against the kubeconfig's CA."""
        return self.status == 0 and any(
            s in self.message for s in ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed")
        )

    @property
    def missing_namespace(self) -> str | None:
        """The namespace whose absence caused this 404, else None."""
        return self.name if self.status == 404 and self.kind == "namespaces" else None


class AccessError(UnavailableError):
    """The API server is there but does not accept envctl: its certificate did not verify against
    the kubeconfig's CA, or it refused the credentials (401) or the request (403). Exit 69 like
    any unavailable cluster, but never mistaken for a cluster that does not exist yet: a plan is
    not made offline past it."""

    reference = "kubernetes-access"
    retryable = False


@dataclass(frozen=True)
class FieldConflict:
    """One field another manager owns with a different value."""

    path: str
    manager: str


class ConflictError(EngineError):
    """Server-side apply refused: fields another field manager owns (under ``conflicts: refuse``)."""

    reference = "field-manager-conflict"

    def __init__(self, message: str, *, conflicts: Sequence[FieldConflict] = (), **kw: Any) -> None:
        super().__init__(message, **kw)
        self.conflicts = tuple(conflicts)


def immutable_fields(err: ApiError) -> tuple[str, ...]:
    """The fields a 422 names as immutable (``details.causes`` of the Status), e.g. ``spec.selector``."""
    return tuple(
        dict.fromkeys(
            str(c.get("field")).lstrip(".")
            for c in err.causes
            if c.get("field") and "immutable" in str(c.get("message", ""))
        )
    )


def conflicts_of(err: ApiError) -> list[FieldConflict]:
    """Field paths and managers of a 409 apply conflict (``details.causes`` of the Status)."""
    out = []
    for cause in err.causes:
        if cause.get("reason") != "FieldManagerConflict":
            continue
        msg = str(cause.get("message", ""))
        manager = msg.split('"')[1] if msg.count('"') >= 2 else "unknown"
        out.append(FieldConflict(str(cause.get("field", "")).lstrip("."), manager))
    return out


def translate(
    err: ApiError, ref: ObjRef | None, *, node: str | None = None, secrets: Iterable[str] = ()
) -> EnvctlError:
    """Turn an API failure into the envctl error a user can act on, naming the object; secrets scrubbed."""
    what = f"{ref}: " if ref is not None else ""
    texts = {t for s in secrets for t in encoded_forms(s)} | KNOWN.texts

    def scrub(text: str) -> str:
        return mask(text, texts, SENSITIVE)

    message = scrub(err.message)
    context = f"kubeconfig context {err.context}" if err.context else "the kubeconfig context"
    if err.tls_verify_failed:
        return AccessError(
            f"TLS verification of the Kubernetes API server failed ({context}): {message}",
            node=node,
            hint=f"the certificate authority of {context} does not match the server's certificate: "
            "fix certificate-authority(-data) in the kubeconfig, or point kubernetes.context at the "
            "right cluster",
        )
    if err.status == 0:
        return UnavailableError(
            f"Kubernetes API unreachable: {message}", node=node, hint="is the cluster running?"
        )
    if err.status == 401:
        return AccessError(
            f"authentication to the Kubernetes API failed ({context}, 401 Unauthorized): {message}",
            node=node,
            hint=f"the credentials of {context} (token, client certificate) are wrong or expired",
        )
    if err.status == 403:
        return AccessError(
            f"{what}not authorized by the Kubernetes API ({context}, 403 Forbidden): {message}",
            node=node,
            hint=f"grant the user of {context} the RBAC permissions envctl needs, or use other credentials",
        )
    if err.status == 409 and err.reason == "Conflict" and conflicts_of(err):
        conflicts = conflicts_of(err)
        listing = ", ".join(f".{c.path} (owned by {c.manager})" for c in conflicts)
        return ConflictError(
            f"{what}field conflict with another manager: {listing}",
            node=node,
            conflicts=conflicts,
            hint="drop the field from Git, let the other manager release it, or remove conflicts: refuse "
            "from layer.yaml so that Git takes it back",
        )
    causes = "; ".join(scrub(f"{c.get('field', '')}: {c.get('message', '')}".strip(": ")) for c in err.causes)
    detail = causes or None
    if err.status in (400, 422):
        hint = (
            "an immutable field changed: set recreate: true in layer.yaml to delete and re-create "
            "the object (explicit opt-in), or keep the field as it is"
            if err.status == 422 and "immutable" in err.message
            else None
        )
        return ConfigError(
            f"{what}rejected by the API server: {message}", node=node, detail=detail, hint=hint
        )
    if err.missing_namespace is not None:
        return EngineError(
            f"{what}{message}",
            node=node,
            hint="create the namespace in this layer or in a layer it depends on",
        )
    if err.status in RETRY_STATUSES:
        return UnavailableError(f"{what}API server busy or unavailable ({err.status}): {message}", node=node)
    return EngineError(f"{what}{err.status} {err.reason}: {message}", node=node, detail=detail)


def status_error(status: int, reason: str, data: bytes) -> ApiError:
    """The ``ApiError`` of a non-2xx answer, from its ``Status`` body (reason, message, details)."""
    try:
        doc = json.loads(data) if data else {}
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    details = doc.get("details") or {}
    return ApiError(
        status,
        str(doc.get("reason") or reason),
        str(doc.get("message") or data[:500].decode(errors="replace")),
        details.get("causes") or [],
        kind=str(details.get("kind") or ""),
        name=str(details.get("name") or ""),
    )
