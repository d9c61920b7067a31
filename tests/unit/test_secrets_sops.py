"""SOPS and Sealed Secrets decisions, offline: which files are encrypted, which keys they name,
which decrypted texts join the masker, what counts as plaintext, when a SealedSecret is ready,
and the errors for a missing sops, a missing key and a damaged file. No sops binary runs here
(tests/safety/test_sops.py runs the real one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from envctl.core.errors import ConfigError, ExitCode
from envctl.core.model import Environment, LayerSpec, Node
from envctl.kube.objects import ANNOTATION_SOPS
from envctl.kube.render import plaintext_secrets, render_layer
from envctl.kube.wait import Status, readiness
from envctl.repo.snapshot import WorkTreeSnapshot
from envctl.sops import (
    SopsKeyError,
    SopsUnavailableError,
    _failure,
    decrypted_texts,
    find_sops,
    is_encrypted,
    plain_keys,
    recipients,
)

ENCRYPTED = """\
apiVersion: v1
kind: Secret
metadata:
    name: db
type: Opaque
stringData:
    password: ENC[AES256_GCM,data:3q2+7w==,iv:aXY=,tag:dGFn,type:str]
    user: ENC[AES256_GCM,data:dXNy,iv:aXY=,tag:dGFn,type:str]
sops:
    age:
        - recipient: age1first
          enc: |
            -----BEGIN AGE ENCRYPTED FILE-----
            -----END AGE ENCRYPTED FILE-----
    key_groups:
        - pgp:
            - fp: 0123456789ABCDEF
    lastmodified: "2026-12-01T00:00:00Z"
    mac: ENC[AES256_GCM,data:bWFj,iv:aXY=,tag:dGFn,type:str]
    encrypted_regex: ^(data|stringData)$
    version: 3.13.3
"""
LAYER = "environments/dev/layers/app"
ENV = Environment(name="dev", path="environments/dev")


def make(tmp_path: Path, files: dict[str, str], **spec: object) -> tuple[WorkTreeSnapshot, Node]:
    for name, text in files.items():
        p = tmp_path / LAYER / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    node = Node(id="layer.app", kind="layer", name="app", path=LAYER, layer=LayerSpec(**spec))  # type: ignore[arg-type]
    return WorkTreeSnapshot(tmp_path), node


DECRYPTED = """\
apiVersion: v1
kind: Secret
metadata:
    name: db
type: Opaque
stringData:
    password: hunter2-but-longer
    user: admin-user
