"""What a YAML scalar means to kubectl: the scalar rules of sigs.k8s.io/yaml, pure.

kubectl reads manifests with sigs.k8s.io/yaml: go-yaml v2 resolves each scalar (YAML 1.1-ish:
``y``/``yes``/``on`` are true, ``0123`` is octal 83, ``1e3`` is 1000, ``0x1F`` and ``0b101`` are
integers, ``_`` is dropped from numbers; but ``12:30``, dates and ``=`` stay strings), the result
is turned into JSON (non-string keys become strings, NaN and infinities are refused), and kubectl
decodes that JSON into an unstructured object (an integral number that fits int64 is an integer,
every other number a float). This module reproduces those rules, found by experiment against
``kubectl create --dry-run=client -o json`` and proved by ``tests/integration/test_kubectl_yaml.py``.

Errors are ``ValueError`` with kubectl's reason; the YAML reader adds the file and line. A NaN or
infinite value is a :class:`NonFinite` error: kubectl refuses it only if it survives into the JSON
(a later equal key replaces it first).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import decimal
import math
import re
import struct
from typing import Any

TAG = "tag:yaml.org,2002:"
STR, BOOL, INT, FLOAT, NULL = (TAG + t for t in ("str", "bool", "int", "float", "null"))
TIMESTAMP, BINARY, MERGE = TAG + "timestamp", TAG + "binary", TAG + "merge"
_UINT = "uint"  # go-yaml's int that only fits uint64: a float once kubectl decodes it
# Tags go-yaml resolves (and checks); any other tag leaves the scalar a string.
_RESOLVABLE = frozenset({"", STR, BOOL, INT, FLOAT, TIMESTAMP, NULL})

_MAP: dict[str, tuple[str, Any]] = {}
for _words, _tag, _value in (
    (("y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true", "True", "TRUE"), BOOL, True),
    (("n", "N", "no", "No", "NO", "off", "Off", "OFF", "false", "False", "FALSE"), BOOL, False),
    (("", "~", "null", "Null", "NULL"), NULL, None),
    ((".nan", ".NaN", ".NAN"), FLOAT, math.nan),
    ((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), FLOAT, math.inf),
    (("-.inf", "-.Inf", "-.INF"), FLOAT, -math.inf),
    (("<<",), MERGE, "<<"),
):
    for _w in _words:
        _MAP[_w] = (_tag, _value)

# go-yaml's first-character hint: which scalars may be something other than a string
_HINT: dict[str, str] = {c: "D" for c in "0123456789"}
_HINT.update({"+": "S", "-": "S", ".": "."})
_HINT.update({c: "M" for c in "yYnNtTfFoO~<"})

_YAML_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
# strconv.ParseFloat's decimal syntax (what a scalar starting with "." may be)
_GO_FLOAT = re.compile(r"^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$")
_INT64 = (-(1 << 63), (1 << 63) - 1)
_DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}
_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:(?:[Tt](\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))"
    r"|(?: (\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.\d+)?))?$"
)


class NonFinite(ValueError):
    """A NaN or infinite value: refused when the JSON is written, so only if nothing replaced it."""


def _short(tag: str) -> str:
    return "!!" + tag[len(TAG) :] if tag.startswith(TAG) else tag


def _parse_int(text: str, *, signed: bool) -> int | None:
    """Go's ``strconv.ParseInt(text, 0, 64)`` / ``ParseUint``: sign, 0x/0o/0b prefix, 0 = octal."""
    sign, body = 1, text
    if signed and body[:1] in ("+", "-"):
        sign, body = (-1 if body[0] == "-" else 1), body[1:]
    low = body[:2].lower()
    if low in ("0x", "0o", "0b"):
        base, digits = {"0x": 16, "0o": 8, "0b": 2}[low], body[2:]
    elif body.startswith("0") and len(body) > 1:
        base, digits = 8, body[1:]
    else:
        base, digits = 10, body
    if not digits or any(c not in _DIGITS[base] for c in digits):
        return None
    value = sign * int(digits, base)
    low_limit, high = _INT64 if signed else (0, (1 << 64) - 1)
    return value if low_limit <= value <= high else None


def _is_timestamp(text: str) -> bool:
    m = _TIMESTAMP.match(text)
    if m is None:
        return False
    year, month, day = (int(g) for g in m.group(1, 2, 3))
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        return False
    clock = [g for g in m.group(4, 5, 6, 7, 8, 9) if g is not None]
    return not clock or (int(clock[0]) < 24 and int(clock[1]) < 60 and int(clock[2]) < 60)


