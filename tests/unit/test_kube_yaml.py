"""The manifest YAML reader offline: scalars mean what kubectl reads (values seen from kubectl 1.37's
``create --dry-run=client -o json``; tests/integration/test_kubectl_yaml.py compares with kubectl
itself), limits hold while parsing, and every refusal names the file and line."""

from __future__ import annotations

import json
from typing import Any

import pytest

from envctl.core.errors import ConfigError
from envctl.core.yamldoc import load_yaml_documents


def read(value: str) -> Any:
    [doc] = load_yaml_documents(f"kind: X\nspec:\n  v: {value}\n", "m.yaml")
    return doc.data["spec"]["v"]


def refusal(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        load_yaml_documents(text, "m.yaml")
    return e.value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        *[(b, True) for b in ["y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true", "True", "TRUE"]],
        *[(b, False) for b in ["n", "N", "no", "No", "NO", "off", "Off", "OFF", "false", "False", "FALSE"]],
        ("tRue", "tRue"),
        ("oN", "oN"),
        ("0123", 83),
        ("08", 8),
        ("089", 89),
        ("0o17", 15),
        ("0x1F", 31),
        ("0b101", 5),
        ("-0b11", -3),
        ("1_000", 1000),
        ("0x_1F", 31),
        ("1e3", 1000),
        ("1.0", 1),
        (".5", 0.5),
        ("1e400", "1e400"),
        ("1e-400", 0),
        ("9223372036854775808", 9.223372036854775808e18),
        ("12:30", "12:30"),
        ("1:20:30", "1:20:30"),
        ("2024-01-01", "2024-01-01"),
        ("2024-01-01T10:00:00Z", "2024-01-01T10:00:00Z"),
        ("=", "="),
        ("~", None),
        ("", None),
        ("<<", "<<"),
        ("'0123'", "0123"),
        ('"yes"', "yes"),
        ("!!str 12", "12"),
        ("!!float 3", 3),
        ("!!int '0x10'", 16),
        ("!!bool 'on'", True),
        ("!!binary aGk=", "hi"),
        ("!!timestamp 2024-1-2", "2024-1-2"),
        ("!foo 12", "12"),
        ("!!value =", "="),
    ],
)
def test_a_scalar_means_what_kubectl_reads(text: str, expected: Any) -> None:
    got = read(text)
    assert json.dumps(got) == json.dumps(expected) or (got == expected and type(got) is type(expected))


@pytest.mark.parametrize(
    ("key", "expected"),
    [("y", "true"), ("n", "false"), ("1e3", "1000"), ("0x10", "16"), ("1.5", "1.5"), ("1e20", "1e+20")],
)
def test_keys_become_the_strings_kubectl_makes_of_them(key: str, expected: str) -> None:
    [doc] = load_yaml_documents(f"{key}: x\n", "m.yaml")
    assert doc.data == {expected: "x"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("v: .nan", "unsupported value: NaN"),
        ("v: .inf", "unsupported value"),
        ("v: !!int abc", "cannot decode !!str `abc` as a !!int"),
        ("v: !!int 1.0", "cannot decode !!float `1.0` as a !!int"),
        ("v: !!timestamp 2024-13-45", "as a !!timestamp"),
        ("v: !!binary 'not base64!'", "base64"),
        ("~: x", "null key"),
        ("18446744073709551615: x", "uint64"),
        ("<<: 1", "map merge requires map"),
        ("a: 1\na: 2", "duplicate key"),
        ("a: [!x, b]", "reads differently"),
        ("a: &x 1\nb: *x", "aliases"),
        ("--- {b: 2}", "content after --- on the same line"),
    ],
)
def test_what_kubectl_refuses_envctl_refuses_with_file_and_line(text: str, reason: str) -> None:
    e = refusal("kind: X\n" + text + "\n")
    assert reason in e.message
    assert e.location is not None and e.location.file == "m.yaml" and (e.location.line or 0) >= 2


