"""Helm chart layers, the parts that need no helm binary: layer.yaml's ``helm:``, confinement,
remote charts only when allowed, references in values, --changed-since, the hook policy."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from unithelpers import MakeRepo

from envctl.core.errors import ConfigError, ExitCode, Location, UnavailableError
from envctl.core.graph import EnvGraph
from envctl.core.model import Environment, HelmChart, LayerSpec, Node, Ref
from envctl.core.refs import Budget, Resolver
from envctl.kube import helm
from envctl.kube.render import MAX_LAYER_BYTES, MAX_OBJECT_BYTES, render_layer
from envctl.repo import WorkTreeSnapshot

LoadEnv = Callable[..., Environment]
WEB = "environments/dev/layers/web"
CHART = {
    "charts/web/Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.1.0\n",
    "charts/web/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\n",
}


def chart_layer(layer_yaml: str, **extra: str) -> dict[str, str]:
    return {**CHART, f"{WEB}/layer.yaml": layer_yaml, **extra}


def error_of(load_env: LoadEnv, root: Path) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        load_env(root)
    return e.value


def test_a_chart_layer_names_a_chart_directory_relative_to_the_layer(
    make_repo: MakeRepo, load_env: LoadEnv
) -> None:
    root = make_repo(
        chart_layer(
            "namespace: app\nhelm:\n  chart: ../../../../charts/web\n  values_files: [values.yaml]\n"
            "  values:\n    host: ${stack.database.outputs.endpoint}\n    size: ${env.vars.size}\n",
            **{f"{WEB}/values.yaml": "replicas: 2\n"},
        )
    )
    web = load_env(root).nodes["layer.web"]
    assert web.layer is not None and web.layer.helm is not None
    chart = web.layer.helm
    assert chart.chart == "charts/web"
    assert chart.release == "web"
    assert chart.values_files == (f"{WEB}/values.yaml",)
    assert chart.remote is False
    assert web.layer.manifests == ()  # values.yaml is a values file, not a manifest
    assert set(web.layer.sources) == {"charts/web", f"{WEB}/values.yaml"}
    # a reference in the values is an edge, like one in inputs
    assert [r.text for r in web.upstream_refs] == ["stack.database.outputs.endpoint"]
    assert [r.text for r in chart.value_refs] == ["stack.database.outputs.endpoint", "env.vars.size"]


def test_a_reference_in_a_values_file_is_an_edge(
    make_repo: MakeRepo, graph_of: Callable[..., EnvGraph]
) -> None:
    root = make_repo(
        chart_layer(
            "helm: {chart: ../../../../charts/web, values_files: [v.yaml]}\n",
            **{f"{WEB}/v.yaml": "net: ${stack.network.outputs.vpc_id}\n"},
        )
    )
    graph = graph_of(root)
    assert "stack.network" in graph.upstream("layer.web")


@pytest.mark.parametrize(
    ("helm_yaml", "message"),
    [
        ("{chart: /etc/charts/web}", "is absolute"),
        ("{chart: ../../../../../outside}", "leads outside the repository"),
        ("{chart: ../../../../.git/x}", "leads into .git/"),
        ("{chart: ../../../../charts/none}", "is not a chart directory"),
        ("{chart: ../../../../charts/web, values_files: [/etc/passwd]}", "is absolute"),
        ("{chart: ../../../../charts/web, values_files: [../../../../../x.yaml]}", "leads outside"),
        ("{chart: ../../../../charts/web, values_files: [missing.yaml]}", "does not exist"),
        ("{chart: ../../../../charts/web, version: 1.0.0}", "helm.version is for remote charts"),
        ("{chart: ../../../../charts/web, release: Bad_Name}", "is not a valid release name"),
        ("{chart: ../../../../charts/web, values: {a: '${inputs.nope}'}}", "does not declare input 'nope'"),
        ("{chart: ../../../../charts/web, values: [1]}", "must be a mapping"),
        ("{chart: ../../../../charts/web, colour: red}", "unknown key 'colour'"),
        ("{chart: https://example.com/web.tgz}", "neither a directory of the repository nor an oci://"),
    ],
)
def test_a_bad_chart_layer_is_refused_with_its_line(
    make_repo: MakeRepo, load_env: LoadEnv, helm_yaml: str, message: str
) -> None:
    root = make_repo(chart_layer(f"# a chart\nhelm: {helm_yaml}\n"))
    err = error_of(load_env, root)
    assert message in str(err)
    assert err.exit_code is ExitCode.CONFIG
    assert err.location is not None and err.location.file == f"{WEB}/layer.yaml"
    assert err.location.line == 2


def test_a_symlinked_chart_file_leading_out_of_the_repo_is_refused_at_render(
    make_repo: MakeRepo, load_env: LoadEnv, tmp_path: Path
) -> None:
    outside = tmp_path / "secret.yaml"
    outside.write_text("password: hunter2\n")
    root = make_repo(chart_layer("helm: {chart: ../../../../charts/web}\n"))
    os.symlink(outside, root / "charts/web/templates/leak.yaml")
    env = load_env(root)
    with pytest.raises(ConfigError, match="symlink that leads outside the repository"):
        render_layer(env, WorkTreeSnapshot(root), env.nodes["layer.web"], {})


def test_a_yaml_file_that_is_neither_values_nor_chart_is_refused(
    make_repo: MakeRepo, load_env: LoadEnv
) -> None:
    root = make_repo(
        chart_layer(
            "helm: {chart: ../../../../charts/web}\n",
            **{f"{WEB}/extra.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"},
        )
    )
    err = error_of(load_env, root)
    assert "neither a values file nor part of the chart" in str(err)
    assert err.location == Location(f"{WEB}/extra.yaml")


def test_the_layer_directory_itself_may_be_the_chart(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    root = make_repo(
        {
            f"{WEB}/layer.yaml": "helm: {chart: ., release: shop}\n",
            f"{WEB}/Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.1.0\n",
            f"{WEB}/values.yaml": "a: 1\n",
        }
    )
    chart = load_env(root).nodes["layer.web"].layer
    assert chart is not None and chart.helm is not None
    assert chart.helm.chart == WEB and chart.helm.release == "shop"


def test_a_chart_layer_cannot_also_be_a_kustomization(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    root = make_repo(
        chart_layer(
            "helm: {chart: ../../../../charts/web}\n", **{f"{WEB}/kustomization.yaml": "resources: []\n"}
        )
    )
    assert "not both" in str(error_of(load_env, root))


REMOTE = "helm:\n  chart: oci://registry.example.com/charts/web\n  version: 1.2.3\n"


def test_a_remote_chart_is_refused_unless_the_environment_allows_remote_sources(
    make_repo: MakeRepo, load_env: LoadEnv
) -> None:
    err = error_of(load_env, make_repo(chart_layer(REMOTE)))
    assert "remote chart 'oci://registry.example.com/charts/web' is not allowed" in str(err)
    assert err.hint is not None and "allow: {remote_sources: true}" in err.hint
    assert err.location == Location(f"{WEB}/layer.yaml", 2)  # the chart: line


def test_an_allowed_remote_chart_is_pinned(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    env_yaml = "name: dev\nvars: {replicas: 2, size: small}\nallow: {remote_sources: true}\n"
    root = make_repo(
        {
            **chart_layer(REMOTE + "  plain_http: true\n"),
            "environments/dev/environment.yaml": env_yaml,
            "environments/dev/layers/repo/layer.yaml": (
                "helm: {repo: 'https://charts.example.com', chart: nginx, version: '4.1.0'}\n"
            ),
        }
    )
    env = load_env(root)
    assert env.allow.remote_sources is True
    web = env.nodes["layer.web"].layer
    assert web is not None and web.helm is not None
    assert web.helm.remote and web.helm.version == "1.2.3" and web.helm.plain_http
    assert web.sources == ()  # nothing of the repository to follow
    nginx = env.nodes["layer.repo"].layer
    assert nginx is not None and nginx.helm is not None
    assert nginx.helm.repo == "https://charts.example.com" and nginx.helm.chart == "nginx"


@pytest.mark.parametrize(
    ("helm_yaml", "message"),
    [
        ("{chart: 'oci://r.example.com/web'}", "needs an exact version"),
        ("{chart: 'oci://r.example.com/web', version: '^1.2.0'}", "needs an exact version"),
        ("{chart: 'oci://r.example.com/web', version: 1.2}", "must be a chart version"),
        ("{repo: 'ftp://x', chart: web, version: 1.0.0}", "must be an http(s) URL"),
        ("{repo: 'https://x', chart: '../web', version: 1.0.0}", "must be a chart name"),
    ],
)
def test_a_remote_chart_needs_a_pinned_version(
    make_repo: MakeRepo, load_env: LoadEnv, helm_yaml: str, message: str
) -> None:
    env_yaml = "name: dev\nvars: {replicas: 2, size: small}\nallow: {remote_sources: true}\n"
    root = make_repo({**chart_layer(f"helm: {helm_yaml}\n"), "environments/dev/environment.yaml": env_yaml})
    assert message in str(error_of(load_env, root))


def test_allow_is_checked_like_every_setting(make_repo: MakeRepo, load_env: LoadEnv) -> None:
    root = make_repo(
        {"environments/dev/environment.yaml": "name: dev\nallow: {remote_sources: yes-please}\n"}
    )
    assert "allow.remote_sources must be true or false" in str(error_of(load_env, root))
    root = make_repo({"environments/dev/environment.yaml": "name: dev\nallow: {everything: true}\n"})
    assert "unknown key 'everything'" in str(error_of(load_env, root))


def test_changed_since_follows_the_chart_directory_and_values_files(
    make_repo: MakeRepo, graph_of: Callable[..., EnvGraph]
) -> None:
    root = make_repo(
        chart_layer(
            "helm: {chart: ../../../../charts/web, values_files: [../../shared/values.yaml]}\n",
            **{"environments/dev/shared/values.yaml": "a: 1\n"},
        )
    )
    graph = graph_of(root)
    assert graph.affected(["charts/web/templates/cm.yaml"]) == {"layer.web"}
    assert graph.affected(["environments/dev/shared/values.yaml"]) == {"layer.web"}
    assert graph.affected(["charts/other/Chart.yaml"]) == set()


def obj(kind: str, name: str, **annotations: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "annotations": annotations}}


def test_hook_policy_keeps_pre_hooks_drops_test_hooks_and_refuses_the_others() -> None:
    where = Location("charts/web/templates/x.yaml")
    kept = helm.apply_hook_policy(
        [
            (obj("ConfigMap", "plain"), where),
            (obj("Job", "migrate", **{"helm.sh/hook": "pre-install, pre-upgrade"}), where),
            (obj("Pod", "smoke", **{"helm.sh/hook": "test"}), where),
            (obj("Pod", "old-style", **{"helm.sh/hook": "test-success"}), where),
        ],
        "layer.web",
    )
    assert [o["metadata"]["name"] for o, _ in kept] == ["plain", "migrate"]  # type: ignore[index]
    with pytest.raises(ConfigError) as e:
        helm.apply_hook_policy(
            [(obj("Job", "notify", **{"helm.sh/hook": "pre-install,post-install"}), where)], "x"
        )
    assert "Job notify is a Helm post-install hook, which envctl does not run" in str(e.value)
    assert e.value.location == where


def test_pre_hook_weight_orders_hooks_and_ordinary_objects_have_none() -> None:
    assert helm.pre_hook_weight(obj("ConfigMap", "plain")) is None
    assert helm.pre_hook_weight(obj("Job", "a", **{"helm.sh/hook": "pre-install"})) == 0
    hook = obj("Job", "b", **{"helm.sh/hook": "pre-upgrade", "helm.sh/hook-weight": "-5"})
    assert helm.pre_hook_weight(hook) == -5


def test_rendered_lines_point_at_the_chart_file_they_came_from() -> None:
    text = (
        "---\n# Source: web/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\n"
        "---\n# Source: web/charts/db/templates/svc.yaml\napiVersion: v1\nkind: Service\n"
    )
    source = helm.sources_of(text, "charts/web")
    assert source(1) == "charts/web"
    assert source(3) == "charts/web/templates/cm.yaml"
    assert source(7) == "charts/web/charts/db/templates/svc.yaml"


def resolver(inputs: dict[str, Any]) -> Resolver:
    """What the layer's renderer resolves: inputs, env.name = dev, env.vars.replicas = 3."""

    def resolve(ref: Ref) -> Any:
        if ref.kind == "input" and ref.name in inputs:
            return inputs[ref.name]
        if ref.kind == "env":
            return "dev"
        if ref.kind == "var" and ref.name == "replicas":
            return 3
        raise ConfigError(f"${{{ref.text}}} has no value here", location=ref.location)

    return resolve


