"""Kubernetes layers: render, plan by server-side dry-run, apply in stages, prune, wait, drift, outputs.

The adapter between envctl's core and a cluster, shaped like flux's ``ssa`` package: one module
per operation, each returning the core's ``NodePlan``/``Change`` values. Importing this package
does not import ``kubernetes``; the client is created on the first request of a ``KubeContext``.
"""

from envctl.kube.apply import apply_layer, offline_plan_layer, plan_layer, wait_layer
from envctl.kube.client import KubeContext
from envctl.kube.drift import drift_layer
from envctl.kube.errors import ConflictError
from envctl.kube.inventory import Inventory, read_inventory
from envctl.kube.kustomize import kustomize_reads
from envctl.kube.objects import ObjRef
from envctl.kube.outputs import read_layer_outputs
from envctl.kube.render import plaintext_secrets, render_layer

__all__ = [
    "ConflictError",
    "Inventory",
    "KubeContext",
    "ObjRef",
    "apply_layer",
    "drift_layer",
    "kustomize_reads",
    "offline_plan_layer",
    "plaintext_secrets",
    "plan_layer",
    "read_inventory",
    "read_layer_outputs",
    "render_layer",
    "wait_layer",
]
