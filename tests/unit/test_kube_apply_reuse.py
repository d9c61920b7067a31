"""What an apply may take over from its plan, and which stage-one objects it waits for (pure)."""

from __future__ import annotations

from typing import Any

from envctl.core.changes import Action, Change
from envctl.kube.apply import _as_planned, _needed_first, _plain_noop
from envctl.kube.client import Mapping_
from envctl.kube.diff import LiveView, Prepared
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
