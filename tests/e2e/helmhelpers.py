"""Helpers for the chart-layer end-to-end tests (issue 21): a chart the tests write, a repository
around it, helm and the OCI registry from ``scripts/build-helm-tools``, a registry on loopback.

The chart has helpers (``_helpers.tpl``), a vendored subchart, a CRD in ``crds/`` and a custom
resource of it, a pre-install hook Job, a test hook; the repository a Terraform stack whose output
feeds a chart value, a ``platform`` layer with the namespace, and the ``web`` chart layer. The
fixtures (``tools``, ``chart_env``, ``registry``) are imported by tests/e2e/conftest.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from harness import REPO, Env, describe
from kubernetes import client
from kubernetes.client.rest import ApiException

BUILD_HELM_TOOLS = REPO / "scripts" / "build-helm-tools"
CRD_GROUP = "widgets.envctl-helm.test"


def crd_group(env_name: str) -> str:
    """The chart's CRD group in one test's repository: a CRD is cluster-scoped, so tests running
    side by side (or one after another) never share it, nor its inventory labels."""
    return f"{env_name}.envctl-helm.test"


@dataclass(frozen=True)
class Tools:
    helm: Path
    registry: Path


@pytest.fixture(scope="session")
def tools() -> Tools:
    """helm and registry, built by our script (cached: a fraction of a second once built)."""
    proc = subprocess.run([str(BUILD_HELM_TOOLS), "all"], capture_output=True, text=True, check=False)
    paths = proc.stdout.split()
    if proc.returncode != 0 or len(paths) != 2:
        pytest.fail(
            f"{BUILD_HELM_TOOLS} all failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", pytrace=False
        )
    return Tools(Path(paths[0]), Path(paths[1]))


def env_yaml(name: str, extra: str = "") -> str:
    return f"name: {name}\nvars:\n  replicas: 3\napproval:\n  required_for: [none]\n{extra}"


CHART_FILES = {
    "Chart.yaml": (
        "apiVersion: v2\nname: web\nversion: 0.1.0\ndependencies:\n  - name: cache\n    version: 0.1.0\n"
    ),
    "values.yaml": "greeting: hi\ntags: []\ncache:\n  size: small\n",
    "templates/_helpers.tpl": (
        '{{- define "web.fullname" -}}{{ .Release.Name }}-web{{- end -}}\n'
        '{{- define "web.labels" -}}\napp.kubernetes.io/name: web\n'
        "app.kubernetes.io/instance: {{ .Release.Name }}\n{{- end -}}\n"
    ),
    "templates/configmap.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
        '  name: {{ include "web.fullname" . }}\n'
        '  labels:\n    {{- include "web.labels" . | nindent 4 }}\n'
        "data:\n"
        "  greeting: {{ .Values.greeting | quote }}\n"
        "  dbHost: {{ .Values.dbHost | quote }}\n"
        "  replicasType: {{ typeOf .Values.replicas | quote }}\n"
        '  tags: {{ join "," .Values.tags | quote }}\n'
        "  namespace: {{ .Release.Namespace | quote }}\n"
    ),
    "templates/widget.yaml": (
        f"apiVersion: {CRD_GROUP}/v1\nkind: Widget\nmetadata:\n"
        '  name: {{ include "web.fullname" . }}\n'
        "spec:\n  size: {{ .Values.replicas }}\n"
    ),
    "templates/migrate-job.yaml": (
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n"
        '  name: {{ include "web.fullname" . }}-migrate\n'
        "  annotations:\n"
        '    "helm.sh/hook": pre-install,pre-upgrade\n'
        '    "helm.sh/hook-weight": "-1"\n'
        '    "helm.sh/hook-delete-policy": hook-succeeded\n'
        "spec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n"
        "      containers:\n        - name: migrate\n          image: busybox:1.36\n"
        '          command: ["true"]\n'
    ),
    "templates/tests/smoke.yaml": (
        "apiVersion: v1\nkind: Pod\nmetadata:\n"
        '  name: {{ include "web.fullname" . }}-smoke\n'
        '  annotations:\n    "helm.sh/hook": test\n'
        "spec:\n  containers:\n    - name: t\n      image: busybox:1.36\n"
    ),
    "crds/widgets.yaml": (
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n"
        f"  name: widgets.{CRD_GROUP}\n"
        f"spec:\n  group: {CRD_GROUP}\n  scope: Namespaced\n"
        "  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}\n"
        "  versions:\n    - name: v1\n      served: true\n      storage: true\n"
        "      schema:\n        openAPIV3Schema:\n          type: object\n"
        "          properties:\n            spec:\n              type: object\n"
        "              properties:\n                size: {type: integer}\n"
    ),
    "charts/cache/Chart.yaml": "apiVersion: v2\nname: cache\nversion: 0.1.0\n",
    "charts/cache/values.yaml": "size: tiny\n",
    "charts/cache/templates/cm.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cache\n"
        "data:\n  size: {{ .Values.size | quote }}\n"
    ),
}


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def chart_repo(base: Path, kubeconfig: str, api: client.ApiClient, helm_dir: Path) -> Env:
    """A repository with stack.db -> layer.web (a chart in charts/web) <- layer.platform (namespace)."""
    name = f"helm-{uuid.uuid4().hex[:8]}"
    root = base / "repo"
    env_dir = f"environments/{name}"
    ns = f"app-{name}"
    group = crd_group(name)
    files = {
        ".gitignore": ".envctl/\n",
        f"{env_dir}/environment.yaml": env_yaml(name),
        f"{env_dir}/stacks/db/main.tf": (
            'variable "env" { type = string }\nresource "terraform_data" "db" { input = var.env }\n'
            'output "host" { value = "db.${terraform_data.db.output}.internal" }\n'
        ),
        f"{env_dir}/stacks/db/stack.yaml": "inputs:\n  env: ${env.name}\n",
        f"{env_dir}/layers/platform/ns.yaml": f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n",
        f"{env_dir}/layers/web/layer.yaml": (
            f"depends_on: [layer.platform]\nnamespace: {ns}\n"
            "inputs:\n  tags: [blue, green]\n"
            "helm:\n"
            "  chart: ../../../../charts/web\n"
            "  release: shop\n"
            "  values_files: [values.yaml]\n"
            "  values:\n"
            "    replicas: ${env.vars.replicas}\n"
            "    dbHost: ${stack.db.outputs.host}\n"
            "    tags: ${inputs.tags}\n"
        ),
        f"{env_dir}/layers/web/values.yaml": "greeting: hello\ncache:\n  size: large\n",
        **{f"charts/web/{rel}": text.replace(CRD_GROUP, group) for rel, text in CHART_FILES.items()},
    }
    write(root, files)
    env = Env(root, name, kubeconfig, api, extra_env={"PATH": f"{helm_dir}{os.pathsep}{os.environ['PATH']}"})
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    env.commit("a chart layer")
    return env


@pytest.fixture
def chart_env(tmp_path: Path, kubeconfig: str, api_client: client.ApiClient, tools: Tools) -> Iterator[Env]:
    env = chart_repo(tmp_path, kubeconfig, api_client, tools.helm.parent)
    # the chart cache of remote charts goes to this test's own directory
    env.extra_env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    yield env
    env.cleanup()


def configmap(env: Env, name: str) -> dict[str, str] | None:
    return env.configmap(name)


def widget(env: Env, name: str) -> dict[str, Any] | None:
    try:
        got = client.CustomObjectsApi(env.api).get_namespaced_custom_object(
            crd_group(env.name), "v1", env.namespace, "widgets", name
        )
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    return dict(got)


def job(env: Env, name: str) -> client.V1Job | None:
    try:
        return client.BatchV1Api(env.api).read_namespaced_job(name, env.namespace)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def drift(env: Env) -> tuple[int, str, list[str]]:
    """``envctl drift``: exit code, layer.web's status and the objects it names."""
    r = env.run("drift", "-e", env.name, "--format", "json")
    assert r.returncode in (0, 2), describe(r)
    [web] = [n for n in json.loads(r.stdout)["nodes"] if n["node"] == "layer.web"]
    return r.returncode, web["status"], [c["address"] for c in web.get("changes") or []]


