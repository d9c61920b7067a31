"""Plan JSON -> change set: actions, reasons, fields, unknowns, and masking of sensitive values."""

from __future__ import annotations

import json
from typing import Any

from envctl.app.plan import unknown_until_apply
from envctl.core.changes import SENSITIVE, Action, NodePlan
from envctl.core.secrets import scrub
from envctl.terraform import planjson

CANARY = "canary-unit-91c2"


def rc(actions: list[str], **change: Any) -> dict[str, Any]:
    return {"address": "terraform_data.x", "mode": "managed", "change": {"actions": actions, **change}}


def test_actions() -> None:
    assert planjson.action_of(["create"]) is Action.CREATE
    assert planjson.action_of(["update"]) is Action.UPDATE
    assert planjson.action_of(["delete", "create"]) is Action.REPLACE
    assert planjson.action_of(["create", "delete"]) is Action.REPLACE
    assert planjson.action_of(["delete"]) is Action.DELETE
    assert planjson.action_of(["forget"]) is Action.DELETE
    assert planjson.action_of(["read"]) is Action.READ
    assert planjson.action_of(["no-op"]) is Action.NOOP


def test_replace_reasons_and_fields() -> None:
    change = planjson.resource_change(
        {
            **rc(
                ["delete", "create"],
                before={"input": "a", "triggers_replace": ["1"], "id": "i"},
                after={"input": "a", "triggers_replace": ["2"]},
                after_unknown={"id": True},
                replace_paths=[["triggers_replace"]],
            ),
            "action_reason": "replace_because_cannot_update",
        }
    )
    assert change.action is Action.REPLACE
    assert change.reasons == (
        "triggers_replace forces replacement",
        "an attribute cannot be updated in place",
    )
    assert change.fields == ("id", "triggers_replace")
    assert change.after["id"] == planjson.UNKNOWN


def test_sensitive_values_are_masked_with_a_changed_marker() -> None:
    change = planjson.resource_change(
        rc(
            ["update"],
            before={"input": CANARY, "nested": {"k": [CANARY, "ok"]}},
            after={"input": CANARY + "2", "nested": {"k": [CANARY, "ok"]}},
            before_sensitive={"input": True, "nested": {"k": [True, False]}},
            after_sensitive={"input": True, "nested": {"k": [True, False]}},
            after_unknown={},
        )
    )
    assert change.before["input"] == SENSITIVE
    assert change.after["input"].startswith("(sensitive, changed) sha256:")
    assert change.after["nested"]["k"] == [SENSITIVE, "ok"]
    assert change.fields == ("input",)
    assert CANARY not in json.dumps(change.to_json())


def test_whole_value_sensitive_and_unknown() -> None:
    change = planjson.resource_change(
        rc(["create"], before=None, after={"v": None}, after_unknown={"v": True}, after_sensitive=True)
    )
    assert change.before is None and change.after == SENSITIVE


def test_scrub_masks_strings_that_carry_a_secret() -> None:
    value = {"output": f"prefix-{CANARY}", "n": 1, "l": [CANARY, "x"]}
    assert scrub(value, [CANARY], whole=True) == {"output": SENSITIVE, "n": 1, "l": [SENSITIVE, "x"]}


def test_summary_outputs_and_drift() -> None:
    plan = {
        "resource_changes": [rc(["no-op"], before={}, after={})],
        "resource_drift": [
            rc(["delete"], before={"a": 1}, after=None),
        ],
        "output_changes": {
            "same": {"actions": ["no-op"], "after_unknown": False},
            "later": {"actions": ["update"], "after_unknown": True},
            "deep": {"actions": ["create"], "after_unknown": {"x": [False, True]}},
        },
    }
    normal = planjson.summarize(plan)
    assert normal.outputs_changing == ("deep", "later")
    assert normal.outputs_unknown == ("deep", "later")
    assert normal.drifted == 1
    assert [c.action for c in normal.changes] == [Action.NOOP]
    refresh = planjson.summarize(plan, refresh_only=True)
    assert [(c.action, c.reasons) for c in refresh.changes] == [
        (Action.DELETE, ("deleted outside of Terraform",))
    ]