def test_merge_keys_merge_and_a_key_set_twice_is_refused() -> None:
    [doc] = load_yaml_documents("a: 1\n<<: {b: 3}\nc: 4\n<<: [{d: 6}, {e: 7}]\n", "m.yaml")
    assert doc.data == {"a": 1, "b": 3, "c": 4, "d": 6, "e": 7}
    [quoted] = load_yaml_documents("'<<': {a: 2}\n", "m.yaml")
    assert quoted.data == {"<<": {"a": 2}}
    # kubectl: the later key wins, or, for y and 'true', whichever Go's map order gives
    for text in ("a: 1\n<<: {a: 2}\n", "<<: {y: 1}\n'true': 2\n", "<<: [{a: 1}, {a: 2}]\n"):
        assert "duplicate key" in refusal(text).message


def test_a_value_replaced_by_an_equal_key_is_refused_as_the_duplicate_not_for_its_value() -> None:
    # kubectl: `yes` and `YES` are one key (true); the later value replaces +Inf before the JSON is
    # written, so kubectl reads {"true": -9.2e18}. envctl refuses the duplicate (at its line), never
    # the value kubectl drops.
    for text, line in (
        ("yes: +.inf\nYES: -9223372036854775809\n", 2),
        ("a: .nan\na: 1\n", 2),
        ("a: {b: .inf}\na: 1\n", 2),
        ("a: .inf\n<<: {a: 1}\n", 2),
        ("<<: {a: .inf}\na: 1\n", 2),
    ):
        e = refusal(text)
        assert "duplicate key" in e.message, text
        assert e.location is not None and e.location.line == line
    # a NaN or infinity that nothing replaces is refused at its own line, after the document
    e = refusal("a: 1\nb: -.inf\nc: 2\n")
    assert "unsupported value: -Inf" in e.message
    assert e.location is not None and e.location.line == 2
    assert load_yaml_documents(".inf: 1\n.nan: [x]\n", "m.yaml")[0].data == {".inf": 1, ".nan": ["x"]}


def test_the_float_keys_0_and_minus_0_are_one_key_as_in_go() -> None:
    # Go's map holds 0.0 and -0.0 as one key and keeps the later spelling: kubectl reads
    # `1e-400: a` + `<<: {-0.0: c}` as {"-0": c}, where their JSON names ("0", "-0") differ.
    for text in (
        "0.0: a\n-0.0: b\n",
        "1e-400: a\n-1e-400: b\n",
        "1e-400: a\n'1e-400': b\n<<: {-0.0: c}\n",
        "<<: [{0.0: a}, {-0.0: b}]\n",
        "<<: {!!float 0: a}\n-0.0: b\n",
    ):
        e = refusal(text)
        assert "duplicate key" in e.message and "0.0 == -0.0" in e.message, text
    # an integer 0 is another Go key than the float -0 (kubectl keeps both), and so are keys of
    # two different mappings
    [doc] = load_yaml_documents("0: a\n-0.0: b\np: {0.0: 1}\nq: {-0.0: 2}\n<<: {r: {0.0: 3}}\n", "m.yaml")
    assert doc.data == {"0": "a", "-0": "b", "p": {"0": 1}, "q": {"-0": 2}, "r": {"0": 3}}


def test_quoted_and_block_strings_holding_references_are_marked_as_text() -> None:
    [doc] = load_yaml_documents("a: ${x}\nb: '${x}'\nc: |\n  ${x}\nd: !!str ${x}\ne: 'plain'\n", "m.yaml")
    assert doc.texts == {("b",), ("c",), ("d",)}


def test_a_million_keys_are_refused_at_the_limit_with_the_line() -> None:
    text = "kind: ConfigMap\ndata:\n" + "".join(f"  k{i}: v\n" for i in range(1_000_000))
    e = refusal(text)
    assert "more than 100000 values" in e.message
    assert e.location is not None and e.location.line == 50_000  # counted while parsing, not after
