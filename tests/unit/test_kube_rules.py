"""Prune safety, readiness rules and output paths: the decisions, without a cluster."""

from __future__ import annotations

from typing import Any

import pytest

from envctl.core.errors import ConfigError, ExitCode, InterruptedRun, InterruptedWait
from envctl.kube.client import KubeContext, Mapping_
from envctl.kube.inventory import decode_entries, encode_entries, inventory_name
from envctl.kube.objects import LABEL_ENV, LABEL_LAYER, ObjRef
from envctl.kube.outputs import extract, parse_object
from envctl.kube.prune import prune_decision
from envctl.kube.wait import (
    Status,
    Waitable,
    controller_problem,
    label_selector,
    pod_problem,
    readiness,
    wait_for,
)


def live(
    kind: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {
            "name": "x",
            "labels": {LABEL_ENV: "dev", LABEL_LAYER: "app"} if labels is None else labels,
            "annotations": annotations or {},
        },
    }


def decide(kind: str, **kw: Any) -> Any:
    return prune_decision(ObjRef("v1", kind, "", "x"), live(kind, **kw), env_label="dev", layer_label="app")


def test_prune_deletes_only_objects_that_still_carry_this_layers_labels() -> None:
    assert decide("ConfigMap").delete
    assert not decide("ConfigMap", labels={LABEL_ENV: "dev", LABEL_LAYER: "other"}).delete
    assert not decide("ConfigMap", labels={}).delete


def test_prune_keeps_crds_and_pvcs_unless_the_object_opts_in() -> None:
    assert not decide("CustomResourceDefinition").delete
    assert not decide("PersistentVolumeClaim").delete
    assert decide("PersistentVolumeClaim", annotations={"envctl.io/prune": "allow"}).delete
    assert not decide("ConfigMap", annotations={"envctl.io/prune": "disabled"}).delete


def test_prune_checks_a_namespace_is_empty_first() -> None:
    d = decide("Namespace")
    assert d.delete and d.check_namespace
    assert not decide("Namespace", annotations={"envctl.io/prune": "allow"}).check_namespace


def test_inventory_entries_round_trip_and_name_is_valid() -> None:
    refs = [ObjRef("apps/v1", "Deployment", "app", "web"), ObjRef("v1", "Namespace", "", "app")]
    assert sorted(decode_entries(encode_entries(refs))) == sorted(refs)
    assert inventory_name("Dev_Env", "layer.app") == "dev-env.layer.app"


def deployment(status: dict[str, Any], replicas: int = 2, generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "generation": generation},
        "spec": {"replicas": replicas},
        "status": status,
    }


@pytest.mark.parametrize(
    ("status", "ready", "reason"),
    [
        ({}, False, "not observed"),
        ({"observedGeneration": 1, "updatedReplicas": 1, "replicas": 1}, False, "1 of 2 replicas updated"),
        (
            {"observedGeneration": 1, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 1},
            False,
            "1 of 2",
        ),
        ({"observedGeneration": 1, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 2}, True, ""),
    ],
)
def test_deployment_is_ready_when_rolled_out(status: dict[str, Any], ready: bool, reason: str) -> None:
    r = readiness(deployment(status))
    assert r.ready is ready
    assert reason in r.reason


def test_job_crd_and_ready_condition_rules() -> None:
    job = {"kind": "Job", "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert readiness(job).ready
    failed = {
        "kind": "Job",
        "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimit"}]},
    }
    assert readiness(failed).status is Status.FAILED
    crd = {
        "kind": "CustomResourceDefinition",
        "status": {"conditions": [{"type": "Established", "status": "False"}]},
    }
    assert not readiness(crd).ready
    widget = {
        "kind": "Widget",
        "status": {"conditions": [{"type": "Ready", "status": "False", "message": "db down"}]},
    }
    assert "db down" in readiness(widget).reason
    assert readiness({"kind": "ConfigMap"}).ready
    suspended = {"kind": "Job", "spec": {"suspend": True}, "status": {}}
    assert readiness(suspended).reason == "job is suspended"