"""


def test_a_file_is_encrypted_when_a_document_has_a_top_level_sops_key() -> None:
    assert is_encrypted(ENCRYPTED)
    assert is_encrypted("a: 1\n---\nb: ENC[x]\nsops:\n  mac: x\n")
    assert not is_encrypted(DECRYPTED)
    assert not is_encrypted("metadata:\n  sops: nested is not metadata\n")


def test_recipients_name_every_key_of_every_group() -> None:
    assert recipients(ENCRYPTED) == ["age age1first", "pgp 0123456789ABCDEF"]
    assert recipients("not: [valid") == []


def test_plain_keys_are_readable_without_a_key() -> None:
    assert plain_keys("db_password: ENC[x]\napi_token: ENC[y]\nsops:\n  mac: m\n", "s.enc.yaml") == [
        "api_token",
        "db_password",
    ]
    with pytest.raises(ConfigError, match="not a SOPS-encrypted"):
        plain_keys("db_password: hunter2\n", "s.enc.yaml")


def test_only_values_that_were_encrypted_join_the_masker_with_their_base64_text() -> None:
    texts = decrypted_texts(ENCRYPTED, DECRYPTED, "db.enc.yaml")
    assert {"hunter2-but-longer", "admin-user"} <= texts
    assert "Secret" not in texts and "Opaque" not in texts and "db" not in texts
    data = decrypted_texts(
        "data:\n  k: ENC[AES256_GCM,data:x,iv:y,tag:z,type:str]\nsops:\n  mac: m\n",
        "data:\n  k: c2VjcmV0LXZhbHVl\n",
        "f",
    )
    assert {"c2VjcmV0LXZhbHVl", "secret-value"} <= data


def test_decrypted_yaml_that_does_not_parse_is_reported_without_quoting_it() -> None:
    with pytest.raises(ConfigError) as e:
        decrypted_texts(ENCRYPTED, "password: [hunter2-but-longer\n", "db.enc.yaml")
    assert "hunter2" not in str(e.value) and "hunter2" not in (e.value.detail or "")


def test_a_missing_sops_is_exit_69_with_the_command_that_builds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("ENVCTL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SopsUnavailableError) as e:
        find_sops()
    assert e.value.exit_code == ExitCode.UNAVAILABLE
    assert "scripts/build-secret-tools sops" in (e.value.hint or "")


def test_sops_failures_are_classified_by_its_exit_code() -> None:
    no_key = _failure(
        128, "Error getting data key: 0 successful groups required, got 0", ENCRYPTED, "f.yaml", "layer.a"
    )
    assert isinstance(no_key, SopsKeyError) and no_key.exit_code == ExitCode.CONFIG
    assert "age age1first" in no_key.message and "f.yaml" in no_key.message
    assert "SOPS_AGE_KEY_FILE" in (no_key.hint or "")
    damaged = _failure(51, "MAC mismatch", ENCRYPTED, "f.yaml", "layer.a")
    assert not isinstance(damaged, SopsKeyError) and damaged.exit_code == ExitCode.CONFIG
    assert "damaged SOPS file" in damaged.message and "MAC" in damaged.message


def _secret(annotations: dict[str, str] | None = None) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "n", "annotations": annotations or {}},
        "stringData": {"k": "v"},
    }


def test_a_secret_decrypted_from_sops_is_not_plaintext_in_git() -> None:
    assert plaintext_secrets([_secret()]) == ["v1 Secret n/s"]
    assert plaintext_secrets([_secret({ANNOTATION_SOPS: "layers/a/s.enc.yaml"})]) == []


def test_a_sealed_secret_is_not_plaintext_unless_its_template_carries_data() -> None:
    sealed = {
        "apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {"name": "s", "namespace": "n"},
        "spec": {"encryptedData": {"k": "AgBy..."}, "template": {"metadata": {"name": "s"}}},
    }
    assert plaintext_secrets([sealed]) == []
    sealed["spec"]["template"]["data"] = {"extra": "plain"}  # type: ignore[index]
    assert plaintext_secrets([sealed]) == ["bitnami.com/v1alpha1 SealedSecret n/s"]


def test_render_removes_a_hand_written_sops_marker(tmp_path: Path) -> None:
    snap, node = make(
        tmp_path,
        {
            "secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n"
            f"  annotations: {{{ANNOTATION_SOPS}: fake}}\nstringData: {{k: value}}\n"
        },
        namespace="app",
    )
    [obj] = render_layer(ENV, snap, node, {})
    assert ANNOTATION_SOPS not in obj["metadata"]["annotations"]
    assert plaintext_secrets([obj]) == ["v1 Secret app/s"]


def test_render_refuses_a_sops_file_in_a_kustomization(tmp_path: Path) -> None:
    snap, node = make(
        tmp_path,
        {"kustomization.yaml": "resources: [secret.enc.yaml]\n", "secret.enc.yaml": ENCRYPTED},
    )
    with pytest.raises(ConfigError, match="not in kustomizations"):
        render_layer(ENV, snap, node, {})


def _sealed(status: dict[str, object] | None, generation: int = 2) -> dict[str, object]:
    obj: dict[str, object] = {
        "apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {"name": "s", "namespace": "n", "generation": generation},
    }
    if status is not None:
        obj["status"] = status
    return obj


def test_a_sealed_secret_is_ready_once_the_controller_unsealed_this_generation() -> None:
    synced = {"type": "Synced", "status": "True"}
    not_yet = readiness(_sealed(None))
    assert not_yet.status is Status.PENDING and "controller running" in not_yet.reason
    old = readiness(_sealed({"observedGeneration": 1, "conditions": [synced]}))
    assert old.status is Status.PENDING and "latest generation" in old.reason
    assert readiness(_sealed({"observedGeneration": 2, "conditions": [synced]})).ready
    failed = readiness(
        _sealed(
            {
                "observedGeneration": 2,
                "conditions": [
                    {"type": "Synced", "status": "False", "message": "no key could decrypt secret"}
                ],
            }
        )
    )
    assert failed.status is Status.FAILED and "no key could decrypt secret" in failed.reason


def test_the_text_plan_shows_a_changed_secret_value_as_its_marker_only() -> None:
    from envctl.core.changes import Action, Change
    from envctl.views.plan import _change_lines

    before = {"kind": "Secret", "data": {"password": "(sensitive)"}, "metadata": {"labels": {"a": "1"}}}
    after = {
        "kind": "Secret",
        "data": {"password": "(sensitive, changed) sha256:abcdef012345"},
        "metadata": {"labels": {"a": "2"}},
    }
    change = Change("v1 Secret n/s", Action.UPDATE, before, after, (), ("data.password", "metadata.labels.a"))
    lines = _change_lines(change)
    assert "    ~ data.password: (sensitive, changed) sha256:abcdef012345" in lines
    assert '    ~ metadata.labels.a: "1" -> "2"' in lines  # other values: old -> new (masked by the adapter)
