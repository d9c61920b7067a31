"""What an apply may take over from its plan, which stage-one objects it waits for, how a
dry-run judges an object large or its schema rules keyed (pure), and where a stage of CRDs
applied one at a time stops (against a scripted context: no cluster)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envctl.core.changes import Action, Change
from envctl.core.errors import EnvctlError
from envctl.core.model import LayerSpec, Node
from envctl.kube import diff
from envctl.kube.apply import _apply_stage, _as_planned, _needed_first, _plain_noop
from envctl.kube.client import KubeContext, Mapping_
from envctl.kube.diff import LiveView, Prepared
from envctl.kube.errors import ApiError
from envctl.kube.objects import FIELD_MANAGER, ObjRef, normalise

CM = Mapping_("configmaps", True)


def crd(group: str, kind: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.lower()}s.{group}"},
        "spec": {"group": group, "names": {"kind": kind}},
    }


def prepared(obj: dict[str, Any]) -> Prepared:
    return Prepared(obj, ObjRef.of(obj), Mapping_("x", False))


def test_a_crd_is_waited_for_only_when_another_object_of_the_layer_uses_its_kind() -> None:
    used, unused = prepared(crd("a.example", "Widget")), prepared(crd("b.example", "Gadget"))
    ns = prepared({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}})
    widget = prepared({"apiVersion": "a.example/v1", "kind": "Widget", "metadata": {"name": "w"}})
    everything = [used, unused, ns, widget]
    assert _needed_first([used, unused, ns], everything) == [used, ns]
    assert _needed_first([unused], [unused]) == []


def live(version: str, managers: tuple[str, ...] = (FIELD_MANAGER,)) -> dict[str, Any]:
    fields = [{"manager": m, "operation": "Apply"} for m in managers]
    return {"metadata": {"name": "c", "resourceVersion": version, "managedFields": fields}}


def planned(action: Action, live_obj: dict[str, Any] | None) -> Prepared:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}}
    p = Prepared(obj, ObjRef.of(obj), CM, live=live_obj, dry=live_obj or obj)
    p.change = Change(str(p.ref), action, None, None)
    return p


def test_a_planned_create_stands_while_the_object_is_absent_and_the_view_decides_when_it_can() -> None:
    p = planned(Action.CREATE, None)
    assert _as_planned(p, LiveView()) is None  # not listed: may exist unlabelled, one GET tells
    assert _as_planned(p, LiveView(labelled={p.ref: live("1")})) is False  # it appeared
    assert _as_planned(p, LiveView(exact={p.ref: None})) is True
    p.conflicts = [object()]  # type: ignore[list-item]
    assert _as_planned(p, LiveView(exact={p.ref: None})) is False


def test_a_planned_update_stands_only_at_the_version_the_plan_saw() -> None:
    p = planned(Action.UPDATE, live("7"))
    assert _as_planned(p, LiveView(labelled={p.ref: live("7")})) is True
    assert _as_planned(p, LiveView(labelled={p.ref: live("8")})) is False
    assert _as_planned(p, LiveView()) is False


def test_only_a_no_op_envctl_already_manages_skips_the_re_check() -> None:
    assert _plain_noop(planned(Action.NOOP, live("1")))
    assert not _plain_noop(planned(Action.NOOP, live("1", managers=("kubectl",))))  # adoption: an update
    assert not _plain_noop(planned(Action.UPDATE, live("1")))


def test_normalise_copies_the_top_level_and_metadata_only() -> None:
    spec = {"replicas": 1}
    obj = {"kind": "X", "metadata": {"name": "x", "resourceVersion": "3"}, "spec": spec, "status": {}}
    out = normalise(obj)
    assert out == {"kind": "X", "metadata": {"name": "x"}, "spec": {"replicas": 1}}
    assert (
        out["spec"] is spec and obj["metadata"] == {"name": "x", "resourceVersion": "3"} and "status" in obj
    )


def _json_length(obj: Any) -> int:
    return len(json.dumps(obj, separators=(",", ":"), default=str))


_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)


@settings(max_examples=80, deadline=None)
@given(
    st.recursive(
        _SCALARS | st.text(min_size=5000, max_size=20000, alphabet='a\u00e9\u2603\n"\\'),
        lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=30), inner, max_size=6),
        max_leaves=40,
    ),
)
def test_an_object_is_large_exactly_when_its_compact_json_is(value: Any) -> None:
    # the walk over its strings only decides early for what is large for sure
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": value}
    assert diff._large(obj) is (_json_length(obj) > diff.BRIEF_ABOVE)


def test_a_large_crd_and_an_object_just_over_the_bound_are_large() -> None:
    schema = {
        "type": "object",
        "properties": {f"f{i}": {"type": "string", "description": "d" * 50} for i in range(2000)},
    }
    big = {**crd("a.example", "Widget"), "spec": {"versions": [{"schema": {"openAPIV3Schema": schema}}]}}
    assert diff._large(big) and _json_length(big) > diff.BRIEF_ABOVE
    edge = {"data": {"k": "v" * (diff.BRIEF_ABOVE - 20)}}
    while _json_length(edge) <= diff.BRIEF_ABOVE:
        edge["data"]["k"] += "v"
    assert diff._large(edge)
    edge["data"]["k"] = edge["data"]["k"][:-1]
    assert not diff._large(edge) and _json_length(edge) == diff.BRIEF_ABOVE


def test_repeated_or_missing_schema_rules_are_found_anywhere_in_a_crd_schema() -> None:
    rule = {"rule": "self.a > 0"}
    deep = {"properties": {"a": {"items": [{"properties": {"b": {diff.SCHEMA_RULES: [rule]}}}]}}}
    assert diff._schema_rules_keyed(deep)
    deep["properties"]["a"]["items"][0]["properties"]["b"][diff.SCHEMA_RULES] = [rule, dict(rule)]
    assert not diff._schema_rules_keyed(deep)
    assert not diff._schema_rules_keyed([{"x": {diff.SCHEMA_RULES: [{"message": "no rule"}]}}])
    assert diff._schema_rules_keyed({"description": diff.SCHEMA_RULES, "enum": ["x", 1, None]})


class _Scripted(KubeContext):
    """A context whose applies answer from a script (no cluster): the names it was asked to
    apply, in order; the one named ``refuse`` is refused as the API server would."""

    def apply_created(
        self, obj: Any, mapping: Any, *, dry_run: bool, force: bool, metadata_only: bool = False
    ) -> tuple[dict[str, Any], bool]:
        name = obj["metadata"]["name"]
        self.sent.append(name)  # type: ignore[attr-defined]
        if name == self.refuse:  # type: ignore[attr-defined]
            raise ApiError(422, "Invalid", f'CustomResourceDefinition "{name}" is invalid')
        return {**obj, "metadata": {**obj["metadata"], "resourceVersion": "1"}}, True


def test_crds_applied_one_at_a_time_stop_at_the_first_refused_one() -> None:
    ctx = _Scripted(env_name="t")
    object.__setattr__(ctx, "sent", [])
    crds = [prepared(crd(f"g{i}.example", f"Kind{i}")) for i in range(4)]
    for p in crds:
        p.change = Change(str(p.ref), Action.CREATE, None, p.obj)
    object.__setattr__(ctx, "refuse", crds[1].ref.name)
    node = Node(id="layer.crds", kind="layer", name="crds", path="layers/crds", inputs={}, layer=LayerSpec())
    done: dict[ObjRef, Change] = {}
    with pytest.raises(EnvctlError, match="is invalid"):
        _apply_stage(ctx, node, crds, True, done)
    # the first was written, the refused one stops the stage: the last two are never sent
    assert ctx.sent == [crds[0].ref.name, crds[1].ref.name]  # type: ignore[attr-defined]
    assert list(done) == [crds[0].ref]
    # without a refusal all four go, in order
    object.__setattr__(ctx, "sent", [])
    object.__setattr__(ctx, "refuse", None)
    done.clear()
    _apply_stage(ctx, node, crds, True, done)
    assert ctx.sent == [p.ref.name for p in crds]  # type: ignore[attr-defined]
