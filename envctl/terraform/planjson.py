"""Terraform's plan JSON (``show -json PLANFILE``) -> envctl's change set. Pure functions.

Every value that leaves this module is masked: sensitive parts (``before_sensitive`` /
``after_sensitive``) become ``(sensitive)`` or ``(sensitive, changed) sha256:...``, and
values Terraform will only know after apply become ``(known after apply)``.

Imports only the standard library and ``envctl.core``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from envctl.core.changes import SENSITIVE, Action, Change, Outputs, sensitive_marker
from envctl.core.secrets import scrub

UNKNOWN = "(known after apply)"

_REASONS = {
    "replace_because_cannot_update": "an attribute cannot be updated in place",
    "replace_because_tainted": "the resource is tainted",
    "replace_by_request": "replacement was requested (-replace)",
    "replace_by_triggers": "replace_triggered_by changed",
    "delete_because_no_resource_config": "removed from the configuration",
    "delete_because_no_module": "its module was removed from the configuration",
    "delete_because_wrong_repetition": "count/for_each changed",
    "delete_because_count_index": "its count index is out of range",
    "delete_because_each_key": "its for_each key is gone",
    "delete_because_no_move_target": "its moved block target is gone",
    "read_because_config_unknown": "its configuration depends on values known after apply",
    "read_because_dependency_pending": "it depends on a pending change",
    "read_because_check_nested": "a check block reads it",
}


def action_of(actions: Iterable[str]) -> Action:
    """Map Terraform's ``change.actions`` list to one ``Action``."""
    acts = list(actions)
    if set(acts) == {"delete", "create"}:
        return Action.REPLACE
    if acts == ["create"]:
        return Action.CREATE
    if acts == ["update"]:
        return Action.UPDATE
    if acts in (["delete"], ["forget"]):
        return Action.DELETE
    if acts == ["read"]:
        return Action.READ
    return Action.NOOP


def with_unknowns(value: Any, unknown: Any) -> Any:
    """Put ``(known after apply)`` where ``after_unknown`` marks a value."""
    if unknown is True:
        return UNKNOWN
    if isinstance(unknown, dict):
        base = dict(value) if isinstance(value, dict) else {}
        for k, u in unknown.items():
            if u is not False:
                base[k] = with_unknowns(base.get(k), u)
        return base if base or value is not None else value
    if isinstance(unknown, list) and isinstance(value, list):
        return [with_unknowns(v, unknown[i] if i < len(unknown) else False) for i, v in enumerate(value)]
    return value


def mask_pair(before: Any, after: Any, before_sens: Any, after_sens: Any) -> tuple[Any, Any]:
    """Mask ``before`` and ``after`` together, so a changed secret says *that* it changed, not *what*."""
    if before_sens is True or after_sens is True:
        b = None if before is None else SENSITIVE
        if after is None:
            a = None
        elif before is None:
            a = SENSITIVE  # a new value: nothing to compare with
        elif after == UNKNOWN:
            a = f"{SENSITIVE} {UNKNOWN}"
        else:
            a = sensitive_marker(before, after)
        return b, a
    if isinstance(before, dict) or isinstance(after, dict):
        bd = before if isinstance(before, dict) else {}
        ad = after if isinstance(after, dict) else {}
        bs = before_sens if isinstance(before_sens, dict) else {}
        as_ = after_sens if isinstance(after_sens, dict) else {}
        mb: dict[str, Any] = {}
        ma: dict[str, Any] = {}
        for k in list(bd) + [k for k in ad if k not in bd]:
            x, y = mask_pair(bd.get(k), ad.get(k), bs.get(k, False), as_.get(k, False))
            if k in bd:
                mb[k] = x
            if k in ad:
                ma[k] = y
        return (mb if isinstance(before, dict) else _mask_alone(before, before_sens)), (
            ma if isinstance(after, dict) else _mask_alone(after, after_sens)
        )
    if isinstance(before, list) or isinstance(after, list):
        bl = before if isinstance(before, list) else []
        al = after if isinstance(after, list) else []
        bs_l = before_sens if isinstance(before_sens, list) else []
        as_l = after_sens if isinstance(after_sens, list) else []
        n = max(len(bl), len(al))
        lb: list[Any] = []
        la: list[Any] = []
        for i in range(n):
            x, y = mask_pair(
                bl[i] if i < len(bl) else None,
                al[i] if i < len(al) else None,
                bs_l[i] if i < len(bs_l) else False,
                as_l[i] if i < len(as_l) else False,
            )
            if i < len(bl):
                lb.append(x)
            if i < len(al):
                la.append(y)
        return (lb if isinstance(before, list) else _mask_alone(before, before_sens)), (
            la if isinstance(after, list) else _mask_alone(after, after_sens)
        )
    return before, after


def _mask_alone(value: Any, sens: Any) -> Any:
    masked, _ = mask_pair(value, None, sens, False)
    return masked


def changed_fields(before: Any, after: Any, unknown: Any, prefix: str = "") -> list[str]:
    """Attribute paths that differ between ``before`` and ``after`` (names only, never values)."""
    if unknown is True:
        return [prefix] if prefix else []
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[str] = []
        unk = unknown if isinstance(unknown, dict) else {}
        for k in sorted(set(before) | set(after) | set(unk)):
            path = f"{prefix}.{k}" if prefix else k
            if k in unk and unk[k] is True:
                out.append(path)
            elif before.get(k) != after.get(k) or isinstance(unk.get(k), dict | list):
                sub = changed_fields(before.get(k), after.get(k), unk.get(k, False), path)
                out.extend(sub)
        return out
    if before != after:
        return [prefix] if prefix else []
    return []


