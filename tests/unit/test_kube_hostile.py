"""The Kubernetes adapter under hostile input and faults, offline: safe manifest parsing, the object
size limit, kustomize sources, request retries with backoff, the Lease race and partial applies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from envctl.core.errors import ConfigError, EngineError, LockedError, UnavailableError
from envctl.core.model import Environment, LayerSpec, Node
from envctl.core.yamldoc import load_yaml_documents
from envctl.kube import client as kclient
from envctl.kube import lease as klease
from envctl.kube.apply import _partial_failure
from envctl.kube.client import KubeContext
from envctl.kube.diff import Prepared
from envctl.kube.errors import ApiError
from envctl.kube.objects import ObjRef
from envctl.kube.render import MAX_OBJECT_BYTES, parse_manifests, render_layer
from envctl.repo.snapshot import WorkTreeSnapshot

LAYER = "environments/dev/layers/app"
ENV = Environment(name="dev", path="environments/dev")


def make(tmp_path: Path, files: dict[str, str | bytes]) -> tuple[WorkTreeSnapshot, Node]:
    for name, text in files.items():
        p = tmp_path / LAYER / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text)
    node = Node(id="layer.app", kind="layer", name="app", path=LAYER, layer=LayerSpec(namespace="app"))
    return WorkTreeSnapshot(tmp_path), node


# -- safe parsing -----------------------------------------------------------------------------


def test_documents_keep_their_start_line_and_skip_empty_ones() -> None:
    docs = load_yaml_documents("---\n# only a comment\n---\na: 1\n---\n---\nb: [1]\n", "m.yaml")
    assert [(d.data, d.loc().line) for d in docs] == [({"a": 1}, 4), ({"b": [1]}, 7)]


def test_an_alias_bomb_is_refused_unexpanded_with_file_and_line() -> None:
    # 9**30 strings once expanded: only a parser that never expands it can answer at all
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 30)]
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\ndata:\n" + "\n".join(
        "  " + line for line in lines
    )
    with pytest.raises(ConfigError, match="alias") as e:
        parse_manifests(text, "bomb.yaml")
    assert e.value.location is not None and e.value.location.file == "bomb.yaml"
    assert e.value.location.line == 6


def test_deep_nesting_is_a_config_error_not_a_recursion_error() -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\ndata:\n  x: " + "[" * 10_000 + "]" * 10_000
    with pytest.raises(ConfigError, match="nest"):
        parse_manifests(text, "deep.yaml")


def test_a_list_item_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(ConfigError, match="mapping"):
        parse_manifests("apiVersion: v1\nkind: List\nitems: [1]\n", "list.yaml")


def test_a_manifest_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    snap, node = make(tmp_path, {"cm.yaml": b"\xff\xfeapiVersion: v1\n"})
    with pytest.raises(ConfigError, match="UTF-8"):
        render_layer(ENV, snap, node, {})


# -- size -------------------------------------------------------------------------------------


def test_an_object_over_the_api_server_limit_is_refused_naming_it(tmp_path: Path) -> None:
    big = "x" * (MAX_OBJECT_BYTES + 10)
    snap, node = make(
        tmp_path,
        {"cm.yaml": f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: huge}}\ndata: {{a: {big}}}\n"},
    )
    with pytest.raises(ConfigError, match=r"ConfigMap app/huge is too large: \d+ bytes") as e:
        render_layer(ENV, snap, node, {})
    assert e.value.location is not None and e.value.location.file.endswith("cm.yaml")
    assert big not in str(e.value)


# -- kustomize --------------------------------------------------------------------------------


def test_a_broken_kustomization_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    snap, node = make(tmp_path, {"kustomization.yaml": "resources: [app.yaml\nthis is: not: yaml\n"})
    with pytest.raises(ConfigError) as e:
        render_layer(ENV, snap, node, {})
    assert e.value.location is not None and e.value.location.file == f"{LAYER}/kustomization.yaml"


def test_kustomize_never_substitutes_layer_yaml(tmp_path: Path) -> None:
    snap, node = make(
        tmp_path,
        {
            "layer.yaml": "inputs:\n  endpoint: ${stack.database.outputs.endpoint}\n",
            "kustomization.yaml": "resources: [cm.yaml]\n",
            "cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"
            "data: {e: '${inputs.endpoint}'}\n",
            "unused.yaml": "x: ${stack.other.outputs.y}\n",
        },
    )
    [obj] = render_layer(ENV, snap, node, {"endpoint": "db:5432"})
    assert obj["data"] == {"e": "db:5432"}


# -- retries ----------------------------------------------------------------------------------


class _Resp:
    def __init__(self, status: int, body: bytes = b"{}", headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.reason = "x"
        self.headers = headers or {}
        self._body = body

    def read(self) -> bytes:
        return self._body


class _Api:
    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.calls = 0
        self.configuration = type("C", (), {"host": "https://127.0.0.1:1"})()
        self.default_headers: dict[str, str] = {}

    def update_params_for_auth(self, *a: Any) -> None:
        pass

    def call_api(self, *a: Any, **kw: Any) -> _Resp:
        self.calls += 1
        answer = self.answers.pop(0) if self.answers else _Resp(200)
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, _Resp)
        return answer


def _ctx(api: _Api, reached: bool = True) -> KubeContext:
    ctx = KubeContext("dev")
    ctx._state.client = api
    ctx._state.reached = reached
    return ctx


def test_dropped_connections_are_retried_with_growing_delays(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(kclient, "_sleep", sleeps.append)
    api = _Api([ConnectionResetError("reset")] * 6 + [_Resp(200, b'{"ok": 1}')])
    assert _ctx(api).request("GET", "/api/v1") == {"ok": 1}
    assert sleeps == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]


def test_retries_stop_after_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(kclient, "_monotonic", lambda: clock[0])
    monkeypatch.setattr(kclient, "_sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    api = _Api([ConnectionRefusedError("refused")] * 1000)
    with pytest.raises(ApiError) as e:
        _ctx(api).request("GET", "/api/v1")
    assert e.value.status == 0
    assert clock[0] == pytest.approx(kclient.RETRY_BUDGET)


def test_an_unreached_cluster_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(kclient, "_monotonic", lambda: clock[0])
    monkeypatch.setattr(kclient, "_sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    with pytest.raises(ApiError):
        _ctx(_Api([ConnectionRefusedError("refused")] * 1000), reached=False).request("GET", "/api/v1")
    assert clock[0] <= kclient.FIRST_CONTACT_BUDGET


def test_503_and_429_are_retried_respecting_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(kclient, "_sleep", sleeps.append)
    api = _Api([_Resp(429, headers={"Retry-After": "3"}), _Resp(503), _Resp(504), _Resp(200)])
    assert _ctx(api).request("GET", "/api/v1") == {}
    assert sleeps == [3.0, 0.4, 0.8]


# -- the Lease race ---------------------------------------------------------------------------


def test_a_lost_lease_race_names_the_holder(monkeypatch: pytest.MonkeyPatch) -> None:
    winner = {"pid": 4242, "host": "other", "user": "u", "command": "apply"}
    held = {
        "metadata": {"resourceVersion": "2"},
        "spec": {
            "holderIdentity": klease.json.dumps(winner),
            "renewTime": klease._fmt(klease._now()),
            "leaseDurationSeconds": 30,
        },
    }
    expired = {"metadata": {"resourceVersion": "1"}, "spec": {"holderIdentity": None}}
    answers = iter([(200, {}), (200, expired), (409, {}), (200, held)])
    monkeypatch.setattr(klease, "_request", lambda *a, **kw: next(answers))
    with pytest.raises(LockedError, match="4242"):
        klease.acquire(KubeContext("dev"), "dev", {"pid": 1})


# -- a partial apply --------------------------------------------------------------------------


def test_a_partial_apply_lists_what_was_and_was_not_applied() -> None:
    from envctl.core.changes import Action, Change

    refs = [ObjRef("v1", "Namespace", "", "app"), ObjRef("v1", "ConfigMap", "app", "c")]
    prepared = [Prepared({}, r) for r in refs]
    applied = {refs[0]: Change(str(refs[0]), Action.CREATE, None, None)}
    node = Node(id="layer.app", kind="layer", name="app", path=LAYER)
    err = _partial_failure(node, UnavailableError("Kubernetes API unreachable"), prepared, applied)
    assert isinstance(err, UnavailableError) and err.node == "layer.app"
    assert err.detail is not None
    applied_part, not_applied_part = err.detail.split("not applied")
    assert "v1 Namespace app (created)" in applied_part and "ConfigMap" not in applied_part
    assert "v1 ConfigMap app/c" in not_applied_part
    other = _partial_failure(node, RuntimeError("boom"), prepared, {})
    assert isinstance(other, EngineError) and "0 of 2" in other.message


def test_a_dropped_tls_handshake_is_retried_but_a_bad_certificate_is_not() -> None:
    import ssl

    import urllib3

    eof = urllib3.exceptions.SSLError(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))
    assert not kclient._permanent(urllib3.exceptions.MaxRetryError(None, "/api", eof))  # type: ignore[arg-type]
    bad = urllib3.exceptions.SSLError(
        ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    )
    assert kclient._permanent(urllib3.exceptions.MaxRetryError(None, "/api", bad))  # type: ignore[arg-type]
