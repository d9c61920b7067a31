"""Helpers for the end-to-end tests: isolated copies of the example environment, the CLI as a subprocess.

Every test gets its own copy of ``environments/dev`` and ``modules/`` in a fresh Git repository
under ``tmp_path``, renamed to a unique environment (directory, ``name:`` and the ``app-dev``
namespace), so tests never share Terraform state, namespaces, inventories or Leases. envctl runs
as a subprocess with ``cwd`` in that repository and KUBECONFIG pointing at the real control plane
(``scripts/control-plane up``, or ENVCTL_TEST_KUBECONFIG). Afterwards the environment's namespace,
inventories and Lease are deleted.

The control plane runs the real Deployment controller (and KWOK's simulated nodes), so the
example's Deployment rolls out by itself and ``envctl apply`` waits for it as on any cluster.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
CONTROL_PLANE = REPO / "scripts" / "control-plane"

SYSTEM_NAMESPACE = "envctl-system"
GIT_ID = ["-c", "user.name=envctl e2e", "-c", "user.email=e2e@envctl.invalid", "-c", "commit.gpgsign=false"]


def envctl_command() -> list[str]:
    """The installed console script next to this interpreter, else the module entry point."""
    script = Path(sys.executable).with_name("envctl")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from envctl.cli import main; main()"]


@dataclass
class Env:
    """One isolated copy of the example environment in its own Git repository."""

    root: Path
    name: str
    kubeconfig: str
    api: client.ApiClient
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return f"app-{self.name}"

    @property
    def env_dir(self) -> Path:
        return self.root / "environments" / self.name

    def environ(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENVCTL_")}
        env.update(KUBECONFIG=self.kubeconfig, NO_COLOR="1")
        env.update(self.extra_env)  # later ones win: a test may point KUBECONFIG elsewhere
        env.update(extra)
        return env

    def run(
        self, *args: str, timeout: float = 240, stdin: str | None = None, **extra_env: str
    ) -> subprocess.CompletedProcess[str]:
        """``envctl ARGS`` in the repository; never raises on a non-zero exit."""
        return subprocess.run(
            [*envctl_command(), *args],
            cwd=self.root,
            env=self.environ(**extra_env),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def popen(self, *args: str, **extra_env: str) -> subprocess.Popen[str]:
        """``envctl ARGS`` started in the background in its own process group."""
        return subprocess.Popen(
            [*envctl_command(), *args],
            cwd=self.root,
            env=self.environ(**extra_env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *GIT_ID, *args], cwd=self.root, capture_output=True, text=True, check=True
        ).stdout.strip()

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def edit(self, rel: str, old: str, new: str) -> None:
        """Replace ``old`` (which must be there) with ``new`` in a file of the repository."""
        path = self.root / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {rel}"
        path.write_text(text.replace(old, new))

    # --- what a user would look at -------------------------------------------------------------

    def state_files(self) -> list[Path]:
        base = self.root / ".envctl" / "state"
        return sorted(base.rglob("*.tfstate")) if base.is_dir() else []

    def outputs(self, stack: str) -> dict[str, Any]:
        import json

        path = self.root / ".envctl" / "state" / self.name / stack / "terraform.tfstate"
        data = json.loads(path.read_text())
        return {k: v["value"] for k, v in data.get("outputs", {}).items()}

    def namespace_exists(self) -> bool:
        try:
            client.CoreV1Api(self.api).read_namespace(self.namespace)
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    def configmap(self, name: str) -> dict[str, str] | None:
        try:
            cm = client.CoreV1Api(self.api).read_namespaced_config_map(name, self.namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return dict(cm.data or {})

    def object_names(self) -> set[str]:
        """``Kind/name`` of the objects the example puts in the environment's namespace."""
        core, apps = client.CoreV1Api(self.api), client.AppsV1Api(self.api)
        names: set[str] = set()
        try:
            names |= {
                f"ConfigMap/{c.metadata.name}" for c in core.list_namespaced_config_map(self.namespace).items
            }
            names |= {
                f"Service/{c.metadata.name}" for c in core.list_namespaced_service(self.namespace).items
            }
            names |= {
                f"Deployment/{c.metadata.name}" for c in apps.list_namespaced_deployment(self.namespace).items
            }
        except ApiException as e:
            if e.status != 404:
                raise
        names.discard("ConfigMap/kube-root-ca.crt")  # made by the root-ca-cert-publisher controller
        return names

    def lease_holder(self) -> str | None:
        try:
            lease = client.CoordinationV1Api(self.api).read_namespaced_lease(
                f"envctl-lock-{self.name}", SYSTEM_NAMESPACE
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return lease.spec.holder_identity or None

    def plans(self) -> list[Path]:
        base = self.root / ".envctl" / "plans"
        return sorted(p for p in base.iterdir() if (p / "bundle.json").is_file()) if base.is_dir() else []

    def plan(self, *args: str) -> Path:
        """``envctl plan`` and the directory of the bundle it wrote."""
        before = set(self.plans())
        r = self.run("plan", "-e", self.name, *args)
        assert r.returncode in (0, 2), describe(r)
        new = [p for p in self.plans() if p not in before]
        assert len(new) == 1, f"expected one new plan bundle, found {new}\n{describe(r)}"
        return new[0]

    def cleanup(self) -> None:
        core = client.CoreV1Api(self.api)
        with _ignore_missing():
            core.delete_namespace(self.namespace, propagation_policy="Background")
        with _ignore_missing():
            client.CoordinationV1Api(self.api).delete_namespaced_lease(
                f"envctl-lock-{self.name}", SYSTEM_NAMESPACE
            )
        with _ignore_missing():
            for cm in core.list_namespaced_config_map(
                SYSTEM_NAMESPACE, label_selector=f"envctl.io/environment={self.name}"
            ).items:
                with _ignore_missing():
                    core.delete_namespaced_config_map(cm.metadata.name, SYSTEM_NAMESPACE)


class _ignore_missing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: object, exc: object, tb: object) -> bool:
        return isinstance(exc, ApiException) and exc.status == 404


