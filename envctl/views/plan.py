"""Render plans and apply results: text (summary table, then diffs), versioned JSON, Markdown.

Values in a plan are already masked by the adapters; views only lay them out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from envctl.core import hints
from envctl.core.blast import BlastRadius, Tally
from envctl.core.changes import Action, Change, Deletion, NodePlan
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
    if p.deletion is not None:
        word = "REMOVED FROM GIT" if p.deletion is Deletion.REMOVED else "DESTROY"
        return word if p.has_changes else f"{word.lower()}: kept"
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
    """The value at a field path like ``spec.containers[0].image`` (found, value). A key may hold
    dots itself (``metadata.labels.app.kubernetes.io/name``, ``data.config.yaml``): the longest
    key of the mapping that the rest of the path starts with is taken."""
    rest = path
    while rest and rest != ".":
        if rest.startswith("["):
            end = rest.find("]")
            index = rest[1:end]
            if end < 0 or not index.isdigit() or not isinstance(obj, list) or int(index) >= len(obj):
                return False, None
            obj, rest = obj[int(index)], rest[end + 1 :]
            continue
        rest = rest.removeprefix(".")
        if not isinstance(obj, dict):
            return False, None
        key = max(
            (k for k in obj if isinstance(k, str) and (rest == k or rest.startswith((f"{k}.", f"{k}[")))),
            key=len,
            default=None,
        )
        if key is None:
            return False, None
        obj, rest = obj[key], rest[len(key) :]
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


def _created(v: Any, size: int | None = None) -> str:
    """A created object as compact JSON, whole up to CREATE_LIMIT; larger: its size, never cut mid-JSON.
    ``size``: the length of that JSON when known (the plan bundle's), so a large object is not
    serialised again only to be measured."""
    if size is None or size <= CREATE_LIMIT:
        text = json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)
        if len(text) <= CREATE_LIMIT:
            return text
        size = len(text)
    keys = ", ".join(sorted(v)) if isinstance(v, dict) else type(v).__name__
    return f"({size} characters of JSON with {keys}; the whole object: --format json)"


def _unknown_size(_v: Any) -> int | None:
    return None


def _sensitive_marker(obj: Any, path: str) -> str | None:
    """The masked marker (``(sensitive, changed) <hash>``) at a field path, if there is one:
    a changed secret value says so without its value."""
    found, value = _field_value(obj, path)
    return value if found and isinstance(value, str) and value.startswith("(sensitive") else None


def _change_lines(c: Change, size: Callable[[Any], int | None] = _unknown_size) -> list[str]:
    head = f"{_SYMBOL[c.action]} {c.address} ({c.action.value})"
    if c.reasons:
        head += f"  because: {'; '.join(c.reasons)}"
    lines = [head]
    if c.manager:
        lines.append(f"    manager: {c.manager}")
    if (
        c.action in (Action.UPDATE, Action.REPLACE)
        and isinstance(c.before, dict)
        and isinstance(c.after, dict)
        and c.fields
    ):
        # a replace, like an update, shows what changes (old -> new) next to why it replaces
        lines.extend(_update_line(c, f) for f in c.fields[:30])
    elif c.action in (Action.CREATE, Action.REPLACE) and c.after is not None:
        lines.append(f"    {_created(c.after, size(c.after))}")
    return lines


def _node_details(p: NodePlan, size: Callable[[Any], int | None] = _unknown_size) -> list[str]:
    """The detail lines of one node (pending inputs, changed resources, notes); empty if none.
    ``size``: the length of a created object's compact JSON, where known (``PlanBundle.json_length``)."""
    lines: list[str] = []
    if p.pending_upstream:
        lines.append(f"? pending upstream: inputs {', '.join(p.pending_upstream)}")
    for c in p.changes:
        if c.action.changes:
            lines.extend(_change_lines(c, size))
    lines.extend(_output_line(c) for c in p.output_changes)
    if p.deletion is not None and not p.changes and not p.kept:
        lines.append("- nothing left to delete: its records go (inventory, state, workspace, journal)")
    lines.extend(f"= {k}" for k in p.kept)
    lines.extend(f"note: {note}" for note in p.notes)
    return lines


def _output_line(c: Change) -> str:
    """One changed output, old -> new (values masked by the adapter: a secret shows as a marker)."""
    if c.action is Action.CREATE:
        return f"+ {c.address}: {_value(c.after)}"
    if c.action is Action.DELETE:
        return f"- {c.address}: {_value(c.before)} (removed)"
    return f"~ {c.address}: {_value(c.before)} -> {_value(c.after)}"


def _tally(t: Tally, noun: str) -> str:
    """``3 resource(s) (1 to create, 2 to update)``."""
    parts = [
        f"{n} to {verb}"
        for n, verb in (
            (t.create, "create"),
            (t.update, "update"),
            (t.replace, "replace"),
            (t.delete, "delete"),
            (t.pruned, "prune"),
        )
        if n
    ]
    return f"{t.total} {noun} ({', '.join(parts)})"


def blast_lines(blast: BlastRadius, code: Callable[[str], str] = str) -> list[str]:
    """The blast radius in words: nodes changing, resources and objects, what apply plans again
    (``code`` marks up node ids and references: backticks in Markdown)."""
    if not blast.changing:
        return []
    nodes = ", ".join(code(n) for n in blast.changing)
    counts = [
        f"{kind}: {_tally(t, noun)}"
        for kind, t, noun in (
            ("Terraform", blast.resources, "resource(s)"),
            ("Kubernetes", blast.objects, "object(s)"),
        )
        if t.total
    ]
    counts += [f"{blast.outputs} output(s) change"] if blast.outputs else []
    lines = [f"{len(blast.changing)} node(s) change: {nodes}", *(["; ".join(counts)] if counts else [])]
    if blast.destructive:
        lines.append(f"Destroys or replaces in: {', '.join(code(n) for n in blast.destructive)}")
    for r in blast.replans:
        ups = ", ".join(code(u) for u in r.upstream)
        after = f" after {ups} is applied" if r.upstream else " during apply"
        lines.append(f"Planned again{after}: {code(r.node)} (reads {', '.join(code(x) for x in r.reads)})")
    for r in blast.follows:
        reads = ", ".join(code(x) for x in r.reads)
        lines.append(f"Planned with the new values of {reads}: {code(r.node)}")
    return lines


def apply_command(bundle: PlanBundle, needs_approval: list[str], plan_dir: str) -> str:
    """The exact command that applies a saved plan (with its recorded approval when one is needed,
    and the ``--rev`` of a plan made from a revision)."""
    return _next_commands(bundle, needs_approval, plan_dir).get("approve_and_apply") or hints.apply_command(
        bundle.environment, plan_dir, rev=bundle.rev
    )


def plan_text(
    bundle: PlanBundle,
    needs_approval: list[str],
    plan_dir: str | None,
    color: bool = False,
    *,
    blast: BlastRadius | None = None,
    base_ref: str | None = None,
) -> str:
    """The plan as a table, its blast radius and per-node details; ``plan_dir`` None: not saved."""
    rows = []
    for n in bundle.order:
        p = bundle.nodes[n]
        k = p.counts
        rows.append((n, str(k.add), str(k.change), str(k.destroy), str(k.replace), _status(p)))
    head = ("NODE", "ADD", "CHANGE", "DESTROY", "REPLACE", "STATUS")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [
        _heading(bundle) + (f", nodes changed since {base_ref}" if base_ref else ""),
        "",
        fmt.format(*head),
    ]
    engines = sorted({p.artifacts["engine"] for p in bundle.nodes.values() if "engine" in p.artifacts})
    if engines:
        out.insert(1, f"Terraform engine: {', '.join(engines)}")
    for r in rows:
        line = fmt.format(*r)
        if color and r[5] in ("DESTRUCTIVE", "REMOVED FROM GIT", "DESTROY"):
            line = f"\x1b[31;1m{line}\x1b[0m"
        out.append(line)
    out.append("")
    radius = blast_lines(blast) if blast is not None else []
    if radius:
        out += ["Blast radius:", *(f"  {line}" for line in radius), ""]
    for n in bundle.order:
        body = _node_details(bundle.nodes[n], bundle.json_length)
        if body:
            out += [f"{n}:", *(f"  {line}" for line in body), ""]
    out.append(_summary(bundle))
    kept = [n for n in bundle.order if bundle.nodes[n].kept]
    if kept:
        out.append(f"Kept (listed above, until removed or adopted): {', '.join(kept)}")
    if needs_approval:
        out.append(f"Approval required for: {', '.join(needs_approval)}")
    if plan_dir is not None:
        out.append(f"Saved plan: {plan_dir}")
        cmds = _next_commands(bundle, needs_approval, plan_dir)
        out.extend(f"{_COMMAND_LABEL[k]}: {cmd}" for k, cmd in cmds.items())
        pending = [n for n in needs_approval if bundle.nodes[n].pending_upstream]
        if pending and cmds:
            out.append(
                f"{', '.join(pending)} will be re-planned during apply and asked about again; to let "
                f"re-plans that only create go: envctl approve {plan_dir} --pending creates --by NAME"
            )
    return "\n".join(out)


def _plan_json(p: NodePlan) -> dict[str, Any]:
    return {k: v for k, v in p.to_json().items() if k != "artifacts"}


def _next_commands(bundle: PlanBundle, needs_approval: list[str], plan_dir: str) -> dict[str, str]:
    """The commands that apply a saved plan by their label, each as it must be copied (``--rev``
    included): ``apply``, and ``approve_and_apply`` when a node needs approval (no terminal)."""
    if not bundle.has_changes:
        return {}
    cmds = {"apply": hints.apply_command(bundle.environment, plan_dir, rev=bundle.rev)}
    if needs_approval:
        cmds["approve_and_apply"] = hints.approve_and_apply_command(
            bundle.environment, plan_dir, rev=bundle.rev
        )
    return cmds


_COMMAND_LABEL = {"apply": "Apply it with", "approve_and_apply": "Without a terminal"}


def _heading(bundle: PlanBundle) -> str:
    """What the plan is of: a commit, the working tree, or a rollback to a commit."""
    at = f"{(bundle.commit or 'no commit')[:12]}{' (uncommitted changes)' if bundle.dirty else ''}"
    if bundle.rollback is not None:
        origin = bundle.rollback.origin
        return (
            f"Rollback plan {bundle.id} for environment {bundle.environment}: back to {at}"
            + (f" from {origin[:12]}" if origin else "")
            + " (the environment as that commit holds it)"
        )
    return f"Plan {bundle.id} for environment {bundle.environment} at {at}"


def _summary(bundle: PlanBundle) -> str:
    if not bundle.has_changes:
        return "No changes. The environment matches the configuration."
    total = sum(bundle.nodes[n].counts.total for n in bundle.order)
    outputs = sum(len(bundle.nodes[n].output_changes) for n in bundle.order)
    pend = [n for n in bundle.order if bundle.nodes[n].pending_upstream]
    return (
        f"{total} change(s)"
        + (f" and {outputs} output change(s)" if outputs else "")
        + f" in {sum(1 for n in bundle.order if bundle.nodes[n].has_changes)} node(s)"
        + (f"; {len(pend)} node(s) pending upstream" if pend else "")
    )


def plan_json(
    bundle: PlanBundle,
    needs_approval: list[str],
    plan_dir: str | None,
    *,
    blast: BlastRadius | None = None,
    base_ref: str | None = None,
) -> str:
    data = {
        "format_version": FORMAT_VERSION,
        "type": "plan",
        "plan_id": bundle.id,
        "plan_dir": plan_dir,
        "environment": bundle.environment,
        "commit": bundle.commit,
        "dirty": bundle.dirty,
        "rev": bundle.rev,
        "rollback": bundle.rollback.to_json() if bundle.rollback else None,
        "changed_since": base_ref,
        "fingerprint": bundle.fingerprint,
        "has_changes": bundle.has_changes,
        "needs_approval": needs_approval,
        "blast_radius": blast.to_json() if blast is not None else None,
        "apply_command": apply_command(bundle, needs_approval, plan_dir)
        if plan_dir is not None and bundle.has_changes
        else None,
        "nodes": [
            {
                **_plan_json(bundle.nodes[n]),
                "status": _status(bundle.nodes[n]),
                "engine": bundle.nodes[n].artifacts.get("engine"),
                "counts": bundle.nodes[n].counts.__dict__,
            }
            for n in bundle.order
        ],
        # the commands that apply the saved plan, ready to run (``--rev`` included when needed)
        "commands": _next_commands(bundle, needs_approval, plan_dir) if plan_dir else {},
    }
    return json.dumps(data, indent=2, default=str)


def _fence(lines: list[str]) -> str:
    """A code fence longer than any run of backticks in ``lines`` (a value cannot close it)."""
    longest = max((len(run) for ln in lines for run in re.findall(r"`+", ln)), default=0)
    return "`" * max(3, longest + 1)


def plan_markdown(
    bundle: PlanBundle,
    needs_approval: list[str],
    plan_dir: str | None,
    *,
    blast: BlastRadius | None = None,
    base_ref: str | None = None,
) -> str:
    """A pull-request comment: header (environment, commit, base ref, plan id, fingerprint),
    summary table, blast radius, one collapsible ``<details>`` per node, the apply command."""
    commit = (bundle.commit or "working tree")[:12] + (" (uncommitted changes)" if bundle.dirty else "")
    facts = [
        f"**Environment:** `{bundle.environment}`",
        f"**Commit:** `{commit}`",
        *([f"**Changed since:** `{base_ref}`"] if base_ref else []),
        f"**Plan:** `{bundle.id}`",
        f"**Fingerprint:** `{bundle.fingerprint[:12]}`",
    ]
    out = [
        f"### envctl {'rollback ' if bundle.rollback else ''}plan for `{bundle.environment}` at `{commit}`",
        "",
        " · ".join(facts),
        "",
        "| node | add | change | destroy | replace | status |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for n in bundle.order:
        p = bundle.nodes[n]
        k = p.counts
        status = _status(p)
        status = f"**{status}**" if status in ("DESTRUCTIVE", "REMOVED FROM GIT", "DESTROY") else status
        out.append(f"| `{n}` | {k.add} | {k.change} | {k.destroy} | {k.replace} | {status} |")
    out.append("")
    radius = blast_lines(blast, lambda t: f"`{t}`") if blast is not None else []
    if radius:
        out += ["**Blast radius**", "", *(f"- {line}" for line in radius), ""]
    for n in bundle.order:
        p = bundle.nodes[n]
        body = _node_details(p, bundle.json_length)
        if not body:
            continue
        fence = _fence(body)
        k = p.counts
        out += [
            "<details>",
            f"<summary><code>{n}</code>: {_status(p)} ({k.add} to add, {k.change} to change, "
            f"{k.destroy} to destroy, {k.replace} to replace)</summary>",
            "",
            f"{fence}diff",
            *body,
            fence,
            "",
            "</details>",
            "",
        ]
    out.append(_summary(bundle))
    out.append("")
    if needs_approval:
        out += [f"Approval required for: {', '.join(f'`{n}`' for n in needs_approval)}", ""]
    if plan_dir is not None and bundle.has_changes:
        command = apply_command(bundle, needs_approval, plan_dir)
        out += ["To apply this plan:", "", "```shell", command, "```"]
    return "\n".join(out).rstrip("\n")


def apply_text(result: ApplyResult, resume_with: str = "envctl apply PLAN --resume") -> str:
    """``resume_with``: the command that finishes an interrupted run of this plan."""
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
        out.append(f"Interrupted: nodes that did not start can be converged with: {resume_with}")
    return "\n".join(out)


def approval_text(a: Approval, apply_with: str) -> str:
    """``apply_with``: the command that applies the approved plan (``--rev`` included when needed)."""
    bound = (
        f"Nodes re-planned during apply may go without asking again when they only {_BOUND[a.pending]}."
        if a.pending
        else "A node re-planned during apply that differs is asked about again."
    )
    return (
        f"Approved plan {a.plan_id} ({a.fingerprint[:12]}) for {a.environment} by {a.by}\n"
        f"{bound}\nApply it with: {apply_with}"
    )


_BOUND = {"creates": "create", "updates": "create or update in place", "any": "change (anything)"}


def approval_json(a: Approval, apply_with: str) -> str:
    return json.dumps(
        {
            "format_version": FORMAT_VERSION,
            "type": "approval",
            **a.to_json(),
            "commands": {"apply": apply_with},
        },
        indent=2,
    )


def apply_json(result: ApplyResult) -> str:
    return json.dumps(
        {
            "format_version": FORMAT_VERSION,
            "type": "apply",
            "run": result.run_id,
            "plan_id": result.plan_id,
            "interrupted": result.interrupted,
            "pending": result.pending,
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
