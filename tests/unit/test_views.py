"""Every view renders the same data in every format; destructive actions stand out; no secret leaks."""

from __future__ import annotations

import json

import pytest

from envctl.core.bundle import PlanBundle
from envctl.core.changes import SENSITIVE, Action, Change, NodePlan
from envctl.core.drift import Delivery, DriftReport, NodeDrift
from envctl.core.errors import ExitCode
from envctl.views import drift as dv
from envctl.views import plan as pv

CANARY = "canary-3f9a-never-print"


def bundle() -> PlanBundle:
    nodes = {
        "stack.network": NodePlan(
            "stack.network",
            (
                Change("terraform_data.vpc", Action.REPLACE, {"x": 1}, {"x": 2}, ("triggers_replace",)),
                Change("terraform_data.pw", Action.UPDATE, {"v": SENSITIVE}, {"v": SENSITIVE}, fields=("v",)),
            ),
        ),
        "stack.database": NodePlan("stack.database", pending_upstream=("vpc_id",), notes=("waits",)),
        "layer.app": NodePlan(
            "layer.app", (Change("v1 ConfigMap app/web", Action.CREATE, None, {"a": "b"}),)
        ),
    }
    return PlanBundle(
        "dev-1", "dev", "abcdef1234567", False, "t", ("stack.network", "stack.database", "layer.app"), nodes
    )


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_plan_views_show_every_node_and_its_counts(fmt: str) -> None:
    render = {"text": pv.plan_text, "json": pv.plan_json, "markdown": pv.plan_markdown}[fmt]
    out = render(bundle(), ["stack.network"], ".envctl/plans/dev-1")
    for node in ("stack.network", "stack.database", "layer.app"):
        assert node in out
    assert CANARY not in out
    if fmt == "json":
        data = json.loads(out)
        assert data["format_version"] == "1" and data["type"] == "plan"
        by = {n["node"]: n for n in data["nodes"]}
        assert by["stack.network"]["counts"] == {"add": 0, "change": 1, "destroy": 0, "replace": 1}
        assert by["stack.database"]["status"] == "pending upstream"
        assert data["needs_approval"] == ["stack.network"]
    else:
        assert "DESTRUCTIVE" in out and "pending upstream" in out


def test_text_plan_highlights_destructive_rows_only_with_colour() -> None:
    coloured = pv.plan_text(bundle(), [], "p", color=True)
    plain = pv.plan_text(bundle(), [], "p", color=False)
    assert "\x1b[31;1m" in coloured and "\x1b[" not in plain


def test_markdown_collapses_diffs() -> None:
    md = pv.plan_markdown(bundle(), [], "p")
    assert md.count("<details>") == 3 and "| `layer.app` | 1 | 0 | 0 | 0 |" in md


def report() -> DriftReport:
    return DriftReport(
        "dev",
        "abc",
        "now",
        (
            NodeDrift(
                "stack.network",
                "drifted",
                (Change("local_file.f", Action.UPDATE, fields=("content",), reasons=("changed",)),),
            ),
            NodeDrift("stack.database", "stale", causes=("stack.network",)),
            NodeDrift("layer.app", "stale", causes=("stack.database",)),
            NodeDrift("layer.platform", "in-sync"),
        ),
        (("stack.network", "stack.database"), ("stack.database", "layer.app")),
        (Delivery("http://127.0.0.1:1/hook", False, 3, "HTTP 500"),),
    )


@pytest.mark.parametrize("fmt", ["text", "json", "markdown", "html"])
def test_drift_views_show_every_node_and_the_failed_delivery(fmt: str) -> None:
    out = dv.RENDERERS[fmt](report())
    for node in ("stack.network", "stack.database", "layer.app", "layer.platform"):
        assert node in out
    assert "127.0.0.1:1/hook" in out


def test_cascading_drift_is_grouped_under_its_root_cause() -> None:
    r = report()
    assert r.root_causes() == {"stack.network": ["stack.database", "layer.app"]}
    assert r.exit_code == 1  # a failed notification is never silent
    ok = DriftReport("dev", None, "now", r.nodes, r.edges)
    assert ok.exit_code == 2


