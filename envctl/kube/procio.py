"""Run a renderer (``helm template``, ``kubectl kustomize``) and read its output within bounds.

``run_bounded`` reads the command's stdout up to a byte limit - a renderer that prints more is
killed while it prints, never buffered - optionally kills it after a number of seconds, and keeps
the tail of its stderr. The caller turns the outcome into its own errors. Used by
``envctl.kube.helm`` and ``envctl.kube.kustomize``; imports only the standard library and core errors.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from envctl.core.errors import ConfigError

CHUNK = 1 << 16
STDERR_TAIL = 1 << 16  # the end of stderr is what a renderer says about its failure


@dataclass(frozen=True)
class Finished:
    """A renderer that ran to its end (or was killed at ``timeout``)."""

    code: int
    stdout: bytes
    stderr: str  # its last STDERR_TAIL bytes
    timed_out: bool


def run_bounded(
    cmd: Sequence[str],
    *,
    limit: int,
    too_large: ConfigError,
    timeout: float | None = None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Finished:
    """Run ``cmd`` with no stdin; its stdout up to ``limit`` bytes, else it is killed and
    ``too_large`` raised. Raises ``OSError`` when the command cannot start."""
    timed_out = threading.Event()
    chunks: list[bytes] = []
    with (
        tempfile.TemporaryFile() as err,
        subprocess.Popen(
            list(cmd), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err
        ) as proc,
    ):

        def stop() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, stop) if timeout is not None else None
        if timer is not None:
            timer.start()
        try:
            assert proc.stdout is not None
            size = 0
            while chunk := proc.stdout.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    proc.kill()
                    raise too_large
                chunks.append(chunk)
            code = proc.wait()
        finally:
            if timer is not None:
                timer.cancel()
        end = err.seek(0, os.SEEK_END)
        err.seek(max(0, end - STDERR_TAIL))
        stderr = err.read().decode("utf-8", "replace")
    return Finished(code, b"".join(chunks), stderr, timed_out.is_set())