def describe(r: subprocess.CompletedProcess[str]) -> str:
    """What a failed assertion on a CLI run should show."""
    args = " ".join(str(a) for a in r.args[-8:]) if isinstance(r.args, Sequence) else str(r.args)
    return f"envctl ... {args}\nexit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


def make_env(base: Path, kubeconfig: str, api: client.ApiClient, prefix: str = "e2e") -> Env:
    """Copy the example environment into a new Git repository under ``base`` with a unique name."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    root = base / "repo"
    (root / "environments").mkdir(parents=True)
    shutil.copytree(REPO / "environments" / "dev", root / "environments" / name)
    shutil.copytree(REPO / "modules", root / "modules")
    for f in (root / "environments" / name).rglob("*"):
        if f.is_file() and f.suffix in (".yaml", ".yml"):
            text = f.read_text()
            text = text.replace("app-dev", f"app-{name}")
            if f.name == "environment.yaml":
                text = text.replace("\nname: dev\n", f"\nname: {name}\n")
            f.write_text(text)
    env_yaml = (root / "environments" / name / "environment.yaml").read_text()
    assert f"\nname: {name}\n" in env_yaml, "the example environment.yaml no longer says `name: dev`"
    (root / ".gitignore").write_text(".envctl/\n")
    env = Env(root, name, kubeconfig, api)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    env.commit("the example environment")
    return env


def converge(env: Env) -> None:
    """Bring a fresh ``env`` to the converged state (setup for tests about what comes after)."""
    r = env.run("apply", "-e", env.name, "--auto-approve")
    assert r.returncode == 0, describe(r)


def node_lines(out: str) -> dict[str, str]:
    """``node: rest of the line`` of an apply summary."""
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s+((?:stack|layer)\.[\w-]+): (.*)$", line)
        if m:
            found[m.group(1)] = m.group(2)
    return found
