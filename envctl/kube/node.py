"""The layer kind's NodeAdapter: render, plan by dry-run, apply, outputs and drift of a manifest layer.

What ``envctl.app`` calls for every node of kind ``layer`` (``core.adapter.NodeAdapter``); the
Kubernetes work itself is the other ``envctl.kube`` modules'. Also the plaintext-Secret policy:
a ``kind: Secret`` with values in Git is refused unless the layer allows it.
"""

from __future__ import annotations

import dataclasses
import marshal
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from envctl.core.adapter import AdapterTraits, Applied, ApplyRequest, DeleteRequest, Upstream
from envctl.core.approval import ChangeClass
from envctl.core.changes import Action, Change, NodePlan, Outputs
from envctl.core.errors import (
    ConfigError,
    EngineError,
    EnvctlError,
    Location,
    StalePlanError,
    UnavailableError,
)
from envctl.core.model import Environment, Node, Ref, Snapshot
from envctl.kube.apply import apply_layer, offline_plan_layer, plan_layer
from envctl.kube.client import KubeContext
from envctl.kube.delete import delete_layer, plan_delete_layer
from envctl.kube.drift import drift_layer
from envctl.kube.errors import AccessError
from envctl.kube.inventory import read_inventory
from envctl.kube.objects import objects_digest
from envctl.kube.outputs import read_layer_outputs
from envctl.kube.render import plaintext_secrets, render_layer


def _inputs_key(inputs: Mapping[str, Any]) -> bytes | None:
    """Inputs as bytes that are equal only for equal values of equal types; None when a value is
    not plain data (a placeholder for an upstream output: never the same as a plan's value)."""
    try:
        return marshal.dumps(dict(inputs))
    except ValueError:
        return None


