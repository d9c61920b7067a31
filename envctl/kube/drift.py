"""Drift of one layer: what Git renders against what the cluster holds, and who changed it.

Reported per object: envctl-owned fields another manager changed (named from ``managedFields``,
with the time of its last write, the live value and the value Git sets), objects missing from
the cluster, and inventory objects that left Git but are still live. The comparison is the same
diff as a plan: objects the LISTs show in sync need no request, the others (changed, missing,
unlabelled) are dry-run once, with force-conflicts (what re-converging would make).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from envctl.core.changes import Action, Change, NodePlan
from envctl.core.model import LayerSpec, Node
from envctl.kube.apply import left_git
from envctl.kube.client import KubeContext
from envctl.kube.diff import prepare
from envctl.kube.inventory import read_inventory
from envctl.kube.objects import diff_values, managers_of, mask_object, normalise, value_text
from envctl.kube.prune import prune_candidates


def _write_time(live: Mapping[str, Any], manager: str) -> str:
    times = [
        str(mf.get("time", ""))
        for mf in (live.get("metadata") or {}).get("managedFields") or []
        if mf.get("manager") == manager
    ]
    return max(times) if times else ""


def drift_layer(ctx: KubeContext, node: Node, objects: Sequence[Mapping[str, Any]]) -> NodePlan:
    """Changes that re-converging would make; ``manager`` names who changed the object when known."""
    spec = node.layer if node.layer is not None else LayerSpec()
    # One forced dry-run per object not proved in sync: who changed a field comes from
    # managedFields (managers_of), so the 409 of an unforced dry-run would only cost a request.
    prepared = prepare(ctx, node.id, objects, recreate=spec.recreate, learn_conflicts=False)
    changes: list[Change] = []
    for p in prepared:
        c = p.change
        assert c is not None
        if p.live is None:
            changes.append(Change(c.address, Action.CREATE, None, c.after, ("missing from the cluster",)))
            continue
        if not c.action.changes:
            changes.append(c)
            continue
        owners = managers_of(p.live, c.fields)
        manager = next(iter(owners.values()), None)
        # c.before/c.after are the live object and what Git would make of it (Secrets masked)
        values = {path: (b, a) for path, b, a in diff_values(c.before, c.after)}
        reasons = []
        for path in c.fields:
            who = owners.get(path)
            live_git = values.get(path)
            shown = f": live {value_text(live_git[0])}, Git {value_text(live_git[1])}" if live_git else ""
            if who:
                when = _write_time(p.live, who)
                reasons.append(f"{path} changed by {who}" + (f" at {when}" if when else "") + shown)
            else:
                reasons.append(f"{path} differs from Git{shown}")
        changes.append(Change(c.address, c.action, c.before, c.after, tuple(reasons), c.fields, manager))
    inventory = read_inventory(ctx, node.id)
    stale = left_git(inventory, prepared)
    notes: list[str] = []
    if stale:
        candidates, kept, _ = prune_candidates(ctx, node.id, stale)
        for cand in candidates:
            if not spec.prune:
                notes.append(f"{cand.ref}: no longer in Git, still in the cluster (prune is off)")
                continue
            changes.append(
                Change(
                    str(cand.ref),
                    Action.DELETE,
                    mask_object(normalise(cand.live)),
                    None,
                    ("no longer in Git, still in the cluster",),
                )
            )
        notes.extend(map(str, kept))
    return NodePlan(node.id, tuple(changes), notes=tuple(notes))