def budget() -> Budget:
    return Budget(MAX_OBJECT_BYTES, MAX_LAYER_BYTES)


def test_a_values_file_reference_that_would_insert_too_much_is_refused(tmp_path: Path) -> None:
    (tmp_path / WEB).mkdir(parents=True)
    (tmp_path / WEB / "v.yaml").write_text("a:\n" + "".join(f"  k{i}: ${{inputs.big}}\n" for i in range(4)))
    chart = HelmChart(chart="charts/web", release="web", values_files=(f"{WEB}/v.yaml",))
    node = Node(id="layer.web", kind="layer", name="web", path=WEB, layer=LayerSpec(helm=chart))
    with pytest.raises(ConfigError) as e:
        helm.chart_values(
            WorkTreeSnapshot(tmp_path), node, chart, resolver({"big": "x" * (1 << 20)}), budget()
        )
    assert "substituted values make one object larger than" in str(e.value)
    assert e.value.location == Location(f"{WEB}/v.yaml", 3)  # the second copy crosses the limit


def test_chart_values_are_substituted_as_values_keeping_types(tmp_path: Path) -> None:
    (tmp_path / WEB).mkdir(parents=True)
    (tmp_path / WEB / "v.yaml").write_text("db:\n  port: ${inputs.port}\n  url: 'pg://${inputs.host}'\n")
    chart = HelmChart(
        chart="charts/web",
        release="web",
        values={
            "replicas": "${env.vars.replicas}",
            "hosts": "${inputs.hosts}",
            "lit": "$${x}",
            "n": "${env.name}",
        },
        values_files=(f"{WEB}/v.yaml",),
    )
    node = Node(id="layer.web", kind="layer", name="web", path=WEB, layer=LayerSpec(helm=chart))
    inputs = {"port": 5432, "host": "db", "hosts": ["a", "b"]}
    files_doc, inline = helm.chart_values(WorkTreeSnapshot(tmp_path), node, chart, resolver(inputs), budget())
    assert files_doc == {"db": {"port": 5432, "url": "pg://db"}}
    assert inline == {"replicas": 3, "hosts": ["a", "b"], "lit": "${x}", "n": "dev"}


