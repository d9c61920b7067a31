"""Durations as users write them (``30s``, ``5m``, ``1h30m``, ``2d``). Pure."""

from __future__ import annotations

import math
import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in ``text``; ``ValueError`` with a readable message when it is not a duration."""
    s = text.strip()
    pos = 0
    total = 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s) or not math.isfinite(total):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise ValueError(f"{shown!r} is not a duration; write e.g. 30s, 5m, 1h or 1h30m")
    return total


def format_duration(seconds: float) -> str:
    """``seconds`` as users write durations, in its largest unit and the next one: ``2h5m``, ``45s``."""
    left = max(0, round(seconds))
    units = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
    first = next(i for i, (_, size) in enumerate(units) if left >= size or size == 1)
    text = ""
    for unit, size in units[first : first + 2]:
        count, left = divmod(left, size)
        if count or not text:
            text += f"{count}{unit}"
    return text
