"""Render the dependency graph: text (order and reasons), versioned JSON, Graphviz DOT, Mermaid."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from envctl.core.graph import EnvGraph

FORMAT_VERSION = "1"


def graph_text(g: EnvGraph) -> str:
    lines = [f"environment {g.env.name}: {len(g.env.nodes)} nodes, {len(g.edges)} edges", ""]
    lines.append("converge order (a node starts as soon as everything it needs has converged):")
    for depth, level in enumerate(g.levels(), start=1):
        for node_id in level:
            ups = g.upstream(node_id)
            need = ", ".join(f"{u} ({', '.join(g.edges[(u, node_id)].reasons)})" for u in ups)
            lines.append(f"  {depth}. {node_id}" + (f"  <- {need}" if need else ""))
    return "\n".join(lines)


def graph_json(g: EnvGraph) -> str:
    data = {
        "format_version": FORMAT_VERSION,
        "environment": g.env.name,
        "nodes": [
            {
                "id": n,
                "kind": g.node(n).kind,
                "path": g.node(n).path,
                "upstream": g.upstream(n),
                "downstream": g.downstream(n),
            }
            for n in g.order()
        ],
        "edges": [
            {"from": e.upstream, "to": e.downstream, "reasons": list(e.reasons)}
            for e in sorted(g.edges.values(), key=lambda e: (e.upstream, e.downstream))
        ],
        "order": g.order(),
        "levels": g.levels(),
    }
    return json.dumps(data, indent=2)


def graph_dot(g: EnvGraph) -> str:
    lines = [f'digraph "{g.env.name}" {{', "  rankdir=LR;"]
    for n in g.order():
        shape = "box" if g.node(n).kind == "stack" else "ellipse"
        lines.append(f'  "{n}" [shape={shape}];')
    for e in sorted(g.edges.values(), key=lambda e: (e.upstream, e.downstream)):
        lines.append(f'  "{e.upstream}" -> "{e.downstream}";')
    lines.append("}")
    return "\n".join(lines)


def _mid(n: str) -> str:
    return n.replace(".", "_").replace("-", "_")


def graph_mermaid(g: EnvGraph) -> str:
    lines = ["graph LR"]
    for n in g.order():
        open_, close = ("[", "]") if g.node(n).kind == "stack" else ("([", "])")
        lines.append(f'  {_mid(n)}{open_}"{n}"{close}')
    for e in sorted(g.edges.values(), key=lambda e: (e.upstream, e.downstream)):
        lines.append(f"  {_mid(e.upstream)} --> {_mid(e.downstream)}")
    return "\n".join(lines)


RENDERERS = {"text": graph_text, "json": graph_json, "dot": graph_dot, "mermaid": graph_mermaid}
