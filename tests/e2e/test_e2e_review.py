"""What a reviewer and a CI job read, end to end on the example environment: the Markdown plan as
a pull-request comment, a Terraform configuration error found at plan time (exit 78 at file and
line), and a cluster that answers but refuses envctl - wrong CA, bad token - named as such with
its kubeconfig context (exit 69) on plan, apply and drift, never an offline plan.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from e2ehelpers import Env, converge, describe


def test_the_markdown_plan_is_a_pull_request_comment(example: Env) -> None:
    base = example.git("rev-parse", "HEAD")
    example.edit(f"environments/{example.name}/environment.yaml", "db_size: small", "db_size: large")
    commit = example.commit("a bigger database")
    r = example.run("plan", "-e", example.name, "--changed-since", base, "--format", "markdown")
    assert r.returncode == 0, describe(r)
    md = r.stdout
    [plan_dir] = [p for p in (example.root / ".envctl" / "plans").iterdir() if (p / "bundle.json").is_file()]
    bundle = json.loads((plan_dir / "bundle.json").read_text())
    head = md.split("| node |")[0]
    for fact in (
        f"**Environment:** `{example.name}`",
        f"**Commit:** `{commit[:12]}`",
        f"**Changed since:** `{base}`",
        f"**Plan:** `{bundle['id']}`",
        f"**Fingerprint:** `{bundle['fingerprint'][:12]}`",
    ):
        assert fact in head, md
    # a fresh environment: every node changes, each in its own collapsible section
    for node in ("stack.network", "stack.database", "layer.platform", "layer.app"):
        assert f"<summary><code>{node}</code>" in md, md
    assert md.count("<details>") == md.count("</details>") == 4
    # the blast radius: what apply plans again, and which upstream output it waits for
    assert "**Blast radius**" in md
    assert (
        "Planned again after `stack.network` is applied: `stack.database` "
        "(reads `stack.network.outputs.vpc_id`)"
    ) in md, md
    # the exact command: the stacks need an approval (policy: terraform)
    rel = plan_dir.relative_to(example.root)
    assert md.rstrip().endswith(
        f"```shell\nenvctl approve {rel} --by NAME && envctl apply {rel} -e {example.name} --approve\n```"
    ), md


@pytest.mark.parametrize(
    ("expression", "summary"),
    [
        ("var.cird", "Reference to undeclared input variable"),
        ("cidrsubnet(var.name, 8, 0)", "Error in function call"),  # the value is not a CIDR
        ("var.cidr + 1", "Invalid operand"),  # a string where a number is needed
    ],
)
def test_a_terraform_configuration_error_found_at_plan_exits_78_at_file_and_line(
    example: Env, expression: str, summary: str
) -> None:
    example.edit("modules/network/main.tf", "    cidr = var.cidr\n", f"    cidr = {expression}\n")
    example.commit("a broken expression")
    r = example.run("plan", "-e", example.name)
    assert r.returncode == 78, describe(r)
    assert f"Terraform configuration error: {summary}" in r.stderr, describe(r)
    assert "modules/network/main.tf:15" in r.stderr, describe(r)
    assert "Traceback" not in r.stderr
    j = example.run("plan", "-e", example.name, "--format", "json")
    assert j.returncode == 78, describe(j)
    err, _ = json.JSONDecoder().raw_decode(j.stderr[j.stderr.index("{") :])  # the first error
    assert (err["file"], err["line"], err["exit_code"]) == ("modules/network/main.tf", 15, 78), j.stderr
    assert not list((example.root / ".envctl" / "state").rglob("*.tfstate"))  # nothing applied


def _broken_kubeconfig(kubeconfig: str, where: Path, how: str) -> tuple[Path, str]:
    """A copy of the control plane's kubeconfig with a wrong CA or a bad token, and its context."""
    doc = yaml.safe_load(Path(kubeconfig).read_text())
    cluster, user = doc["clusters"][0]["cluster"], doc["users"][0]["user"]
    if how == "ca":  # the client certificate is no CA of the server's certificate
        cluster.pop("certificate-authority", None)
        cluster["certificate-authority-data"] = user["client-certificate-data"]
    else:
        doc["users"][0]["user"] = {"token": "not-a-valid-token"}
    context = f"ctx-wrong-{how}"
    doc["contexts"][0]["name"] = doc["current-context"] = context
    path = where / f"wrong-{how}.kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path, context


@pytest.mark.parametrize(
    ("how", "named"),
    [
        ("ca", "TLS verification of the Kubernetes API server failed"),
        ("token", "authentication to the Kubernetes API failed"),
    ],
)
def test_a_cluster_refusing_envctl_is_named_on_plan_apply_and_drift(
    example: Env, tmp_path: Path, how: str, named: str
) -> None:
    # layer.platform waits for stack.network, which changes: an unreachable cluster would be
    # planned offline ("will create ... once stack.network is applied"); a refusing one must not
    layer_yaml = f"environments/{example.name}/layers/platform/layer.yaml"
    example.edit(layer_yaml, "prune: true", "depends_on: [stack.network]\nprune: true")
    example.commit("the platform layer waits for the network")
    cfg, context = _broken_kubeconfig(example.kubeconfig, tmp_path, how)
    example.extra_env["KUBECONFIG"] = str(cfg)
    for args in (("plan",), ("apply", "--auto-approve"), ("drift",)):
        r = example.run(*args, "-e", example.name)
        out = r.stdout + r.stderr  # drift reports a node's error in its report (stdout)
        assert r.returncode == 69, describe(r)
        assert named in out and context in out, describe(r)
        assert "once stack.network is applied" not in out, describe(r)
        assert "is the cluster running" not in out
        assert "not-a-valid-token" not in out
        assert "Traceback" not in out
    j = example.run("plan", "-e", example.name, "--format", "json")
    assert j.returncode == 69 and named in j.stderr, describe(j)
    status = example.run("status", "-e", example.name)  # the lock holder cannot be known: why
    assert named in status.stdout and context in status.stdout, describe(status)
    assert not list((example.root / ".envctl" / "state").rglob("*.tfstate"))  # apply wrote nothing


def test_the_blast_radius_counts_the_objects_of_a_layer_removed_from_git(example: Env) -> None:
    converge(example)
    example.git("rm", "-q", "-r", f"environments/{example.name}/layers/app")
    example.commit("remove the app layer")
    r = example.run("plan", "-e", example.name, "--format", "json")
    assert r.returncode == 0, describe(r)
    radius = json.loads(r.stdout)["blast_radius"]
    assert radius["nodes_changing"] == radius["nodes_destructive"] == ["layer.app"]
    assert radius["objects"] == {"create": 0, "update": 0, "replace": 0, "delete": 3, "pruned": 0}
    assert radius["resources"] == {"create": 0, "update": 0, "replace": 0, "delete": 0, "pruned": 0}
    text = example.run("plan", "-e", example.name)
    assert "Kubernetes: 3 object(s) (3 to delete)" in text.stdout, describe(text)
