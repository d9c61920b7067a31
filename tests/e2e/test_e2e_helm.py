"""End-to-end: Helm charts as layers (issue 21), the real CLI on the real control plane.

Each test writes its own repository: a Terraform stack whose output feeds a chart value, a
``platform`` layer with the namespace, and a ``web`` layer that is a chart the test writes —
templates, ``_helpers.tpl``, a vendored subchart, a CRD in ``crds/`` and a custom resource of it,
a pre-install hook Job, a test hook. helm is ``scripts/build-helm-tools helm``; the OCI test
starts CNCF distribution's ``registry`` (``scripts/build-helm-tools registry``) on loopback and
pushes the chart with ``helm push --plain-http``.
"""

from __future__ import annotations

import json
import os
import shutil
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
from e2ehelpers import GIT_ID, REPO, Env, describe
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-helm")]

BUILD_HELM_TOOLS = REPO / "scripts" / "build-helm-tools"
CRD_GROUP = "widgets.envctl-helm.test"


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
        **{f"charts/web/{rel}": text for rel, text in CHART_FILES.items()},
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
            CRD_GROUP, "v1", env.namespace, "widgets", name
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


def test_a_chart_layer_renders_offline_plans_applies_and_replans_clean(chart_env: Env) -> None:
    env, ns = chart_env, chart_env.namespace
    # validate renders the chart with no cluster at all
    r = env.run("validate", "-e", env.name, KUBECONFIG="/nonexistent")
    assert r.returncode == 0, describe(r)

    data = plan_json(env)
    planned = changes_of(data, "layer.platform")
    assert planned == {f"v1 Namespace {ns}": "create"}
    assert "layer.web" in {n["node"] for n in data["nodes"]}

    r = env.run("apply", "-e", env.name, "--auto-approve")
    assert r.returncode == 0, describe(r)

    cm = configmap(env, "shop-web")
    assert cm == {
        "greeting": "hello",  # values file over the chart's values.yaml
        "dbHost": f"db.{env.name}.internal",  # a stack output, through the graph
        "replicasType": "float64",  # ${env.vars.replicas} stayed a number (JSON numbers are float64 in helm)
        "tags": "blue,green",  # a list input stayed a list
        "namespace": ns,  # --namespace from layer.yaml
    }
    assert configmap(env, "shop-cache") == {"size": "large"}  # the subchart, with the parent's values
    w = widget(env, "shop-web")  # the CRD from crds/ went first, then its custom resource
    assert w is not None and w["spec"]["size"] == 3
    migrate = job(env, "shop-web-migrate")
    assert migrate is not None and migrate.status.succeeded == 1  # the hook ran, and was waited for
    assert (migrate.metadata.annotations or {})["helm.sh/hook"] == "pre-install,pre-upgrade"
    with pytest.raises(ApiException) as e:  # the test hook was skipped
        client.CoreV1Api(env.api).read_namespaced_pod("shop-web-smoke", ns)
    assert e.value.status == 404
    # no Helm release state: the inventory is the release
    secrets = client.CoreV1Api(env.api).list_namespaced_secret(ns, label_selector="owner=helm").items
    assert secrets == []

    # a second plan finds nothing to do, and the chart's objects are in sync
    r = env.run("plan", "-e", env.name, "--detailed-exitcode")
    assert r.returncode == 0, describe(r)
    assert drift(env) == (0, "in-sync", [])

    # drift: another manager edits a value the chart sets
    client.CoreV1Api(env.api).patch_namespaced_config_map(
        "shop-web", ns, {"data": {"greeting": "tampered"}}, field_manager="intruder"
    )
    assert drift(env) == (2, "drifted", [f"v1 ConfigMap {ns}/shop-web"])


def test_chart_and_values_changes_show_as_object_changes_and_changed_since_follows_them(
    chart_env: Env,
) -> None:
    env = chart_env
    r = env.run("apply", "-e", env.name, "--auto-approve")
    assert r.returncode == 0, describe(r)
    base = env.git("rev-parse", "HEAD")

    env.edit(f"environments/{env.name}/layers/web/values.yaml", "greeting: hello", "greeting: bonjour")
    env.edit("charts/web/charts/cache/templates/cm.yaml", "size: {{", "tier: gold\n  size: {{")
    env.commit("new greeting, a new key in the subchart")

    data = plan_json(env, "--changed-since", base)
    assert {n["node"] for n in data["nodes"]} == {"layer.web"}  # the chart outside the layer dir counts
    assert changes_of(data, "layer.web") == {
        f"v1 ConfigMap {env.namespace}/shop-web": "update",
        f"v1 ConfigMap {env.namespace}/shop-cache": "update",
    }

    env.edit("charts/web/templates/widget.yaml", "size: {{ .Values.replicas }}", "size: 7")
    env.commit("a template change")
    data = plan_json(env, "--changed-since", "HEAD~1")
    assert changes_of(data, "layer.web") == {
        f"v1 ConfigMap {env.namespace}/shop-web": "update",
        f"v1 ConfigMap {env.namespace}/shop-cache": "update",
        f"{CRD_GROUP}/v1 Widget {env.namespace}/shop-web": "update",
    }
    # a hook whose Job template changes is re-created (helm's before-hook-creation), no force needed
    env.edit("charts/web/templates/migrate-job.yaml", 'command: ["true"]', 'command: ["true", "v2"]')
    env.commit("a new migration")
    data = plan_json(env)
    assert changes_of(data, "layer.web")[f"batch/v1 Job {env.namespace}/shop-web-migrate"] == "replace"
    old_uid = job(env, "shop-web-migrate").metadata.uid  # type: ignore[union-attr]
    r = env.run("apply", "-e", env.name, "--auto-approve")
    assert r.returncode == 0, describe(r)
    rerun = job(env, "shop-web-migrate")
    assert rerun is not None and rerun.metadata.uid != old_uid and rerun.status.succeeded == 1
    assert widget(env, "shop-web")["spec"]["size"] == 7  # type: ignore[index]

    # a commit that touches neither the chart nor its values selects nothing
    (env.root / "README.md").write_text("notes\n")
    head = env.commit("docs")
    data = plan_json(env, "--changed-since", head + "~1")
    assert data["nodes"] == []


