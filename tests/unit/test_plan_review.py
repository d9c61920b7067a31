"""Plans a reviewer can read: the blast radius, why replaces happen, Kubernetes updates with their
values, and a Markdown pull-request comment naming environment, commit, base ref, plan and
fingerprint, with one collapsible section per node and the exact apply command.

The Terraform side starts from ``show -json`` documents of the real engine (``data/``), turned
into changes by ``envctl.terraform.planjson`` as a plan does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from envctl.core.blast import PRUNED, Tally, blast_radius
from envctl.core.bundle import PlanBundle
from envctl.core.changes import Action, Change, NodePlan
from envctl.kube.diff import object_change
from envctl.kube.errors import ApiError, immutable_fields
from envctl.kube.objects import ObjRef
from envctl.terraform import planjson
from envctl.views import plan as pv

DATA = Path(__file__).parent / "data"


def tf_plan(name: str) -> dict[str, Any]:
    doc = json.loads((DATA / name).read_text())
    assert isinstance(doc, dict)
    return doc


def stack_plan(node: str, doc: dict[str, Any]) -> NodePlan:
    s = planjson.summarize(doc)
    return NodePlan(
        node,
        s.changes,
        outputs_changing=s.outputs_changing,
        output_changes=s.output_changes,
        outputs_unknown=s.outputs_unknown,
    )


DEPLOY_BEFORE = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "app", "labels": {"app.kubernetes.io/version": "1.27"}},
    "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}},
}
DEPLOY_AFTER = {
    **DEPLOY_BEFORE,
    "metadata": {"name": "web", "namespace": "app", "labels": {"app.kubernetes.io/version": "1.28"}},
    "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}},
}


def review_bundle() -> tuple[PlanBundle, dict[tuple[str, str], tuple[str, ...]], set[str]]:
    """stack.network replaces a resource (its id is unknown until apply); stack.database reads
    it and is pending; layer.app updates, creates and prunes objects; layer.docs has no changes."""
    network = stack_plan("stack.network", tf_plan("tf_plan_replace.json"))
    database = NodePlan(
        "stack.database",
        pending_upstream=("vpc_id",),
        outputs_unknown=("*",),
        notes=("will plan once stack.network is applied (inputs vpc_id change)",),
    )
    app = NodePlan(
        "layer.app",
        (
            Change(
                "apps/v1 Deployment app/web",
                Action.UPDATE,
                DEPLOY_BEFORE,
                DEPLOY_AFTER,
                fields=(
                    "metadata.labels.app.kubernetes.io/version",
                    "spec.replicas",
                    "spec.template.spec.containers[0].image",
                ),
            ),
            Change("v1 ConfigMap app/new", Action.CREATE, None, {"data": {"a": "1"}}),
            Change("v1 ConfigMap app/old", Action.DELETE, {"data": {}}, None, (PRUNED,)),
            Change(
                "batch/v1 Job app/migrate",
                Action.REPLACE,
                {"spec": {"x": 1}},
                {"spec": {"x": 2}},
                ("immutable field .spec.template changes: deleted and re-created",),
                ("spec.x",),
            ),
        ),
    )
    docs = NodePlan("layer.docs")
    order = ("stack.network", "stack.database", "layer.app", "layer.docs")
    nodes = {"stack.network": network, "stack.database": database, "layer.app": app, "layer.docs": docs}
    bundle = PlanBundle("staging-20261202-1", "staging", "0123456789abcdef", False, "t", order, nodes)
    edges = {
        ("stack.network", "stack.database"): ("stack.network.outputs.vpc_id",),
        ("stack.network", "layer.docs"): ("depends_on",),
        ("stack.database", "layer.app"): ("depends_on",),
    }
    return bundle, edges, {"layer.app", "layer.docs"}


def test_the_real_engines_replace_plan_says_why_and_which_output_waits() -> None:
    p = stack_plan("stack.network", tf_plan("tf_plan_replace.json"))
    [vpc] = [c for c in p.changes if c.action is Action.REPLACE]
    assert any("forces replacement" in r for r in vpc.reasons), vpc.reasons
    assert "vpc_id" in p.outputs_unknown


def test_blast_radius_counts_resources_and_objects_and_names_what_is_planned_again() -> None:
    bundle, edges, in_cluster = review_bundle()
    b = blast_radius(bundle, edges, in_cluster)
    assert b.changing == ("stack.network", "stack.database", "layer.app")
    assert b.destructive == ("stack.network", "layer.app")
    assert b.objects == Tally(create=1, update=1, replace=1, delete=0, pruned=1)
    network = bundle.nodes["stack.network"].changes
    assert b.resources.replace == 1 and b.resources.total == Tally.of(network).total == 2
    [replan] = b.replans
    assert (replan.node, replan.upstream, replan.reads) == (
        "stack.database",
        ("stack.network",),
        ("stack.network.outputs.vpc_id",),
    )


def test_a_pending_node_whose_references_are_unknown_still_says_which_inputs_wait() -> None:
    bundle, _, in_cluster = review_bundle()
    [replan] = blast_radius(bundle, {}, in_cluster).replans
    assert replan.reads == ("vpc_id",) and replan.upstream == ()


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_every_format_shows_the_blast_radius(fmt: str) -> None:
    bundle, edges, in_cluster = review_bundle()
    b = blast_radius(bundle, edges, in_cluster)
    render = {"text": pv.plan_text, "markdown": pv.plan_markdown, "json": pv.plan_json}[fmt]
    out = render(bundle, ["stack.network"], ".envctl/plans/p", blast=b, base_ref="origin/main")
    if fmt == "json":
        data = json.loads(out)
        radius = data["blast_radius"]
        assert radius["nodes_changing"] == ["stack.network", "stack.database", "layer.app"]
        assert radius["objects"] == {"create": 1, "update": 1, "replace": 1, "delete": 0, "pruned": 1}
        assert radius["replanned_after_apply"] == [
            {"node": "stack.database", "after": ["stack.network"], "reads": ["stack.network.outputs.vpc_id"]}
        ]
        assert data["changed_since"] == "origin/main"
        assert data["apply_command"].startswith("envctl approve .envctl/plans/p --by NAME && envctl apply")
        return
    tick = "`" if fmt == "markdown" else ""
    assert f"3 node(s) change: {tick}stack.network{tick}, {tick}stack.database{tick}" in out
    assert "Kubernetes: 4 object(s) (1 to create, 1 to update, 1 to replace, 1 to prune)" in out
    assert (
        f"Planned again after {tick}stack.network{tick} is applied: {tick}stack.database{tick} "
        f"(reads {tick}stack.network.outputs.vpc_id{tick})"
    ) in out
    assert "origin/main" in out


def test_kubernetes_updates_show_each_changed_field_with_its_values_dotted_keys_too() -> None:
    bundle = review_bundle()[0]
    text = pv.plan_text(bundle, [], "p")
    assert '~ metadata.labels.app.kubernetes.io/version: "1.27" -> "1.28"' in text
    assert "~ spec.replicas: 2 -> 3" in text
    assert '~ spec.template.spec.containers[0].image: "nginx:1.27" -> "nginx:1.28"' in text
    assert (
        "batch/v1 Job app/migrate (replace)  because: immutable field .spec.template changes: "
        "deleted and re-created"
    ) in text
    assert f"v1 ConfigMap app/old (delete)  because: {PRUNED}" in text


def test_a_changed_secret_in_a_dotted_key_shows_its_marker_never_a_value() -> None:
    before = {"data": {"config.yaml": "(sensitive)"}}
    after = {"data": {"config.yaml": "(sensitive, changed) sha256:0123456789ab"}}
    p = NodePlan(
        "layer.app",
        (Change("v1 Secret app/s", Action.UPDATE, before, after, fields=("data.config.yaml",)),),
    )
    b = PlanBundle("p", "dev", "abc", False, "t", ("layer.app",), {"layer.app": p})
    assert "~ data.config.yaml: (sensitive, changed) sha256:0123456789ab" in pv.plan_text(b, [], "p")


def test_markdown_is_a_pull_request_comment_with_header_details_and_the_apply_command() -> None:
    bundle, edges, in_cluster = review_bundle()
    b = blast_radius(bundle, edges, in_cluster)
    md = pv.plan_markdown(bundle, ["stack.network"], ".envctl/plans/p", blast=b, base_ref="origin/main")
    head = md.split("| node |")[0]
    for fact in (
        "**Environment:** `staging`",
        "**Commit:** `0123456789ab`",
        "**Changed since:** `origin/main`",
        f"**Plan:** `{bundle.id}`",
        f"**Fingerprint:** `{bundle.fingerprint[:12]}`",
    ):
        assert fact in head, head
    # one collapsible section per node with changes, none for the node without
    assert md.count("<details>") == md.count("</details>") == 3
    assert "<summary><code>layer.docs</code>" not in md
    summary = "<summary><code>layer.app</code>: DESTRUCTIVE (1 to add, 1 to change, 1 to destroy, 1 to"
    assert summary in md
    assert md.rstrip().endswith(
        "```shell\nenvctl approve .envctl/plans/p --by NAME && "
        "envctl apply .envctl/plans/p -e staging --approve\n```"
    )
    without = pv.plan_markdown(bundle, [], ".envctl/plans/p", blast=b)
    assert "Changed since" not in without
    assert "```shell\nenvctl apply .envctl/plans/p -e staging\n```" in without


def test_a_value_holding_backticks_cannot_close_the_markdown_code_block() -> None:
    evil = "```\n</details><script>x</script>"
    p = NodePlan("layer.app", (Change("v1 ConfigMap app/c", Action.CREATE, None, {"data": {"k": evil}}),))
    b = PlanBundle("p", "dev", "abc", False, "t", ("layer.app",), {"layer.app": p})
    md = pv.plan_markdown(b, [], "p")
    fence = next(line for line in md.splitlines() if line.endswith("diff"))[: -len("diff")]
    assert len(fence) > 3 and set(fence) == {"`"}
    lines = md.splitlines()
    opening = lines.index(f"{fence}diff")
    closing = lines.index(fence, opening + 1)
    assert any("```" in line for line in lines[opening + 1 : closing])  # the value stays inside


def test_a_kubernetes_replace_names_the_fields_the_api_server_calls_immutable() -> None:
    err = ApiError(
        422,
        "Invalid",
        'Job.batch "migrate" is invalid: spec.template: Invalid value: ...: field is immutable',
        [
            {
                "reason": "FieldValueInvalid",
                "field": "spec.template",
                "message": "Invalid value: field is immutable",
            },
            {"reason": "FieldValueRequired", "field": "spec.other", "message": "Required value"},
        ],
    )
    assert immutable_fields(err) == ("spec.template",)
    ref = ObjRef("batch/v1", "Job", "app", "migrate")
    live = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"}, "spec": {"template": 1}}
    change = object_change(
        ref, live, {**live, "spec": {"template": 2}}, replace=True, immutable=("spec.template",)
    )
    assert change.action is Action.REPLACE
    assert change.reasons == ("immutable field .spec.template changes: deleted and re-created",)
    assert change.fields == ("spec.template",)


def test_a_node_planned_with_a_known_new_upstream_output_is_named_with_what_it_reads() -> None:
    database = NodePlan(
        "stack.database",
        outputs_changing=("endpoint",),
        output_changes=(Change("output.endpoint", Action.UPDATE, "db-1", "db-2"),),
    )
    app = NodePlan(
        "layer.app",
        (Change("v1 ConfigMap app/c", Action.UPDATE, {"a": "db-1"}, {"a": "db-2"}, fields=("a",)),),
    )
    bundle = PlanBundle(
        "p",
        "dev",
        "abc",
        False,
        "t",
        ("stack.database", "layer.app"),
        {"stack.database": database, "layer.app": app},
    )
    edges = {("stack.database", "layer.app"): ("stack.database.outputs.endpoint", "depends_on")}
    b = blast_radius(bundle, edges, {"layer.app"})
    assert b.replans == ()
    [follow] = b.follows
    assert (follow.node, follow.upstream, follow.reads) == (
        "layer.app",
        ("stack.database",),
        ("stack.database.outputs.endpoint",),
    )
    text = pv.plan_text(bundle, [], "p", blast=b)
    assert "Planned with the new values of stack.database.outputs.endpoint: layer.app" in text
    assert json.loads(pv.plan_json(bundle, [], "p", blast=b))["blast_radius"]["reads_changed_outputs"] == [
        {"node": "layer.app", "after": ["stack.database"], "reads": ["stack.database.outputs.endpoint"]}
    ]
