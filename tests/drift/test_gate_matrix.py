"""The write-path x policy x node-kind matrix of the one approval gate, on the real plane.

One applied copy of the example (plus the ``files`` stack, whose files can drift) is shared by
the module; each case sets ``approval.required_for`` and checks, for a stack and a layer, which
of them a path without a human writes: exactly the kinds the policy does not cover, the rest
held with exit 3. ``--auto-approve`` then writes everything. Paths: ``apply`` without a
terminal (a Git change of both kinds) and ``drift --converge`` (both kinds drifted).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from harness import Env, applied_files_example, describe, kubectl
from kubernetes import client

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("gate-matrix")]

# policy -> the node kinds it covers
POLICIES = {"none": set(), "terraform": {"stack"}, "kubernetes": {"layer"}, "all": {"stack", "layer"}}


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory,
    kubeconfig: str,
    api_client: client.ApiClient,
    plugin_mirror: Path,
) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("gate-matrix")
    yield from applied_files_example(tmp, kubeconfig, api_client, plugin_mirror)


def set_policy(ex: Env, policy: str) -> None:
    path = ex.root / "environments" / ex.name / "environment.yaml"
    data = yaml.safe_load(path.read_text())
    data["approval"] = {"required_for": [policy]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    ex.git("commit", "-qam", f"policy {policy}", "--allow-empty")


def live_environment(ex: Env) -> str | None:
    out = kubectl(ex.kubeconfig, "-n", ex.namespace, "get", "configmap", "-o", "json")
    items = {i["metadata"]["name"]: i for i in json.loads(out)["items"]}
    cm = items.get("web-config")
    return None if cm is None else str(cm["data"]["ENVIRONMENT"])


def greeting(ex: Env) -> str | None:
    f = ex.files_dir / "greeting.txt"
    return f.read_text() if f.exists() else None


def change_git(ex: Env, tag: str) -> None:
    """A Git change of the stack (its file's content) and of the layer (a ConfigMap value)."""
    stack = ex.root / "environments" / ex.name / "stacks" / "files" / "stack.yaml"
    data = yaml.safe_load(stack.read_text())
    data["inputs"]["greeting"] = f"greeting {tag}"
    stack.write_text(yaml.safe_dump(data, sort_keys=False))
    app = ex.root / "environments" / ex.name / "layers" / "app" / "app.yaml"
    text = app.read_text()
    start = text.index("ENVIRONMENT: ")
    end = text.index("\n", start)
    app.write_text(text[:start] + f"ENVIRONMENT: env-{tag}" + text[end:])
    ex.git("commit", "-qam", f"change {tag}")


@pytest.mark.parametrize("policy", list(POLICIES))
def test_apply_without_a_terminal_writes_exactly_what_the_policy_does_not_cover(
    shared: Env, policy: str
) -> None:
    set_policy(shared, policy)
    tag = uuid.uuid4().hex[:6]
    change_git(shared, tag)
    proc = shared.run("apply", "-e", shared.name)
    covered = POLICIES[policy]
    assert proc.returncode == (3 if covered else 0), describe(proc)
    assert (greeting(shared) == f"greeting {tag}") is ("stack" not in covered), describe(proc)
    assert (live_environment(shared) == f"env-{tag}") is ("layer" not in covered), describe(proc)
    if covered:
        assert "--approve --resume" in proc.stderr, describe(proc)
    done = shared.apply()
    assert done.returncode == 0, describe(done)
    assert greeting(shared) == f"greeting {tag}" and live_environment(shared) == f"env-{tag}"


@pytest.mark.parametrize("policy", list(POLICIES))
def test_drift_converge_repairs_exactly_what_the_policy_does_not_cover(shared: Env, policy: str) -> None:
    set_policy(shared, policy)
    assert shared.apply().returncode == 0
    before = greeting(shared), live_environment(shared)
    (shared.files_dir / "greeting.txt").unlink()
    kubectl(shared.kubeconfig, "-n", shared.namespace, "delete", "configmap", "web-config")
    code, report = shared.drift_json("--converge")
    covered = POLICIES[policy]
    held = {n for n, kind in (("stack.files", "stack"), ("layer.app", "layer")) if kind in covered}
    assert code == (3 if covered else 2), report["converge"]
    assert set(report["converge"]["held"]) == held, report["converge"]
    assert (greeting(shared) == before[0]) is ("stack" not in covered)
    assert (live_environment(shared) == before[1]) is ("layer" not in covered)
    # --auto-approve keeps its meaning: everything drifted is repaired, explicitly
    code, report = shared.drift_json("--converge", "--auto-approve")
    assert code == (2 if covered else 0), report
    assert (greeting(shared), live_environment(shared)) == before
    assert shared.drift().returncode == 0
