"""envctl's own files: atomic writes, tamper-evident bundles, single-use approvals, the file lock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from envctl.core.approval import Approval
from envctl.core.bundle import PlanBundle, sha256
from envctl.core.changes import Action, Change, NodePlan
from envctl.core.errors import LockedError, StalePlanError
from envctl.store import Store, atomic_write, holder_identity


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    f = tmp_path / "d" / "x.json"
    atomic_write(f, b"one")
    atomic_write(f, b"two")
    assert f.read_bytes() == b"two"
    assert os.listdir(f.parent) == ["x.json"]


def _bundle_with_planfile(store: Store, tmp_path: Path) -> Path:
    plan_dir = tmp_path / "plan"
    (plan_dir / "stacks").mkdir(parents=True)
    pf = plan_dir / "stacks" / "net.tfplan"
    pf.write_bytes(b"PLANFILE")
    node = NodePlan(
        "stack.net",
        (Change("a", Action.CREATE),),
        artifacts={"planfile": "stacks/net.tfplan", "planfile_sha256": sha256(b"PLANFILE")},
    )
    b = PlanBundle("dev-1", "dev", "c", False, "t", ("stack.net",), {"stack.net": node})
    store.write_bundle(plan_dir, b)
    return plan_dir


def test_a_modified_saved_terraform_plan_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path)
    plan_dir = _bundle_with_planfile(store, tmp_path)
    bundle, _ = store.read_bundle(str(plan_dir))
    assert bundle.id == "dev-1"
    (plan_dir / "stacks" / "net.tfplan").write_bytes(b"PLANFILF")
    with pytest.raises(StalePlanError, match="modified"):
        store.read_bundle(str(plan_dir))


def test_an_unreadable_bundle_is_stale_not_a_traceback(tmp_path: Path) -> None:
    store = Store(tmp_path)
    plan_dir = _bundle_with_planfile(store, tmp_path)
    (plan_dir / "bundle.json").write_bytes(b"{not json")
    with pytest.raises(StalePlanError):
        store.read_bundle(str(plan_dir))


def test_approvals_are_single_use(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.record_approval(Approval("dev-1", "f", "dev", "c", "alice", "t"))
    assert store.read_approval("dev-1") is not None
    store.consume_approval("dev-1")
    assert store.read_approval("dev-1") is None


def test_the_file_lock_names_its_holder_and_dies_with_it(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with store.file_lock("dev", holder_identity("run-1")):
        assert store.read_file_lock("dev") is not None
        with pytest.raises(LockedError, match="run-1"), store.file_lock("dev", holder_identity("run-2")):
            pass
    assert store.read_file_lock("dev") is None
    # a holder killed with SIGKILL releases the lock: the kernel drops the flock
    code = (
        "import os, sys, pathlib; from envctl.store import Store, holder_identity\n"
        f"s = Store(pathlib.Path({str(tmp_path)!r}))\n"
        "with s.file_lock('dev', holder_identity('dead')):\n"
        "    print('locked', flush=True); os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == -9 and "locked" in proc.stdout
    assert store.read_file_lock("dev") is None
    with store.file_lock("dev", holder_identity("run-3")):
        pass
