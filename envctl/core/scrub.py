"""Mask secret texts inside plan values: defence in depth for views. Pure functions.

``secrets`` are texts from ``core.secrets.collect_secret_texts``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from envctl.core.changes import SENSITIVE, NodePlan
from envctl.core.secrets import collect_secret_texts, mask


def scrub(value: Any, secrets: set[str]) -> Any:
    """Replace every occurrence of a secret string inside ``value`` (defence in depth for views).

    ``secrets`` are texts from ``collect_secret_texts``; a number whose text is one is masked whole.
    """
    if not secrets:
        return value
    if isinstance(value, str):
        return mask(value, secrets, SENSITIVE)
    if isinstance(value, int | float) and not isinstance(value, bool):
        texts: set[str] = set()
        collect_secret_texts(value, texts)
        return SENSITIVE if texts & secrets else value
    if isinstance(value, dict):
        return {k: scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v, secrets) for v in value]
    if isinstance(value, tuple):
        return tuple(scrub(v, secrets) for v in value)
    return value


def scrub_plan(plan: NodePlan, secrets: set[str]) -> NodePlan:
    if not secrets:
        return plan
    changes = tuple(
        dataclasses.replace(c, before=scrub(c.before, secrets), after=scrub(c.after, secrets))
        for c in plan.changes
    )
    return dataclasses.replace(plan, changes=changes, notes=tuple(scrub(list(plan.notes), secrets)))
