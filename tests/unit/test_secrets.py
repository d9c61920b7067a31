"""Secret values never leak through either scrubber: plan/apply views and Terraform error texts.

``envctl.core.secrets`` is the one collector of the texts a secret takes and the one masker;
``core.secrets.scrub_plan`` (views) and ``terraform.diagnostics.Redactor`` (errors) both use it. The
properties here check the output of both paths against an oracle written independently of the
collector: every string leaf of at least 4 characters (raw and JSON-escaped), every number's text
of at least 4 characters.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from envctl.app.inputs import Values
from envctl.core.changes import SENSITIVE, Action, Change, NodePlan
from envctl.core.secrets import MIN_LENGTH, collect_secret_texts, mask, scrub, scrub_plan, secret_texts
from envctl.terraform import diagnostics as diag

# -- the oracle: what must never be visible --------------------------------------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
_SCALARS = (
    _TEXT
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=False, allow_infinity=False, width=64)
    | st.booleans()
    | st.none()
)
SECRETS = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in leaves(v)]
    if isinstance(value, list | tuple):
        return [x for v in value for x in leaves(v)]
    return [value]


def must_hide(value: Any) -> set[str]:
    """The texts of ``value`` that no output may show (the oracle, independent of the code)."""
    out: set[str] = set()
    for leaf in leaves(value):
        if isinstance(leaf, bool) or leaf is None:
            continue
        if isinstance(leaf, str):
            if len(leaf) < MIN_LENGTH or leaf in ("true", "false", "null"):
                continue
            out |= {leaf, json.dumps(leaf)[1:-1], json.dumps(leaf, ensure_ascii=False)[1:-1]}
            continue
        if isinstance(leaf, float):
            forms = {json.dumps(leaf), *([str(int(leaf))] if leaf.is_integer() else [])}
        else:
            forms = {str(leaf)}
        out |= {f for f in forms if len(f) >= MIN_LENGTH}
    return out


def renderings(value: Any) -> list[str]:
    """The ways a secret shows up in text: raw, in JSON, Go's JSON, a manifest, HCL, a repr."""
    out: list[str] = []
    for leaf in leaves(value):
        raw = leaf if isinstance(leaf, str) else json.dumps(leaf)
        escaped = json.dumps(leaf, ensure_ascii=False)
        go = escaped.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        manifest = f"v: {raw}"  # a reference inside a manifest string: numbers as JSON text
        out += [raw, json.dumps(leaf), escaped, go, manifest, str([leaf])]
        if isinstance(leaf, float) and leaf.is_integer():
            out.append(str(int(leaf)))
    return out


def assert_hidden(text: str, secret: Any, marker: str) -> None:
    visible = text.replace(marker, "\x00")  # a secret never holds NUL, so none can span a marker
    for form in must_hide(secret):
        assert form not in visible, f"secret text {form!r} leaked in {text!r}"


def strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in strings_in(v)]
    return [json.dumps(value)] if isinstance(value, int | float) and not isinstance(value, bool) else []


# -- path 1: plans and messages shown by the views (core.secrets: scrub / scrub_plan) -------------------


@settings(max_examples=300, deadline=None)
@given(SECRETS, _TEXT, _TEXT)
def test_no_secret_output_leaks_through_a_scrubbed_plan(secret: Any, before: str, after: str) -> None:
    values = Values()
    values.put("stack.db", {"password": secret, "host": "db.internal"}, {"password"})
    texts = renderings(secret)
    plan = NodePlan(
        node="layer.app",
        changes=(
            Change(
                "v1 ConfigMap app/web",
                Action.UPDATE,
                before={"data": {f"K{i}": f"{before}{t}{after}" for i, t in enumerate(texts)}},
                after={
                    "whole": leaves(secret),
                    "list": [f"{after} {t}" for t in texts],
                    "tuple": tuple(texts),
                },
            ),
        ),
        notes=tuple(f"note {t}." for t in texts),
    )
    scrubbed = scrub_plan(plan, values.secrets)
    for c in scrubbed.changes:
        for s in strings_in(c.before) + strings_in(c.after):
            assert_hidden(s, secret, SENSITIVE)
    for note in scrubbed.notes:
        assert_hidden(note, secret, SENSITIVE)
    assert scrubbed.changes[0].address == "v1 ConfigMap app/web"


