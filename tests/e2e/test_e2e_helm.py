"""End-to-end: Helm charts as layers (issue 21) - what needs no running workload: offline
validation and refusals (exit 78), a missing helm (exit 69), and an OCI chart pushed with
``helm push --plain-http`` to CNCF distribution's registry on 127.0.0.1, applied from ``oci://``.
The real CLI, the real control plane; charts and repository from tests/e2e/helmhelpers.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from harness import GIT_ID, Env, describe
from helmhelpers import (
    Tools,
    configmap,
    env_yaml,
    push_chart,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-helm")]


def test_a_broken_template_is_refused_at_validate_naming_the_chart_file(chart_env: Env) -> None:
    env = chart_env
    (env.root / "charts/web/templates/broken.yaml").write_text("kind: {{ .Values.nope.deeper }}\n")
    r = env.run("validate", "-e", env.name, env={"KUBECONFIG": "/nonexistent"})
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


def test_an_oci_chart_from_a_loopback_registry_needs_allow_and_then_applies(
    chart_env: Env, tools: Tools, registry: str, tmp_path: Path
) -> None:
    env = chart_env
    # no hook Job here: this test is about fetching (tests/e2e/test_e2e_helm_hooks.py runs hooks)
    (env.root / "charts/web/templates/migrate-job.yaml").unlink()
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
