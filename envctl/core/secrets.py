"""Secret values as text: every form a secret takes in output, and masking them. Pure functions.

A secret here is the value of a sensitive Terraform variable or output: a string, number, bool,
null, or a list/map of those (decoded JSON). ``collect_secret_texts`` turns one into the strings
a redactor must hide; ``mask`` hides them in a text. Both the plan/apply views (``core.scrub``)
and Terraform's error texts (``terraform.diagnostics.Redactor``) use these, so the two agree.

What is collected, and why:

* Lists, tuples and maps are walked; each leaf is a secret of its own. The text of a whole
  container is not needed (it is made of the leaves), and map keys are names, not secrets.
* A string appears raw in parsed values and in Terraform's human-readable output, and escaped in
  raw JSON text (an unparsed ``-json`` stream, plan JSON, a log line): escaped by Python's
  ``json.dumps`` (with and without ``ensure_ascii``), by Go's ``encoding/json`` (Terraform's own,
  which also writes ``<``, ``>`` and ``&`` as ``\\u003c``, ``\\u003e``, ``\\u0026``) and, in HCL
  rendered by Terraform, with ``${``/``%{`` doubled; and inside Python's ``repr`` (a list or map
  formatted into a manifest's text is its ``str``). Every distinct form is collected.
* A number appears as its JSON text (``12345``, ``1.5``; Python's ``str`` is the same for the
  ``int``/``float`` JSON decodes to); a float with an integral value also as the integer
  (Terraform prints ``12345`` for ``12345.0``).
* Booleans and null are never collected, nor the strings ``true``/``false``/``null``, nor a
  string or number text shorter than ``MIN_LENGTH`` characters (a string is judged by its value,
  then all its forms are collected). Masking is by substring, everywhere: a sensitive
  ``replicas = 1`` or ``enabled = true`` would turn every ``1`` and ``true`` of every plan and
  error into a mask, making the output useless, and the pattern of masks in otherwise known text
  would reveal the value anyway. Values that short carry no secret worth hiding.

``mask`` replaces the union of all occurrences of all secrets in one pass, so overlapping secrets
leave no fragment between them (``str.replace`` one secret after another would leave the tail of
the second, and could match text inside an earlier mask), whatever the order of ``secrets``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

MIN_LENGTH = 4
"""Shorter texts are never treated as secrets (see the module docstring)."""

_LITERALS = frozenset({"true", "false", "null"})
_GO_HTML_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def collect_secret_texts(value: Any, out: set[str]) -> None:
    """Add to ``out`` every text under which the secret ``value`` can appear in output."""
    if isinstance(value, str):
        _add_string(value, out)
    elif isinstance(value, dict):
        for v in value.values():
            collect_secret_texts(v, out)
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            collect_secret_texts(v, out)
    elif value is None or isinstance(value, bool):
        return
    elif isinstance(value, float):
        _add(json.dumps(value), out)
        if value.is_integer():
            _add(str(int(value)), out)
    else:  # int (str and JSON agree), or any other scalar a caller passes
        _add(str(value), out)


def secret_texts(values: Iterable[Any]) -> set[str]:
    """``collect_secret_texts`` of each of ``values``, as one set."""
    out: set[str] = set()
    for v in values:
        collect_secret_texts(v, out)
    return out


def _add_string(s: str, out: set[str]) -> None:
    # judged by the value, not by a form: an escaped "\x07" is 6 characters, the secret is 1
    if len(s) < MIN_LENGTH or s in _LITERALS:
        return
    escaped = json.dumps(s, ensure_ascii=False)[1:-1]
    out.update(
        (
            s,
            escaped,
            json.dumps(s)[1:-1],
            "".join(_GO_HTML_ESCAPES.get(ch, ch) for ch in escaped),
            escaped.replace("${", "$${").replace("%{", "%%{"),
            repr(s)[1:-1],
        )
    )


def _add(text: str, out: set[str]) -> None:
    if len(text) >= MIN_LENGTH and text not in _LITERALS:
        out.add(text)


def mask(text: str, secrets: Iterable[str], marker: str) -> str:
    """``text`` with every character that belongs to an occurrence of a secret replaced by ``marker``.

    Overlapping occurrences become one marker (adjacent ones stay one marker each, as with
    ``str.replace``). Empty secrets are ignored.
    """
    spans: list[tuple[int, int]] = []
    for s in secrets:
        if not s:
            continue
        i = text.find(s)
        while i >= 0:
            spans.append((i, i + len(s)))
            i = text.find(s, i + 1)
    if not spans:
        return text
    spans.sort()
    parts: list[str] = []
    pos = 0
    start, end = spans[0]
    for a, b in spans[1:]:
        if a < end:
            end = max(end, b)
            continue
        parts += (text[pos:start], marker)
        pos, start, end = end, a, b
    parts += (text[pos:start], marker, text[end:])
    return "".join(parts)
