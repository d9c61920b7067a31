"""SOPS-encrypted Secrets and stack inputs, end to end with the real sops, age and control plane.

A Secret encrypted for an age key lives in a layer of the example environment; a stack gets a
sensitive variable from ``secrets.enc.yaml``. With the key (``SOPS_AGE_KEY_FILE``) they are
decrypted in memory and applied; re-encrypted with a new value the plan shows
``(sensitive, changed)`` and apply updates the Secret. Without the key, with the wrong key, with a
damaged file or without ``sops`` plan and apply refuse naming the file, and apply nothing;
validate without a key still accepts the encrypted file (with a warning). The plaintext values are
canaries: they must appear in no output and no stored file.
"""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path

import pytest
from harness import Env, Run, assert_no_traceback, live
from kubernetes import client
from secrethelpers import AgeKey, sops_encrypt

pytestmark = pytest.mark.safety

SECRET_FILE = "layers/platform/db-credentials.enc.yaml"


def _canary(what: str) -> str:
    return f"SOPS-CANARY-{what}-{uuid.uuid4().hex}"


def _forms(value: str) -> tuple[str, str]:
    return value, base64.b64encode(value.encode()).decode()


def _secret_yaml(ns: str, password: str) -> str:
    return (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db-credentials\n"
        f"  namespace: {ns}\ntype: Opaque\nstringData:\n  password: {password}\n"
    )


def _write_secret(repo: Env, key: AgeKey, password: str) -> None:
    repo.write(SECRET_FILE, sops_encrypt(_secret_yaml(repo.namespace, password), key))
    repo.commit("encrypted secret")


def _assert_hidden(texts: dict[str, str], *values: str) -> None:
    leaks = [
        f"{v[:20]}... ({'base64' if form != v else 'plain'}) in {where}"
        for where, text in texts.items()
        for v in values
        for form in _forms(v)
        if form in text
    ]
    assert not leaks, "decrypted values leaked:\n" + "\n".join(leaks)


def _assert_nothing_applied(repo: Env, api: client.ApiClient) -> None:
    assert repo.state_files() == [], f"Terraform state was written: {repo.state_files()}"
    assert live(api, "Namespace", "", repo.namespace) is None, f"namespace {repo.namespace} was created"


def _password(api: client.ApiClient, repo: Env) -> str:
    secret = live(api, "Secret", repo.namespace, "db-credentials")
    assert secret is not None, "the Secret was not applied"
    return base64.b64decode(secret["data"]["password"]).decode()


@pytest.fixture
def key(tmp_path: Path) -> AgeKey:
    return AgeKey(tmp_path, "team")


@pytest.fixture
def no_key(tmp_path: Path) -> dict[str, str]:
    """An environment in which sops finds no age key (no SOPS_AGE_KEY*, an empty config home)."""
    empty = tmp_path / "empty-config"
    empty.mkdir()
    return {"XDG_CONFIG_HOME": str(empty)}


def test_round_trip_and_rotation(example: Env, api_client: client.ApiClient, key: AgeKey) -> None:
    first, second = _canary("first"), _canary("second")
    _write_secret(example, key, first)
    texts: dict[str, str] = {}

    def run(*args: str, ok: tuple[int, ...] = (0,)) -> Run:
        r = example.run(*args, env=key.env)
        texts[f"envctl {' '.join(args)}"] = r.output
        assert r.returncode in ok, str(r)
        assert_no_traceback(r)
        return r

    run("validate", "-e", example.name)
    run("plan", "-e", example.name)
    run("apply", "-e", example.name, "--auto-approve")
    assert _password(api_client, example) == first
    secret = live(api_client, "Secret", example.namespace, "db-credentials")
    assert secret is not None
    assert secret["metadata"]["annotations"]["envctl.io/sops-file"].endswith("db-credentials.enc.yaml")

    # nothing changed: the decrypted Secret is in sync, the plan is empty
    run("plan", "-e", example.name, "--detailed-exitcode")

    # rotation: the same file re-encrypted with a new value
    _write_secret(example, key, second)
    plan = run("plan", "-e", example.name, "--detailed-exitcode", ok=(2,))
    assert "(sensitive, changed)" in plan.stdout, str(plan)
    assert "db-credentials" in plan.stdout
    run("apply", "-e", example.name, "--auto-approve")
    assert _password(api_client, example) == second
    run("drift", "-e", example.name, "--format", "json")
    _assert_hidden(texts, first, second)


