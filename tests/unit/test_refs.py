"""The ``${...}`` reference language: what is a reference, where it is, and how it resolves."""

from __future__ import annotations

import time
from typing import Any

import pytest

from envctl.core.errors import ConfigError, Location
from envctl.core.model import Ref
from envctl.core.refs import find_refs, parse_ref, substitute_text, substitute_value

LOC = Location("f.yaml", 3)


@pytest.mark.parametrize(
    ("expr", "kind", "name", "node"),
    [
        ("stack.network.outputs.vpc_id", "output", "vpc_id", "stack.network"),
        ("layer.edge.outputs.lb-host", "output", "lb-host", "layer.edge"),
        ("env.name", "env", "name", None),
        ("env.vars.replicas", "var", "replicas", None),
        (" env.vars.replicas ", "var", "replicas", None),
        ("inputs.db_endpoint", "input", "db_endpoint", None),
    ],
)
def test_parses_every_kind_of_reference(expr: str, kind: str, name: str, node: str | None) -> None:
    ref = parse_ref(expr, LOC, allow_inputs=True)
    assert (ref.kind, ref.name, ref.node, ref.location) == (kind, name, node, LOC)
    assert ref.text == expr.strip()


@pytest.mark.parametrize(
    "expr",
    [
        "",
        "stack.network",
        "stack.network.outputs",
        "module.x.outputs.y",
        "env.vars",
        "env.nope",
        "var.x",
        "stack..outputs.y",
        "stack.a.outputs.b.c",
        "inputs",
    ],
)
def test_rejects_unknown_references_naming_file_and_line(expr: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_ref(expr, LOC, allow_inputs=True)
    assert e.value.location == LOC
    assert "unknown reference" in e.value.message
    assert e.value.hint


def test_inputs_are_refused_outside_manifests() -> None:
    with pytest.raises(ConfigError, match="only allowed inside a layer's manifests"):
        parse_ref("inputs.x", LOC, allow_inputs=False)


def test_finds_references_with_their_lines() -> None:
    text = "a: ${env.name}\nb: x\nc: ${stack.net.outputs.id}-${env.vars.k}\n"
    refs = list(find_refs(text, "m.yaml", first_line=10))
    assert [(r.text, r.location) for r in refs] == [
        ("env.name", Location("m.yaml", 10)),
        ("stack.net.outputs.id", Location("m.yaml", 12)),
        ("env.vars.k", Location("m.yaml", 12)),
    ]


def test_double_dollar_is_an_escape_not_a_reference() -> None:
    assert list(find_refs("a: $${inputs.x}\nb: $${not even valid", "m.yaml", allow_inputs=True)) == []


def test_unclosed_reference_is_an_error_with_its_line() -> None:
    with pytest.raises(ConfigError) as e:
        list(find_refs("a: 1\nb: ${env.name\n", "m.yaml"))
    assert e.value.location == Location("m.yaml", 2)


@pytest.mark.parametrize(
    "text",
    [
        "${" * 200_000 + "}",
        "${" * 200_000,
        "${}" * 100_000,
        "x\n" * 200_000 + "${bad",
        "${inputs.x}\n" * 100_000 + "${",
    ],
)
def test_finding_references_in_hostile_text_stays_linear(text: str) -> None:
    # many '${' with a single '}' far away, or many references, must not make the scan quadratic
    start = time.monotonic()
    with pytest.raises(ConfigError) as e:
        list(find_refs(text, "m.yaml", allow_inputs=True))
    assert time.monotonic() - start < 10.0  # quadratic scans take minutes here
    assert len(e.value.message) < 200  # the message quotes a bounded part of the text


def test_many_references_are_found_quickly_with_the_right_lines() -> None:
    text = "a: ${inputs.x}\n" * 100_000
    start = time.monotonic()
    refs = list(find_refs(text, "m.yaml", allow_inputs=True))
    assert time.monotonic() - start < 10.0  # quadratic scans take minutes here
    assert [r.location.line for r in refs[:3]] == [1, 2, 3]
    assert refs[-1].location.line == 100_000
    assert list(find_refs("$" * 400_000 + "{", "m.yaml")) == []  # ends in an escape


def _resolve(ref: Ref) -> Any:
    return {
        "inputs.n": 3,
        "inputs.on": True,
        "inputs.s": "web",
        "env.name": "dev",
        "stack.a.outputs.l": [1, 2],
        "env.vars.k": {"x": 1},
    }[ref.text]


def test_substitute_text_formats_values_for_yaml_and_unescapes() -> None:
    text = "replicas: ${inputs.n}\nenabled: ${inputs.on}\nname: ${inputs.s}-x\nraw: $${inputs.s}\n"
    assert substitute_text(text, _resolve, "m.yaml") == (
        "replicas: 3\nenabled: true\nname: web-x\nraw: ${inputs.s}\n"
    )


def test_substitute_value_keeps_the_type_of_a_whole_reference() -> None:
    value = {
        "l": "${stack.a.outputs.l}",
        "m": ["${env.vars.k}"],
        "s": "db-${env.name}",
        "e": "$${env.name}",
        "n": 5,
    }
    assert substitute_value(value, _resolve, LOC) == {
        "l": [1, 2],
        "m": [{"x": 1}],
        "s": "db-dev",
        "e": "${env.name}",
        "n": 5,
    }