def _path_text(path: Any) -> str:
    if not isinstance(path, list):
        return str(path)
    text = ""
    for p in path:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return text


def resource_change(rc: Mapping[str, Any], *, drift: bool = False) -> Change:
    """One entry of ``resource_changes`` (or ``resource_drift`` when ``drift``) as a masked ``Change``."""
    ch = rc.get("change") or {}
    action = action_of(ch.get("actions") or ["no-op"])
    before_raw = ch.get("before")
    after_raw = with_unknowns(ch.get("after"), ch.get("after_unknown", False))
    before, after = mask_pair(
        before_raw, after_raw, ch.get("before_sensitive", False), ch.get("after_sensitive", False)
    )
    reasons: list[str] = []
    if drift:
        if action is Action.DELETE:
            reasons.append("deleted outside of Terraform")
        else:
            reasons.append("changed outside of Terraform")
    for p in ch.get("replace_paths") or ():
        reasons.append(f"{_path_text(p)} forces replacement")
    reason = rc.get("action_reason")
    if reason:
        reasons.append(_REASONS.get(str(reason), str(reason).replace("_", " ")))
    if "forget" in (ch.get("actions") or ()):
        reasons.append("removed from state only (removed block with destroy = false)")
    fields: list[str] = []
    if action in (Action.UPDATE, Action.REPLACE):
        fields = changed_fields(before_raw, ch.get("after"), ch.get("after_unknown", False))
    if rc.get("mode") == "data" and action is Action.NOOP:
        action = Action.READ
    return Change(
        address=str(rc.get("address")),
        action=action,
        before=before,
        after=after,
        reasons=tuple(reasons),
        fields=tuple(fields),
    )


def output_change(name: str, oc: Mapping[str, Any]) -> Change:
    """One entry of ``output_changes`` as a masked ``Change`` addressed ``output.NAME``."""
    after = with_unknowns(oc.get("after"), oc.get("after_unknown", False))
    before, after = mask_pair(
        oc.get("before"), after, oc.get("before_sensitive", False), oc.get("after_sensitive", False)
    )
    return Change(
        address=f"output.{name}",
        action=action_of(oc.get("actions") or ["no-op"]),
        before=before,
        after=after,
    )


@dataclass(frozen=True)
class PlanSummary:
    """What envctl takes from one plan JSON document."""

    changes: tuple[Change, ...]
    outputs_changing: tuple[str, ...]
    output_changes: tuple[Change, ...]
    outputs_unknown: tuple[str, ...]
    drifted: int
    errored: bool
    planned_outputs: Outputs | None = None


def _has_unknown(unknown: Any) -> bool:
    if unknown is True:
        return True
    if isinstance(unknown, dict):
        return any(_has_unknown(v) for v in unknown.values())
    if isinstance(unknown, list):
        return any(_has_unknown(v) for v in unknown)
    return False


def summarize(plan: Mapping[str, Any], *, refresh_only: bool = False) -> PlanSummary:
    """Turn ``show -json`` of a saved plan into changes and output facts.

    A refresh-only plan proposes no resource changes: what it finds is ``resource_drift``,
    which then *is* the change set (the drift envctl reports).
    """
    drift = [resource_change(rc, drift=True) for rc in plan.get("resource_drift") or ()]
    if refresh_only:
        changes = [c for c in drift if c.action.changes]
    else:
        changes = [resource_change(rc) for rc in plan.get("resource_changes") or ()]
    changing: list[str] = []
    output_changes: list[Change] = []
    unknown: list[str] = []
    known: dict[str, Any] = {}  # outputs whose value after apply the plan already says
    sensitive: set[str] = set()
    for name, oc in sorted((plan.get("output_changes") or {}).items()):
        acts = oc.get("actions") or ["no-op"]
        if acts != ["no-op"]:
            changing.append(name)
            output_changes.append(output_change(name, oc))
        if _has_unknown(oc.get("after_unknown", False)):
            unknown.append(name)
        elif acts != ["delete"]:
            known[name] = oc.get("after")
            if _has_unknown(oc.get("after_sensitive", False)):  # True anywhere in the shape
                sensitive.add(name)
    return PlanSummary(
        changes=tuple(changes),
        outputs_changing=tuple(changing),
        output_changes=tuple(output_changes),
        outputs_unknown=tuple(unknown),
        drifted=len([c for c in drift if c.action.changes]),
        errored=bool(plan.get("errored")),
        planned_outputs=None if refresh_only else Outputs(known, frozenset(sensitive)),
    )


def scrub_changes(changes: Iterable[Change], secrets: Sequence[str]) -> tuple[Change, ...]:
    """Changes with every string that contains a known secret masked whole.

    Terraform's sensitivity marks do not always follow a value into attributes a provider
    computes from it (``terraform_data.output`` echoes a sensitive ``input`` unmarked), so
    envctl also masks every string holding the value of a sensitive variable or output.
    """
    return tuple(
        replace(c, before=scrub(c.before, secrets, whole=True), after=scrub(c.after, secrets, whole=True))
        if secrets
        else c
        for c in changes
    )
