"""Rendering chart layers with the real ``helm`` (from scripts/build-helm-tools), offline: no cluster.

Charts written by the tests: helpers, a vendored subchart, a CRD, hooks; values substituted as
values; errors that name the chart file; ``--rev`` renders the chart of that commit.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from envctl.core.errors import ConfigError
from envctl.core.model import Environment
from envctl.kube import helm
from envctl.kube.render import render_layer
from envctl.repo import load_environment, open_snapshot

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LAYER = "environments/dev/layers/web"


@pytest.fixture(scope="module")
def helm_on_cache() -> Path:
    """helm built by our script; envctl finds it in ~/.cache/envctl/helm/<version>/."""
    proc = subprocess.run(
        [str(REPO / "scripts" / "build-helm-tools"), "helm"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/build-helm-tools helm failed:\n{proc.stderr[-3000:]}", pytrace=False)
    return Path(proc.stdout.strip())


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


CHART = {
    "Chart.yaml": (
        "apiVersion: v2\nname: web\nversion: 0.1.0\ndependencies:\n  - {name: sub, version: 0.1.0}\n"
    ),
    "values.yaml": "text: default\n",
    "templates/_helpers.tpl": '{{- define "web.name" -}}{{ .Release.Name }}-{{ .Chart.Name }}{{- end -}}\n',
    "templates/cm.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
        '  name: {{ include "web.name" . }}\n'
        "data:\n"
        "  text: {{ .Values.text | quote }}\n"
        "  textType: {{ typeOf .Values.text | quote }}\n"
        "  port: {{ .Values.port | quote }}\n"
        "  portType: {{ typeOf .Values.port | quote }}\n"
    ),
    "templates/hook.yaml": (
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n"
        '  annotations: {"helm.sh/hook": "pre-upgrade,pre-install", "helm.sh/hook-weight": "5"}\n'
        "spec:\n  template:\n    spec:\n      restartPolicy: Never\n"
        "      containers: [{name: m, image: busybox}]\n"
    ),
    "templates/tests/t.yaml": (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: smoke\n"
        '  annotations: {"helm.sh/hook": test}\nspec:\n  containers: [{name: t, image: busybox}]\n'
    ),
    "crds/things.yaml": (
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        "metadata: {name: things.example.com}\n"
        "spec:\n  group: example.com\n  scope: Namespaced\n"
        "  names: {plural: things, singular: thing, kind: Thing}\n"
        "  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}]\n"
    ),
    "charts/sub/Chart.yaml": "apiVersion: v2\nname: sub\nversion: 0.1.0\n",
    "charts/sub/templates/svc.yaml": (
        "apiVersion: v1\nkind: Service\nmetadata: {name: '{{ .Release.Name }}-sub'}\n"
        "spec: {ports: [{port: {{ .Values.port | default 80 }}}]}\n"
    ),
}


def repo(tmp_path: Path, layer_yaml: str, extra: dict[str, str] | None = None) -> Path:
    root = tmp_path / "repo"
    write(
        root,
        {
            "environments/dev/environment.yaml": "name: dev\nvars: {port: 8080}\n",
            f"{LAYER}/layer.yaml": layer_yaml,
            **{f"{LAYER}/chart/{k}": v for k, v in CHART.items()},
            **(extra or {}),
        },
    )
    return root


def render(root: Path, inputs: dict[str, Any] | None = None, rev: str | None = None) -> list[dict[str, Any]]:
    snapshot = open_snapshot(root, rev)
    env: Environment = load_environment(snapshot, "dev")
    return render_layer(env, snapshot, env.nodes["layer.web"], inputs or {})


def by_name(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


def test_a_chart_renders_with_helpers_subchart_crds_and_hooks(tmp_path: Path, helm_on_cache: Path) -> None:
    root = repo(
        tmp_path,
        "namespace: shop\ninputs: {s: x}\nhelm:\n  chart: chart\n  values:\n    port: ${env.vars.port}\n"
        "    sub: {port: '${env.vars.port}'}\n",
    )
    objects = by_name(render(root, {"s": "x"}))
    assert set(objects) == {
        "CustomResourceDefinition/things.example.com",
        "ConfigMap/web-web",
        "Service/web-sub",
        "Job/migrate",
    }  # the test hook is dropped
    cm = objects["ConfigMap/web-web"]
    assert cm["metadata"]["namespace"] == "shop"
    assert cm["metadata"]["labels"]["envctl.io/layer"] == "web"
    assert cm["metadata"]["annotations"]["envctl.io/inventory-id"] == "dev/layer.web"
    assert cm["data"] == {"text": "default", "textType": "string", "port": "8080", "portType": "float64"}
    assert objects["Service/web-sub"]["spec"]["ports"] == [{"port": 8080}]
    assert "namespace" not in objects["CustomResourceDefinition/things.example.com"]["metadata"]


def test_a_string_value_stays_a_string_and_is_never_read_as_yaml(tmp_path: Path, helm_on_cache: Path) -> None:
    root = repo(
        tmp_path,
        "inputs: {text: x, port: x}\nhelm:\n  chart: chart\n"
        "  values: {text: '${inputs.text}', port: '${inputs.port}'}\n",
    )
    cm = by_name(render(root, {"text": "yes", "port": "{a: 1}"}))["ConfigMap/web-web"]
    assert cm["data"] == {"text": "yes", "textType": "string", "port": "{a: 1}", "portType": "string"}


def test_a_template_error_names_the_chart(tmp_path: Path, helm_on_cache: Path) -> None:
    root = repo(
        tmp_path,
        "helm: {chart: chart}\n",
        {f"{LAYER}/chart/templates/bad.yaml": "x: {{ .Values.missing.deeper }}\n"},
    )
    with pytest.raises(ConfigError) as e:
        render(root)
    assert e.value.node == "layer.web"
    assert e.value.location is not None and e.value.location.file == f"{LAYER}/chart"
    assert "bad.yaml" in str(e.value) + (e.value.detail or "")


def test_a_post_upgrade_hook_is_refused_naming_its_template(tmp_path: Path, helm_on_cache: Path) -> None:
    root = repo(tmp_path, "helm: {chart: chart}\n")
    hook = root / LAYER / "chart/templates/hook.yaml"
    hook.write_text(hook.read_text().replace("pre-upgrade,pre-install", "post-upgrade"))
    with pytest.raises(ConfigError) as e:
        render(root)
    assert "Job migrate is a Helm post-upgrade hook" in str(e.value)
    assert e.value.location is not None and e.value.location.file == f"{LAYER}/chart/templates/hook.yaml"


def test_rev_renders_the_chart_of_that_commit(tmp_path: Path, helm_on_cache: Path) -> None:
    root = repo(
        tmp_path, "helm: {chart: chart, values_files: [v.yaml]}\n", {f"{LAYER}/v.yaml": "text: first\n"}
    )
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    subprocess.run(["git", "add", "-A"], cwd=root, check=True)
    subprocess.run(["git", *ident, "commit", "-qm", "one"], cwd=root, check=True)
    (root / LAYER / "v.yaml").write_text("text: second\n")
    assert by_name(render(root))["ConfigMap/web-web"]["data"]["text"] == "second"
    assert by_name(render(root, rev="HEAD"))["ConfigMap/web-web"]["data"]["text"] == "first"


def test_a_chart_that_renders_too_much_is_stopped_while_it_renders(
    tmp_path: Path, helm_on_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(helm, "MAX_RENDER_BYTES", 64 << 10)  # the real bound is 64 MiB
    many = (
        '{{ range until 5000 }}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: "c{{ . }}"}\n'
        "{{ end }}\n"
    )
    root = repo(tmp_path, "helm: {chart: chart}\n", {f"{LAYER}/chart/templates/many.yaml": many})
    with pytest.raises(ConfigError) as e:
        render(root)
    assert "the chart renders more than" in str(e.value)
    assert e.value.node == "layer.web"
