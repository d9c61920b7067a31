"""envctl's own files under ``<repo>/.envctl/``: plan bundles, approvals, run journals, locks.

Every write is atomic (temp file, fsync, rename), so a run killed at any point leaves either the
old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envctl.core.approval import Approval
from envctl.core.bundle import PlanBundle, canonical, check_id, sha256
from envctl.core.errors import LockedError, StalePlanError, UsageError, describe_holder
from envctl.core.secrets import KNOWN


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


@dataclass(frozen=True)
class Store:
    """The ``.envctl`` directory of one repository checkout."""

    root: Path  # the repository root

    @property
    def base(self) -> Path:
        return self.root / ".envctl"

    def ensure_base(self) -> None:
        """Create ``.envctl/`` holding a ``.gitignore`` of ``*``: Git then never lists or walks
        envctl's own files (``git status``, untracked files for ``--changed-since``), even in a
        repository whose own ``.gitignore`` does not mention ``.envctl/``."""
        ignore = self.base / ".gitignore"
        if ignore.exists():
            return
        self.base.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError), open(ignore, "x") as f:
            f.write("# envctl's plans, state, journals and locks: not part of the repository\n*\n")

    def _write_json(self, path: Path, data: Any, *, scrub: bool = True) -> None:
        """Write a record; every known secret is masked on the way (the masking boundary).

        Plan bundles are the exception (``scrub=False``): their plans are scrubbed before the
        fingerprint is taken, and masking afterwards would break the fingerprint.
        """
        self.ensure_base()
        write_json(path, KNOWN.scrub(data) if scrub else data)

    # --- plan bundles --------------------------------------------------------------------

    def new_plan_dir(self, env: str) -> tuple[str, Path]:
        self.ensure_base()  # before the plan creates anything under .envctl/ (workspaces, plans)
        plan_id = f"{env}-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        return plan_id, self.base / "plans" / plan_id

    def write_bundle(self, plan_dir: Path, bundle: PlanBundle) -> Path:
        """The bundle as compact JSON: a plan that creates large CRDs carries megabytes of them,
        which indented JSON makes ~2x larger and ~6x slower to write (`jq .` shows it indented).
        The bytes are the bundle's canonical JSON (sorted keys, compact, ASCII), assembled from the
        forms its fingerprint was made of: no second serialisation.

        Not scrubbed here: its plans are scrubbed before the fingerprint is taken, and masking
        afterwards would break the fingerprint."""
        check_id(bundle.id)
        check_id(bundle.environment, "environment")
        path = plan_dir / "bundle.json"
        self.ensure_base()
        atomic_write(path, bundle.canonical_json() + b"\n")
        return path

    def resolve_plan(self, ref: str) -> Path:
        """A plan given as a bundle directory, a bundle.json path, or a plan id."""
        p = Path(ref)
        for cand in (p / "bundle.json", p, self.base / "plans" / ref / "bundle.json"):
            if cand.is_file():
                return cand
        raise UsageError(f"no plan {ref!r}", hint="give the directory envctl plan wrote, or its plan id")

    def read_bundle(self, ref: str) -> tuple[PlanBundle, Path]:
        path = self.resolve_plan(ref)
        try:
            data = read_json(path)
        except (OSError, ValueError, RecursionError) as e:
            raise StalePlanError(
                f"{path} cannot be read as a plan bundle ({e.__class__.__name__})",
                hint="run envctl plan again",
            ) from None
        bundle = PlanBundle.from_json(data, where=str(path))
        plan_dir = path.parent
        for node in bundle.order:
            arts = bundle.nodes[node].artifacts
            if "planfile" in arts:
                f = plan_dir / arts["planfile"]
                if not f.is_file() or sha256(f.read_bytes()) != arts.get("planfile_sha256"):
                    raise StalePlanError(
                        f"the saved Terraform plan of {node} is missing or was modified",
                        node=node,
                        hint="run envctl plan again",
                    )
        return bundle, plan_dir

    # --- approvals -----------------------------------------------------------------------

    def _approval_path(self, plan_id: str) -> Path:
        return self.base / "approvals" / f"{check_id(plan_id)}.json"

    def record_approval(self, approval: Approval) -> Path:
        path = self._approval_path(approval.plan_id)
        self._write_json(path, approval.to_json())
        return path

    def read_approval(self, plan_id: str) -> Approval | None:
        path = self._approval_path(plan_id)
        if not path.is_file():
            return None
        try:
            return Approval.from_json(read_json(path))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def consume_approval(self, plan_id: str) -> None:
        """Approvals are single-use: the apply that used one removes it."""
        with contextlib.suppress(FileNotFoundError):
            self._approval_path(plan_id).unlink()

    # --- applied plans and journals --------------------------------------------------------

    def _applied_path(self, plan_id: str) -> Path:
        return self.base / "applied" / f"{check_id(plan_id)}.json"

    def mark_applied(self, bundle: PlanBundle, run_id: str) -> None:
        self._write_json(
            self._applied_path(bundle.id),
            {"plan": bundle.id, "fingerprint": bundle.fingerprint, "run": run_id, "at": now()},
        )

    def was_applied(self, plan_id: str) -> bool:
        return self._applied_path(plan_id).exists()

    def journal_path(self, env: str, run_id: str) -> Path:
        return self.base / "runs" / check_id(env, "environment") / f"{check_id(run_id, 'run id')}.json"

    def write_journal(self, env: str, run_id: str, journal: dict[str, Any]) -> None:
        self._write_json(self.journal_path(env, run_id), journal)

    def journals(self, env: str) -> list[dict[str, Any]]:
        d = self.base / "runs" / env
        out = []
        for p in sorted(d.glob("*.json")) if d.is_dir() else []:
            with contextlib.suppress(OSError, ValueError):
                out.append(read_json(p))
        out.sort(key=lambda j: str(j.get("started", "")))
        return out

    def last_done(self, env: str, plan_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Per node, the journal entry (with its ``run``) of its last successful converge.

        ``plan_id`` limits the search to runs of that plan (what ``--resume`` may skip).
        """
        last: dict[str, dict[str, Any]] = {}
        for j in self.journals(env):
            if plan_id is not None and j.get("plan") != plan_id:
                continue
            for n, r in dict(j.get("nodes", {})).items():
                if r.get("status") == "done":
                    last[n] = {**r, "run": j.get("run")}
        return last if plan_id is not None else _without_deleted(last)

    def last_applied(self, env: str) -> dict[str, dict[str, Any]]:
        """Per node, the journal entry of the last run that wrote its changes, converged or not.

        A node whose readiness wait timed out or was interrupted, or whose run exited while it
        ran, was still applied with that run's inputs: its entry carries their ``inputs_hash``
        (a node that failed before writing anything has none). Drift and status read this.
        """
        last: dict[str, dict[str, Any]] = {}
        for j in self.journals(env):
            for n, r in dict(j.get("nodes", {})).items():
                if r.get("status") == "done" or r.get("inputs_hash"):
                    last[n] = {**r, "run": j.get("run")}
        return _without_deleted(last)

    def last_drift(self, env: str) -> dict[str, Any] | None:
        p = self.base / "drift" / env / "last.json"
        try:
            data = read_json(p)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_drift(self, env: str, summary: dict[str, Any]) -> None:
        self._write_json(self.base / "drift" / env / "last.json", summary)

    def forget_environment(self, env: str) -> None:
        """What ``envctl destroy`` of the whole environment leaves behind locally: its lock file
        and its last drift record (plans, approvals and run journals stay: they are history)."""
        for p in (self.lock_path(env), self.base / "drift" / env / "last.json"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        with contextlib.suppress(OSError):
            (self.base / "drift" / env).rmdir()

    # --- environment lock without a cluster ---------------------------------------------

    def lock_path(self, env: str) -> Path:
        return self.base / "locks" / f"{env}.lock"

    @contextlib.contextmanager
    def file_lock(self, env: str, holder: dict[str, Any]) -> Iterator[None]:
        """An exclusive flock; the kernel releases it when the holder dies, even on kill -9."""
        path = self.lock_path(env)
        self.ensure_base()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # the holder writes its identity right after taking the lock: give it a moment
                raw = ""
                for _ in range(20):
                    raw = os.pread(fd, 4096, 0).decode(errors="replace").strip()
                    if raw.startswith("{") and raw.endswith("}"):
                        break
                    time.sleep(0.05)
                try:
                    who = describe_holder(json.loads(raw))
                except ValueError:
                    who = "another envctl run"
                raise LockedError(
                    f"environment {env} is locked by {who}",
                    hint="wait for that run to finish (or use --lock-timeout)",
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, canonical(holder), 0)
            yield
        finally:
            os.close(fd)

    def read_file_lock(self, env: str) -> dict[str, Any] | None:
        """The holder recorded in the lock file if the lock is currently held, else None."""
        path = self.lock_path(env)
        if not path.exists():
            return None
        fd = os.open(path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                raw = os.pread(fd, 4096, 0).decode(errors="replace")
                with contextlib.suppress(ValueError):
                    data = json.loads(raw)
                    return data if isinstance(data, dict) else {"holder": "unknown"}
                return {"holder": "unknown"}
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


def _without_deleted(last: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A node whose last entry is its deletion (``envctl destroy``, removed from Git) is gone:
    its journal entries go with it (the run journals keep the history)."""
    return {n: r for n, r in last.items() if not r.get("deleted")}


def holder_identity(run_id: str) -> dict[str, Any]:
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or str(os.getuid())
    return {
        "holder": f"{user}@{socket.gethostname()}",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "run": run_id,
        "since": now(),
    }