def test_html_report_is_self_contained_with_a_coloured_graph() -> None:
    page = dv.drift_html(report())
    assert "<svg" in page and 'data-node="layer.app"' in page and 'data-status="stale"' in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "").replace(
        "http://127.0.0.1:1/hook", ""
    )
    assert "<script src" not in page and "<link" not in page


def test_errors_are_never_no_drift() -> None:
    unreachable = NodeDrift("layer.app", "error", error="unreachable", error_exit=ExitCode.UNAVAILABLE)
    r = DriftReport("dev", None, "now", (unreachable,))
    assert r.exit_code == 69


def test_plan_shows_output_changes_old_to_new_and_counts_an_outputs_only_node() -> None:
    outs = (
        Change("output.endpoint", Action.UPDATE, "db-old", "db-new"),
        Change("output.password", Action.UPDATE, SENSITIVE, "(sensitive, changed) sha256:abc"),
        Change("output.label", Action.CREATE, None, "app-dev"),
    )
    node = NodePlan("stack.label", outputs_changing=("endpoint", "label", "password"), output_changes=outs)
    b = PlanBundle("dev-2", "dev", "abcdef1234567", False, "t", ("stack.label",), {"stack.label": node})
    text = pv.plan_text(b, [], "/tmp/p")
    assert '~ output.endpoint: "db-old" -> "db-new"' in text
    assert '~ output.password: "(sensitive)" -> "(sensitive, changed) sha256:abc"' in text
    assert '+ output.label: "app-dev"' in text
    assert "0 change(s) and 3 output change(s) in 1 node(s)" in text
    assert "No changes" not in text
    assert json.loads(pv.plan_json(b, [], "/tmp/p"))["nodes"][0]["output_changes"][0]["after"] == "db-new"
    assert "output.endpoint" in pv.plan_markdown(b, [], "/tmp/p")


def test_updates_show_old_and_new_values_shortened_in_the_middle_and_secrets_masked() -> None:
    long_old, long_new = "a" * 100 + "-old-tail", "a" * 100 + "-new-tail"
    before = {"spec": {"containers": [{"image": "nginx:1.27"}], "note": long_old}, "v": SENSITIVE}
    after = {"spec": {"containers": [{"image": "nginx:1.28"}], "note": long_new}, "v": SENSITIVE}
    fields = ("spec.containers[0].image", "spec.note", "v")
    p = NodePlan(
        "layer.web", (Change("apps/v1 Deployment app/web", Action.UPDATE, before, after, fields=fields),)
    )
    b = PlanBundle("p1", "dev", "abc", False, "now", ("layer.web",), {"layer.web": p})
    for text in (pv.plan_text(b, [], "p"), pv.plan_markdown(b, [], "p")):
        assert '~ spec.containers[0].image: "nginx:1.27" -> "nginx:1.28"' in text
        note = next(line for line in text.splitlines() if "spec.note" in line)
        assert "-old-tail" in note and "-new-tail" in note and "..." in note and len(note) < 200
        assert f"~ v: {SENSITIVE}" in text


def test_a_created_object_is_shown_whole_up_to_the_limit_never_cut_mid_json() -> None:
    small = {"metadata": {"name": "web"}, "data": {"k": "v" * 100}}
    big = {"metadata": {"name": "big"}, "data": {"k": "v" * (pv.CREATE_LIMIT + 10)}}
    p = NodePlan(
        "layer.app",
        (
            Change("v1 ConfigMap app/web", Action.CREATE, None, small),
            Change("v1 ConfigMap app/big", Action.CREATE, None, big),
        ),
    )
    text = pv.plan_text(
        PlanBundle("p1", "dev", "abc", False, "now", ("layer.app",), {"layer.app": p}), [], "p"
    )
    shown = [line.strip() for line in text.splitlines() if line.strip().startswith("{")]
    assert [json.loads(line) for line in shown] == [small]  # whole, valid JSON
    assert "the whole object: --format json" in text


