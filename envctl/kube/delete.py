"""Delete a whole layer: every object of its inventory the prune rules let go, then its inventory.

What ``envctl destroy`` and the removal of a layer from Git do. The safety rules are prune's
(``kube.prune.prune_candidates``): only objects still carrying the layer's labels; never a
Namespace still holding other objects, nor a CRD or PVC without ``envctl.io/prune: allow``, nor an
object annotated ``envctl.io/prune: disabled``. Those are *kept*: they stay recorded in the
inventory (so every later plan lists them again) and the inventory stays. The apply deletes only
what the approved plan listed; anything else is kept. Deletions run in reverse kind order and are
waited for, so a Namespace is really gone (and may be created again) when the layer is done.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence

from envctl.core.changes import Action, Change, NodePlan
from envctl.core.errors import EngineError
from envctl.kube.client import KubeContext
from envctl.kube.errors import ApiError, translate
from envctl.kube.inventory import delete_inventory, read_inventory, write_inventory
from envctl.kube.objects import mask_object, normalise
from envctl.kube.prune import Kept, PruneCandidate, delete_objects, prune_candidates, sort_by_delete

GONE_TIMEOUT = 300.0  # how long deleted objects (a Namespace finalising its content) may take to go
_REASON = "the layer is deleted"


def _change(c: PruneCandidate) -> Change:
    return Change(str(c.ref), Action.DELETE, mask_object(normalise(c.live)), None, (_REASON,))


def _notes(kept: Sequence[Kept], gone: Sequence[object]) -> list[str]:
    notes = [str(k) for k in kept if not k.recorded]
    if gone:
        notes.append(f"{len(gone)} inventory object(s) are already gone")
    return notes


def plan_delete_layer(ctx: KubeContext, node_id: str, leaving: Collection[str] = ()) -> NodePlan:
    """What deleting the layer deletes (``changes``) and keeps (``kept``); writes nothing."""
    inventory = read_inventory(ctx, node_id)
    if not inventory.exists:
        return NodePlan(node_id, notes=("no inventory in the cluster: no object to delete",))
    candidates, kept, gone = prune_candidates(ctx, node_id, inventory.entries, leaving)
    return NodePlan(
        node_id,
        tuple(_change(c) for c in sort_by_delete(candidates)),
        notes=tuple(_notes(kept, gone)),
        kept=tuple(str(k) for k in kept if k.recorded),
    )


def delete_layer(
    ctx: KubeContext,
    node_id: str,
    planned: Collection[str],
    leaving: Collection[str] = (),
    timeout: float = GONE_TIMEOUT,
) -> NodePlan:
    """Delete the objects ``planned`` names (addresses) that the rules still let go, wait until
    they are gone, then drop the inventory, or keep it holding what was kept. ``leaving``: what
    the run's other deletions deleted (a controller may still be removing what followed them)."""
    inventory = read_inventory(ctx, node_id)
    if not inventory.exists:
        return NodePlan(node_id, notes=("its inventory was already gone",))
    candidates, kept, gone = prune_candidates(ctx, node_id, inventory.entries, leaving)
    kept += [
        Kept(c.ref, "kept: the approved plan did not delete it")
        for c in candidates
        if str(c.ref) not in planned
    ]
    candidates = [c for c in candidates if str(c.ref) in planned]
    failed = delete_objects(ctx, node_id, candidates)
    deleted = [c for c in candidates if c.ref not in failed]
    _wait_gone(ctx, node_id, deleted, timeout)
    keep = [k.ref for k in kept if k.recorded] + list(failed)
    if keep:
        write_inventory(ctx, node_id, inventory, keep)
    else:
        delete_inventory(ctx, node_id, inventory)
    if failed:
        raise EngineError(
            f"{len(failed)} object(s) could not be deleted: " + "; ".join(str(e) for e in failed.values()),
            node=node_id,
            hint="fix the cause and run envctl again: the objects stay in the layer's inventory",
        )
    return NodePlan(
        node_id,
        tuple(_change(c) for c in sort_by_delete(deleted)),
        notes=tuple(_notes(kept, gone)),
        kept=tuple(str(k) for k in kept if k.recorded),
    )


def _wait_gone(ctx: KubeContext, node_id: str, deleted: Sequence[PruneCandidate], timeout: float) -> None:
    """Until every deleted object is gone from the API (finalizers ran); one error names the rest."""
    deadline = time.monotonic() + timeout
    left = list(deleted)
    while left:

        def present(c: PruneCandidate) -> bool:
            try:
                return ctx.get(c.ref, c.mapping) is not None
            except ApiError as e:
                raise translate(e, c.ref, node=node_id) from e

        answers = ctx.parallel(present, left)
        for a in answers:
            if isinstance(a, BaseException):
                raise a
        left = [c for c, a in zip(left, answers, strict=True) if a]
        if not left:
            return
        if time.monotonic() > deadline or not ctx.pause(ctx.poll_interval):
            raise EngineError(
                f"{len(left)} deleted object(s) still present: " + ", ".join(str(c.ref) for c in left),
                node=node_id,
                hint="check their finalizers (kubectl get -o yaml); run envctl again once they are gone",
            )