@settings(max_examples=200, deadline=None)
@given(SECRETS, _TEXT)
def test_no_secret_leaks_through_a_scrubbed_error_message(secret: Any, around: str) -> None:
    values = Values()
    values.put("stack.db", {"password": secret}, {"password"})
    message = "\n".join(f"{around}{t}{around}" for t in renderings(secret))
    assert_hidden(scrub(message, values.secrets), secret, SENSITIVE)


# -- path 2: Terraform errors (diagnostics.Redactor in error_from) ---------------------------------


@settings(max_examples=300, deadline=None)
@given(SECRETS, _TEXT)
def test_no_secret_leaks_through_a_terraform_error(secret: Any, around: str) -> None:
    texts = renderings(secret)
    diags = [
        diag.Diagnostic("error", f"Invalid {t}", f"{around}\nthe value {t} is wrong\n{around}", "main.tf", 3)
        for t in texts
    ] or [diag.Diagnostic("error", "Invalid value", around, None, None)]
    err = diag.error_from(
        diags,
        node="stack.app",
        command="terraform plan",
        what="terraform plan",
        hint="",
        to_repo_path=lambda f: f,
        redact=diag.Redactor([secret]),
    )
    assert_hidden(err.message, secret, diag.REDACTED)
    assert_hidden(err.detail or "", secret, diag.REDACTED)


@settings(max_examples=200, deadline=None)
@given(SECRETS, _TEXT)
def test_no_secret_leaks_through_the_raw_output_of_a_failed_command(secret: Any, around: str) -> None:
    # no diagnostics could be parsed: the tail of the raw (-json) output is kept as detail
    stream = "\n".join(
        json.dumps({"type": "log", "@message": f"{around} {t}"}) + "\n" + f"{around}{t}"
        for t in renderings(secret)
    )
    err = diag.error_from(
        [],
        node="stack.app",
        command="terraform init",
        what="terraform init",
        hint="",
        to_repo_path=lambda f: f,
        redact=diag.Redactor([{"nested": [secret]}]),
        fallback=stream,
    )
    assert_hidden(err.detail or "", secret, diag.REDACTED)


def test_a_multi_line_secret_is_hidden_before_the_detail_is_re_indented_or_cut() -> None:
    secret = "-----BEGIN KEY-----\nMIIEvQIBADANBg\nkqhkiG9w0BAQEF\n-----END KEY-----"
    diags = [diag.Diagnostic("error", "Bad key", f"key:\n{secret}\nend", "main.tf", 1)]
    redact = diag.Redactor([secret])
    err = diag.error_from(
        diags, node="stack.a", command="c", what="w", hint="", to_repo_path=lambda f: f, redact=redact
    )
    # the secret's first lines fall outside the last 20 lines of the raw output that are kept
    fallback = "\n".join(f"line {i}" for i in range(30)) + f"\n{secret}\n" + "\n".join(["xyz"] * 18)
    err2 = diag.error_from(
        [],
        node="stack.a",
        command="c",
        what="w",
        hint="",
        to_repo_path=lambda f: f,
        redact=redact,
        fallback=fallback,
    )
    for detail in (err.detail or "", err2.detail or ""):
        for line in secret.splitlines():
            assert line not in detail, detail
        assert diag.REDACTED in detail


# -- the collector and the masker ------------------------------------------------------------------


