"""The repository paths each node reads, for ``--changed-since`` and ``envctl status``'s
commits-behind count.

The graph knows the node's directory, its local module sources and its chart and values files
from the loader; a kustomization's bases, components, patches and generator files anywhere in
the repository are found by the kube adapter, with the walk that materialises them for rendering.
"""

from __future__ import annotations

from envctl.app.session import Session
from envctl.core.model import Node
from envctl.kube import kustomize_reads


def extra_reads(s: Session) -> dict[str, tuple[str, ...]]:
    """Per kustomize layer, the paths its kustomization reads (what the graph alone cannot see)."""
    return {
        n.id: kustomize_reads(s.env, s.snapshot, n)
        for n in s.env.nodes.values()
        if n.layer is not None and n.layer.kustomize
    }


def node_reads(s: Session, node: Node, extra: dict[str, tuple[str, ...]]) -> list[str]:
    """Every repository path ``node`` reads: its directory, module sources, chart, values files,
    kustomize sources, and the environment's and repository's settings."""
    paths = [node.path, f"{s.env.path}/environment.yaml", "envctl.yaml"]
    if node.stack is not None:
        paths.extend(node.stack.module_dirs)
    if node.layer is not None:
        paths.extend(node.layer.sources)
    paths.extend(extra.get(node.id, ()))
    return sorted(set(paths))