class LayerAdapter:
    """Kubernetes manifest layers: server-side dry-run plans, staged server-side apply, inventory."""

    traits = AdapterTraits(in_cluster=True, plans_after_any_upstream=True, changes=ChangeClass.KUBERNETES)

    def __init__(
        self,
        env: Environment,
        snapshot: Snapshot,
        kube: Callable[[], KubeContext],
        progress: Callable[[str], None],
        sensitive_inputs: Callable[[Node], Mapping[str, str]],
    ) -> None:
        self.env = env
        self.snapshot = snapshot
        self.kube = kube  # the session's one context, made on first use
        self.progress = progress
        self.sensitive_inputs = sensitive_inputs  # inputs carrying a sensitive upstream output
        # node id -> (its inputs as marshal bytes, the objects its precheck rendered): its plan's
        # render when the plan's inputs are the same (no upstream output in them), taken once
        self._prechecked: dict[str, tuple[bytes, list[dict[str, Any]]]] = {}
        # node id -> (its inputs as marshal bytes, the objects its plan dry-ran): the objects of
        # its apply in this run when the inputs are the same, taken once
        self._planned: dict[str, tuple[bytes, list[dict[str, Any]]]] = {}

    def render(
        self, node: Node, inputs: Mapping[str, Any], undecrypted: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """The layer's objects; a plaintext Secret, or a sensitive input outside a Secret, is refused.
        With ``undecrypted`` (validate), SOPS files no key here opens are checked encrypted."""
        objects = render_layer(
            self.env, self.snapshot, node, inputs, self.sensitive_inputs(node), undecrypted=undecrypted
        )
        check_plaintext_secrets(self.snapshot, node, objects)
        return objects

    def extra_refs(self, node: Node) -> Iterable[Ref]:
        # output references written in manifests (``${stack.X.outputs.Y}``) and in chart values;
        # other references in layer.yaml are its inputs'
        chart = node.layer.helm if node.layer is not None else None
        in_values = set(chart.value_refs) if chart is not None else set()
        return [r for r in node.upstream_refs if r.location.file != node.config_file or r in in_values]

    def sensitive_outputs(self, node: Node) -> frozenset[str]:
        return frozenset()  # a layer's outputs are read from live objects; none is declared sensitive

    def declared_outputs(self, node: Node) -> frozenset[str] | None:
        return frozenset(node.layer.outputs) if node.layer is not None else frozenset()

    def prewarm(self, nodes: Sequence[Node], workers: int, *, applying: bool) -> None:
        return None  # the cluster connection is made on first use

    def precheck(self, node: Node, inputs: Mapping[str, Any]) -> None:
        # rendered with placeholders for upstream outputs: hostile YAML, oversized objects,
        # plaintext Secrets are refused before any cluster is asked
        objects = self.render(node, inputs)
        key = _inputs_key(inputs)
        if key is not None:
            self._prechecked[node.id] = (key, objects)

    def _render_for_plan(self, node: Node, inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The precheck's objects if it rendered the same inputs (nothing edited them since: the
        precheck only looked), else a new render."""
        kept = self._prechecked.pop(node.id, None)
        if kept is not None and kept[0] == _inputs_key(inputs):
            return kept[1]
        return self.render(node, inputs)

    def _render_for_apply(self, node: Node, inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The objects this run's plan of the node dry-ran, if it planned the same inputs, else a
        new render. The plan's render is what the plan shows and what its kept dry-runs are of;
        the files it was made from are the ones the bundle's source hash covers, which the apply
        checked before starting (``app.apply.preflight``). A saved plan, applied by another
        process, is rendered again and compared with the plan's ``objects_sha256``."""
        kept = self._planned.pop(node.id, None)
        if kept is not None and kept[0] == _inputs_key(inputs):
            return kept[1]
        return self.render(node, inputs)

    def validate(self, node: Node, inputs: Mapping[str, Any]) -> list[str]:
        undecrypted: list[str] = []  # SOPS files checked without a key: warnings, not errors
        self.render(node, inputs, undecrypted)
        return undecrypted

    def pending_note(self, node: Node, inputs: Mapping[str, Any], what: str) -> str:
        # a layer that cannot render fails its plan now, never hides behind the pending upstream
        return f"will apply {len(self.render(node, inputs))} objects {what}"

    def plan(self, node: Node, inputs: Mapping[str, Any], plan_dir: Path, upstream: Upstream) -> NodePlan:
        objects = self._render_for_plan(node, inputs)
        key = _inputs_key(inputs)
        if key is not None:
            self._planned[node.id] = (key, objects)
        try:
            # an upstream that is not applied yet may create namespaces or CRDs these objects need
            plan = plan_layer(self.kube(), node, objects, upstream_pending=bool(upstream.changing))
        except UnavailableError as e:
            # the cluster may be what an unapplied upstream (a stack) creates: plan offline, never
            # an empty plan; with no such upstream, an unreachable cluster stays an error (exit 69),
            # and so does a cluster that answers but refuses envctl (TLS, 401, 403)
            if not upstream.off_cluster or isinstance(e, AccessError):
                raise
            plan = offline_plan_layer(node, objects, upstream.off_cluster[0])
        return dataclasses.replace(
            plan, artifacts={**plan.artifacts, "objects_sha256": objects_digest(objects)}
        )

    def state_fingerprint(self, node: Node) -> str | None:
        return None  # the live objects are compared instead (live_plan)

    def live_plan(self, node: Node, inputs: Mapping[str, Any]) -> NodePlan | None:
        objects = render_layer(self.env, self.snapshot, node, inputs, self.sensitive_inputs(node))
        return plan_layer(self.kube(), node, objects)

    def apply(self, node: Node, request: ApplyRequest) -> Applied:
        kube = self.kube()
        objects = self._render_for_apply(node, request.inputs)
        plan = request.planned
        if not request.same_inputs:
            self.progress(f"{node.id}: re-planning with the new upstream outputs")
            plan = plan_layer(kube, node, objects)
        elif request.planned.artifacts.get("objects_sha256") not in (None, objects_digest(objects)):
            raise StalePlanError(
                "the rendered objects differ from the plan", node=node.id, hint="run envctl plan again"
            )
        blocked = request.approve(plan)
        if blocked:
            return Applied(plan, blocked=blocked)
        self.progress(f"{node.id}: applying {len(objects)} objects")
        # the dry-runs of this run's plan stand (re-checked by resourceVersion) unless a node this
        # layer depends on was applied since: a CRD or webhook it changed may judge objects anew
        reuse = not request.same_inputs or not request.upstream_applied
        deletes = frozenset(c.address for c in plan.changes if c.action is Action.DELETE)
        applied = apply_layer(kube, node, objects, reuse_plan=reuse, planned_deletes=deletes)
        outputs = Outputs(read_layer_outputs(kube, node)) if node.layer and node.layer.outputs else None
        return Applied(applied, outputs)

    def plan_delete(self, node: Node, plan_dir: Path, leaving: frozenset[str]) -> NodePlan:
        return plan_delete_layer(self.kube(), node.id, leaving)

    def delete(self, node: Node, request: DeleteRequest) -> Applied:
        blocked = request.approve(request.planned)
        if blocked:
            return Applied(request.planned, blocked=blocked)
        planned = {c.address for c in request.planned.changes if c.action is Action.DELETE}
        self.progress(f"{node.id}: deleting {len(planned)} objects")
        return Applied(delete_layer(self.kube(), node.id, planned, request.leaving))

    def outputs(self, node: Node) -> Outputs | None:
        if node.layer is None or not node.layer.outputs:
            return None
        try:
            return Outputs(read_layer_outputs(self.kube(), node))
        except AccessError:
            raise  # the cluster is there but refuses envctl: never "not applied yet"
        except (EngineError, UnavailableError):
            return None  # not applied yet (or its cluster not there yet): downstream inputs stay pending

    def exists(self, node: Node, outputs: Mapping[str, Any] | None) -> bool:
        return read_inventory(self.kube(), node.id).exists

    def drift(self, node: Node, inputs: Mapping[str, Any], workdir: Path) -> NodePlan:
        objects = render_layer(self.env, self.snapshot, node, inputs, self.sensitive_inputs(node))
        return drift_layer(self.kube(), node, objects)

    def own_drift(self, change: Change, cascading: bool) -> bool:
        # A field that differs only because its inputs moved upstream (nobody else touched it) is
        # the cascade, not drift of its own; another manager's edit or a missing object is drift.
        return not (cascading and change.action is Action.UPDATE and not change.manager)


def check_plaintext_secrets(snapshot: Snapshot, node: Node, objects: list[dict[str, Any]]) -> None:
    """Refuse ``kind: Secret`` with values in Git unless the layer allows it; names keys, never values."""
    if node.layer is None or node.layer.allow_secrets:
        return
    found = plaintext_secrets(objects)
    if found:
        keys = sorted(
            {
                k
                for o in objects
                if o.get("kind") == "Secret"
                for k in {**(o.get("data") or {}), **(o.get("stringData") or {})}
            }
        )
        raise ConfigError(
            f"plaintext Secret in Git: {', '.join(found)} (keys: {', '.join(keys)})",
            node=node.id,
            location=_secret_location(snapshot, node),
            hint="keep secret values out of Git (an external secret store, or SOPS-encrypted files); "
            "or set allow_secrets: true in layer.yaml if this is deliberate",
        )


def _secret_location(snapshot: Snapshot, node: Node) -> Location:
    """The file and line of the first ``data:``/``stringData:`` of a Secret in the layer's manifests."""
    assert node.layer is not None
    files = list(node.layer.manifests)
    if node.layer.kustomize:
        return Location(f"{node.path}/kustomization.yaml")
    for f in files:
        try:
            text = snapshot.read_bytes(f).decode("utf-8", "replace")
            docs = list(yaml.compose_all(text, yaml.SafeLoader))
        except (yaml.YAMLError, RecursionError, EnvctlError):
            continue
        for doc in docs:
            if not isinstance(doc, yaml.MappingNode):
                continue
            fields = {k.value: v for k, v in doc.value if isinstance(k, yaml.ScalarNode)}
            kind = fields.get("kind")
            if isinstance(kind, yaml.ScalarNode) and kind.value == "Secret":
                for key, _ in doc.value:
                    if isinstance(key, yaml.ScalarNode) and key.value in ("data", "stringData"):
                        return Location(f, key.start_mark.line + 1)
    return Location(node.path)
