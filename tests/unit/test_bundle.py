"""Plan bundles: fingerprints bind approvals; any modification is refused as stale."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envctl.core.approval import (
    Approval,
    ApprovalPolicy,
    ChangeClass,
    PendingBound,
    check_approval,
    needs_approval,
    nodes_needing_approval,
)
from envctl.core.bundle import PlanBundle, Rollback, canonical, node_fingerprint, sha256
from envctl.core.changes import Action, Change, NodePlan
from envctl.core.errors import ApprovalRequiredError, EnvctlError, StalePlanError
from envctl.store import Store


def bundle(plan_id: str = "dev-1", action: Action = Action.CREATE) -> PlanBundle:
    nodes = {
        "stack.network": NodePlan("stack.network", (Change("terraform_data.vpc", action, None, {"a": 1}),)),
        "layer.app": NodePlan("layer.app", (Change("v1 ConfigMap app/web", Action.NOOP),)),
    }
    return PlanBundle(
        plan_id,
        "dev",
        "abc123",
        False,
        "2026-01-01T00:00:00+00:00",
        ("stack.network", "layer.app"),
        nodes,
        {"stack.network": "h"},
    )


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=12),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
            ),
            max_leaves=8,
        ),
        max_size=4,
    ),
    st.booleans(),
)
def test_the_fingerprint_is_the_sha256_of_the_canonical_body(after: dict[str, Any], extra: bool) -> None:
    # the body's canonical JSON is assembled from each node's (made once for its fingerprint):
    # byte for byte the canonical form of the whole body, for any node ids and values
    nodes = {
        nid: NodePlan(nid, (Change(f"v1 ConfigMap a/{nid}", Action.UPDATE, {"x": 1}, {nid: after}),))
        for nid in ["layer.z", "layer.\u00e9", "stack.a", *after][:6]
    }
    b = PlanBundle(
        "dev-1",
        "dev",
        None,
        True,
        "2026-01-01T00:00:00+00:00",
        tuple(nodes),
        nodes,
        {n: "h" for n in nodes},
        rev="abc" if extra else None,
        rollback=Rollback("abc", None) if extra else None,
    )
    body = b.body()
    assert b.fingerprint == sha256(canonical(body))
    assert b.to_json() == {**body, "fingerprint": sha256(canonical(body))}
    assert body["node_fingerprints"] == {n: node_fingerprint(nodes[n]) for n in nodes}
    assert {n: b.node_fingerprint(n) for n in nodes} == body["node_fingerprints"]
    # the bundle file's bytes, spliced from the nodes' forms: what serialising it whole gives
    whole = json.dumps(b.to_json(), sort_keys=True, separators=(",", ":"), default=str).encode()
    assert b.canonical_json() == whole == canonical(b.to_json())
    for plan in nodes.values():
        assert [b.json_length(c.after) for c in plan.changes] == [
            len(canonical(c.after)) for c in plan.changes
        ]


def test_the_bundle_file_holds_the_bytes_of_the_plan_and_reads_back_to_the_same_fingerprint(
    tmp_path: Path,
) -> None:
    # non-ASCII text and a value JSON has no type for (written as its str) in a change
    nodes = {
        "layer.app": NodePlan(
            "layer.app",
            (Change("v1 ConfigMap app/caf\u00e9", Action.CREATE, None, {"data": {"k": "\u00e9\u2603"}}),),
        ),
        "stack.db": NodePlan(
            "stack.db", (Change("terraform_data.x", Action.UPDATE, {"v": 1}, {"v": Path("/p")}),)
        ),
    }
    b = PlanBundle(
        "dev-1", "dev", "abc", True, "t", ("stack.db", "layer.app"), nodes, {"_source": "s"}, rev="abc"
    )
    store = Store(tmp_path)
    approved = Approval.of(b, "ana", "t")
    path = store.write_bundle(tmp_path / ".envctl" / "plans" / "dev-1", b)
    old_way = json.dumps(b.to_json(), sort_keys=True, separators=(",", ":"), default=str) + "\n"
    assert path.read_bytes() == old_way.encode()
    again, _ = store.read_bundle(str(path.parent))
    check_approval(approved, again)  # the approval of the plan shown holds for the file written
    assert again.fingerprint == b.fingerprint == approved.fingerprint
    store.write_bundle(tmp_path / "copy", again)
    assert (tmp_path / "copy" / "bundle.json").read_bytes() == path.read_bytes()


def test_round_trips_through_json() -> None:
    b = bundle()
    again = PlanBundle.from_json(json.loads(json.dumps(b.to_json())))
    assert again.fingerprint == b.fingerprint
    assert again.nodes["stack.network"].changes[0].action is Action.CREATE


@pytest.mark.parametrize("bad_id", ["../../x", "a/b", "..", "dev-..-x", "", "a\x00b", "/abs"])
def test_a_bundle_whose_id_is_not_a_plain_name_is_refused_even_with_a_recomputed_fingerprint(
    bad_id: str,
) -> None:
    b = dataclasses.replace(bundle(), id=bad_id)
    with pytest.raises(StalePlanError, match="not valid"):
        PlanBundle.from_json(json.loads(json.dumps(b.to_json())))


def test_the_store_never_writes_outside_envctl_for_a_bad_plan_id(tmp_path: Path) -> None:
    store = Store(tmp_path)
    b = dataclasses.replace(bundle(), id="../../escaped")
    with pytest.raises(StalePlanError):
        store.mark_applied(b, "run1")
    with pytest.raises(StalePlanError):
        store.write_bundle(tmp_path / ".envctl" / "plans" / "x", b)
    with pytest.raises(StalePlanError):
        store.read_approval("../../../etc/x")
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file() and "escaped" in p.name) == []


def test_a_flipped_value_is_refused_as_stale() -> None:
    data = bundle().to_json()
    data["nodes"]["stack.network"]["changes"][0]["action"] = "delete"
    with pytest.raises(StalePlanError, match="modified"):
        PlanBundle.from_json(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_single_byte_flip_never_loads_silently(data: st.DataObject) -> None:
    raw = bytearray(json.dumps(bundle().to_json()).encode())
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255).filter(lambda b: b != raw[i]))
    try:
        parsed: Any = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return  # the store reports unreadable JSON as stale itself
    try:
        PlanBundle.from_json(parsed)
    except StalePlanError:
        return
    # a flip inside insignificant whitespace parses to the same document: then nothing changed
    assert parsed == bundle().to_json()


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
        max_leaves=20,
    )
)
def test_garbage_gives_a_typed_error(value: Any) -> None:
    with pytest.raises(EnvctlError):
        PlanBundle.from_json(value)


def test_an_approval_binds_to_one_plan() -> None:
    a, b = bundle("dev-1"), bundle("dev-2", Action.DELETE)
    approval = Approval.of(a, "alice", "now")
    check_approval(approval, a)
    with pytest.raises(ApprovalRequiredError):
        check_approval(approval, b)
    forged = Approval(b.id, a.fingerprint, "dev", a.commit, "alice", "now")
    with pytest.raises(ApprovalRequiredError):
        check_approval(dataclasses.replace(forged, seal=forged.expected_seal()), b)


@pytest.mark.parametrize(
    "edit",
    [
        {"pending": "any"},  # a bound widened after the approval was recorded
        {"pending": None},
        {"by": "mallory"},
        {"seal": ""},
    ],
    ids=["bound-widened", "bound-removed", "approver-changed", "seal-removed"],
)
def test_an_approval_record_changed_after_it_was_recorded_approves_nothing(edit: dict[str, Any]) -> None:
    a = bundle("dev-1")
    recorded = Approval.of(a, "alice", "now", PendingBound.CREATES).to_json()
    assert recorded["pending"] == "creates"
    check_approval(Approval.from_json(json.loads(json.dumps(recorded))), a)  # as written: valid
    with pytest.raises(ApprovalRequiredError) as e:
        check_approval(Approval.from_json({**recorded, **edit}), a)
    assert e.value.exit_code == 3 and "changed after it was recorded" in e.value.message


def classed(words: tuple[str, ...]) -> ApprovalPolicy:
    """The policy ``words`` with stacks' changes classed terraform and layers' kubernetes."""
    return ApprovalPolicy(
        words, lambda n: ChangeClass.TERRAFORM if n.startswith("stack.") else ChangeClass.KUBERNETES
    )


@pytest.mark.parametrize(
    ("policy", "stack_action", "expected"),
    [
        (("terraform",), Action.CREATE, ["stack.network"]),
        (("terraform-destroy",), Action.CREATE, []),
        (("terraform-destroy",), Action.REPLACE, ["stack.network"]),
        (("none",), Action.DELETE, []),
        (("all",), Action.NOOP, []),
    ],
)
def test_policy_names_the_nodes_that_need_approval(
    policy: tuple[str, ...], stack_action: Action, expected: list[str]
) -> None:
    assert nodes_needing_approval(bundle(action=stack_action), classed(policy)) == expected


def test_pending_upstream_node_needs_approval_under_terraform_policy() -> None:
    p = NodePlan("stack.db", pending_upstream=("vpc_id",))
    assert needs_approval(p, classed(("terraform",)))
    assert not needs_approval(NodePlan("layer.app", pending_upstream=("x",)), classed(("terraform",)))
    assert needs_approval(NodePlan("layer.app", pending_upstream=("x",)), classed(("kubernetes",)))