def test_an_undeclared_input_in_a_values_file_names_its_line(tmp_path: Path) -> None:
    (tmp_path / WEB).mkdir(parents=True)
    (tmp_path / WEB / "v.yaml").write_text("a: yes\nb:\n  - c: ${inputs.missing}\n")
    chart = HelmChart(chart="charts/web", release="web", values_files=(f"{WEB}/v.yaml",))
    node = Node(id="layer.web", kind="layer", name="web", path=WEB, layer=LayerSpec(helm=chart))
    with pytest.raises(ConfigError) as e:
        helm.chart_values(WorkTreeSnapshot(tmp_path), node, chart, resolver({}), budget())
    assert e.value.location == Location(f"{WEB}/v.yaml", 3)  # the line of the value itself


def test_missing_helm_is_exit_69_with_the_command_that_builds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UnavailableError) as e:
        helm.helm_binary()
    assert e.value.exit_code is ExitCode.UNAVAILABLE
    assert e.value.hint is not None and "scripts/build-helm-tools helm" in e.value.hint
    built = tmp_path / "envctl" / "helm" / helm.HELM_VERSION / "helm"
    built.parent.mkdir(parents=True)
    built.write_text("#!/bin/sh\n")
    built.chmod(0o755)
    assert helm.helm_binary() == str(built)