def test_collects_every_form_of_a_string_and_a_number() -> None:
    texts = secret_texts(['pa"ss<&>\\wörd ${x}', 123456, 65536.0, {"k": ("abcd",)}])
    assert {
        'pa"ss<&>\\wörd ${x}',  # raw
        'pa\\"ss<&>\\\\wörd ${x}',  # JSON
        'pa\\"ss<&>\\\\w\\u00f6rd ${x}',  # JSON, ASCII only
        'pa\\"ss\\u003c\\u0026\\u003e\\\\wörd ${x}',  # Go's encoding/json
        'pa\\"ss<&>\\\\wörd $${x}',  # HCL
        "123456",
        "65536.0",
        "65536",
        "abcd",
    } <= texts
    assert "k" not in texts


def test_short_values_booleans_null_and_json_literals_are_not_secrets() -> None:
    # masking every "1" or "true" everywhere would wreck the output and reveal the value anyway
    assert secret_texts([1, 12, 123, "abc", True, False, None, "true", "false", "null", 1.5, [], {}]) == set()
    out: set[str] = set()
    collect_secret_texts("True", out)
    assert out == {"True"}


def test_a_scrubbed_number_equal_to_a_secret_is_masked_whole_and_others_kept() -> None:
    values = Values()
    values.put("stack.db", {"port": 54321, "flag": True, "pin": "1234"}, {"port", "flag", "pin"})
    assert scrub({"port": 54321, "other": 5432, "on": True, "pin": 1234}, values.secrets) == {
        "port": SENSITIVE,
        "other": 5432,
        "on": True,
        "pin": SENSITIVE,
    }


def test_mask_hides_overlapping_secrets_whole_in_any_order() -> None:
    text = "x abcdefghi y abcd"
    for order in (["abcdef", "defghi", "abcd"], ["abcd", "defghi", "abcdef"]):
        assert mask(text, order, "#") == "x # y #"
    # a later secret is never matched inside an earlier mask
    assert mask("aaaa-secret", ["aaaa", "(sen"], "(sensitive)") == "(sensitive)-secret"
    assert mask("abcdabcd", ["abcd"], "#") == "##"
    assert mask("nothing here", ["abcd", ""], "#") == "nothing here"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text("abc", min_size=1, max_size=5), max_size=4), st.text("abc", max_size=40))
def test_mask_leaves_no_occurrence_and_touches_nothing_else(secrets: list[str], text: str) -> None:
    masked = mask(text, secrets, "\x00")
    for s in secrets:
        assert s not in masked
    # every kept character is where it was: removing the masks' spans from text gives the pieces
    pos = 0
    for p in masked.split("\x00"):
        found = text.find(p, pos)
        assert found >= 0
        pos = found + len(p)
    if not any(s in text for s in secrets):
        assert masked == text


def test_the_cli_masks_every_known_secret_in_whatever_it_prints(
    run_cli: Callable[..., Any], make_repo: Callable[..., Path]
) -> None:
    """The masking boundary: an error text nobody scrubbed still prints without the secret."""
    from envctl.core.secrets import KNOWN

    secret = "cli-boundary-secret-7f3a"
    KNOWN.add(secret)
    root = make_repo({"environments/dev/environment.yaml": f"name: {secret}\n"})
    res = run_cli("validate", "-e", "dev", "--repo", root)
    assert res.code == 78
    assert "name '(sensitive)' does not match" in res.err
    assert secret not in res.out + res.err


def test_records_mask_every_known_secret(tmp_path: Path) -> None:
    from envctl.core.secrets import KNOWN
    from envctl.store import Store

    secret = "stored-secret-value-91c2"
    KNOWN.add({"nested": [secret]})
    store = Store(tmp_path)
    store.write_journal("dev", "run1", {"nodes": {"layer.app": {"error": f"rejected: {secret}_!"}}})
    store.write_drift("dev", {"summary": f"error {secret}"})
    stored = "".join(p.read_text() for p in (tmp_path / ".envctl").rglob("*.json"))
    assert "rejected: (sensitive)_!" in stored
    assert secret not in stored
