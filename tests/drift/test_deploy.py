"""deploy/: the in-cluster (pull model) drift job and the scheduled CI workflow.

The RBAC in deploy/kubernetes is applied to the real control plane for a copy of the example
(names adapted to the test's environment), and ``envctl drift`` runs as that ServiceAccount with a
kubeconfig like the CronJob's (``tokenFile``) from a fresh clone (no ``.envctl/``, Terraform state
in the cluster): it sees the same in-sync and drifted world as an admin, and the ServiceAccount
can change nothing. The manifests pass the API server's own validation (server-side dry-run).
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import KUBECTL, REPO, Env, describe, git, intrude, kubectl, versions
from kubernetes import client

pytestmark = pytest.mark.e2e

DEPLOY = REPO / "deploy"


def adapt(text: str, env: str) -> str:
    """deploy/kubernetes is written for environment ``dev``: the same objects for ``env``."""
    text = text.replace("envctl-drift-dev", f"envctl-drift-{env}")
    text = re.sub(r"envctl-drift(?![-\w])", f"envctl-drift-{env}", text)
    for old, new in (
        ("app-dev", f"app-{env}"),
        ("dev.layer.", f"{env}.layer."),
        ("envctl-lock-dev", f"envctl-lock-{env}"),
        ("tfstate-default-dev-", f"tfstate-default-{env}-"),
        ("--env=dev", f"--env={env}"),
    ):
        text = text.replace(old, new)
    return text


def manifests(env: str, *names: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name in names:
        docs += [d for d in yaml.safe_load_all(adapt((DEPLOY / "kubernetes" / name).read_text(), env)) if d]
    return docs


@pytest.fixture
def drift_account(applied_in_cluster_state: Env, tmp_path: Path) -> Iterator[str]:
    """A kubeconfig for the ServiceAccount of deploy/kubernetes, bound by its RBAC."""
    ex = applied_in_cluster_state
    docs = manifests(ex.name, "serviceaccount.yaml", "rbac.yaml")
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
    kubectl(ex.kubeconfig, "apply", "-f", "-", stdin=body)
    try:
        token = kubectl(
            ex.kubeconfig, "-n", "envctl-system", "create", "token", f"envctl-drift-{ex.name}",
            "--duration=1h",
        ).strip()
        admin = yaml.safe_load(Path(ex.kubeconfig).read_text())
        cluster = admin["clusters"][0]["cluster"]
        (tmp_path / "token").write_text(token)
        kc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "in-cluster", "cluster": cluster}],
            "users": [{"name": "envctl-drift", "user": {"tokenFile": str(tmp_path / "token")}}],
            "contexts": [{"name": "drift", "context": {"cluster": "in-cluster", "user": "envctl-drift"}}],
            "current-context": "drift",
        }
        path = tmp_path / "drift-kubeconfig"
        path.write_text(yaml.safe_dump(kc))
        yield str(path)
    finally:
        kubectl(ex.kubeconfig, "delete", "--ignore-not-found", "--wait=false", "-f", "-", stdin=body)


def fresh_clone(ex: Env, tmp_path: Path) -> Env:
    """What the CronJob and the CI runner see: a clone of the repository, no .envctl/."""
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(ex.root), str(clone))
    assert not (clone / ".envctl").exists()
    return dataclasses.replace(ex, root=clone, printed=[])


def test_the_drift_account_sees_drift_from_a_fresh_clone_and_can_change_nothing(
    applied_in_cluster_state: Env, drift_account: str, tmp_path: Path, api_client: client.ApiClient
) -> None:
    ex = applied_in_cluster_state
    clone = fresh_clone(ex, tmp_path)
    secrets = client.CoreV1Api(api_client).list_namespaced_secret
    states = versions(secrets("envctl-system").items, f"tfstate-default-{ex.name}-")
    assert len(states) == 2, states

    proc = clone.drift("--format", "json", env={"KUBECONFIG": drift_account})
    assert proc.returncode == 0, describe(proc)
    report = json.loads(proc.stdout)
    assert {n["node"]: n["status"] for n in report["nodes"]} == {
        "layer.platform": "in-sync",
        "stack.network": "in-sync",
        "stack.database": "in-sync",
        "layer.app": "in-sync",
    }

    assert all("no run journal here" in " ".join(n["notes"]) for n in report["nodes"]), report

    intrude(ex, "web-config", {"DATABASE_ENDPOINT": "evil.example.com:5432"})
    kubectl(ex.kubeconfig, "-n", ex.namespace, "delete", "service", "web")
    proc = clone.drift("--format", "markdown", env={"KUBECONFIG": drift_account})
    assert proc.returncode == 2, describe(proc)
    assert "layer.app" in proc.stdout and "intruder" in proc.stdout
    assert f"v1 Service {ex.namespace}/web: create" in proc.stdout, "a missing object is drift too"

    after = versions(secrets("envctl-system").items, f"tfstate-default-{ex.name}-")
    assert after == states, "drift wrote Terraform state"

    for verb, what in (
        ("delete", f"configmaps/web-config -n {ex.namespace}"),
        ("update", f"configmaps/web-config -n {ex.namespace}"),
        ("create", f"secrets -n {ex.namespace}"),
        ("patch", f"configmaps/other -n {ex.namespace}"),
        ("get", "secrets -n kube-system"),
        ("list", f"configmaps -n {ex.namespace}"),
        ("update", f"configmaps/{ex.name}.layer.app -n envctl-system"),
        ("update", f"leases/envctl-lock-{ex.name} -n envctl-system"),
        ("delete", f"namespaces/{ex.namespace}"),
    ):
        can = subprocess.run(
            [*_kubectl(drift_account), "auth", "can-i", verb, *what.split()],
            capture_output=True,
            text=True,
            check=False,
        )
        assert can.stdout.strip() == "no", f"the drift account can {verb} {what}"


def _kubectl(kubeconfig: str) -> list[str]:
    return [str(KUBECTL), "--kubeconfig", kubeconfig]


def test_the_deploy_manifests_pass_server_side_validation(applied_in_cluster_state: Env) -> None:
    ex = applied_in_cluster_state
    docs = manifests(
        ex.name, "serviceaccount.yaml", "rbac.yaml", "kubeconfig.yaml", "cronjob.yaml"
    )
    kinds = sorted(d["kind"] for d in docs)
    assert "CronJob" in kinds and "ServiceAccount" in kinds and "Role" in kinds
    body = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
    kubectl(ex.kubeconfig, "apply", "--dry-run=server", "-f", "-", stdin=body)
    [cron] = [d for d in docs if d["kind"] == "CronJob"]
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == f"envctl-drift-{ex.name}"
    args = " ".join(pod["containers"][0].get("args", []) + pod["containers"][0].get("command", []))
    assert "drift" in args and f"--env={ex.name}" in args and "--converge" not in args


def test_the_github_actions_workflow_posts_the_markdown_report() -> None:
    wf = yaml.safe_load((DEPLOY / "github-actions" / "drift.yml").read_text())
    triggers = wf.get("on") or wf.get(True)  # YAML 1.1 reads a bare `on` as True
    assert triggers["schedule"][0]["cron"]
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    runs = "\n".join(str(s.get("run", "")) for s in steps)
    assert "envctl drift" in runs and "--format markdown" in runs
    assert "--output" in runs
    assert "actions/checkout" in " ".join(str(s.get("uses", "")) for s in steps)


def test_the_workflow_check_step_writes_the_markdown_report_and_the_exit_code(
    applied_in_cluster_state: Env, tmp_path: Path
) -> None:
    ex = applied_in_cluster_state
    clone = fresh_clone(ex, tmp_path)
    wf = yaml.safe_load((DEPLOY / "github-actions" / "drift.yml").read_text())
    [step] = [s for job in wf["jobs"].values() for s in job["steps"] if s.get("id") == "drift"]

    def run_step() -> tuple[str, str]:
        (tmp_path / "out").write_text("")
        (tmp_path / "summary").write_text("")
        env = {
            **clone.environ(),
            "ENVCTL_ENV": ex.name,
            "KUBECONFIG_DATA": Path(ex.kubeconfig).read_text(),
            "RUNNER_TEMP": str(tmp_path),
            "GITHUB_OUTPUT": str(tmp_path / "out"),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
        }
        del env["KUBECONFIG"]
        proc = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", step["run"]],
            cwd=clone.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert not (tmp_path / "kubeconfig").exists(), "the kubeconfig is removed"
        return (tmp_path / "out").read_text(), (tmp_path / "summary").read_text()

    out, summary = run_step()
    assert out == "code=0\n"
    assert f"envctl drift report: `{ex.name}`" in summary and "4 in-sync" in summary

    intrude(ex, "web-config", {"DATABASE_ENDPOINT": "evil.example.com:5432"})
    out, summary = run_step()
    assert out == "code=2\n"
    assert "| `layer.app` | drifted | 1 |" in summary and "intruder" in summary
