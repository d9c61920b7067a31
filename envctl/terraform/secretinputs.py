"""Encrypted stack inputs: ``secrets.enc.yaml`` beside ``stack.yaml``, a SOPS-encrypted mapping of
Terraform variable names to values, decrypted in memory at plan by ``envctl.sops``.

Every key must be a variable the stack declares ``sensitive = true`` (Terraform then masks it
in plans and outputs, and envctl's redactor hides it in errors), and must not also be set under
``inputs:``. The keys are readable without a key (sops encrypts values, not keys), so the
workspace of a ``module:`` stack can pass them on before anything is decrypted. May import
``envctl.sops`` and ``envctl.core``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envctl.core.errors import ConfigError, Location
from envctl.core.model import Node, Snapshot
from envctl.core.yamldoc import load_yaml_documents
from envctl.sops import decrypt, plain_keys

SECRETS_FILE = "secrets.enc.yaml"


def secrets_file(snapshot: Snapshot, node: Node) -> str | None:
    """The repo path of the stack's encrypted values file, if it has one."""
    path = f"{node.path}/{SECRETS_FILE}"
    return path if snapshot.exists(path) else None


def _text(snapshot: Snapshot, path: str) -> str:
    try:
        return snapshot.read_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text", location=Location(path)) from None


def secret_input_names(snapshot: Snapshot, node: Node) -> list[str]:
    """The variable names the encrypted values file sets (no key needed)."""
    path = secrets_file(snapshot, node)
    return plain_keys(_text(snapshot, path), path) if path else []


def secret_inputs(snapshot: Snapshot, node: Node) -> dict[str, Any]:
    """The decrypted values of the stack's encrypted values file ({} without one)."""
    path = secrets_file(snapshot, node)
    if path is None:
        return {}
    text = _text(snapshot, path)
    plain_keys(text, path)  # a plain (unencrypted) file is refused before anything runs
    docs = load_yaml_documents(decrypt(text, path, node=node.id).text, path)
    data = docs[0].data if docs else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must decrypt to a mapping of variable names", location=Location(path))
    return {str(k): v for k, v in data.items()}


def check_secret_inputs(
    node: Node, names: list[str], inputs: Mapping[str, Any], sensitive: frozenset[str]
) -> None:
    """Each encrypted value goes to a declared sensitive variable that ``inputs:`` does not set."""
    where = Location(f"{node.path}/{SECRETS_FILE}")
    for name in names:
        if name in inputs:
            raise ConfigError(
                f"variable {name!r} is set both under inputs: and in {SECRETS_FILE}",
                node=node.id,
                location=where,
                hint="set it in one place: secret values belong in the encrypted file",
            )
        if name not in sensitive:
            raise ConfigError(
                f"variable {name!r} gets its value from {SECRETS_FILE} but is not declared sensitive",
                node=node.id,
                location=where,
                hint=f'declare variable "{name}" with sensitive = true in {node.path}, so that '
                "Terraform never shows its value",
            )
