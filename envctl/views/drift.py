"""Render drift reports: text, versioned JSON, Markdown, and one self-contained HTML page.

The HTML page needs no network: inline CSS and an inline SVG of the dependency graph with each
node coloured by its drift status.
"""

from __future__ import annotations

import html
import json
import re
import uuid

from envctl.core.changes import Change
from envctl.core.drift import DriftReport, NodeDrift

COLORS = {
    "in-sync": "#2e7d32",
    "drifted": "#c62828",
    "stale": "#ef6c00",
    "error": "#6a1b9a",
    "not-applied": "#546e7a",
}


def _change_line(c: Change) -> str:
    line = f"{c.address}: {c.action.value}"
    if c.manager:
        line += f" (by {c.manager})"
    if c.reasons:
        line += f" - {'; '.join(c.reasons)}"
    return line


def _node_lines(n: NodeDrift) -> list[str]:
    out = [f"{n.node}: {n.status}"]
    if n.causes:
        out.append(f"  cascades from: {', '.join(n.causes)}")
    if n.error:
        out.append(f"  error: {n.error}")
    out.extend(f"  {_change_line(c)}" for c in n.changes)
    out.extend(f"  note: {note}" for note in n.notes)
    return out


def drift_text(r: DriftReport) -> str:
    out = [f"Drift report for environment {r.environment} at {(r.commit or 'working tree')[:12]} ({r.at})"]
    if r.skipped_reason:
        out.append(r.skipped_reason)
        return "\n".join(out)
    out.append("")
    for n in r.nodes:
        out.extend(_node_lines(n))
    roots = r.root_causes()
    if roots:
        out.append("")
        out.append("cascading drift, by root cause:")
        out.extend(f"  {root} -> {', '.join(nodes)}" for root, nodes in roots.items())
    if r.converge:
        out.append("")
        out.append("converge" + (" (FAILED for some nodes):" if r.converge_failed else ":"))
        out.extend(f"  {note}" for note in r.converge)
    for d in r.deliveries:
        out.append(
            f"notification to {d.url}: {'delivered' if d.ok else 'FAILED'} after {d.attempts} attempt(s)"
            + (f" ({d.detail})" if d.detail else "")
        )
    out.append("")
    out.append(f"Summary: {r.summary()}")
    return "\n".join(out)


def drift_json(r: DriftReport) -> str:
    """The versioned JSON report, indented, with each change's ``before`` and ``after`` on one line.

    Those objects are most of a report (a drifted CRD is two copies of up to a megabyte): written
    compactly by the C encoder (``indent`` takes Python's, 8x slower) and put in the indented
    text in place of a placeholder. The same JSON values as one ``json.dumps(..., indent=2)``.
    """
    doc = r.to_json()
    placeholder = f"envctl-object-{uuid.uuid4().hex}-"
    objects: list[str] = []
    for n in doc["nodes"]:
        for c in n["changes"]:
            for side in ("before", "after"):
                if isinstance(c[side], dict | list):
                    objects.append(json.dumps(c[side], default=str))
                    c[side] = f"{placeholder}{len(objects) - 1}"
    text = json.dumps(doc, indent=2, default=str)
    if not objects:
        return text
    return re.sub(f'"{placeholder}([0-9]+)"', lambda m: objects[int(m.group(1))], text)


def drift_markdown(r: DriftReport) -> str:
    out = [
        f"### envctl drift report: `{r.environment}`",
        "",
        f"Commit `{(r.commit or 'working tree')[:12]}`, checked {r.at}. **{r.summary()}**",
        "",
    ]
    if r.skipped_reason:
        out.append(r.skipped_reason)
        return "\n".join(out)
    out += ["| node | status | drifted objects | cascades from |", "|---|---|---:|---|"]
    for n in r.nodes:
        out.append(f"| `{n.node}` | {n.status} | {len(n.changes)} | {', '.join(n.causes)} |")
    out.append("")
    for n in r.nodes:
        if n.status == "in-sync":
            continue
        out += [
            "<details>",
            f"<summary><code>{n.node}</code>: {n.status}</summary>",
            "",
            "```",
            *_node_lines(n),
            "```",
            "",
            "</details>",
            "",
        ]
    if r.converge:
        out += ["#### converge" + (" (failed for some nodes)" if r.converge_failed else ""), ""]
        out += [f"- {note}" for note in r.converge] + [""]
    for d in r.deliveries:
        if not d.ok:
            out.append(f"Notification to {d.url} failed: {d.detail}")
    return "\n".join(out)


def _layout(r: DriftReport) -> dict[str, tuple[int, int]]:
    """Column = longest path from a root; row = position within the column."""
    nodes = [n.node for n in r.nodes]
    depth = {n: 0 for n in nodes}
    for _ in nodes:
        for up, down in r.edges:
            if up in depth and down in depth:
                depth[down] = max(depth[down], depth[up] + 1)
    rows: dict[int, int] = {}
    pos: dict[str, tuple[int, int]] = {}
    for n in nodes:
        col = depth[n]
        pos[n] = (col, rows.get(col, 0))
        rows[col] = rows.get(col, 0) + 1
    return pos


