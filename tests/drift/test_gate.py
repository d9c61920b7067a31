"""Issue 14 on the real plane: one approval gate for every write, and Git wins over kubectl.

Reproductions of the issue: ``drift --converge`` never applies an unapproved Git change of an
upstream stack on the way to repairing a layer below it, and under a policy that covers layers
it re-creates nothing without an approval (exit 3, with the command that approves it, which
works). Self-heal: after ``kubectl scale/patch/label --overwrite/edit`` of fields Git sets, the
plan lists each take-over with both values, and both ``apply`` and ``drift --converge`` take
the fields back; a field only another manager sets is left alone.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from harness import KUBECTL, Env, describe, kubectl

pytestmark = pytest.mark.e2e


def file_text(applied: Env) -> str:
    return (applied.files_dir / "greeting.txt").read_text()


def configmap(applied: Env, name: str) -> dict[str, object] | None:
    out = kubectl(applied.kubeconfig, "-n", applied.namespace, "get", "configmap", "-o", "json")
    items = {i["metadata"]["name"]: i for i in json.loads(out)["items"]}
    return items.get(name)


def test_drift_converge_repairs_a_layer_below_an_unapproved_stack_change_without_applying_it(
    applied_with_consumer: Env,
) -> None:
    ex = applied_with_consumer
    stack_yaml = ex.root / "environments" / ex.name / "stacks" / "files" / "stack.yaml"
    stack_yaml.write_text(stack_yaml.read_text().replace("hello from", "changed by a commit in"))
    ex.git("commit", "-qam", "change the files stack")
    state_before = ex.state_file("files").read_bytes()
    # step 1 of the issue: apply without a terminal refuses the stack change
    refused = ex.run("apply", "-e", ex.name)
    assert refused.returncode == 3, describe(refused)
    assert ex.state_file("files").read_bytes() == state_before
    # step 2: a live object of the layer that consumes the stack's outputs disappears
    kubectl(ex.kubeconfig, "-n", ex.namespace, "delete", "configmap", "greeting")
    proc = ex.drift("--converge")
    assert proc.returncode == 2, describe(proc)  # drift found and repaired; nothing held
    assert "layer.greeting: converge done" in proc.stdout, describe(proc)
    assert "stack.files: converge" not in proc.stdout, describe(proc)
    # the layer was converged against the stack's outputs as they are live ...
    greeting = configmap(ex, "greeting")
    assert greeting is not None and str(greeting["data"]).endswith("greeting.txt'}"), greeting  # type: ignore[index]
    # ... and the unapproved stack change was never applied
    assert ex.state_file("files").read_bytes() == state_before
    assert file_text(ex) == f"hello from {ex.name}"


def test_drift_converge_recreates_nothing_a_policy_covers_and_prints_the_command_that_does(
    applied: Env,
) -> None:
    applied.set_environment(approval={"required_for": ["kubernetes"]})
    kubectl(applied.kubeconfig, "-n", applied.namespace, "delete", "configmap", "web-config")
    proc = applied.drift("--converge")
    assert proc.returncode == 3, describe(proc)
    assert "converge done" not in proc.stdout, describe(proc)
    found = re.search(r"layer\.app: not converged: needs approval: (envctl approve \S+ --by NAME) && (.*)$",
                      proc.stdout, re.M)  # fmt: skip
    assert found is not None, describe(proc)
    assert configmap(applied, "web-config") is None
    # JSON says which nodes were held
    code, report = applied.drift_json("--converge")
    assert code == 3 and report["converge"]["held"] == ["layer.app"], report["converge"]
    # the printed command approves exactly that converge and applies it
    approve = [*found.group(1).split()[1:-1], "someone"]
    assert applied.run(*approve).returncode == 0
    result = applied.run(*found.group(2).split()[1:])
    assert result.returncode == 0, describe(result)
    assert configmap(applied, "web-config") is not None


def edit_everything(applied: Env, editor: Path) -> None:
    """kubectl scale, patch, label --overwrite and edit fields Git sets; and add a field Git does not."""
    ns = ["-n", applied.namespace]
    kubectl(applied.kubeconfig, *ns, "scale", "deployment", "web", "--replicas=3")
    kubectl(applied.kubeconfig, *ns, "label", "deployment", "web", "app=intruded", "--overwrite")
    kubectl(applied.kubeconfig, *ns, "patch", "configmap", "web-config", "-p",
            '{"data":{"ENVIRONMENT":"patched"}}')  # fmt: skip
    kubectl(applied.kubeconfig, *ns, "label", "configmap", "web-config", "owner=someone-else")
    # kubectl edit, with an editor that rewrites the Service's targetPort
    env = {**os.environ, "KUBE_EDITOR": str(editor)}
    done = subprocess.run(
        [str(KUBECTL), "--kubeconfig", applied.kubeconfig, *ns, "edit", "service", "web"],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture
def editor(tmp_path: Path) -> Path:
    script = tmp_path / "editor.sh"
    script.write_text("#!/bin/sh\nsed -i 's/targetPort: 80$/targetPort: 8080/' \"$1\"\n")
    script.chmod(0o755)
    return script


def assert_git_values(applied: Env) -> None:
    ns = ["-n", applied.namespace]
    deploy = json.loads(kubectl(applied.kubeconfig, *ns, "get", "deployment", "web", "-o", "json"))
    assert deploy["spec"]["replicas"] == 0
    assert deploy["metadata"]["labels"]["app"] == "web"
    cm = configmap(applied, "web-config")
    assert cm is not None
    assert cm["data"]["ENVIRONMENT"] == applied.name  # type: ignore[index]
    # a field only another manager sets is never touched
    assert cm["metadata"]["labels"]["owner"] == "someone-else"  # type: ignore[index]
    svc = json.loads(kubectl(applied.kubeconfig, *ns, "get", "service", "web", "-o", "json"))
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(80, 80)]


def test_git_wins_after_kubectl_edits_by_apply_and_by_drift_converge(applied: Env, editor: Path) -> None:
    edit_everything(applied, editor)
    plan = applied.plan()
    assert plan.returncode == 0, describe(plan)
    takes = re.findall(r"takes (\S+) from (kubectl\S*) \(([^)]*)\)", plan.stdout)
    fields = {field: values for field, _, values in takes}
    assert fields.get(".spec.replicas") == "3 → 0", takes
    assert fields.get(".metadata.labels.app") == "intruded → web", takes
    assert fields.get(".data.ENVIRONMENT") == f"patched → {applied.name}", takes
    assert fields.get(".spec.ports[0].targetPort") == "8080 → 80", takes
    assert not any("owner" in field for field in fields), takes
    # policy terraform: layers need no approval, so apply without a terminal writes them
    result = applied.run("apply", "-e", applied.name)
    assert result.returncode == 0, describe(result)
    assert_git_values(applied)

    edit_everything(applied, editor)
    code, report = applied.drift_json()
    assert code == 2
    [app] = [n for n in report["nodes"] if n["node"] == "layer.app"]
    reasons = [r for c in app["changes"] for r in c["reasons"]]
    assert any(
        r.startswith("spec.replicas changed by kubectl") and r.endswith(": live 3, Git 0") for r in reasons
    ), reasons
    repaired = applied.drift("--converge")
    assert repaired.returncode == 2, describe(repaired)
    assert "layer.app: converge done" in repaired.stdout, describe(repaired)
    assert_git_values(applied)
    again = applied.drift()
    assert again.returncode == 0, describe(again)