def plan_json(env: Env, *args: str) -> dict[str, Any]:
    r = env.run("plan", "-e", env.name, "--format", "json", *args)
    assert r.returncode == 0, describe(r)
    data: dict[str, Any] = json.loads(r.stdout)
    return data


def changes_of(data: dict[str, Any], node: str) -> dict[str, str]:
    [n] = [n for n in data["nodes"] if n["node"] == node]
    return {c["address"]: c["action"] for c in n.get("changes") or [] if c["action"] != "no-op"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def registry(tools: Tools, tmp_path: Path) -> Iterator[str]:
    """CNCF distribution serving on 127.0.0.1 (plain HTTP); yields host:port once /v2/ answers."""
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {tmp_path / 'registry-data'}}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    log = (tmp_path / "registry.log").open("wb")  # a file, never a pipe nobody reads
    proc = subprocess.Popen([str(tools.registry), "serve", str(config)], stdout=log, stderr=log)
    try:
        url = f"http://127.0.0.1:{port}/v2/"
        for _ in range(600):  # each try waits up to 1s on the socket: bounded, driven by the server
            if proc.poll() is not None:
                err = (tmp_path / "registry.log").read_text(errors="replace")
                pytest.fail(f"registry exited ({proc.returncode}): {err}", pytrace=False)
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                with socket.socket() as s:  # block until the port accepts, not a fixed sleep
                    s.settimeout(1)
                    s.connect_ex(("127.0.0.1", port))
        else:
            pytest.fail("registry did not answer on /v2/", pytrace=False)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def push_chart(tools: Tools, chart_dir: Path, work: Path, registry: str) -> None:
    homes = {
        k: str(work / "helm-home" / k) for k in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME")
    }
    env = {**os.environ, **homes}
    out = work / "packaged"
    for cmd in (
        [str(tools.helm), "package", str(chart_dir), "--destination", str(out)],
        [str(tools.helm), "push", str(out / "web-0.1.0.tgz"), f"oci://{registry}/charts", "--plain-http"],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        assert proc.returncode == 0, f"{cmd}: {proc.stderr}"
