"""Secret values as text: every form a secret takes in output, and masking them. Pure functions.

A secret here is the value of a sensitive Terraform variable or output: a string, number, bool,
null, or a list/map of those (decoded JSON). ``collect_secret_texts`` turns one into the strings
a redactor must hide; ``mask`` hides them in a text, ``scrub`` in a structure. This module is the
one masking boundary: plan values (``scrub``), Terraform plan JSON (``scrub(..., whole=True)``),
Terraform's error texts (``terraform.diagnostics.Redactor``), API server errors about a Secret
(``encoded_forms``) and, through ``KNOWN``, everything envctl prints, stores or sends.

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

import base64
import contextlib
import dataclasses
import json
import threading
from collections.abc import Iterable
from typing import Any

from envctl.core.changes import SENSITIVE, Change, NodePlan
from envctl.core.errors import EnvctlError

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


def scrub(value: Any, secrets: Iterable[str], marker: str = SENSITIVE, *, whole: bool = False) -> Any:
    """``value`` (a string, number or a structure of them) with every secret text hidden.

    Strings are masked where a secret occurs (``whole``: the whole string becomes ``marker``,
    for values whose shape could hint at the secret); a number whose text is a secret is masked
    whole; dict keys are names, never secrets, and stay.
    """
    texts = secrets if isinstance(secrets, set | frozenset) else set(secrets)
    if not texts:
        return value
    if isinstance(value, str):
        if whole:
            return marker if any(s and s in value for s in texts) else value
        return mask(value, texts, marker)
    if isinstance(value, int | float) and not isinstance(value, bool):
        found: set[str] = set()
        collect_secret_texts(value, found)
        return marker if found & texts else value
    if isinstance(value, dict):
        return {k: scrub(v, texts, marker, whole=whole) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, texts, marker, whole=whole) for v in value]
    if isinstance(value, tuple):
        return tuple(scrub(v, texts, marker, whole=whole) for v in value)
    return value


def scrub_plan(plan: NodePlan, secrets: Iterable[str]) -> NodePlan:
    """``plan`` with ``secrets`` and every secret the process knows (``KNOWN``) masked in its
    changes (values and reasons) and notes: what the views show and what a plan bundle stores
    (and fingerprints)."""
    texts = set(secrets) | KNOWN.texts
    if not texts:
        return plan

    def masked(changes: tuple[Change, ...]) -> tuple[Change, ...]:
        return tuple(
            dataclasses.replace(
                c,
                before=scrub(c.before, texts),
                after=scrub(c.after, texts),
                reasons=tuple(scrub(list(c.reasons), texts)),  # take-overs and drift show values
            )
            for c in changes
        )

    return dataclasses.replace(
        plan,
        changes=masked(plan.changes),
        output_changes=masked(plan.output_changes),
        notes=tuple(scrub(list(plan.notes), texts)),
    )


def scrub_error(err: EnvctlError, secrets: Iterable[str] = ()) -> EnvctlError:
    """``err`` with ``secrets`` and every known secret masked in its message, detail and hint
    (in place: the same exception, so its type and exit code stay); returns it."""
    texts = set(secrets) | KNOWN.texts
    if texts:
        err.message = mask(err.message, texts, SENSITIVE)
        err.detail = mask(err.detail, texts, SENSITIVE) if err.detail else err.detail
        err.hint = mask(err.hint, texts, SENSITIVE) if err.hint else err.hint
        err.args = (err.message,)
    return err


def encoded_forms(value: str) -> set[str]:
    """The texts a Kubernetes Secret value takes: as written, base64-decoded (``data`` holds
    base64) and base64-encoded (``stringData`` is stored encoded), each in every form
    ``collect_secret_texts`` knows."""
    forms = {value}
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        forms.add(base64.b64decode(value, validate=True).decode())
    forms.add(base64.b64encode(value.encode()).decode())
    return secret_texts(forms)


class KnownSecrets:
    """Every secret text this process has seen: the one masking boundary's memory.

    Adapters add what they learn (sensitive Terraform outputs and variables, Kubernetes Secret
    values); everything envctl prints, stores or sends passes ``mask``/``scrub`` with these, so
    a text from Terraform, kubectl or the API server that echoes a secret is masked even where
    no caller thought of it. Thread-safe; a set only grows (``clear`` is for tests).
    """

    def __init__(self) -> None:
        self._texts: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def add(self, value: Any) -> None:
        """Remember a secret value (any JSON-like value; its leaves are secrets)."""
        self.add_texts(secret_texts([value]))

    def add_texts(self, texts: Iterable[str]) -> None:
        new = {t for t in texts if t} - self._texts
        if new:
            with self._lock:
                self._texts = self._texts | new

    @property
    def texts(self) -> frozenset[str]:
        return self._texts

    def mask(self, text: str, marker: str = SENSITIVE) -> str:
        return mask(text, self._texts, marker) if self._texts else text

    def scrub(self, value: Any, marker: str = SENSITIVE) -> Any:
        return scrub(value, self._texts, marker) if self._texts else value

    def clear(self) -> None:
        with self._lock:
            self._texts = frozenset()


KNOWN = KnownSecrets()
"""The process's known secrets (see ``KnownSecrets``)."""