def test_validate_accepts_an_encrypted_secret_without_a_key(
    example: Env, key: AgeKey, no_key: dict[str, str]
) -> None:
    _write_secret(example, key, _canary("v"))
    run = example.run("validate", "-e", example.name, env=no_key)
    assert run.returncode == 0, str(run)
    assert "not decrypted here" in run.output and "db-credentials.enc.yaml" in run.output, str(run)


def test_validate_checks_that_it_decrypts_when_a_key_is_present(
    example: Env, key: AgeKey, tmp_path: Path
) -> None:
    other = AgeKey(tmp_path, "other")
    _write_secret(example, key, _canary("v"))
    # a key is present, but not one the file is encrypted for: validate must say so
    run = example.run("validate", "-e", example.name, env=other.env)
    assert run.returncode == 0, str(run)
    assert "not decrypted here" in run.output, str(run)
    assert example.run("validate", "-e", example.name, env=key.env).returncode == 0


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_without_the_key_nothing_is_applied(
    example: Env, api_client: client.ApiClient, key: AgeKey, no_key: dict[str, str], command: str
) -> None:
    value = _canary("nokey")
    _write_secret(example, key, value)
    args = [command, "-e", example.name] + (["--auto-approve"] if command == "apply" else [])
    run = example.run(*args, env=no_key)
    assert run.returncode == 78, str(run)
    assert_no_traceback(run)
    assert "db-credentials.enc.yaml" in run.stderr, f"the file is not named:\n{run}"
    assert key.recipient in run.stderr, f"the missing key is not named:\n{run}"
    assert "SOPS_AGE_KEY_FILE" in run.stderr, f"no hint how to give the key:\n{run}"
    _assert_nothing_applied(example, api_client)
    _assert_hidden({"output": run.output}, value)


def test_the_wrong_key_is_refused(
    example: Env, api_client: client.ApiClient, key: AgeKey, tmp_path: Path
) -> None:
    value = _canary("wrong")
    _write_secret(example, key, value)
    other = AgeKey(tmp_path, "other")
    run = example.apply(env=other.env)
    assert run.returncode == 78, str(run)
    assert_no_traceback(run)
    assert "cannot decrypt" in run.stderr and key.recipient in run.stderr, str(run)
    _assert_nothing_applied(example, api_client)
    _assert_hidden({"output": run.output}, value)


def test_a_corrupt_file_is_refused(example: Env, api_client: client.ApiClient, key: AgeKey) -> None:
    value = _canary("corrupt")
    text = sops_encrypt(_secret_yaml(example.namespace, value), key)
    # change one character of the ciphertext: the value no longer matches the file's MAC
    start = text.index("ENC[AES256_GCM,data:") + len("ENC[AES256_GCM,data:")
    flipped = "A" if text[start] != "A" else "B"
    example.write(SECRET_FILE, text[:start] + flipped + text[start + 1 :])
    example.commit("damaged")
    run = example.apply(env=key.env)
    assert run.returncode == 78, str(run)
    assert_no_traceback(run)
    assert "db-credentials.enc.yaml" in run.stderr and "damaged SOPS file" in run.stderr, str(run)
    _assert_nothing_applied(example, api_client)
    _assert_hidden({"output": run.output}, value)


def test_without_sops_plan_names_the_command_that_builds_it(
    example: Env, api_client: client.ApiClient, key: AgeKey, tmp_path: Path
) -> None:
    _write_secret(example, key, _canary("nosops"))
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p and not (Path(p) / "sops").exists()
    )
    run = example.plan(env={**key.env, "PATH": path, "ENVCTL_CACHE": str(tmp_path / "no-cache")})
    assert run.returncode == 69, str(run)
    assert_no_traceback(run)
    assert "scripts/build-secret-tools sops" in run.stderr, str(run)
    _assert_nothing_applied(example, api_client)


def _sensitive_stack(repo: Env, key: AgeKey, password: str, *, sensitive: bool = True) -> None:
    repo.write(
        "stacks/vault/main.tf",
        'variable "db_password" {\n  type      = string\n'
        + ("  sensitive = true\n" if sensitive else "")
        + '}\n\nresource "terraform_data" "password" {\n  input = var.db_password\n}\n',
    )
    repo.write("stacks/vault/stack.yaml", "inputs: {}\n")
    repo.write("stacks/vault/secrets.enc.yaml", sops_encrypt(f"db_password: {password}\n", key, regex=None))
    repo.commit("encrypted stack inputs")


