"""Secret canaries never leak: not in any output, report, stored plan, journal, webhook or Event.

Unique canaries go into a Terraform sensitive variable (through a stack input), a sensitive
output, a resource attribute derived from the sensitive variable, and a Kubernetes Secret (in a
layer with ``allow_secrets: true``); later the values change in Git and the live Secret is
changed behind envctl's back. plan, apply, drift and status then run in every output format,
with ``--debug``, and with a webhook (a local http.server); afterwards every captured text is
searched for every canary, plain and base64.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from harness import Env, Run
from kubernetes import client

pytestmark = pytest.mark.safety


def _canary(what: str) -> str:
    return f"CANARY-{what}-{uuid.uuid4().hex}"


VAR1, VAR2 = _canary("tfvar1"), _canary("tfvar2")
OUT = _canary("tfout")
K8S1, K8S2 = _canary("secret1"), _canary("secret2")
LIVE = _canary("live")
CANARIES = [VAR1, VAR2, OUT, K8S1, K8S2, LIVE]
FORMS = {c: (c, base64.b64encode(c.encode()).decode()) for c in CANARIES}


class Hook:
    """A local webhook that records every request body."""

    def __init__(self) -> None:
        bodies: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                bodies.append(self.rfile.read(n).decode(errors="replace"))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.bodies = bodies
        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


def _setup(repo: Env, hook_url: str, var: str, secret: str) -> None:
    env_yaml = repo.path("environment.yaml")
    text = env_yaml.read_text()
    if "vault_token" in text:
        lines = text.splitlines()
        lines = [f"  vault_token: {var}" if ln.startswith("  vault_token:") else ln for ln in lines]
        text = "\n".join(lines) + "\n"
    else:
        text = text.replace("vars:\n", f"vars:\n  vault_token: {var}\n", 1)
        text += f"notifications:\n  - webhook: {hook_url}\n"
    env_yaml.write_text(text)
    repo.write(
        "stacks/vault/main.tf",
        'variable "token" {\n  type      = string\n  sensitive = true\n}\n\n'
        'resource "terraform_data" "token" {\n  input = var.token\n}\n\n'
        'output "token_echo" {\n  value     = var.token\n  sensitive = true\n}\n\n'
        f'output "generated" {{\n  value     = "{OUT}"\n  sensitive = true\n}}\n',
    )
    repo.write("stacks/vault/stack.yaml", "inputs:\n  token: ${env.vars.vault_token}\n")
    repo.write(
        "layers/platform/secret.yaml",
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: api-token\n  namespace: {repo.namespace}\n"
        f"type: Opaque\nstringData:\n  token: {secret}\n",
    )
    layer = repo.path("layers/platform/layer.yaml")
    if "allow_secrets" not in layer.read_text():
        layer.write_text(layer.read_text() + "allow_secrets: true\n")
    repo.commit("canaries")


def _scan(texts: dict[str, str]) -> list[str]:
    leaks = []
    for where, text in texts.items():
        for canary, forms in FORMS.items():
            for form in forms:
                if form in text:
                    leaks.append(f"{canary} ({'base64' if form != canary else 'plain'}) in {where}")
    return leaks


def test_no_secret_canary_leaks_anywhere(
    example: Env, api_client: client.ApiClient, hook: Hook, tmp_path: Path
) -> None:
    texts: dict[str, str] = {}
    runs: list[Run] = []

    def run(*args: str, ok: tuple[int, ...] = (0,)) -> Run:
        r = example.run(*args)
        label = "envctl " + " ".join(args)
        texts[f"{label} (stdout)"] = r.stdout
        texts[f"{label} (stderr)"] = r.stderr
        runs.append(r)
        assert r.returncode in ok, f"the command itself failed, so the scan would prove nothing:\n{r}"
        return r

    e = example.name
    _setup(example, hook.url, VAR1, K8S1)
    for fmt in ("text", "json", "markdown"):
        run("plan", "-e", e, "--format", fmt)
        run("plan", "-e", e, "--format", fmt, "--debug")
    run("validate", "-e", e, "--debug")
    run("apply", "-e", e, "--auto-approve", "--debug")

    # values change in Git: plans now show changed sensitive values
    _setup(example, hook.url, VAR2, K8S2)
    for fmt in ("text", "json", "markdown"):
        run("plan", "-e", e, "--format", fmt, "--debug", "--detailed-exitcode", ok=(2,))
    run("apply", "-e", e, "--auto-approve", "--format", "json", "--debug")

    # someone changes the live Secret: drift must say so without showing either value
    client.CoreV1Api(api_client).patch_namespaced_secret(
        "api-token", example.namespace, {"stringData": {"token": LIVE}}
    )
    reports = tmp_path / "reports"
    reports.mkdir()
    for fmt in ("text", "json", "markdown", "html"):
        out = reports / f"drift.{fmt}"
        run("drift", "-e", e, "--format", fmt, "--output", str(out), "--debug", ok=(0, 2))
        run("drift", "-e", e, "--format", fmt, ok=(0, 2))
    run("drift", "-e", e, "--notify", "--webhook", hook.url, "--format", "json", ok=(0, 2))
    run("drift", "-e", e, "--converge", "--notify", "--debug", ok=(0, 2))
    for fmt in ("text", "json"):
        run("status", "-e", e, "--format", fmt)
        run("status", "-e", e, "--format", fmt, "--debug")
    # a plan after everything: shows the (sensitive) Secret again without its value
    run("plan", "-e", e, "--format", "json", "--debug", "--detailed-exitcode", ok=(0, 2))

    for f in reports.iterdir():
        texts[f"report {f.name}"] = f.read_text(errors="replace")
    for f in sorted(example.dotdir.rglob("*")):
        rel = f.relative_to(example.root).as_posix()
        if not f.is_file() or rel.startswith((f".envctl/state/{e}/", f".envctl/work/{e}/")):
            continue  # Terraform state and working files hold sensitive values by design
        texts[rel] = f.read_bytes().decode(errors="replace")
    assert any("/plans/" in k and k.endswith("bundle.json") for k in texts), "no plan bundle was scanned"
    assert any("/runs/" in k for k in texts), f"no run journal was scanned: {sorted(texts)}"
    for i, body in enumerate(hook.bodies):
        texts[f"webhook payload {i}"] = body
    assert hook.bodies, "no webhook payload was received: the webhook path was not exercised"
    kubectl = Path(sys.executable).with_name("kubectl")
    events = subprocess.run(
        [str(kubectl) if kubectl.exists() else "kubectl", "get", "events", "-A", "-o", "json"],
        env={"KUBECONFIG": example.kubeconfig, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True,
    ).stdout
    json.loads(events)
    texts["kubectl get events -A -o json"] = events

    # the canaries are really in play: the live world holds them
    assert _scan({"terraform state": "".join(p.read_text() for p in example.state_files())}), (
        "the sensitive values never reached Terraform: the test would prove nothing"
    )
    leaks = _scan(texts)
    assert not leaks, "secret canaries leaked:\n" + "\n".join(leaks)


REJECTED = _canary("rejected")


def test_a_sensitive_value_the_api_server_rejects_is_printed_nowhere(
    example: Env, hook: Hook, tmp_path: Path
) -> None:
    """Issue 16 #6: a sensitive output placed where the API server rejects it (a label ending
    in ``_!``) was echoed by plan, apply (progress line and error detail) and drift in every
    format. The error text passes the masking boundary everywhere it goes."""
    ns = example.namespace
    example.write(
        "stacks/vault/main.tf",
        'resource "terraform_data" "token" {}\n'
        f'output "token" {{\n  value     = "{REJECTED}"\n  sensitive = true\n}}\n',
    )
    example.write(
        "layers/platform/bad.yaml",
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\n  namespace: {ns}\n"
        "  labels:\n    token: ${inputs.pw}_!\ndata: {a: b}\n",
    )
    layer = example.path("layers/platform/layer.yaml")
    layer.write_text(
        layer.read_text().replace("inputs:\n", "inputs:\n  pw: ${stack.vault.outputs.token}\n", 1)
        + f"sensitive_allowed: [v1/ConfigMap/{ns}/bad:.metadata.labels]\n"
    )
    env_yaml = example.path("environment.yaml")
    env_yaml.write_text(env_yaml.read_text() + f"notifications:\n  - webhook: {hook.url}\n")
    example.commit("a sensitive value the API server rejects")

    texts: dict[str, str] = {}

    def run(*args: str) -> Run:
        r = example.run(*args)
        texts[f"envctl {' '.join(args)} (stdout)"] = r.stdout
        texts[f"envctl {' '.join(args)} (stderr)"] = r.stderr
        assert "Traceback" not in r.output, str(r)
        return r

    e = example.name
    for fmt in ("text", "json"):
        applied = run("apply", "-e", e, "--auto-approve", "--format", fmt, "--debug")
        assert applied.returncode != 0, str(applied)
    assert any("label" in t.lower() and "(sensitive" in t for t in texts.values()), (
        "the API server's rejection was never shown: the test would prove nothing\n"
        + "\n".join(texts.values())[-4000:]
    )
    for fmt in ("text", "json", "markdown"):
        run("plan", "-e", e, "--format", fmt)
    reports = tmp_path / "reports"
    reports.mkdir()
    for fmt in ("text", "json", "markdown", "html"):
        run("drift", "-e", e, "--format", fmt)
        run("drift", "-e", e, "--format", fmt, "--output", str(reports / f"drift.{fmt}"))
    run("drift", "-e", e, "--notify", "--format", "json")
    run("status", "-e", e)
    for f in reports.iterdir():
        texts[f"report {f.name}"] = f.read_text(errors="replace")
    for f in sorted(example.dotdir.rglob("*")):
        rel = f.relative_to(example.root).as_posix()
        if f.is_file() and not rel.startswith((f".envctl/state/{e}/", f".envctl/work/{e}/")):
            texts[rel] = f.read_bytes().decode(errors="replace")
    assert any("/runs/" in k for k in texts), f"no run journal was scanned: {sorted(texts)}"
    assert hook.bodies, "no webhook payload was received"
    for i, body in enumerate(hook.bodies):
        texts[f"webhook payload {i}"] = body
    forms = (REJECTED, base64.b64encode(REJECTED.encode()).decode())
    leaks = [f"{form} in {where}" for where, text in texts.items() for form in forms if form in text]
    assert not leaks, "the rejected sensitive value leaked:\n" + "\n".join(leaks)