def test_label_selector_renders_labels_and_expressions() -> None:
    selector = {
        "matchLabels": {"app": "web", "tier": "front"},
        "matchExpressions": [
            {"key": "track", "operator": "In", "values": ["a", "b"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "zone", "operator": "NotIn", "values": ["x"]},
            {"key": "owner", "operator": "Exists"},
        ],
    }
    assert label_selector(selector) == "app=web,tier=front,track in (a,b),!canary,zone notin (x),owner"
    assert label_selector({}) is None and label_selector(None) is None


def pod(
    phase: str, conditions: list[dict[str, Any]], containers: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    status = {"phase": phase, "conditions": conditions, "containerStatuses": containers or []}
    return {"metadata": {"name": "web-1"}, "status": status}


@pytest.mark.parametrize(
    ("the_pod", "problem"),
    [
        (
            pod(
                "Pending",
                [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3"}],
            ),
            "pod web-1 not scheduled: Unschedulable: 0/3",
        ),
        (
            pod(
                "Pending",
                [{"type": "PodScheduled", "status": "True"}],
                [
                    {
                        "name": "web",
                        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}},
                    }
                ],
            ),
            "pod web-1 container web: ImagePullBackOff: not found",
        ),
        (
            pod(
                "Failed",
                [],
                [{"name": "m", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}],
            ),
            "pod web-1 container m exited with 1: Error",
        ),
        (
            pod("Running", [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}]),
            "pod web-1 running, not ready: ContainersNotReady",
        ),
        (pod("Running", [{"type": "Ready", "status": "True"}]), None),
        (pod("Succeeded", []), None),
    ],
)
def test_pod_problem_names_the_first_reason_a_pod_is_not_ready(
    the_pod: dict[str, Any], problem: str | None
) -> None:
    assert pod_problem(the_pod) == problem


def test_controller_problem_reads_failing_workload_conditions() -> None:
    stuck = {
        "status": {
            "conditions": [
                {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "quota"}
            ]
        }
    }
    assert controller_problem(stuck) == "ReplicaFailure: FailedCreate: quota"
    fine = {
        "status": {
            "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]
        }
    }
    assert controller_problem(fine) is None


def test_output_objects_and_paths() -> None:
    assert parse_object("v1/Service/ingress/edge") == ObjRef("v1", "Service", "ingress", "edge")
    assert parse_object("apps/v1/Deployment/app/web") == ObjRef("apps/v1", "Deployment", "app", "web")
    assert parse_object("v1/Namespace/app") == ObjRef("v1", "Namespace", "", "app")
    obj = {
        "status": {"loadBalancer": {"ingress": [{"hostname": "h"}]}},
        "metadata": {"annotations": {"a.b/c": "v"}},
    }
    assert extract(obj, ".status.loadBalancer.ingress[0].hostname") == "h"
    assert extract(obj, ".metadata.annotations['a.b/c']") == "v"
    with pytest.raises(KeyError):
        extract(obj, ".status.loadBalancer.ingress[1].hostname")
    with pytest.raises(ConfigError):
        parse_object("Service")


def test_a_cancelled_wait_ends_at_once_naming_what_was_applied_but_not_ready() -> None:
    ctx = KubeContext(env_name="dev")  # never connects: the wait is cancelled before its first poll
    ctx.cancel_waits()
    web = Waitable(ObjRef("apps/v1", "Deployment", "app", "web"), Mapping_("deployments", True))

    with pytest.raises(InterruptedWait) as err:
        wait_for(ctx, "layer.app", [web], timeout=3600)
    assert "1 object(s) applied but not ready: apps/v1 Deployment app/web: not read yet" in err.value.message
    assert err.value.after_apply and err.value.exit_code == ExitCode.INTERRUPTED

    # between apply stages the rest of the layer is not applied yet: a plain interrupt
    with pytest.raises(InterruptedRun) as err2:
        wait_for(ctx, "layer.app", [web], timeout=3600, applied_all=False)
    assert not isinstance(err2.value, InterruptedWait) and not err2.value.after_apply