def test_a_large_created_object_is_measured_by_the_bundle_with_the_same_words() -> None:
    # the size of a large created object comes from the bundle's forms (no second serialisation):
    # the lines are those the object's own serialisation gives, for non-ASCII and odd values too
    exact = {"metadata": {"name": "x"}, "data": {"k": "v" * (pv.CREATE_LIMIT - 60)}}
    values = [
        {"metadata": {"name": "caf\u00e9"}, "data": {"k": "\u2603" * pv.CREATE_LIMIT}},
        {"spec": {"n": 1.5, "b": None, "t": True, "l": ["x"] * 900}},
        exact,
        {"data": {"k": "v" * 10}},
        ["not", "a", "dict"] * 300,
    ]
    assert len(json.dumps(exact, sort_keys=True, separators=(",", ":"))) <= pv.CREATE_LIMIT
    p = NodePlan(
        "layer.app",
        tuple(Change(f"v1 ConfigMap app/c{i}", Action.CREATE, None, v) for i, v in enumerate(values)),
    )
    b = PlanBundle("p1", "dev", "abc", False, "now", ("layer.app",), {"layer.app": p})
    measured = [b.json_length(c.after) for c in p.changes]
    assert measured == [len(json.dumps(v, sort_keys=True, separators=(",", ":"))) for v in values]
    assert b.json_length({"data": {"k": "v" * 10}}) is None  # an equal value, not the bundle's
    assert pv._node_details(p, b.json_length) == pv._node_details(p)
    text = pv.plan_text(b, [], "p")
    assert text.count("characters of JSON") == 3 and f"({measured[0]} characters of JSON" in text


def test_markdown_names_the_plan_id_and_fingerprint() -> None:
    b = bundle()
    md = pv.plan_markdown(b, [], "p")
    assert f"**Plan:** `{b.id}` · **Fingerprint:** `{b.fingerprint[:12]}`" in md


def test_a_held_re_plan_is_shown_with_its_new_values_and_the_bound_is_in_the_json() -> None:
    from envctl.core.results import ApplyResult, NodeResult
    from envctl.core.schedule import Status
    from envctl.views.plan import apply_json, apply_text

    new = NodePlan(
        "stack.b",
        (Change("terraform_data.v", Action.UPDATE, {"input": "one"}, {"input": "two"}, fields=("input",)),),
    )
    res = ApplyResult(
        "run-1",
        "dev-1",
        {
            "stack.a": NodeResult("stack.a", Status.DONE),
            "stack.b": NodeResult("stack.b", Status.BLOCKED, "needs approval: envctl approve X", new),
        },
        pending="creates",
    )
    text = apply_text(res)
    held = text[text.index("stack.b (held) would now:") :]
    assert '~ input: "one" -> "two"' in held, text
    data = json.loads(apply_json(res))
    assert data["pending"] == "creates"
    by_node = {n["node"]: n for n in data["nodes"]}
    assert "plan" not in by_node["stack.a"]
    assert by_node["stack.b"]["plan"]["changes"][0]["after"] == {"input": "two"}


def test_a_plan_with_pending_nodes_needing_approval_names_the_pending_bound() -> None:
    pending = NodePlan("stack.db", pending_upstream=("vpc_id",))
    net = NodePlan("stack.net", (Change("terraform_data.vpc", Action.CREATE, None, {"a": 1}),))
    b = PlanBundle(
        "dev-1",
        "dev",
        "abc",
        False,
        "now",
        ("stack.net", "stack.db"),
        {"stack.net": net, "stack.db": pending},
    )
    text = pv.plan_text(b, ["stack.net", "stack.db"], "p1")
    assert "stack.db will be re-planned during apply and asked about again" in text
    assert "envctl approve p1 --pending creates --by NAME" in text
    assert "--pending" not in pv.plan_text(b, ["stack.net"], "p1")  # nothing pending needs approval


def test_drift_json_writes_each_object_on_one_line_with_the_same_values() -> None:
    crd = {"kind": "CustomResourceDefinition", "spec": {"d": "envctl-object-0", "n": [1, 2.5, None, True]}}
    changes = (
        Change("apiextensions.k8s.io/v1 CustomResourceDefinition x", Action.UPDATE, crd, {**crd, "a": ["é"]}),
        Change("v1 ConfigMap app/gone", Action.CREATE, None, {"data": {}}),
        Change("local_file.f", Action.UPDATE, "text before", "text after"),
    )
    r = DriftReport("dev", "abc", "now", (NodeDrift("layer.crds", "drifted", changes),))
    text = dv.drift_json(r)
    assert json.loads(text) == json.loads(json.dumps(r.to_json(), default=str))
    assert f'"before": {json.dumps(crd)},' in text  # one line, in the indented report
    assert '\n  "nodes": [\n' in text
