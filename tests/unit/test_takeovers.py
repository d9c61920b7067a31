"""Take-overs a plan lists before approval, and the live/Git values drift shows (pure helpers)."""

from __future__ import annotations

from envctl.kube.diff import object_change, takeovers
from envctl.kube.errors import FieldConflict
from envctl.kube.objects import UNSET, ObjRef, diff_values, value_text

LIVE = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "web",
        "namespace": "app",
        "labels": {"app": "intruded", "hpa": "yes"},
        "managedFields": [
            {"manager": "envctl", "operation": "Apply", "time": "2026-01-01T00:00:00Z",
             "fieldsV1": {"f:metadata": {"f:labels": {}}, "f:spec": {}}},
            {"manager": "kubectl-scale", "operation": "Update", "subresource": "scale",
             "time": "2026-01-02T00:00:00Z", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "kubectl-label", "operation": "Update", "time": "2026-01-03T00:00:00Z",
             "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}, "f:hpa": {}}}}},
        ],
    },
    "spec": {"replicas": 3},
}  # fmt: skip
DRY = {
    **LIVE,
    "metadata": {**LIVE["metadata"], "labels": {"app": "web", "hpa": "yes"}},
    "spec": {"replicas": 2},
}
CONFLICTS = [
    FieldConflict("spec.replicas", "kubectl-scale"),
    FieldConflict("metadata.labels.app", "kubectl-label"),
]


def test_a_take_over_names_the_field_the_manager_and_both_values() -> None:
    ref = ObjRef("apps/v1", "Deployment", "app", "web")
    change = object_change(ref, LIVE, DRY, conflicts=CONFLICTS)
    assert set(change.reasons) == {
        "takes .spec.replicas from kubectl-scale (3 → 2)",
        "takes .metadata.labels.app from kubectl-label (intruded → web)",
    }
    # a label only the other manager sets (Git does not) is not in the dry-run's changes
    assert not any("hpa" in r for r in change.reasons)


def test_a_conflict_without_a_value_change_is_still_named() -> None:
    same = takeovers(LIVE, LIVE, LIVE, [FieldConflict("spec.paused", "someone")])
    assert same == ("takes .spec.paused from someone",)


def test_values_of_a_field_diff_and_their_text() -> None:
    assert diff_values({"a": {"b": 1}, "c": [1]}, {"a": {"b": 2}, "d": "x", "c": [1]}) == [
        ("a.b", 1, 2),
        ("d", UNSET, "x"),
    ]
    assert value_text(UNSET) == "unset" and value_text("nginx:1.27") == "nginx:1.27"
    assert value_text({"k": 1}) == '{"k": 1}' and value_text("x" * 100).endswith("…")