def _guess(text: str) -> tuple[str, Any]:
    """go-yaml v2 ``resolve`` of an untagged plain scalar (or one tagged with a resolvable tag)."""
    hint = "M" if text == "" else _HINT.get(text[0], "")
    if not hint:
        return STR, text
    if text in _MAP:
        return _MAP[text]
    if hint == ".":
        if _GO_FLOAT.match(text):
            f = float(text)
            if not math.isinf(f):
                return FLOAT, f
    elif hint in "DS":
        plain = text.replace("_", "")
        if (i := _parse_int(plain, signed=True)) is not None:
            return INT, i
        if (u := _parse_int(plain, signed=False)) is not None:
            return _UINT, u
        if _YAML_FLOAT.match(plain):
            f = float(plain)
            if not math.isinf(f):  # strconv.ParseFloat refuses an overflow: then a string
                return FLOAT, f
    return STR, text


def resolve(text: str, tag: str | None, plain: bool) -> tuple[str, Any]:
    """(resolved tag, Python value) of one scalar as go-yaml v2 decodes it into ``interface{}``.

    ``tag`` is the explicit tag (``None`` when there is none), ``plain`` whether the scalar was
    written unquoted. Raises ``ValueError`` where kubectl refuses the scalar.
    """
    if tag is None and not plain:
        return STR, text
    tag = tag or ""
    if tag not in _RESOLVABLE:
        if tag == BINARY:
            try:
                data = base64.b64decode(text.replace("\n", "").replace("\r", ""), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("!!binary value contains invalid base64 data") from None
            return STR, data.decode("utf-8", "replace")
        return STR, text  # !!merge, !!value, !custom, "!": the text itself
    if tag == STR:
        return STR, text
    if tag == TIMESTAMP and _is_timestamp(text):
        return STR, text
    rtag, value = _guess(text)
    if tag in ("", rtag) or (tag == INT and rtag == _UINT):
        return rtag, value
    if tag == FLOAT and rtag == INT:
        return FLOAT, float(value)
    shown = "!!int" if rtag == _UINT else _short(rtag)
    raise ValueError(f"cannot decode {shown} `{text}` as a {_short(tag)}")


def value(rtag: str, raw: Any) -> Any:
    """The JSON value kubectl sends for a resolved scalar (NaN and infinities are refused)."""
    if rtag == _UINT:
        return float(raw)
    if isinstance(raw, float):
        if math.isnan(raw) or math.isinf(raw):
            shown = "NaN" if math.isnan(raw) else "+Inf" if raw > 0 else "-Inf"
            raise NonFinite(f"json: unsupported value: {shown}")
        if raw.is_integer():
            # Go writes a float with its shortest digits (1e3 as 1000, 2^63 as 9223372036854776000);
            # kubectl decodes that text as an integer when it fits int64
            whole = int(decimal.Decimal(repr(raw)))
            if _INT64[0] <= whole <= _INT64[1]:
                return whole
    return raw


def is_float_zero(rtag: str, raw: Any) -> bool:
    """Whether a key is the float 0 or -0: one key to Go's map (0.0 == -0.0, and the later spelling
    replaces the earlier one), two keys in JSON ("0" and "-0")."""
    return rtag == FLOAT and raw == 0


def key(rtag: str, raw: Any) -> str:
    """The string a mapping key becomes in kubectl's JSON (sigs.k8s.io/yaml's key rules)."""
    if raw is None:
        raise ValueError("unsupported map key of type: <nil> (a null key)")
    if rtag == _UINT:
        raise ValueError(f"unsupported map key of type: uint64, key: {raw}")
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int):
        return str(raw)
    if isinstance(raw, float):
        return _format_float32(raw)
    return str(raw)


def _format_float32(f: float) -> str:
    """Go's ``strconv.FormatFloat(f, 'g', -1, 32)``, with kubectl's names for NaN and infinities."""
    if math.isnan(f):
        return ".nan"
    try:
        f32 = struct.unpack("f", struct.pack("f", f))[0]
    except OverflowError:
        f32 = math.copysign(math.inf, f)
    if math.isinf(f32):
        return ".inf" if f32 > 0 else "-.inf"
    if f32 == 0:
        return "-0" if math.copysign(1, f32) < 0 else "0"
    for precision in range(1, 10):  # the shortest decimal that reads back as the same float32
        text = f"{f32:.{precision - 1}e}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == f32:
            break
    mantissa, exp_text = text.split("e")
    sign = "-" if mantissa.startswith("-") else ""
    digits = mantissa.lstrip("-").replace(".", "").rstrip("0") or "0"
    exp = int(exp_text)
    if exp < -4 or exp >= 6:
        tail = f".{digits[1:]}" if len(digits) > 1 else ""
        return f"{sign}{digits[0]}{tail}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{sign}0.{'0' * (-exp - 1)}{digits}"
    whole = digits[: exp + 1].ljust(exp + 1, "0")
    frac = digits[exp + 1 :]
    return f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}"
