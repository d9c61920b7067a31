"""In a Pod with no kubeconfig, envctl connects as the Pod's ServiceAccount.

No container runs here (KWOK only simulates pods), so the test builds what a Pod sees: a
ServiceAccount token from the real API server's TokenRequest API, its CA and namespace in a
service-account directory, ``KUBERNETES_SERVICE_HOST``/``_PORT``, and no kubeconfig anywhere.
The official client's in-cluster loader reads them from that directory instead of
``/var/run/secrets/kubernetes.io/serviceaccount``.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.config import incluster_config

from envctl.core.errors import UnavailableError
from envctl.core.model import Environment
from envctl.kube import KubeContext

pytestmark = pytest.mark.integration


def _pod_view(kubeconfig: str, api_client: client.ApiClient, namespace: str, sa_dir: Path) -> tuple[str, str]:
    """A ServiceAccount that may read ConfigMaps in ``namespace``, and its Pod's view of it."""
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "drift"}})
    client.RbacAuthorizationV1Api(api_client).create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "drift-view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "drift", "namespace": namespace}],
        },
    )
    token = core.create_namespaced_service_account_token(
        "drift", namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token
    cluster = json.loads(Path(kubeconfig).read_text())["clusters"][0]["cluster"]
    sa_dir.mkdir()
    (sa_dir / "token").write_text(token)
    (sa_dir / "ca.crt").write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    (sa_dir / "namespace").write_text(namespace)
    server = urllib.parse.urlsplit(cluster["server"])
    return str(server.hostname), str(server.port)


@pytest.fixture
def in_a_pod(
    kubeconfig: str,
    api_client: client.ApiClient,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    host, port = _pod_view(kubeconfig, api_client, namespace, tmp_path / "serviceaccount")
    monkeypatch.setattr(
        incluster_config, "SERVICE_TOKEN_FILENAME", str(tmp_path / "serviceaccount" / "token")
    )
    monkeypatch.setattr(
        incluster_config, "SERVICE_CERT_FILENAME", str(tmp_path / "serviceaccount" / "ca.crt")
    )
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.kube/config either
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    return namespace


def test_without_a_kubeconfig_a_pod_uses_its_service_account(in_a_pod: str) -> None:
    ctx = KubeContext.from_env(Environment(name="dev", path="environments/dev"))
    assert ctx.default_namespace == in_a_pod, "the namespace comes from the Pod's service-account volume"
    review = ctx.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    assert review["status"]["userInfo"]["username"] == f"system:serviceaccount:{in_a_pod}:drift"
    listed = ctx.request("GET", f"/api/v1/namespaces/{in_a_pod}/configmaps")
    assert listed["kind"] == "ConfigMapList"


def test_a_kubeconfig_that_is_named_but_missing_is_still_an_error_in_a_pod(
    in_a_pod: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nowhere"))
    ctx = KubeContext.from_env(Environment(name="dev", path="environments/dev"))
    with pytest.raises(UnavailableError, match="does not exist"):
        _ = ctx.api


def test_a_pod_without_its_token_says_so(in_a_pod: str, tmp_path: Path) -> None:
    (tmp_path / "serviceaccount" / "token").unlink()
    ctx = KubeContext.from_env(Environment(name="dev", path="environments/dev"))
    with pytest.raises(UnavailableError, match="ServiceAccount credentials cannot be read"):
        _ = ctx.api
