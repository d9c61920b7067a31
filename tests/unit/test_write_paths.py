"""Every path that writes goes through the one approval gate: found by reading the code (AST).

The writers are found, not listed: a module-level function of the adapters (``envctl.kube``,
``envctl.terraform``) writes when it sends a write to the cluster (``apply``/``apply_created``
with ``dry_run=False``, ``delete``) or runs ``terraform apply``/``destroy``, or calls a function
that does. Then:

- a NodeAdapter method (a class with ``traits``) calls a writer only after the statement
  ``x = request.approve(plan)`` in the same or an enclosing block (``approve`` is the gate);
- outside the adapters nothing calls a writer, and an adapter's ``apply`` is called only where
  the request's ``approve`` asks ``core.approval.gate``.

A new write path (a destroy, a rollback, a drift shortcut) fails here until it asks the gate.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "envctl"
ADAPTERS = ("kube", "terraform")
# Writes that are not a node's change, so no approval applies: the environment lock.
NOT_NODE_WRITES = {"envctl/kube/lease.py"}
# The one place that calls an adapter's apply, and its helper that asks core.approval.gate.
APPLY_CALLER = ("envctl/app/apply.py", "_apply_node")
GATE_HELPER = "_held"


def modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).as_posix()
        yield rel, ast.parse(path.read_text(), rel)


def called_name(call: ast.Call) -> str | None:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def is_primitive_write(call: ast.Call) -> bool:
    name = called_name(call)
    kw = {k.arg: k.value for k in call.keywords}
    if isinstance(call.func, ast.Attribute) and name in ("apply", "apply_created"):
        dry = kw.get("dry_run")
        return isinstance(dry, ast.Constant) and dry.value is False
    if isinstance(call.func, ast.Attribute) and name == "delete":
        dry = kw.get("dry_run")
        return not (isinstance(dry, ast.Constant) and dry.value is True)
    return False


def terraform_write(node: ast.AST) -> bool:
    """A Terraform command line that changes infrastructure: ``["apply", ...]``/``["destroy", ...]``."""
    return (
        isinstance(node, ast.List)
        and bool(node.elts)
        and isinstance(node.elts[0], ast.Constant)
        and node.elts[0].value in ("apply", "destroy")
    )


def adapter_writers() -> set[str]:
    """Names of adapter functions that write, directly or through another adapter function."""
    funcs: dict[str, ast.AST] = {}
    for rel, mod in modules():
        if rel.split("/")[1] not in ADAPTERS or rel in NOT_NODE_WRITES:
            continue
        # module-level functions; a nested function counts as part of the one around it (the
        # adapter classes' methods are checked on their own below)
        for fn in mod.body:
            if isinstance(fn, ast.FunctionDef):
                funcs[fn.name] = fn
    writers = {
        name
        for name, fn in funcs.items()
        if any(
            (isinstance(n, ast.Call) and is_primitive_write(n)) or terraform_write(n) for n in ast.walk(fn)
        )
    }
    while True:
        more = {
            name
            for name, fn in funcs.items()
            if name not in writers
            and any(isinstance(n, ast.Call) and called_name(n) in writers for n in ast.walk(fn))
        }
        if not more:
            return writers
        writers |= more


def parents(mod: ast.Module) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(mod) for child in ast.iter_child_nodes(node)}


def gated_before(call: ast.Call, up: dict[ast.AST, ast.AST], gate_call: str) -> bool:
    """A statement ``x = gate_call(...)`` precedes the call in its block or an enclosing block."""
    node: ast.AST = call
    while node in up:
        parent = up[node]
        for field in ("body", "orelse", "finalbody"):
            block = getattr(parent, field, None)
            if isinstance(block, list) and node in block:
                for stmt in block[: block.index(node)]:
                    value = getattr(stmt, "value", None)
                    if isinstance(value, ast.Call) and called_name(value) == gate_call:
                        return True
        node = parent
    return False


def test_the_adapters_writers_are_found() -> None:
    writers = adapter_writers()
    # a rename of these would otherwise make the test below vacuous
    assert {"apply_layer", "apply_stack", "delete_objects"} <= writers, writers


def adapter_methods() -> Iterator[tuple[str, ast.FunctionDef]]:
    for rel, mod in modules():
        if rel.split("/")[1] not in ADAPTERS:
            continue
        for cls in mod.body:
            if isinstance(cls, ast.ClassDef) and any(
                isinstance(t, ast.Name) and t.id == "traits"
                for stmt in cls.body
                for t in (stmt.targets if isinstance(stmt, ast.Assign) else [])
            ):
                for fn in cls.body:
                    if isinstance(fn, ast.FunctionDef):
                        yield f"{rel}:{cls.name}.{fn.name}", fn


def test_an_adapter_writes_only_after_asking_the_gate() -> None:
    writers = adapter_writers()
    sites: list[str] = []
    bypass: list[str] = []
    methods = list(adapter_methods())
    assert len(methods) > 10, "the NodeAdapter classes were not found"
    for where, fn in methods:
        up = parents(ast.Module(body=[fn], type_ignores=[]))
        for call in ast.walk(fn):
            if isinstance(call, ast.Call) and called_name(call) in writers:
                site = f"{where}:{call.lineno} calls {called_name(call)}"
                sites.append(site)
                if not gated_before(call, up, "approve"):
                    bypass.append(site)
    assert len(sites) >= 2, sites  # the layer and the stack adapters' apply
    assert not bypass, "adapter writes that do not ask request.approve first:\n" + "\n".join(bypass)


def test_outside_the_adapters_every_write_goes_through_the_gated_apply() -> None:
    writers = adapter_writers()
    direct: list[str] = []
    applies: list[str] = []
    for rel, mod in modules():
        if rel.split("/")[1] in ADAPTERS:
            continue
        for fn in ast.walk(mod):
            if not isinstance(fn, ast.FunctionDef):
                continue
            for call in ast.walk(fn):
                if not isinstance(call, ast.Call):
                    continue
                if called_name(call) in writers:
                    direct.append(f"{rel}:{call.lineno} {fn.name} calls {called_name(call)}")
                receiver = call.func.value if isinstance(call.func, ast.Attribute) else None
                if (
                    called_name(call) == "apply"
                    and isinstance(receiver, ast.Call)
                    and called_name(receiver) == "adapter"
                ):
                    applies.append(f"{rel}:{fn.name}")
    assert not direct, "writers called outside the adapters (not through the gate):\n" + "\n".join(direct)
    assert applies == ["{}:{}".format(*APPLY_CALLER)], applies


def test_the_apply_request_approves_through_core_approval_gate() -> None:
    rel, name = APPLY_CALLER
    mod = dict(modules())[rel]
    top = {f.name: f for f in mod.body if isinstance(f, ast.FunctionDef)}
    caller = top[name]
    [request] = [n for n in ast.walk(caller) if isinstance(n, ast.Call) and called_name(n) == "ApplyRequest"]
    approve = {k.arg: k.value for k in request.keywords}["approve"]
    assert isinstance(approve, ast.Name)
    [local] = [f for f in ast.walk(caller) if isinstance(f, ast.FunctionDef) and f.name == approve.id]
    assert GATE_HELPER in {called_name(n) for n in ast.walk(local) if isinstance(n, ast.Call)}
    assert "gate" in {called_name(n) for n in ast.walk(top[GATE_HELPER]) if isinstance(n, ast.Call)}


def test_the_check_catches_a_write_that_skips_the_gate() -> None:
    source = (
        "def apply(self, node, request):\n"
        "    if node:\n"
        "        blocked = request.approve(node)\n"
        "    apply_layer(node)\n"
        "def ok(self, node, request):\n"
        "    blocked = request.approve(node)\n"
        "    if blocked:\n"
        "        return\n"
        "    apply_layer(node)\n"
    )
    mod = ast.parse(source)
    up = parents(mod)
    calls = [n for n in ast.walk(mod) if isinstance(n, ast.Call) and called_name(n) == "apply_layer"]
    assert [gated_before(c, up, "approve") for c in calls] == [False, True]
