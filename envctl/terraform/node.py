"""The stack kind's NodeAdapter: plan, apply, outputs, validate and drift of a Terraform stack.

What ``envctl.app`` calls for every node of kind ``stack`` (``core.adapter.NodeAdapter``); the
Terraform work itself is ``envctl.terraform.stack``'s.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from envctl.core.adapter import AdapterTraits, Applied, ApplyRequest, DeleteRequest, Upstream
from envctl.core.approval import ChangeClass
from envctl.core.bundle import sha256
from envctl.core.changes import Change, NodePlan, Outputs
from envctl.core.model import Environment, Node, Ref, Snapshot
from envctl.terraform.secretinputs import secret_input_names
from envctl.terraform.stack import (
    StackContext,
    StackOutput,
    apply_stack,
    declared_outputs,
    plan_stack,
    prewarm,
    read_outputs,
    sensitive_outputs,
    validate_stack,
)
from envctl.terraform.workspace import (
    forget_stack,
    local_state_file,
    materialize,
    read_var_file,
    work_base,
)


def _outputs(outs: Mapping[str, StackOutput]) -> Outputs:
    return Outputs(
        {k: o.value for k, o in outs.items()}, frozenset(k for k, o in outs.items() if o.sensitive)
    )


class StackAdapter:
    """Terraform stacks: a plan file per plan, state checked by hash, apply of exactly that plan."""

    traits = AdapterTraits(in_cluster=False, plans_after_any_upstream=False, changes=ChangeClass.TERRAFORM)

    def __init__(
        self, env: Environment, snapshot: Snapshot, root: Path, progress: Callable[[str], None]
    ) -> None:
        self.env = env
        self.snapshot = snapshot
        self.root = root
        self.progress = progress

    @property
    def ctx(self) -> StackContext:
        return StackContext(self.env, self.snapshot, self.root)

    def extra_refs(self, node: Node) -> Iterable[Ref]:
        return ()  # every reference of a stack is in its stack.yaml inputs

    def sensitive_outputs(self, node: Node) -> frozenset[str]:
        return sensitive_outputs(self.snapshot, node)

    def declared_outputs(self, node: Node) -> frozenset[str] | None:
        return frozenset(declared_outputs(self.snapshot, node))

    def prewarm(self, nodes: Sequence[Node], workers: int, *, applying: bool) -> None:
        # Planning: at most one per core (plans are short and use the CPU). Applying: an apply
        # mostly waits on the cloud, and a worker started when its stack becomes ready would put
        # its start-up on the critical path.
        if nodes and workers > 0:
            prewarm(self.ctx, workers, beyond_cores=applying)

    def precheck(self, node: Node, inputs: Mapping[str, Any]) -> None:
        # the workspace is built: paths stay inside the repo, data "external", provisioners and
        # registry providers are refused unless allowed
        materialize(self.env, self.snapshot, self.root, node)

    def validate(self, node: Node, inputs: Mapping[str, Any]) -> list[str]:
        return list(validate_stack(self.ctx, node))

    def pending_note(self, node: Node, inputs: Mapping[str, Any], what: str) -> str:
        return f"will be planned {what}"

    def plan(self, node: Node, inputs: Mapping[str, Any], plan_dir: Path, upstream: Upstream) -> NodePlan:
        return self._saved(node, plan_stack(self.ctx, node, inputs, plan_dir / "stacks"), plan_dir)

    def _saved(self, node: Node, plan: NodePlan, plan_dir: Path) -> NodePlan:
        """The plan with its plan file relative to the bundle and the hashes apply checks."""
        planfile = Path(plan.artifacts["planfile"])
        arts = dict(plan.artifacts)
        arts["planfile"] = planfile.relative_to(plan_dir).as_posix()
        arts["planfile_sha256"] = sha256(planfile.read_bytes())
        arts["state_sha256"] = self.state_fingerprint(node)
        arts.pop("workdir", None)
        return dataclasses.replace(plan, artifacts=arts)

    def state_fingerprint(self, node: Node) -> str:
        if self.env.terraform.backend != "local":  # a remote state is locked, not hashed
            return ""
        f = local_state_file(self.root, self.env.name, node.name)
        return sha256(f.read_bytes()) if f.is_file() else "absent"

    def live_plan(self, node: Node, inputs: Mapping[str, Any]) -> NodePlan | None:
        return None  # a stack's plan is checked by its state's hash (state_fingerprint)

    def apply(self, node: Node, request: ApplyRequest) -> Applied:
        planned, plan = request.planned, request.planned
        if request.same_inputs and "planfile" in planned.artifacts:
            planfile = request.plan_dir / planned.artifacts["planfile"]
        else:
            self.progress(f"{node.id}: re-planning with the new upstream outputs")
            plan = plan_stack(self.ctx, node, request.inputs, request.plan_dir / "replans")
            planfile = Path(plan.artifacts["planfile"])
        blocked = request.approve(plan)
        if blocked:
            return Applied(plan, blocked=blocked)
        if plan.has_changes:
            self.progress(f"{node.id}: applying")
            return Applied(plan, _outputs(apply_stack(self.ctx, node, planfile)))
        return Applied(plan, _outputs(read_outputs(self.ctx, node)))

    def plan_delete(self, node: Node, plan_dir: Path, leaving: frozenset[str]) -> NodePlan:
        state = local_state_file(self.root, self.env.name, node.name)
        if not self.snapshot.is_dir(node.path):
            where = (
                state
                if self.env.terraform.backend == "local"
                else f"its {self.env.terraform.backend} backend"
            )
            return NodePlan(
                node.id,
                kept=(
                    f"Terraform state in {where}: kept: no journal entry names a commit holding the "
                    "stack's configuration, so it cannot be destroyed; destroy it by hand in "
                    f"{work_base(self.root, self.env.name, node.name)}, then delete the state",
                ),
            )
        if self.env.terraform.backend == "local" and self.state_fingerprint(node) == "absent":
            return NodePlan(node.id, notes=("no Terraform state: nothing to destroy",))
        # destroyed with the inputs it was last planned (and applied) with: its variables, the
        # values its providers were configured from; encrypted inputs are read again from Git
        ws = materialize(self.env, self.snapshot, self.root, node)
        secret = set(secret_input_names(self.snapshot, node))
        inputs = {k: v for k, v in read_var_file(ws).items() if k not in secret}
        plan = plan_stack(self.ctx, node, inputs, plan_dir / "stacks", destroy=True)
        return self._saved(node, plan, plan_dir)

    def delete(self, node: Node, request: DeleteRequest) -> Applied:
        planned = request.planned
        blocked = request.approve(planned)
        if blocked:
            return Applied(planned, blocked=blocked)
        if planned.kept:
            return Applied(planned)  # nothing envctl can destroy; the state stays recorded
        if "planfile" in planned.artifacts:
            self.progress(f"{node.id}: destroying")
            apply_stack(self.ctx, node, request.plan_dir / planned.artifacts["planfile"])
        forget_stack(self.root, self.env.name, node.name)
        return Applied(planned)

    def outputs(self, node: Node) -> Outputs | None:
        return _outputs(read_outputs(self.ctx, node))

    def exists(self, node: Node, outputs: Mapping[str, Any] | None) -> bool:
        return bool(outputs)

    def drift(self, node: Node, inputs: Mapping[str, Any], workdir: Path) -> NodePlan:
        return plan_stack(self.ctx, node, inputs, workdir / node.name, refresh_only=True)

    def own_drift(self, change: Change, cascading: bool) -> bool:
        return True  # a refresh-only plan shows changes made outside Terraform only


def stacks_with_state(root: Path, env: str) -> list[str]:
    """Ids of the stacks of ``env`` with a non-empty local state (what envctl keeps converged)."""
    base = local_state_file(root, env, "x").parent.parent
    found = []
    for f in sorted(base.glob("*/terraform.tfstate")) if base.is_dir() else []:
        try:
            if f.stat().st_size:
                found.append(f"stack.{f.parent.name}")
        except OSError:
            continue
    return found


def forget_environment(root: Path, env: str) -> None:
    """Remove what is left of an environment's workspaces (its CLI configuration) once it is gone."""
    shutil.rmtree(work_base(root, env, "x").parent, ignore_errors=True)