def test_data_sources_read() -> None:
    change = planjson.resource_change(
        {
            "address": "data.x.y",
            "mode": "data",
            "change": {"actions": ["read"]},
            "action_reason": "read_because_config_unknown",
        }
    )
    assert change.action is Action.READ and change.reasons


def test_output_only_changes_are_changes_with_old_and_new_values_masked() -> None:
    plan = {
        "resource_changes": [rc(["no-op"], before={"input": "a"}, after={"input": "a"})],
        "output_changes": {
            "endpoint": {"actions": ["update"], "before": "db-old", "after": "db-new"},
            "label": {"actions": ["create"], "before": None, "after": "app-dev"},
            "password": {
                "actions": ["update"],
                "before": CANARY,
                "after": CANARY + "-2",
                "before_sensitive": True,
                "after_sensitive": True,
            },
            "same": {"actions": ["no-op"], "before": "x", "after": "x"},
        },
    }
    summary = planjson.summarize(plan)
    assert not [c for c in summary.changes if c.action.changes]
    assert summary.outputs_changing == ("endpoint", "label", "password")
    by_name = {c.address: c for c in summary.output_changes}
    assert set(by_name) == {"output.endpoint", "output.label", "output.password"}
    assert (by_name["output.endpoint"].action, by_name["output.endpoint"].before) == (Action.UPDATE, "db-old")
    assert by_name["output.endpoint"].after == "db-new"
    assert by_name["output.label"].action is Action.CREATE
    assert CANARY not in json.dumps([c.to_json() for c in summary.output_changes])
    assert str(by_name["output.password"].after).startswith("(sensitive, changed)")
    node = NodePlan(
        "stack.label",
        summary.changes,
        outputs_changing=summary.outputs_changing,
        output_changes=summary.output_changes,
    )
    assert node.has_changes  # applied, so its state holds the new outputs
    assert NodePlan.from_json(node.to_json()) == node
    assert not NodePlan("stack.label", summary.changes).has_changes


def test_outputs_known_at_plan_time_are_planned_values_and_never_stored() -> None:
    plan = {
        "output_changes": {
            "name": {"actions": ["create"], "before": None, "after": "vpc-dev", "after_unknown": False},
            "id": {"actions": ["create"], "before": None, "after": None, "after_unknown": True},
            "same": {"actions": ["no-op"], "before": "x", "after": "x", "after_unknown": False},
            "gone": {"actions": ["delete"], "before": "y", "after": None, "after_unknown": False},
            "password": {
                "actions": ["update"],
                "before": "old",
                "after": CANARY,
                "after_unknown": False,
                "before_sensitive": True,
                "after_sensitive": True,
            },
        },
    }
    summary = planjson.summarize(plan)
    known = summary.planned_outputs
    assert known is not None
    assert dict(known.values) == {"name": "vpc-dev", "same": "x", "password": CANARY}
    assert known.sensitive == frozenset({"password"})
    node = NodePlan(
        "stack.net",
        outputs_changing=summary.outputs_changing,
        output_changes=summary.output_changes,
        outputs_unknown=summary.outputs_unknown,
        planned_outputs=known,
    )
    # consumers of name/same/password are planned for real; a consumer of id (or of a removed
    # output) waits for the apply
    assert unknown_until_apply(node) == {"id", "gone"}
    assert CANARY not in json.dumps(node.to_json()) and CANARY not in repr(node)
    assert NodePlan.from_json(node.to_json()) == node  # compared without the in-memory values
    assert planjson.summarize(plan, refresh_only=True).planned_outputs is None


def test_without_planned_values_every_changing_output_waits() -> None:
    node = NodePlan("layer.app", outputs_changing=("host",), outputs_unknown=("lb",))
    assert unknown_until_apply(node) == {"host", "lb"}
