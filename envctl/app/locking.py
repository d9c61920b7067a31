"""The one lock per environment: a local file lock and, when it has layers, a Lease in its cluster."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from envctl.app.session import Session
from envctl.core.errors import LockedError
from envctl.store import holder_identity


@contextmanager
def environment_lock(s: Session, run_id: str, timeout: float = 0.0) -> Iterator[dict[str, Any]]:
    """The one lock per environment: a Lease in its cluster (when it has layers) and a local file lock.

    The file lock makes two runs on one checkout fail fast without a round trip; the Lease makes
    two runs anywhere exclusive, and expires when its holder dies.
    """
    if s.held_lock is not None:  # this command already holds it (hold_environment_lock)
        yield s.held_lock
        return
    holder = holder_identity(run_id)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with s.store.file_lock(s.env.name, holder):
                if s.in_cluster:
                    from envctl.kube.lease import lease_lock

                    with lease_lock(s.kube(), s.env.name, holder):
                        yield holder
                else:
                    yield holder
            return
        except LockedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def lock_holder(s: Session) -> dict[str, Any] | None:
    """Who holds the environment lock now (the file lock, then the cluster's Lease), or None.

    Raises ``UnavailableError`` when the environment has a cluster that cannot be reached.
    """
    holder = s.store.read_file_lock(s.env.name)
    if holder is None and s.in_cluster:
        from envctl.kube.lease import read_lease

        holder = read_lease(s.kube(), s.env.name)
    return holder


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"


@contextmanager
def hold_environment_lock(s: Session, timeout: float = 0.0) -> Iterator[dict[str, Any]]:
    """Hold the environment lock for a whole command, so that ``apply`` plans, asks and applies
    under it: a second run fails fast naming the holder instead of planning against a state
    that the first run's Terraform is writing. ``apply_bundle`` inside it uses this lock.
    """
    with environment_lock(s, new_run_id(), timeout) as holder:
        s.held_lock = holder
        try:
            yield holder
        finally:
            s.held_lock = None
