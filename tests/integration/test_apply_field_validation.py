"""envctl's server-side applies skip the API server's second, strict decoding of the patch body
(``fieldValidation=Ignore``), and lose nothing by it - against the real API server.

``envctl.kube.client.APPLY_FIELD_VALIDATION`` rests on two facts of the server, held here:
server-side apply refuses an unknown field whatever ``fieldValidation`` says (built-in kinds,
fields inside list items, custom resources; dry-run and real), and what ``Strict`` adds is the
strict re-decoding of the body, which finds only a key given twice - something the JSON envctl
sends (``json.dumps`` of a mapping) cannot hold. If a server ever pruned unknown fields under
``Ignore``, these tests fail, and a typo in Git would no longer be refused.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from harness import crd_manifest
from kubehelpers import wait_for
from kubernetes import client
from kubernetes.client.rest import ApiException

from envctl.kube import KubeContext
from envctl.kube.client import APPLY_FIELD_VALIDATION
from envctl.kube.errors import ApiError
from envctl.kube.objects import ObjRef

pytestmark = pytest.mark.integration


class Recorded(KubeContext):
    """A KubeContext that keeps the query of every PATCH it sends."""

    def request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        if method == "PATCH":
            self.queries.append(dict(kw.get("query") or {}))  # type: ignore[attr-defined]
        return super().request(method, path, **kw)


@pytest.fixture
def ctx(kubeconfig: str, namespace: str) -> Iterator[Recorded]:
    c = Recorded(env_name=namespace, kubeconfig=kubeconfig)
    object.__setattr__(c, "queries", [])
    yield c
    c.close()


@pytest.fixture
def widget_kind(api_client: client.ApiClient) -> Iterator[str]:
    """The group of a new namespaced CRD ``Widget`` (``spec.field0``: string), Established."""
    group = f"fv{uuid.uuid4().hex[:8]}.example.com"
    ext = client.ApiextensionsV1Api(api_client)
    ext.create_custom_resource_definition(crd_manifest(group, "widgets", "Widget"))

    def established() -> bool:
        conditions = ext.read_custom_resource_definition(f"widgets.{group}").status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(established, timeout=60, what="the CRD to be Established")
    yield group
    ext.delete_custom_resource_definition(f"widgets.{group}")


def _unknown_fields(ns: str, group: str) -> list[tuple[ObjRef, dict[str, Any]]]:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "typo", "namespace": ns}}
    cm["data"], cm["dta"] = {"a": "1"}, {"b": "2"}
    container = {"name": "app", "image": "registry.example/app:1", "imagePullPolicyy": "Always"}
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "typo", "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"app": "typo"}},
            "template": {"metadata": {"labels": {"app": "typo"}}, "spec": {"containers": [container]}},
        },
    }
    widget = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "typo", "namespace": ns},
        "spec": {"field0": "a", "feild0": "b"},
    }
    return [(ObjRef.of(o), o) for o in (cm, deploy, widget)]


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "apply"])
def test_an_unknown_field_is_refused_and_nothing_is_written(
    ctx: Recorded, namespace: str, widget_kind: str, api_client: client.ApiClient, dry_run: bool
) -> None:
    assert APPLY_FIELD_VALIDATION == "Ignore"
    for ref, obj in _unknown_fields(namespace, widget_kind):
        ctx.forget(ref.api_version)
        mapping = ctx.mapping(ref.api_version, ref.kind)
        assert mapping is not None, ref
        with pytest.raises(ApiError) as err:
            ctx.apply(obj, mapping, dry_run=dry_run, force=True)
        assert "not declared in schema" in err.value.message, (ref, err.value.message)
        assert ctx.get(ref, mapping) is None, f"{ref} was written"
    assert ctx.queries and all(q.get("fieldValidation") == "Ignore" for q in ctx.queries)  # type: ignore[attr-defined]


def test_what_strict_adds_to_an_apply_is_only_the_duplicate_key_check(
    namespace: str, api_client: client.ApiClient
) -> None:
    """The one thing ``Ignore`` lets through that ``Strict`` refuses: a body with a key twice,
    which ``json.dumps`` of a mapping never writes (the same body, valid, passes both)."""
    path = f"/api/v1/namespaces/{namespace}/configmaps/twice"
    meta = json.dumps({"name": "twice", "namespace": namespace})
    twice = '{"apiVersion":"v1","kind":"ConfigMap","metadata":' + meta + ',"data":{"a":"1","a":"2"}}'

    def send(body: str, validation: str) -> int:
        """The HTTP status of a dry-run apply of ``body``: 201 accepted (it would create)."""
        headers = {"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"}
        api_client.update_params_for_auth(headers, None, ["BearerToken"], path, "PATCH", body)
        url = f"{api_client.configuration.host}{path}?fieldManager=t&dryRun=All&fieldValidation={validation}"
        try:
            resp = api_client.call_api("PATCH", url, header_params=headers, body=body)
        except ApiException as e:
            return int(e.status)
        return int(resp.status)

    assert send(twice, "Strict") == 400
    assert send(twice, "Ignore") == 201
    once = json.dumps(json.loads(twice))  # what envctl sends: serialised from a mapping
    assert once.count('"a"') == 1
    assert send(once, "Strict") == send(once, "Ignore") == 201
