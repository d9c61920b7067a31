"""Render plans and apply results: text (summary table, then diffs), versioned JSON, Markdown.

Values in a plan are already masked by the adapters; views only lay them out.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from envctl.core.changes import Action, Change, NodePlan
from envctl.core.schedule import Status

if TYPE_CHECKING:
    from envctl.core.approval import Approval
    from envctl.core.bundle import PlanBundle
    from envctl.core.results import ApplyResult

FORMAT_VERSION = "1"
_SYMBOL = {
    Action.CREATE: "+",
    Action.UPDATE: "~",
    Action.DELETE: "-",
    Action.REPLACE: "-/+",
    Action.READ: "<=",
    Action.NOOP: " ",
    Action.PENDING: "?",
}


def _status(p: NodePlan) -> str:
    if p.pending_upstream:
        return "pending upstream"
    if p.destructive:
        return "DESTRUCTIVE"
    return "changes" if p.has_changes else "no changes"


VALUE_WIDTH = 80  # an old or new value of an update, shortened in the middle beyond this
CREATE_LIMIT = 2000  # a created object is shown whole up to this many characters of compact JSON


def _short(text: str, width: int = VALUE_WIDTH) -> str:
    """``text`` shortened in the middle (both ends stay readable: image tags, ARNs, hashes)."""
    if len(text) <= width:
        return text
    keep = width - 3
    return text[: keep - keep // 2] + "..." + text[len(text) - keep // 2 :]


def _value(v: Any) -> str:
    return _short(json.dumps(v, sort_keys=True, default=str), 200)


def _field_value(obj: Any, path: str) -> tuple[bool, Any]:
    """The value at a field path like ``spec.containers[0].image`` (found, value)."""
    for part in path.split("."):
        key, _, rest = part.partition("[")
        steps: list[str | int] = [key] if key else []
        steps += [int(i) for i in rest.rstrip("]").split("][") if i.isdigit()] if rest else []
        for step in steps:
            in_list = isinstance(step, int) and isinstance(obj, list) and step < len(obj)
            if not (in_list or (isinstance(step, str) and isinstance(obj, dict) and step in obj)):
                return False, None
            obj = obj[step]
    return True, obj


def _dumped(v: Any) -> str:
    return _short(json.dumps(v, sort_keys=True, default=str))


def _update_line(c: Change, path: str) -> str:
    """``~ path: old -> new`` (values masked by the adapters; absent on one side: added/removed)."""
    marker = _sensitive_marker(c.after, path)
    if marker:
        return f"    ~ {path}: {marker}"
    had, old = _field_value(c.before, path)
    has, new = _field_value(c.after, path)
    if not had and not has:
        return f"    ~ {path}"
    if not had:
        return f"    + {path}: {_dumped(new)}"
    if not has:
        return f"    - {path}: {_dumped(old)}"
    return f"    ~ {path}: {_dumped(old)} -> {_dumped(new)}"


def _created(v: Any) -> str:
    """A created object as compact JSON, whole up to CREATE_LIMIT; larger: its size, never cut mid-JSON."""
    text = json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)
    if len(text) <= CREATE_LIMIT:
        return text
    keys = ", ".join(sorted(v)) if isinstance(v, dict) else type(v).__name__
    return f"({len(text)} characters of JSON with {keys}; the whole object: --format json)"


def _sensitive_marker(obj: Any, path: str) -> str | None:
    """The masked marker (``(sensitive, changed) <hash>``) at a dotted field path, if there is one:
    a changed Secret value says so without its value; any other value is not shown here."""
    for key in path.split("."):
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj if isinstance(obj, str) and obj.startswith("(sensitive") else None


def _change_lines(c: Change) -> list[str]:
    head = f"{_SYMBOL[c.action]} {c.address} ({c.action.value})"
    if c.reasons:
        head += f"  because: {'; '.join(c.reasons)}"
    lines = [head]
    if c.manager:
        lines.append(f"    manager: {c.manager}")
    if c.action is Action.UPDATE and isinstance(c.before, dict) and isinstance(c.after, dict) and c.fields:
        lines.extend(_update_line(c, f) for f in c.fields[:30])
    elif c.action in (Action.CREATE, Action.REPLACE) and c.after is not None:
        lines.append(f"    {_created(c.after)}")
    return lines


def _node_details(p: NodePlan) -> list[str]:
    """The detail lines of one node (pending inputs, changed resources, notes); empty if none."""
    lines: list[str] = []
    if p.pending_upstream:
        lines.append(f"? pending upstream: inputs {', '.join(p.pending_upstream)}")
    for c in p.changes:
        if c.action.changes:
            lines.extend(_change_lines(c))
    lines.extend(_output_line(c) for c in p.output_changes)
    lines.extend(f"note: {note}" for note in p.notes)
    return lines


def _output_line(c: Change) -> str:
    """One changed output, old -> new (values masked by the adapter: a secret shows as a marker)."""
    if c.action is Action.CREATE:
        return f"+ {c.address}: {_value(c.after)}"
    if c.action is Action.DELETE:
        return f"- {c.address}: {_value(c.before)} (removed)"
    return f"~ {c.address}: {_value(c.before)} -> {_value(c.after)}"


def plan_text(
    bundle: PlanBundle, needs_approval: list[str], plan_dir: str | None, color: bool = False
) -> str:
    """The plan as a table and per-node details; ``plan_dir`` None: the plan was not saved."""
    rows = []
    for n in bundle.order:
        p = bundle.nodes[n]
        k = p.counts
        rows.append((n, str(k.add), str(k.change), str(k.destroy), str(k.replace), _status(p)))
    head = ("NODE", "ADD", "CHANGE", "DESTROY", "REPLACE", "STATUS")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [
        f"Plan {bundle.id} for environment {bundle.environment} at "
        f"{(bundle.commit or 'no commit')[:12]}{' (uncommitted changes)' if bundle.dirty else ''}",
        "",
        fmt.format(*head),
    ]
    engines = sorted({p.artifacts["engine"] for p in bundle.nodes.values() if "engine" in p.artifacts})
    if engines:
        out.insert(1, f"Terraform engine: {', '.join(engines)}")
    for r in rows:
        line = fmt.format(*r)
        if color and r[5] == "DESTRUCTIVE":
            line = f"\x1b[31;1m{line}\x1b[0m"
        out.append(line)
    out.append("")
    for n in bundle.order:
        body = _node_details(bundle.nodes[n])
        if body:
            out += [f"{n}:", *(f"  {line}" for line in body), ""]
    total = sum(bundle.nodes[n].counts.total for n in bundle.order)
    outputs = sum(len(bundle.nodes[n].output_changes) for n in bundle.order)
    pend = [n for n in bundle.order if bundle.nodes[n].pending_upstream]
    if not bundle.has_changes:
        out.append("No changes. The environment matches the configuration.")
    else:
        out.append(
            f"{total} change(s)"
            + (f" and {outputs} output change(s)" if outputs else "")
            + f" in {sum(1 for n in bundle.order if bundle.nodes[n].has_changes)} node(s)"
            + (f"; {len(pend)} node(s) pending upstream" if pend else "")
        )
    if needs_approval:
        out.append(f"Approval required for: {', '.join(needs_approval)}")
    if plan_dir is not None:
        out.append(f"Saved plan: {plan_dir}")
        if bundle.has_changes:
            out.append(f"Apply it with: envctl apply -e {bundle.environment} {plan_dir}")
    return "\n".join(out)


def _plan_json(p: NodePlan) -> dict[str, Any]:
    return {k: v for k, v in p.to_json().items() if k != "artifacts"}


def plan_json(bundle: PlanBundle, needs_approval: list[str], plan_dir: str | None) -> str:
    data = {
        "format_version": FORMAT_VERSION,
        "type": "plan",
        "plan_id": bundle.id,
        "plan_dir": plan_dir,
        "environment": bundle.environment,
        "commit": bundle.commit,
        "dirty": bundle.dirty,
        "fingerprint": bundle.fingerprint,
        "has_changes": bundle.has_changes,
        "needs_approval": needs_approval,
        "nodes": [
            {
                **_plan_json(bundle.nodes[n]),
                "status": _status(bundle.nodes[n]),
                "engine": bundle.nodes[n].artifacts.get("engine"),
                "counts": bundle.nodes[n].counts.__dict__,
            }
            for n in bundle.order
        ],
    }
    return json.dumps(data, indent=2, default=str)


def plan_markdown(bundle: PlanBundle, needs_approval: list[str], plan_dir: str | None) -> str:
    out = [
        f"### envctl plan for `{bundle.environment}` at `{(bundle.commit or 'working tree')[:12]}`",
        "",
        f"Plan `{bundle.id}`, fingerprint `{bundle.fingerprint[:12]}`"
        + (f", saved in `{plan_dir}`" if plan_dir else ""),
        "",
        "| node | add | change | destroy | replace | status |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for n in bundle.order:
        p = bundle.nodes[n]
        k = p.counts
        status = _status(p)
        status = f"**{status}**" if status == "DESTRUCTIVE" else status
        out.append(f"| `{n}` | {k.add} | {k.change} | {k.destroy} | {k.replace} | {status} |")
    out.append("")
    for n in bundle.order:
        p = bundle.nodes[n]
        body = _node_details(p)
        if not body:
            continue
        out += [
            "<details>",
            f"<summary><code>{n}</code>: {_status(p)}</summary>",
            "",
            "```diff",
            *body,
            "```",
            "",
            "</details>",
            "",
        ]
    if needs_approval:
        out.append(f"Approval required for: {', '.join(f'`{n}`' for n in needs_approval)}")
    return "\n".join(out)


def apply_text(result: ApplyResult) -> str:
    out = ["", f"Run {result.run_id} of plan {result.plan_id}:"]
    for n, r in result.results.items():
        extra = f" ({r.reason})" if r.reason else ""
        t = f" in {r.seconds:.1f}s" if r.seconds else ""
        out.append(f"  {n}: {r.status.value}{t}{extra}")
    counts: dict[str, int] = {}
    for r in result.results.values():
        counts[r.status.value] = counts.get(r.status.value, 0) + 1
    out.append("Summary: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    for n, r in result.results.items():  # what a held node would now do: the plan to approve
        if r.status is Status.BLOCKED and r.plan is not None and r.plan.has_changes:
            out += ["", f"{n} (held) would now:", *(f"  {line}" for line in _node_details(r.plan))]
    if result.interrupted:
        out.append("Interrupted: nodes that did not start can be converged with envctl apply --resume.")
    return "\n".join(out)


def approval_text(a: Approval) -> str:
    bound = (
        f"; nodes re-planned during apply may go without asking again when they only {_BOUND[a.pending]}"
        if a.pending
        else "; a node re-planned during apply that differs is asked about again"
    )
    return f"Approved plan {a.plan_id} ({a.fingerprint[:12]}) for {a.environment} by {a.by}{bound}"


_BOUND = {"creates": "create", "updates": "create or update in place", "any": "change (anything)"}


def approval_json(a: Approval) -> str:
    return json.dumps({"format_version": FORMAT_VERSION, "type": "approval", **a.to_json()}, indent=2)


def apply_json(result: ApplyResult) -> str:
    return json.dumps(
        {
            "format_version": FORMAT_VERSION,
            "type": "apply",
            "run": result.run_id,
            "plan_id": result.plan_id,
            "interrupted": result.interrupted,
            "nodes": [
                {
                    "node": n,
                    "status": r.status.value,
                    "reason": r.reason,
                    "seconds": round(r.seconds, 3),
                    **({"plan": _plan_json(r.plan)} if r.status is Status.BLOCKED and r.plan else {}),
                }
                for n, r in result.results.items()
            ],
        },
        indent=2,
    )