def _svg(r: DriftReport) -> str:
    pos = _layout(r)
    w, h, gx, gy = 170, 44, 60, 26
    cols = max((c for c, _ in pos.values()), default=0) + 1
    rows = max((row for _, row in pos.values()), default=0) + 1
    width, height = cols * (w + gx) + gx, rows * (h + gy) + gy
    status = {n.node: n.status for n in r.nodes}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="graph" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="dependency graph">',
        '<defs><marker id="arrow" markerWidth="10" markerHeight="8" refX="10" refY="4" orient="auto">'
        '<path d="M0,0 L10,4 L0,8 z" fill="#555"/></marker></defs>',
    ]

    def xy(n: str) -> tuple[int, int]:
        c, row = pos[n]
        return gx + c * (w + gx), gy + row * (h + gy)

    for up, down in r.edges:
        if up in pos and down in pos:
            (x1, y1), (x2, y2) = xy(up), xy(down)
            points = [(x1 + w, y1 + h // 2)]
            if pos[down][0] - pos[up][0] > 1:
                # Skipping a column: run through the gaps between rows and columns, which no node
                # occupies, so the edge never passes behind a node it does not touch.
                gap = max(y1, y2) + h + gy // 2
                points += [
                    (x1 + w + gx // 2, y1 + h // 2),
                    (x1 + w + gx // 2, gap),
                    (x2 - gx // 2, gap),
                    (x2 - gx // 2, y2 + h // 2),
                ]
            points.append((x2, y2 + h // 2))
            parts.append(
                f'<polyline class="edge" data-from="{html.escape(up)}" data-to="{html.escape(down)}" '
                f'points="{" ".join(f"{x},{y}" for x, y in points)}" fill="none" stroke="#555" '
                'marker-end="url(#arrow)"/>'
            )
    for n in pos:
        x, y = xy(n)
        st = status.get(n, "in-sync")
        parts.append(
            f'<g class="node" data-node="{html.escape(n)}" data-status="{st}">'
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" fill="{COLORS.get(st, "#999")}"/>'
            f'<text x="{x + w // 2}" y="{y + 18}" text-anchor="middle" fill="#fff" font-size="13">'
            f'{html.escape(n)}</text><text x="{x + w // 2}" y="{y + 35}" text-anchor="middle" '
            f'fill="#fff" font-size="11">{st}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _converge_html(r: DriftReport) -> str:
    if not r.converge:
        return ""
    items = "".join(f"<li>{html.escape(note)}</li>" for note in r.converge)
    head = "Converge" + (" (failed for some nodes)" if r.converge_failed else "")
    return f'<h2 id="converge">{head}</h2><ul>{items}</ul>'


def _deliveries_html(r: DriftReport) -> str:
    if not r.deliveries:
        return ""
    items = "".join(
        f'<li class="{"ok" if d.ok else "failed"}">{html.escape(d.url)}: '
        + ("delivered" if d.ok else "FAILED")
        + f" after {d.attempts} attempt(s){' (' + html.escape(d.detail) + ')' if d.detail else ''}</li>"
        for d in r.deliveries
    )
    return f'<h2 id="notifications">Notifications</h2><ul>{items}</ul>'


def drift_html(r: DriftReport) -> str:
    rows = "".join(
        f'<tr class="{n.status}"><td><code>{html.escape(n.node)}</code></td><td>{n.status}</td>'
        f"<td>{len(n.changes)}</td><td>{html.escape(', '.join(n.causes))}</td></tr>"
        for n in r.nodes
    )
    details = "".join(
        f'<section id="node-{html.escape(n.node)}"><h3>{html.escape(n.node)}: {n.status}</h3><pre>'
        + html.escape("\n".join(_node_lines(n)))
        + "</pre></section>"
        for n in r.nodes
    )
    deliveries = "".join(
        f"<li>{html.escape(d.url)}: {'delivered' if d.ok else 'FAILED'} after {d.attempts} attempt(s)"
        f"{(' (' + html.escape(d.detail) + ')') if d.detail else ''}</li>"
        for d in r.deliveries
    )
    notifications = f'<h2>Notifications</h2><ul id="notifications">{deliveries}</ul>' if deliveries else ""
    legend = " ".join(f'<span class="chip" style="background:{c}">{s}</span>' for s, c in COLORS.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>envctl drift: {html.escape(r.environment)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:left}}
pre{{background:#f5f5f5;padding:1em;overflow:auto}}
.chip{{color:#fff;padding:2px 8px;border-radius:8px;margin-right:4px;font-size:12px}}
</style></head><body>
<h1>Drift report: {html.escape(r.environment)}</h1>
<p id="summary">Commit <code>{html.escape((r.commit or "working tree")[:12])}</code>,
checked {html.escape(r.at)}:
<strong>{html.escape(r.summary())}</strong></p>
<p>{legend}</p>
{_svg(r)}
<h2>Nodes</h2>
<table><tr><th>node</th><th>status</th><th>drifted objects</th><th>cascades from</th></tr>{rows}</table>
<h2>Details</h2>{details}
{_converge_html(r)}{_deliveries_html(r)}
{notifications}
</body></html>
"""


RENDERERS = {"text": drift_text, "json": drift_json, "markdown": drift_markdown, "html": drift_html}