def test_encrypted_stack_inputs_feed_sensitive_variables(
    example: Env, key: AgeKey, no_key: dict[str, str]
) -> None:
    value = _canary("tfvar")
    _sensitive_stack(example, key, value)
    texts: dict[str, str] = {}
    for args in (("validate",), ("plan",), ("plan", "--format", "json"), ("apply", "--auto-approve")):
        r = example.run(args[0], "-e", example.name, *args[1:], env=key.env)
        assert r.returncode == 0, str(r)
        texts[" ".join(args)] = r.output
    state = "".join(p.read_text() for p in example.state_files())
    assert value in state, "the decrypted value never reached Terraform: the test would prove nothing"
    _assert_hidden(texts, value)
    # without the key: validate still checks the keys; plan refuses naming the file
    assert example.run("validate", "-e", example.name, env=no_key).returncode == 0
    refused = example.plan(env=no_key)
    assert refused.returncode == 78 and "secrets.enc.yaml" in refused.stderr, str(refused)


def test_an_encrypted_input_for_a_variable_not_declared_sensitive_is_refused(
    example: Env, key: AgeKey
) -> None:
    value = _canary("notsensitive")
    _sensitive_stack(example, key, value, sensitive=False)
    run = example.plan(env=key.env)
    assert run.returncode == 78, str(run)
    assert "not declared sensitive" in run.stderr and "db_password" in run.stderr, str(run)
    _assert_hidden({"output": run.output}, value)


def test_sops_values_leak_into_no_output_format_and_no_stored_file(
    example: Env, api_client: client.ApiClient, key: AgeKey, tmp_path: Path
) -> None:
    first, second, tfvar = _canary("scan1"), _canary("scan2"), _canary("scan-tf")
    _write_secret(example, key, first)
    _sensitive_stack(example, key, tfvar)
    texts: dict[str, str] = {}
    e = example.name

    def run(*args: str, ok: tuple[int, ...] = (0,)) -> None:
        r = example.run(*args, env=key.env)
        texts[f"envctl {' '.join(args)}"] = r.output
        assert r.returncode in ok, f"the command itself failed, so the scan would prove nothing:\n{r}"

    for fmt in ("text", "json", "markdown"):
        run("plan", "-e", e, "--format", fmt, "--debug")
    run("validate", "-e", e, "--debug")
    run("apply", "-e", e, "--auto-approve", "--debug")
    _write_secret(example, key, second)
    for fmt in ("text", "json", "markdown"):
        run("plan", "-e", e, "--format", fmt, "--debug", "--detailed-exitcode", ok=(2,))
    run("apply", "-e", e, "--auto-approve", "--format", "json", "--debug")
    assert _password(api_client, example) == second
    # changed behind envctl's back: drift reports it in every format without either value
    client.CoreV1Api(api_client).patch_namespaced_secret(
        "db-credentials", example.namespace, {"stringData": {"password": first}}
    )
    reports = tmp_path / "reports"
    reports.mkdir()
    for fmt in ("text", "json", "markdown", "html"):
        run(
            "drift", "-e", e, "--format", fmt, "--output", str(reports / f"drift.{fmt}"), "--debug", ok=(0, 2)
        )
    for fmt in ("text", "json"):
        run("status", "-e", e, "--format", fmt, "--debug")
    for f in reports.iterdir():
        texts[f"report {f.name}"] = f.read_text(errors="replace")
    stored = 0
    for f in sorted(example.dotdir.rglob("*")):
        rel = f.relative_to(example.root).as_posix()
        if not f.is_file() or rel.startswith((f".envctl/state/{e}/", f".envctl/work/{e}/")):
            continue  # Terraform state and working files hold sensitive values by design
        texts[rel] = f.read_bytes().decode(errors="replace")
        stored += 1
    assert stored and any("/plans/" in k for k in texts), "no stored plan was scanned"
    state = "".join(p.read_text() for p in example.state_files())
    assert tfvar in state, "the stack's decrypted input never reached Terraform"
    _assert_hidden(texts, first, second, tfvar)
