"""Helpers for the safety suite: isolated copies of the example environment and the CLI run on them.

``make_repo`` builds a Git repository holding ``modules/`` and a copy of ``environments/dev``
under a unique environment name (namespace ``app-<name>`` instead of ``app-dev``); ``EnvRepo.run``
runs the ``envctl`` CLI on it as a subprocess; ``live`` reads an object back from the cluster and
``cleanup_cluster`` deletes what an environment created there. The fixtures built on these live in
``conftest.py``; test modules import helpers from here, never ``from conftest import`` (every test
directory's conftest is the top-level module ``conftest``, so that import is ambiguous).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
ENVCTL = str(Path(sys.executable).with_name("envctl"))
SYSTEM_NS = "envctl-system"


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=safety@envctl.test", "-c", "user.name=safety", *args],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout


@dataclass
class Run:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return (
            f"envctl {' '.join(self.args)} -> exit {self.returncode} in {self.seconds:.1f}s\n"
            f"--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}"
        )


@dataclass
class EnvRepo:
    """A throwaway environment repository and the CLI run on it."""

    root: Path
    name: str
    kubeconfig: str
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def ns(self) -> str:
        return f"app-{self.name}"

    @property
    def envdir(self) -> Path:
        return self.root / "environments" / self.name

    @property
    def dotdir(self) -> Path:
        return self.root / ".envctl"

    def path(self, rel: str) -> Path:
        return self.envdir / rel

    def write(self, rel: str, text: str | bytes) -> Path:
        p = self.envdir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text)
        return p

    def commit(self, msg: str = "change") -> None:
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "--allow-empty", "-m", msg)

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENVCTL_")}
        env.update({"KUBECONFIG": self.kubeconfig, "NO_COLOR": "1", "COLUMNS": "200"})
        env.update(self.extra_env)
        env.update(extra or {})
        return env

    def run(self, *args: str, timeout: float = 180, env: dict[str, str] | None = None) -> Run:
        start = time.monotonic()
        try:
            proc = subprocess.run(
                [ENVCTL, *args], cwd=self.root, env=self.environ(env), capture_output=True,
                text=True, timeout=timeout, stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
            pytest.fail(f"envctl {' '.join(args)} did not finish within {timeout}s\n{out}\n{err}")
        return Run(tuple(args), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start envctl in its own process group (so a test can kill it and its children)."""
        return subprocess.Popen(
            [ENVCTL, *args], cwd=self.root, env=self.environ(env), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True,
        )

    def apply(self, *extra: str, env: dict[str, str] | None = None) -> Run:
        return self.run("apply", "-e", self.name, "--auto-approve", *extra, env=env)

    def plan(self, *extra: str, env: dict[str, str] | None = None) -> Run:
        return self.run("plan", "-e", self.name, *extra, env=env)

    def state_files(self) -> list[Path]:
        base = self.dotdir / "state" / self.name
        return sorted(base.rglob("*.tfstate")) if base.exists() else []

    def plan_dirs(self) -> list[Path]:
        base = self.dotdir / "plans"
        return sorted(p for p in base.iterdir() if p.is_dir()) if base.exists() else []


def make_repo(root: Path, name: str, kubeconfig_path: str, *, source: str = "dev") -> EnvRepo:
    """Copy ``modules/`` and ``environments/<source>`` into ``root`` as environment ``name``."""
    fresh = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    if fresh:
        shutil.copytree(REPO / "modules", root / "modules")
    envdir = root / "environments" / name
    shutil.copytree(REPO / "environments" / source, envdir)
    for f in envdir.rglob("*.yaml"):
        text = f.read_text().replace(f"app-{source}", f"app-{name}")
        if f.name == "environment.yaml":
            text = text.replace(f"name: {source}\n", f"name: {name}\n")
        f.write_text(text)
    if fresh:
        (root / ".gitignore").write_text(".envctl/\n")
        git(root, "init", "-q", "-b", "main")
    repo = EnvRepo(root, name, kubeconfig_path)
    repo.commit("initial")
    return repo


def unique_name(prefix: str = "s") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def cleanup_cluster(api: client.ApiClient, names: Sequence[str]) -> None:
    core = client.CoreV1Api(api)
    coord = client.CoordinationV1Api(api)
    for name in names:
        for call in (
            lambda n=name: core.delete_namespace(f"app-{n}", propagation_policy="Background"),
            lambda n=name: coord.delete_namespaced_lease(f"envctl-lock-{n}", SYSTEM_NS),
            lambda n=name: core.delete_collection_namespaced_config_map(
                SYSTEM_NS, label_selector=f"envctl.io/environment={n}"
            ),
        ):
            try:
                call()
            except ApiException as e:
                if e.status != 404:
                    raise


def live(api: client.ApiClient, kind: str, ns: str, name: str) -> dict[str, Any] | None:
    """The live object as a dict, or None when it does not exist."""
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    reads = {
        "Namespace": lambda: core.read_namespace(name),
        "ConfigMap": lambda: core.read_namespaced_config_map(name, ns),
        "Secret": lambda: core.read_namespaced_secret(name, ns),
        "Service": lambda: core.read_namespaced_service(name, ns),
        "Deployment": lambda: apps.read_namespaced_deployment(name, ns),
    }
    try:
        obj = reads[kind]()
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    data: dict[str, Any] = api.sanitize_for_serialization(obj)
    return data


APP_OBJECTS = (("ConfigMap", "web-config"), ("Deployment", "web"), ("Service", "web"))


def assert_no_traceback(run: Run) -> None:
    assert "Traceback" not in run.output, f"a traceback leaked:\n{run}"
