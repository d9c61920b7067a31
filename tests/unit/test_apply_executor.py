"""The apply executor (``app.apply.apply_bundle``) driven through fake node adapters.

No Terraform, no cluster: the Session's adapter table is replaced by fakes that record what they
were asked, so resume, re-planning, failures, independent branches and Ctrl-C are specified here
by what the executor does, not by what an engine happens to do. The environment is BASE_FILES:
stack.network -> stack.database -> layer.app <- layer.platform.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from unithelpers import MakeRepo

from envctl.app.apply import apply_bundle
from envctl.app.plan import plan_environment
from envctl.app.session import Session
from envctl.core.adapter import AdapterTraits, Applied, ApplyRequest, Upstream
from envctl.core.approval import ChangeClass, Consent
from envctl.core.changes import Action, Change, NodePlan, Outputs
from envctl.core.errors import EngineError
from envctl.core.graph import EnvGraph
from envctl.core.model import Node, Ref
from envctl.core.results import ApplyResult, PlanResult
from envctl.core.schedule import Status
from envctl.repo import load_environment, open_snapshot
from envctl.store import read_json

OUTPUTS = {"stack.network": {"vpc_id": "vpc-9"}, "stack.database": {"endpoint": "db:5432"}}


class FakeAdapter:
    """A node kind whose nodes plan one create and 'apply' by recording the call.

    ``on_apply[node]``: runs instead of a normal apply (raise to fail, signal to interrupt);
    ``replan[node]``: the address a re-plan with new upstream outputs creates instead.
    """

    def __init__(self, traits: AdapterTraits, world: dict[str, dict[str, Any]]) -> None:
        self.traits = traits
        self.world = world  # outputs of applied nodes: the fake's live world
        self.applied: list[str] = []
        self.on_apply: dict[str, Callable[[], None]] = {}
        self.replan: dict[str, str] = {}
        self.inputs: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def extra_refs(self, node: Node) -> Iterable[Ref]:
        return ()

    def sensitive_outputs(self, node: Node) -> frozenset[str]:
        return frozenset()

    def declared_outputs(self, node: Node) -> frozenset[str] | None:
        return None

    def prewarm(self, nodes: Sequence[Node], workers: int, *, applying: bool) -> None:
        return None

    def precheck(self, node: Node, inputs: Mapping[str, Any]) -> None:
        return None

    def validate(self, node: Node, inputs: Mapping[str, Any]) -> list[str]:
        return []

    def pending_note(self, node: Node, inputs: Mapping[str, Any], what: str) -> str:
        return f"fake {what}"

    def plan(self, node: Node, inputs: Mapping[str, Any], plan_dir: Path, upstream: Upstream) -> NodePlan:
        return NodePlan(node.id, (Change(f"{node.id}.thing", Action.CREATE, None, {"x": 1}),))

    def state_fingerprint(self, node: Node) -> str | None:
        return None

    def live_plan(self, node: Node, inputs: Mapping[str, Any]) -> NodePlan | None:
        return None

    def apply(self, node: Node, request: ApplyRequest) -> Applied:
        if node.id in self.on_apply:
            self.on_apply[node.id]()
        plan = request.planned
        if not request.same_inputs:
            address = self.replan.get(node.id, f"{node.id}.thing")
            plan = NodePlan(node.id, (Change(address, Action.CREATE, None, {"x": 1}),))
        blocked = request.approve(plan)  # the gate, with the exact plan, before any write
        if blocked:
            return Applied(plan, blocked=blocked)
        with self.lock:
            self.inputs[node.id] = dict(request.inputs)
            self.applied.append(node.id)
            self.world[node.id] = OUTPUTS.get(node.id, {})
        return Applied(plan, Outputs(self.world[node.id]))

    def outputs(self, node: Node) -> Outputs | None:
        with self.lock:
            values = self.world.get(node.id)
        return Outputs(values) if values is not None else None

    def exists(self, node: Node, outputs: Mapping[str, Any] | None) -> bool:
        return node.id in self.world

    def drift(self, node: Node, inputs: Mapping[str, Any], workdir: Path) -> NodePlan:
        return NodePlan(node.id)

    def own_drift(self, change: Change, cascading: bool) -> bool:
        return True


class Fixture:
    def __init__(self, root: Path, parallelism: int = 2) -> None:
        self.world: dict[str, dict[str, Any]] = {}
        self.stacks = FakeAdapter(AdapterTraits(False, False, ChangeClass.TERRAFORM), self.world)
        self.layers = FakeAdapter(AdapterTraits(False, True, ChangeClass.KUBERNETES), self.world)
        self.messages: list[str] = []
        self.interrupted = threading.Event()
        snapshot = open_snapshot(root, None)
        env = load_environment(snapshot, "dev")
        self.session = Session(
            root,
            snapshot,
            env,
            EnvGraph(env),
            parallelism=parallelism,
            progress=self.progress,
            adapters={"stack": self.stacks, "layer": self.layers},
        )

    def progress(self, msg: str) -> None:
        self.messages.append(msg)
        if msg.startswith("interrupt:"):
            self.interrupted.set()

    def plan(self) -> PlanResult:
        result = plan_environment(self.session)
        assert not result.errors, result.errors
        return result

    def apply(self, result: PlanResult, **kw: Any) -> ApplyResult:
        kw.setdefault("consent", Consent(everything=True))
        return apply_bundle(self.session, result.bundle, result.plan_dir, prompt=None, **kw)

    @property
    def applied(self) -> list[str]:
        return self.stacks.applied + self.layers.applied


@pytest.fixture
def fx(make_repo: MakeRepo) -> Fixture:
    return Fixture(make_repo())


def statuses(res: ApplyResult) -> dict[str, Status]:
    return {n: r.status for n, r in res.results.items()}


def test_a_node_waiting_on_an_upstream_is_planned_as_pending(fx: Fixture) -> None:
    result = fx.plan()
    assert result.bundle.nodes["stack.network"].counts.add == 1
    database = result.bundle.nodes["stack.database"]
    assert database.pending_upstream == ("vpc_id",)
    assert database.notes == ("fake once stack.network is applied (inputs vpc_id change)",)


def test_everything_converges_in_dependency_order(fx: Fixture) -> None:
    res = fx.apply(fx.plan())
    assert set(statuses(res).values()) == {Status.DONE}
    order = fx.applied
    assert order.index("stack.network") < order.index("stack.database") < order.index("layer.app")
    assert order.index("layer.platform") < order.index("layer.app")
    # the node planned as pending was applied with the upstream's real outputs
    assert fx.stacks.inputs["stack.database"]["vpc_id"] == "vpc-9"
    assert fx.layers.inputs["layer.app"]["endpoint"] == "db:5432"


def test_dependents_of_a_failed_node_are_skipped_and_independent_branches_finish(fx: Fixture) -> None:
    def fail() -> None:
        raise EngineError("the fake cloud said no")

    fx.stacks.on_apply["stack.network"] = fail
    res = fx.apply(fx.plan())
    assert statuses(res) == {
        "stack.network": Status.FAILED,
        "layer.platform": Status.DONE,
        "stack.database": Status.SKIPPED,
        "layer.app": Status.SKIPPED,
    }
    assert fx.applied == ["layer.platform"]
    assert res.errors["stack.network"].node == "stack.network"
    assert "the fake cloud said no" in res.results["stack.network"].reason


def test_without_consent_the_gate_holds_what_needs_approval_and_the_rest_is_written(fx: Fixture) -> None:
    result = fx.plan()
    res = fx.apply(result, consent=Consent(how="envctl approve X"))
    # policy: terraform (the default); the stacks are held, what waits for them is skipped
    assert statuses(res) == {
        "stack.network": Status.BLOCKED,
        "layer.platform": Status.DONE,
        "stack.database": Status.SKIPPED,
        "layer.app": Status.SKIPPED,
    }
    assert res.results["stack.network"].reason == "needs approval: envctl approve X"
    assert fx.applied == ["layer.platform"]


def test_a_replan_that_changes_stops_its_branch_for_a_new_approval(fx: Fixture) -> None:
    fx.stacks.replan["stack.database"] = "stack.database.other"  # the new outputs change the plan
    result = fx.plan()
    res = fx.apply(result, consent=Consent.of_bundle(result.bundle))
    assert res.results["stack.database"].status is Status.BLOCKED
    assert "changed after re-planning" in res.results["stack.database"].reason
    assert "envctl apply -e dev in a terminal" in res.results["stack.database"].reason
    assert res.results["layer.app"].status is Status.SKIPPED
    assert "stack.database" not in fx.applied and "layer.app" not in fx.applied
    assert res.results["stack.network"].status is Status.DONE
    assert res.results["layer.platform"].status is Status.DONE


def test_a_replan_that_the_prompt_approves_goes_ahead(fx: Fixture) -> None:
    fx.stacks.replan["stack.database"] = "stack.database.other"
    asked: list[str] = []

    def prompt(node: str, plan: NodePlan | None) -> bool:
        asked.append(node)
        return True

    result = fx.plan()
    consent = Consent.of_bundle(result.bundle)
    res = apply_bundle(fx.session, result.bundle, result.plan_dir, consent=consent, prompt=prompt)
    assert asked == ["stack.database"]
    assert set(statuses(res).values()) == {Status.DONE}


def test_resume_after_a_kill_skips_what_the_killed_run_finished(fx: Fixture) -> None:
    def killed() -> None:
        raise KeyboardInterrupt  # the process dies while this node runs

    fx.stacks.on_apply["stack.database"] = killed
    result = fx.plan()
    with pytest.raises(KeyboardInterrupt):
        fx.apply(result)
    first = list(fx.applied)
    assert "stack.network" in first and "stack.database" not in first

    del fx.stacks.on_apply["stack.database"]
    fx.stacks.applied.clear()
    fx.layers.applied.clear()
    res = fx.apply(result, resume=True)
    assert set(statuses(res).values()) == {Status.DONE}
    for n in first:
        assert res.results[n].reason == "resumed"
    assert sorted(fx.applied) == sorted({"stack.database", "layer.app", "layer.platform"} - set(first))


def test_first_interrupt_lets_the_running_node_finish_and_starts_no_other(make_repo: MakeRepo) -> None:
    fx = Fixture(make_repo(), parallelism=1)
    first: list[str] = []

    def interrupt() -> None:
        if not first:
            first.append("sent")
            os.kill(os.getpid(), signal.SIGINT)
            assert fx.interrupted.wait(30), "the executor never saw the interrupt"

    fx.stacks.on_apply["stack.network"] = interrupt
    fx.layers.on_apply["layer.platform"] = interrupt
    res = fx.apply(fx.plan())
    assert res.interrupted
    done = [n for n, st in statuses(res).items() if st is Status.DONE]
    assert len(done) == 1 and fx.applied == done  # the running node finished
    assert {st for n, st in statuses(res).items() if n not in done} == {Status.NOT_STARTED}
    journal = read_json(fx.session.store.journal_path(fx.session.env.name, res.run_id))
    assert journal["interrupted"] is True


def test_a_second_interrupt_exits_at_once(make_repo: MakeRepo) -> None:
    fx = Fixture(make_repo(), parallelism=1)

    def interrupt_twice() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        assert fx.interrupted.wait(30), "the executor never saw the first interrupt"
        os.kill(os.getpid(), signal.SIGINT)

    fx.stacks.on_apply["stack.network"] = interrupt_twice
    fx.layers.on_apply["layer.platform"] = interrupt_twice
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        fx.apply(fx.plan())
    assert any(m.startswith("second interrupt") for m in fx.messages)
    assert len(fx.applied) <= 1  # nothing started after the first interrupt
    assert signal.getsignal(signal.SIGINT) is before  # the executor's handler is gone