def test_a_broken_template_is_refused_at_validate_naming_the_chart_file(chart_env: Env) -> None:
    env = chart_env
    (env.root / "charts/web/templates/broken.yaml").write_text("kind: {{ .Values.nope.deeper }}\n")
    r = env.run("validate", "-e", env.name, KUBECONFIG="/nonexistent")
    assert r.returncode == 78, describe(r)
    assert "layer.web" in r.stderr and "helm render failed" in r.stderr, describe(r)
    assert "broken.yaml" in r.stderr, describe(r)


def test_a_post_install_hook_is_refused_naming_the_hook_and_nothing_is_applied(chart_env: Env) -> None:
    env = chart_env
    env.edit("charts/web/templates/migrate-job.yaml", "pre-install,pre-upgrade", "post-install")
    r = env.run("apply", "-e", env.name, "--auto-approve")
    assert r.returncode == 78, describe(r)
    assert "Job shop-web-migrate is a Helm post-install hook, which envctl does not run" in r.stderr
    assert "charts/web/templates/migrate-job.yaml" in r.stderr, describe(r)
    assert not env.namespace_exists()


def test_a_failing_pre_install_hook_stops_the_apply_before_the_other_objects(chart_env: Env) -> None:
    env = chart_env
    # KWOK's stage of the test plane (scripts/kwok-stages.yaml) fails a pod with this label at once
    env.edit(
        "charts/web/templates/migrate-job.yaml",
        "    spec:\n      restartPolicy: Never",
        "    metadata:\n      labels: {stage.envctl.test/pod: fail}\n    spec:\n      restartPolicy: Never",
    )
    env.commit("a migration that fails")
    r = env.run("apply", "-e", env.name, "--auto-approve")
    assert r.returncode == 5, describe(r)  # partial: the stack and the namespace were applied
    assert f"batch/v1 Job {env.namespace}/shop-web-migrate" in r.stderr and "job failed" in r.stderr, (
        describe(r)
    )
    failed = job(env, "shop-web-migrate")
    assert failed is not None and (failed.status.failed or 0) >= 1
    # the hook ran first: nothing else of the chart was written
    assert configmap(env, "shop-web") is None
    assert configmap(env, "shop-cache") is None
    assert widget(env, "shop-web") is None


def test_a_missing_helm_exits_69_naming_the_build_command(chart_env: Env, tmp_path: Path) -> None:
    env = chart_env
    bare = tmp_path / "no-helm"
    bare.mkdir()
    git = shutil.which("git")
    assert git is not None
    os.symlink(git, bare / "git")  # envctl asks git about the repository; helm is nowhere
    env.extra_env.update(PATH=str(bare), XDG_CACHE_HOME=str(tmp_path / "empty"))
    r = env.run("validate", "-e", env.name)
    assert r.returncode == 69, describe(r)
    assert "helm not found" in r.stderr and "scripts/build-helm-tools helm" in r.stderr, describe(r)


# --- OCI: a real registry on loopback --------------------------------------------------------


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


def test_an_oci_chart_from_a_loopback_registry_needs_allow_and_then_applies(
    chart_env: Env, tools: Tools, registry: str, tmp_path: Path
) -> None:
    env = chart_env
    push_chart(tools, env.root / "charts" / "web", tmp_path, registry)
    layer = env.env_dir / "layers" / "web" / "layer.yaml"
    text = layer.read_text().replace(
        "  chart: ../../../../charts/web\n",
        f"  chart: oci://{registry}/charts/web\n  version: 0.1.0\n  plain_http: true\n",
    )
    layer.write_text(text)
    subprocess.run(["git", *GIT_ID, "rm", "-rq", "charts"], cwd=env.root, check=True)
    env.commit("the chart comes from the registry")

    r = env.run("validate", "-e", env.name)
    assert r.returncode == 78, describe(r)
    assert "is not allowed in this environment" in r.stderr and "remote_sources" in r.stderr, describe(r)

    (env.env_dir / "environment.yaml").write_text(env_yaml(env.name, "allow:\n  remote_sources: true\n"))
    env.commit("allow remote charts")
    r = env.run("apply", "-e", env.name, "--auto-approve")
    assert r.returncode == 0, describe(r)
    assert configmap(env, "shop-web") is not None and configmap(env, "shop-web")["greeting"] == "hello"  # type: ignore[index]
    assert configmap(env, "shop-cache") == {"size": "large"}
    # pulled once into the chart cache; the next plan renders from there and finds nothing to do
    cached = list((tmp_path / "cache" / "envctl" / "charts").rglob("web-0.1.0.tgz"))
    assert len(cached) == 1
    r = env.run("plan", "-e", env.name, "--detailed-exitcode")
    assert r.returncode == 0, describe(r)
