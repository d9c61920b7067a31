"""The ``${...}`` reference language: what is a reference, where it is, and how it resolves."""

from __future__ import annotations

import resource
import subprocess
import sys
from typing import Any

import pytest

from envctl.core.errors import ConfigError, Location
from envctl.core.model import Ref
from envctl.core.refs import Budget, find_refs, parse_ref, substitute_value, substitute_values

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
    with pytest.raises(ConfigError) as e:
        list(find_refs(text, "m.yaml", allow_inputs=True))
    assert len(e.value.message) < 200  # the message quotes a bounded part of the text


CPU_SECONDS = 20  # a linear scan of all five texts needs well under one CPU second; quadratic ones need hours


def _limit_cpu() -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))


def test_scanning_hostile_texts_fits_a_cpu_budget() -> None:
    """Linear, judged by CPU time in a child under RLIMIT_CPU: the machine's load cannot fail it."""
    code = (
        "from envctl.core.errors import ConfigError\n"
        "from envctl.core.refs import find_refs\n"
        "texts = ['${' * 200_000 + '}', '${' * 200_000, '${}' * 100_000, 'x\\n' * 200_000 + '${bad',\n"
        "         '${inputs.x}\\n' * 100_000 + '${', 'a: ${inputs.x}\\n' * 100_000, '$' * 400_000 + '{']\n"
        "for t in texts:\n"
        "    try:\n"
        "        list(find_refs(t, 'm.yaml', allow_inputs=True))\n"
        "    except ConfigError:\n"
        "        pass\n"
        "print('scanned', len(texts))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], preexec_fn=_limit_cpu, capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, f"over {CPU_SECONDS} CPU seconds, or failed: {r.returncode} {r.stderr}"
    assert r.stdout.strip() == "scanned 7"


def test_many_references_are_found_quickly_with_the_right_lines() -> None:
    text = "a: ${inputs.x}\n" * 100_000
    refs = list(find_refs(text, "m.yaml", allow_inputs=True))
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


def test_references_inside_a_string_are_text_numbers_and_booleans_as_json() -> None:
    value = {"a": "n=${inputs.n} on=${inputs.on} ${inputs.s}-x", "raw": "$${inputs.s}", "k": 1}
    assert substitute_values(value, _resolve, lambda p: LOC) == {
        "a": "n=3 on=true web-x",
        "raw": "${inputs.s}",
        "k": 1,
    }


def test_a_list_or_map_inside_a_string_is_an_error_naming_the_line() -> None:
    with pytest.raises(ConfigError, match=r"is a list: it cannot be part of a string") as e:
        substitute_values({"a": "x\ny ${stack.a.outputs.l}"}, _resolve, lambda p: Location("m.yaml", 7))
    assert str(e.value.location) == "m.yaml:8"


def test_a_quoted_whole_reference_is_text_and_keys_are_never_substituted() -> None:
    value = {"${inputs.s}": "${inputs.n}", "q": "${inputs.n}", "l": "${stack.a.outputs.l}"}
    out = substitute_values(value, _resolve, lambda p: LOC, texts={("q",)})
    assert out == {"${inputs.s}": 3, "q": "3", "l": [1, 2]}


def test_a_string_value_is_never_read_again_as_yaml() -> None:
    hostile = 'x"\n---\nkind: ClusterRoleBinding\n'
    out = substitute_values({"token": "${inputs.h}"}, lambda ref: hostile, lambda p: LOC)
    assert out == {"token": hostile}


def test_inserted_values_are_counted_and_stopped_at_the_limit() -> None:
    big = "x" * 1000
    budget = Budget(per_object=5000, total=8000)
    data = {f"k{i}": "${inputs.big}" for i in range(100)}
    with pytest.raises(ConfigError, match="larger than 5000 bytes"):
        substitute_values(data, lambda ref: big, lambda p: LOC, budget=budget)
    assert budget.used == 5000 + 1000  # stopped at the sixth insertion, not after the hundredth
    budget.next_object()
    with pytest.raises(ConfigError, match="layer larger than 8000 bytes"):
        substitute_values(
            {"a": "${inputs.big}-${inputs.big}-${inputs.big}"}, lambda ref: big, lambda p: LOC, budget=budget
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
