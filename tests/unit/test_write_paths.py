"""Every path that writes goes through the one approval gate: found by reading the code (AST).

The writers are found, not listed: a function of the adapters (``envctl.kube``,
``envctl.terraform``) writes when it sends a write to the cluster (``apply``/``apply_created``
with ``dry_run=False``, ``delete``) or runs ``terraform apply``/``destroy``, or calls a function
that does. Outside the adapters, every call of a writer must sit in a gated function, after the
statement that asks the gate and before nothing else; a new call site (a destroy, a rollback, a
drift shortcut) fails here until it asks the gate too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "envctl"
ADAPTERS = ("kube", "terraform")
# Writes that are not a node's change, so no approval applies: the environment lock.
NOT_NODE_WRITES = {"envctl/kube/lease.py"}
# Where a writer may be called from outside the adapters, and the call that must come before it
# in the same block: _held asks core.approval.gate about the exact plan being written.
GATED = {("envctl/app/apply.py", "_apply_node"): "_held"}


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
        # top-level functions and methods; a nested function counts as part of the one around it
        for top in mod.body:
            for fn in [top, *(top.body if isinstance(top, ast.ClassDef) else [])]:
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


def test_every_write_outside_the_adapters_asks_the_gate_first() -> None:
    writers = adapter_writers()
    sites: list[str] = []
    bypass: list[str] = []
    for rel, mod in modules():
        if rel.split("/")[1] in ADAPTERS:
            continue
        up = parents(mod)
        for fn in ast.walk(mod):
            if not isinstance(fn, ast.FunctionDef):
                continue
            for call in ast.walk(fn):
                if not (isinstance(call, ast.Call) and called_name(call) in writers):
                    continue
                where = f"{rel}:{call.lineno} {fn.name} calls {called_name(call)}"
                sites.append(where)
                gate_call = GATED.get((rel, fn.name))
                if gate_call is None or not gated_before(call, up, gate_call):
                    bypass.append(where)
    assert sites, "no write path found: the search is broken"
    assert not bypass, "writes that do not ask the approval gate first:\n" + "\n".join(bypass)


def test_the_gated_function_asks_core_approval_gate() -> None:
    helpers = {(rel, helper) for (rel, _), helper in GATED.items()}
    for rel, mod in modules():
        for fn in ast.walk(mod):
            if isinstance(fn, ast.FunctionDef) and (rel, fn.name) in helpers:
                calls = {called_name(n) for n in ast.walk(fn) if isinstance(n, ast.Call)}
                assert "gate" in calls, fn.name
                return
    raise AssertionError("the gate helper named in GATED does not exist")


def test_the_check_catches_a_write_that_skips_the_gate() -> None:
    source = (
        "def _apply_node(s):\n"
        "    if s:\n"
        "        held = _held(s)\n"
        "    apply_layer(s)\n"
        "def ok(s):\n"
        "    held = _held(s)\n"
        "    if held:\n"
        "        return\n"
        "    apply_layer(s)\n"
    )
    mod = ast.parse(source)
    up = parents(mod)
    calls = [n for n in ast.walk(mod) if isinstance(n, ast.Call) and called_name(n) == "apply_layer"]
    assert [gated_before(c, up, "_held") for c in calls] == [False, True]
