"""Unit tests of the pure removal logic (core.removal): which nodes were removed from Git, the
order deletions run in, and the edges of an apply that both converges and deletes."""

from __future__ import annotations

import pytest

from envctl.core.changes import Deletion, NodePlan
from envctl.core.errors import ConfigError
from envctl.core.removal import deletion_order, find_removed, run_edges, with_dependents


def test_a_node_in_the_journal_inventories_or_states_but_not_in_git_is_removed() -> None:
    journal = {
        "layer.app": {"commit": "abc", "depends_on": ["stack.db", "layer.platform"]},
        "stack.db": {"commit": "abc"},
        "stack.gone": {"commit": "abc", "deleted": True},
    }
    found = find_removed(["stack.db"], journal, inventories=["layer.old"], states=["stack.orphan"])
    assert [r.id for r in found] == ["layer.app", "layer.old", "stack.orphan"]
    app = found[0]
    assert app.commit == "abc" and app.depends_on == ("layer.platform", "stack.db") and app.kind == "layer"
    assert found[1].commit is None and found[1].found_in == ("inventory",)


def test_deletions_run_dependents_first_and_ignore_edges_to_other_nodes() -> None:
    deps = {
        "layer.app": ["stack.database", "layer.platform"],
        "stack.database": ["stack.network"],
        "layer.platform": [],
        "stack.network": ["stack.elsewhere"],
    }
    order = deletion_order(deps, deps)
    assert order.index("layer.app") < order.index("stack.database") < order.index("stack.network")
    assert order.index("layer.app") < order.index("layer.platform")
    assert "stack.elsewhere" not in order


def test_a_recorded_cycle_is_a_configuration_error_naming_its_nodes() -> None:
    with pytest.raises(ConfigError, match=r"layer\.a, layer\.b"):
        deletion_order(["layer.a", "layer.b"], {"layer.a": ["layer.b"], "layer.b": ["layer.a"]})


def test_a_target_takes_every_node_depending_on_it() -> None:
    deps = {"layer.app": ["stack.db"], "stack.db": ["stack.net"], "layer.web": ["layer.app"], "stack.net": []}
    assert with_dependents(["stack.db"], deps) == {"stack.db", "layer.app", "layer.web"}


def test_a_deletion_goes_before_what_it_depended_on_converging_nodes_keep_the_graph() -> None:
    plans = {
        "layer.app": NodePlan(
            "layer.app", deletion=Deletion.REMOVED, depends_on=("stack.db", "layer.platform")
        ),
        "stack.db": NodePlan("stack.db", deletion=Deletion.REMOVED, depends_on=("stack.net",)),
        "stack.net": NodePlan("stack.net"),
        "layer.platform": NodePlan("layer.platform"),
    }
    edges = run_edges(plans, [("stack.net", "layer.platform"), ("stack.net", "stack.db")])
    assert ("layer.app", "stack.db") in edges and ("layer.app", "layer.platform") in edges
    assert ("stack.db", "stack.net") in edges
    assert ("stack.net", "layer.platform") in edges  # both converge: the graph's edge
    assert ("stack.net", "stack.db") not in edges  # the deletion reverses it


def test_a_deletion_keeping_nothing_is_a_change_one_keeping_everything_is_not() -> None:
    assert NodePlan("layer.x", deletion=Deletion.REMOVED).has_changes
    kept = NodePlan("layer.x", deletion=Deletion.REMOVED, kept=("v1 Namespace x: kept: in use",))
    assert not kept.has_changes
    assert NodePlan.from_json(kept.to_json()) == kept
    assert "deletion" not in NodePlan("layer.y").to_json()  # converging plans keep their shape


def test_views_show_removed_nodes_what_they_delete_and_what_stays_kept() -> None:
    import json

    from envctl.core.bundle import PlanBundle
    from envctl.core.changes import Action, Change
    from envctl.views.plan import plan_json, plan_markdown, plan_text

    nodes = {
        "layer.app": NodePlan(
            "layer.app",
            (Change("apps/v1 Deployment app/web", Action.DELETE, {"a": 1}, None, ("the layer is deleted",)),),
            deletion=Deletion.REMOVED,
            depends_on=("layer.platform",),
        ),
        "layer.platform": NodePlan(
            "layer.platform",
            deletion=Deletion.REMOVED,
            kept=("v1 Namespace app: kept: the namespace still holds other objects (v1 ConfigMap app/x)",),
        ),
        "stack.db": NodePlan("stack.db", deletion=Deletion.DESTROY),
    }
    b = PlanBundle("p1", "dev", "abc", False, "now", tuple(nodes), nodes)
    text = plan_text(b, [], None)
    assert "REMOVED FROM GIT" in text and "removed from git: kept" in text and "DESTROY" in text
    assert "- apps/v1 Deployment app/web (delete)" in text
    assert "= v1 Namespace app: kept: the namespace still holds other objects" in text
    assert "Kept (listed above, until removed or adopted): layer.platform" in text
    assert "- nothing left to delete: its records go" in text  # stack.db: nothing live, forgotten
    md = plan_markdown(b, [], None)
    assert "**REMOVED FROM GIT**" in md and "= v1 Namespace app: kept" in md
    js = {n["node"]: n for n in json.loads(plan_json(b, [], None))["nodes"]}
    assert js["layer.app"]["deletion"] == "removed from Git" and js["layer.app"]["depends_on"] == [
        "layer.platform"
    ]
    assert js["layer.platform"]["kept"] and js["stack.db"]["deletion"] == "destroy"
