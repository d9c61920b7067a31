"""Helpers for the secret tests: real sops and age, and a real Sealed Secrets controller.

The tools come from ``scripts/build-secret-tools`` (built from their Go modules and cached under
``~/.cache/envctl/<tool>/<version>/``; a cached tool costs nothing). ``AgeKey`` makes an age key
pair with ``age-keygen``; ``sops_encrypt`` encrypts YAML text for it with ``sops``.

``SealedSecretsController`` runs the upstream controller, unmodified, against the test control
plane as it runs in a Pod: the plane has no kubelet, so the Pod's filesystem is imitated with a
private mount namespace (``unshare``) in which ``/var/run/secrets/kubernetes.io/serviceaccount``
holds a ServiceAccount token (TokenRequest), the plane's CA and the namespace, and
``KUBERNETES_SERVICE_HOST``/``PORT`` point at the API server: ``rest.InClusterConfig`` then works
as in a cluster. It watches only its own namespace (``--all-namespaces=false``, RBAC from a Role
there), keeps its sealing key in a Secret there, and serves its certificate on a loopback port,
which ``kubeseal --cert`` fetches. Several tests (and xdist workers) each run their own.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from kubehelpers import apply, wait_for
from kubernetes import client
from kubernetes.client import ApiClient

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "scripts" / "build-secret-tools"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def tool(name: str) -> str:
    """The path scripts/build-secret-tools prints for ``name`` (sops, age or sealed-secrets)."""
    proc = subprocess.run([str(BUILD), name], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{BUILD} {name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.stdout.strip().splitlines()[-1]


def sops_bin() -> str:
    return tool("sops")


def sops_dir() -> str:
    return str(Path(sops_bin()).parent)


class AgeKey:
    """An age key pair in ``directory/<name>.txt`` (the file SOPS_AGE_KEY_FILE names)."""

    def __init__(self, directory: Path, name: str = "key") -> None:
        self.file = directory / f"{name}.txt"
        keygen = Path(tool("age")) / "age-keygen"
        subprocess.run([str(keygen), "-o", str(self.file)], check=True, capture_output=True)
        text = self.file.read_text()
        self.recipient = next(
            line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("# public key:")
        )

    @property
    def env(self) -> dict[str, str]:
        return {"SOPS_AGE_KEY_FILE": str(self.file)}


def sops_encrypt(plain: str, key: AgeKey, *, regex: str | None = "^(data|stringData)$") -> str:
    """``plain`` (YAML) encrypted by sops for ``key``; only keys matching ``regex`` are encrypted."""
    args = [sops_bin(), "encrypt", "--age", key.recipient, "--input-type", "yaml", "--output-type", "yaml"]
    args += ["--filename-override", "secret.enc.yaml"]  # sops wants a name when reading stdin
    if regex:
        args += ["--encrypted-regex", regex]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
    proc = subprocess.run(args, input=plain, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, f"sops encrypt failed: {proc.stderr}"
    assert "ENC[" in proc.stdout
    return proc.stdout


def no_sops_env() -> dict[str, str]:
    """Environment variables that hide every sops key of this machine from a child process."""
    empty = tempfile.mkdtemp(prefix="envctl-nokey-")
    return {"SOPS_AGE_KEY_FILE": str(Path(empty) / "none.txt"), "XDG_CONFIG_HOME": empty, "HOME": empty}


# --- Sealed Secrets ----------------------------------------------------------------------------


def sealed_secrets_dir() -> Path:
    return Path(tool("sealed-secrets"))


def install_crd(api_client: ApiClient) -> None:
    """Install (or keep) the SealedSecret CRD of the built release and wait until it is established."""
    crd = yaml.safe_load((sealed_secrets_dir() / "sealedsecret-crd.yaml").read_text())
    apply(api_client, crd)
    ext = client.ApiextensionsV1Api(api_client)

    def established() -> bool:
        conds = ext.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conds)

    wait_for(established, timeout=60, what="the SealedSecret CRD to be established")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_and_ca(kubeconfig: str) -> tuple[str, int, bytes]:
    cfg = yaml.safe_load(Path(kubeconfig).read_text())
    cluster = cfg["clusters"][0]["cluster"]
    host_port = cluster["server"].split("://", 1)[1].rstrip("/")
    host, port = host_port.rsplit(":", 1)
    if "certificate-authority-data" in cluster:
        ca = base64.b64decode(cluster["certificate-authority-data"])
    else:
        ca_path = Path(cluster["certificate-authority"])
        if not ca_path.is_absolute():
            ca_path = Path(kubeconfig).parent / ca_path
        ca = ca_path.read_bytes()
    return host, int(port), ca


class SealedSecretsController:
    """The upstream controller, watching ``namespace`` only; ``start()``, ``seal()``, ``stop()``."""

    NAME = "sealed-secrets-controller"

    def __init__(self, api_client: ApiClient, kubeconfig: str, namespace: str, workdir: Path) -> None:
        self.api = api_client
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = _free_port()
        self.log = workdir / "controller.log"

    @property
    def cert_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/cert.pem"

    def _rbac(self) -> str:
        ns = self.namespace
        core = client.CoreV1Api(self.api)
        meta = {"name": self.NAME, "namespace": ns}
        apply(self.api, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta})
        apply(
            self.api,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": meta,
                "rules": [
                    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]},
                    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
                    {
                        "apiGroups": ["bitnami.com"],
                        "resources": ["sealedsecrets", "sealedsecrets/status"],
                        "verbs": ["*"],
                    },
                ],
            },
        )
        apply(
            self.api,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": meta,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": self.NAME},
                "subjects": [{"kind": "ServiceAccount", "name": self.NAME, "namespace": ns}],
            },
        )
        req = core.create_namespaced_service_account_token(
            self.NAME, ns, {"spec": {"expirationSeconds": 3600}}
        )
        return str(req.status.token)

    def start(self) -> None:
        host, port, ca = _server_and_ca(self.kubeconfig)
        sa = self.workdir / "sa"
        sa.mkdir(parents=True, exist_ok=True)
        (sa / "token").write_text(self._rbac())
        (sa / "ca.crt").write_bytes(ca)
        (sa / "namespace").write_text(self.namespace)
        controller = sealed_secrets_dir() / "controller"
        # a private /run (tmpfs) holds the Pod-like service-account files; nothing on the host changes
        script = (
            'set -e; mount -t tmpfs tmpfs /run; mkdir -p "$SA_DIR"; cp "$SA_SRC"/* "$SA_DIR"/; '
            'exec "$CONTROLLER" "$@"'
        )
        unshare = ["unshare", "--mount", "--propagation", "private"]
        if os.geteuid() != 0:
            unshare[1:1] = ["--user", "--map-root-user"]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": str(port),
            "POD_NAMESPACE": self.namespace,
            "SA_DIR": SA_DIR,
            "SA_SRC": str(sa),
            "CONTROLLER": str(controller),
        }
        args = [
            "--all-namespaces=false",
            f"--listen-addr=127.0.0.1:{self.port}",
            f"--listen-metrics-addr=127.0.0.1:{_free_port()}",
            "--key-size=2048",
            "--update-status",
        ]
        assert shutil.which("unshare"), "unshare (util-linux) is needed to run the controller as in a Pod"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*unshare, "sh", "-c", script, "sh", *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._serving, timeout=120, what=f"the Sealed Secrets controller (log: {self.log})")

    def _serving(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"the controller exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(self.cert_url, timeout=2) as r:
                return r.status == 200 and b"BEGIN CERTIFICATE" in r.read()
        except (urllib.error.URLError, OSError):
            return False

    def seal(self, secret: Mapping[str, Any]) -> dict[str, Any]:
        """``kubeseal`` a Secret manifest with the controller's certificate; the SealedSecret."""
        kubeseal = sealed_secrets_dir() / "kubeseal"
        proc = subprocess.run(
            [str(kubeseal), "--cert", self.cert_url, "--format", "yaml"],
            input=yaml.safe_dump(dict(secret)),
            capture_output=True,
            text=True,
            check=False,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workdir)},
        )
        assert proc.returncode == 0, f"kubeseal failed: {proc.stderr}"
        sealed: dict[str, Any] = yaml.safe_load(proc.stdout)
        assert sealed["kind"] == "SealedSecret"
        return sealed

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.proc = None
